"""``fpgagen view HOST:PORT``: a protocol v1 viewer. Shows the stream in an OpenCV window where a display exists,
or saves the JPEG previews (and every frame's detections, as JSON lines) with ``--save DIR``. When the server
goes away it reconnects, every ``retry`` seconds, until stopped (Ctrl-C) or ``give_up_after`` seconds pass."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np

from ..errors import FpgagenError
from . import protocol


def parse_address(text: str, default_port: int = 9000) -> tuple[str, int]:
    host, _, port = text.rpartition(":") if ":" in text else (text, "", str(default_port))
    try:
        port_n = int(port)
        if not 0 < port_n < 65536:
            raise ValueError
    except ValueError:
        raise FpgagenError(f"'{text}' is not HOST:PORT", "fpgagen view", "e.g. 127.0.0.1:9000") from None
    return host.strip("[]") or "127.0.0.1", port_n


class Viewer:
    """Connects, checks the hello, then hands every frame to ``on_frame(meta, rgb image or None)``."""

    def __init__(self, host: str, port: int, token: str | None = None, save: str | Path | None = None,
                 show: bool | None = None, retry: float = 1.0, give_up_after: float | None = None,
                 max_frames: int | None = None, timeout: float = 10.0, log=print):
        from .sinks import has_display

        self.host, self.port, self.token, self.retry = host, port, token, retry
        self.give_up_after, self.max_frames, self.timeout, self.log = give_up_after, max_frames, timeout, log
        self.save = Path(save) if save else None
        self.show = has_display() if show is None else show
        if self.show and not has_display():
            raise FpgagenError("no display for a window", "fpgagen view", "pass --save DIR to write the frames")
        if not self.show and self.save is None:
            raise FpgagenError("no display for a window here", "fpgagen view",
                               "pass --save DIR to write the frames (or open the server's browser page)")
        if self.save:
            self.save.mkdir(parents=True, exist_ok=True)
        self.frames = self.images = self.connections = 0
        self.stopped = self.gave_up = False

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        if self.token is not None:
            sock.sendall(protocol.encode({"token": self.token}))
        meta, _ = protocol.read_message(sock)
        protocol.check_hello(meta)
        if meta.get("refused"):
            sock.close()
            raise FpgagenError(f"the server at {self.host}:{self.port} refused this viewer ({meta['refused']})",
                               "fpgagen view --token", "pass the token 'fpgagen serve' was started with (--token "
                               "or $FPGAGEN_TOKEN)")
        self.connections += 1
        self.log(f"fpgagen view: connected to {self.host}:{self.port} ({json.dumps(meta)})")
        return sock

    def run(self) -> int:
        """Until ``max_frames`` frames, Ctrl-C, or no server for ``give_up_after`` seconds; returns frames seen."""
        lost_since = time.monotonic()
        try:
            while not self.stopped and (self.max_frames is None or self.frames < self.max_frames):
                try:
                    sock = self._connect()
                except (OSError, protocol.ProtocolError) as exc:
                    if self.give_up_after is not None and time.monotonic() - lost_since > self.give_up_after:
                        self.log(f"fpgagen view: no server at {self.host}:{self.port} for {self.give_up_after:g} s "
                                 f"({exc}); giving up")
                        self.gave_up = True
                        break
                    time.sleep(self.retry)
                    continue
                try:
                    self._receive(sock)
                except (OSError, protocol.ProtocolError) as exc:
                    self.log(f"fpgagen view: connection lost ({exc}); reconnecting")
                finally:
                    sock.close()
                lost_since = time.monotonic()
        except KeyboardInterrupt:
            pass
        finally:
            if self.show:
                import cv2

                cv2.destroyAllWindows()
        return self.frames

    def _receive(self, sock: socket.socket) -> None:
        import cv2

        log = (self.save / "detections.jsonl").open("a") if self.save else None
        try:
            while not self.stopped and (self.max_frames is None or self.frames < self.max_frames):
                meta, jpeg = protocol.read_message(sock)
                self.frames += 1
                if log:
                    log.write(json.dumps({k: meta.get(k) for k in ("frame", "time", "name", "detections")}) + "\n")
                if not jpeg:
                    continue
                bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
                if bgr is None:
                    self.log(f"fpgagen view: frame {meta.get('frame')}: undecodable JPEG skipped")
                    continue
                self.images += 1
                if self.save:  # the server's JPEG as it came, not re-encoded
                    (self.save / f"frame_{int(meta.get('frame', self.frames)):06d}.jpg").write_bytes(jpeg)
                if self.show:
                    cv2.imshow(f"fpgagen {self.host}:{self.port}", bgr)
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        self.stopped = True
        finally:
            if log:
                log.close()
