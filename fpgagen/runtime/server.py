"""The TCP stream server (protocol v1, :mod:`fpgagen.runtime.protocol`): a pipeline sink that fans each frame's
message out to every connected viewer.

Each viewer has a small queue (``client_queue`` messages) and its own writer thread. A viewer that reads too
slowly loses the oldest queued frames, never server memory; one whose socket stays blocked for
``send_timeout`` seconds is dropped. A viewer that sends anything (protocol v1 viewers only listen, apart from
the token) or disconnects is dropped, with a log line, while the others go on. At most ``max_clients`` at once.
"""

from __future__ import annotations

import hmac
import select
import socket
import threading
import time
from collections import deque

from ..errors import FpgagenError
from . import protocol

POLL_S = 0.1


class _Viewer:
    def __init__(self, sock: socket.socket, addr, queue_len: int):
        self.sock, self.addr = sock, f"{addr[0]}:{addr[1]}"
        self.queue: deque[bytes] = deque(maxlen=queue_len)
        self.cond = threading.Condition()
        self.ready = False  # hello sent: the monitor watches it for stray input from now on
        self.closed = False
        self.sent = self.dropped = 0
        self.thread: threading.Thread | None = None

    def offer(self, msg: bytes) -> None:
        with self.cond:
            if len(self.queue) == self.queue.maxlen:
                self.dropped += 1  # the oldest goes: a slow viewer gets the latest frames
            self.queue.append(msg)
            self.cond.notify()


class StreamServer:
    """``StreamServer(port=9000).start()``; the pipeline calls ``send(result)`` per frame; ``close()``.

    ``port=0`` picks a free port (see ``.port``). ``token``: viewers must send ``{"token": TOKEN}`` first."""

    wants_jpeg = True
    wants_image = False  # it sends the JPEG and the detections, never the frame

    def __init__(self, host: str = "127.0.0.1", port: int = 9000, token: str | None = None, max_clients: int = 16,
                 client_queue: int = 4, send_timeout: float = 5.0, handshake_timeout: float = 3.0,
                 info: dict | None = None, log=print):
        self.host, self.requested_port, self.token = host, port, token
        self.max_clients, self.client_queue = max_clients, client_queue
        self.send_timeout, self.handshake_timeout = send_timeout, handshake_timeout
        self.info, self.log = dict(info or {}), log
        self._viewers: list[_Viewer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._closing = threading.Event()  # close() began: writers send what is queued, then end
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self.dropped_viewers = 0

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1] if self._listener else self.requested_port

    @property
    def viewers(self) -> int:
        with self._lock:
            return sum(v.ready and not v.closed for v in self._viewers)

    def start(self) -> StreamServer:
        try:
            self._listener = socket.create_server((self.host, self.requested_port), reuse_port=False)
        except OSError as exc:
            raise FpgagenError(f"cannot listen on {self.host}:{self.requested_port} ({exc.strerror})",
                               "fpgagen serve", "pick another --port, or stop the program using it") from None
        self._listener.settimeout(POLL_S)
        for name, target in (("accept", self._accept), ("monitor", self._monitor)):
            t = threading.Thread(target=target, name=f"fpgagen-stream-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        self.log(f"fpgagen: streaming (protocol v{protocol.VERSION}) on tcp://{self.host}:{self.port}")
        return self

    # --- the pipeline's side --------------------------------------------------------------------------------
    def send(self, result) -> None:
        msg = protocol.encode(result.message(), result.jpeg)
        with self._lock:
            viewers = [v for v in self._viewers if v.ready and not v.closed]
        for v in viewers:
            v.offer(msg)

    def close(self, flush_s: float = 1.0) -> None:
        """Let viewers receive what is queued (up to ``flush_s`` seconds), then drop them and join every thread."""
        self._closing.set()
        if self._listener is not None:
            self._listener.close()  # no new viewers from here on
        with self._lock:
            viewers = list(self._viewers)
        deadline = time.monotonic() + flush_s
        for v in viewers:
            with v.cond:
                v.cond.notify_all()
        for v in viewers:
            if v.thread is not None:
                v.thread.join(max(0.0, deadline - time.monotonic()))
        self._stop.set()
        for v in viewers:
            self._drop(v, None)
        for t in self._threads + [v.thread for v in viewers if v.thread]:
            t.join(self.send_timeout + 1)

    # --- threads ----------------------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                sock, addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._viewers = [v for v in self._viewers if not v.closed]
                full = len(self._viewers) >= self.max_clients
            if full:
                self.log(f"fpgagen: viewer {addr[0]}:{addr[1]} refused: {self.max_clients} viewers already")
                sock.close()
                continue
            viewer = _Viewer(sock, addr, self.client_queue)
            viewer.thread = threading.Thread(target=self._serve_viewer, args=(viewer,), daemon=True,
                                             name=f"fpgagen-viewer-{viewer.addr}")
            with self._lock:
                self._viewers.append(viewer)
            viewer.thread.start()

    def _handshake(self, v: _Viewer) -> bool:
        v.sock.settimeout(self.handshake_timeout)
        if self.token is not None:
            try:
                meta, _ = protocol.read_message(v.sock, max_json=4096, max_jpeg=0)
            except (protocol.ProtocolError, OSError) as exc:
                self._refuse(v, "no token came, and this server requires one")
                self._drop(v, f"no token message ({exc})")
                return False
            if not hmac.compare_digest(str(meta.get("token", "")).encode(), self.token.encode()):
                self._refuse(v, "wrong token")
                self._drop(v, "wrong token")
                return False
        v.sock.settimeout(self.send_timeout)
        try:
            v.sock.sendall(protocol.encode(protocol.hello(**self.info, token_required=self.token is not None)))
        except OSError as exc:
            self._drop(v, f"could not send the hello ({exc})")
            return False
        v.ready = True
        self.log(f"fpgagen: viewer {v.addr} connected")
        return True

    def _serve_viewer(self, v: _Viewer) -> None:
        if not self._handshake(v):
            return
        while not self._stop.is_set() and not v.closed:
            with v.cond:
                if not v.queue:
                    if self._closing.is_set():
                        return
                    v.cond.wait(POLL_S)
                    continue
                msg = v.queue.popleft()
            try:
                v.sock.sendall(msg)  # blocks at most send_timeout when the viewer stops reading
                v.sent += 1
            except TimeoutError:
                self._drop(v, f"stopped reading for {self.send_timeout:g} s")
            except OSError as exc:
                self._drop(v, f"disconnected ({exc.strerror or exc})")

    def _monitor(self) -> None:
        """Watch ready viewers for input: EOF means gone, any bytes break protocol v1; either way, drop it."""
        while not self._stop.is_set():
            with self._lock:
                watched = {v.sock: v for v in self._viewers if v.ready and not v.closed}
            if not watched:
                self._stop.wait(POLL_S)
                continue
            try:
                readable, _, _ = select.select(list(watched), [], [], POLL_S)
            except (OSError, ValueError):  # a socket closed under us; look again
                time.sleep(POLL_S / 10)
                continue
            for sock in readable:
                v = watched[sock]
                try:
                    data = sock.recv(4096, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as exc:
                    self._drop(v, f"disconnected ({exc.strerror or exc})")
                    continue
                self._drop(v, "disconnected" if not data else
                           f"sent {len(data)} bytes (protocol v{protocol.VERSION} viewers only listen)")

    def _refuse(self, v: _Viewer, why: str) -> None:
        """Tell a refused viewer why (one message, the hello's protocol and version plus "refused"), so it can
        say so instead of retrying as if no server were there."""
        try:
            v.sock.sendall(protocol.encode(protocol.hello(refused=why)))
        except OSError:
            pass

    def _drop(self, v: _Viewer, why: str | None) -> None:
        with v.cond:
            if v.closed:
                return
            v.closed = True
            v.queue.clear()
            v.cond.notify_all()
        try:
            v.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        v.sock.close()
        if why:
            self.dropped_viewers += 1
            self.log(f"fpgagen: viewer {v.addr} dropped: {why} (sent {v.sent} messages, {v.dropped} frames "
                     "skipped while it lagged)")
