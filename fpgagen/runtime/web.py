"""The browser view: an HTTP server (a pipeline sink) with a page showing the live annotated stream (MJPEG), the
per-stage metrics and the frame's detections.

Routes: ``/`` the page, ``/stream.mjpg`` the MJPEG stream, ``/frame.jpg`` the latest preview,
``/metrics.json`` the pipeline metrics, ``/detections.json`` the latest frame's message (protocol v1 fields).
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..errors import FpgagenError

BOUNDARY = "fpgagenframe"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fpgagen face detection</title>
<link rel="icon" href="data:,">
<style>
 body { font-family: system-ui, sans-serif; margin: 16px; background: #111; color: #ddd; }
 h1 { font-size: 18px; margin: 0 0 8px; } #wrap { display: flex; gap: 20px; flex-wrap: wrap; }
 img { background: #222; max-width: 100%; border: 1px solid #444; }
 table { border-collapse: collapse; font-size: 13px; } td, th { padding: 2px 10px; text-align: right; }
 th { color: #9c9; } td:first-child, th:first-child { text-align: left; } #status { color: #9c9; }
 pre { font-size: 12px; background: #1a1a1a; padding: 6px; max-height: 240px; overflow: auto; }
 a { color: #8cf; } a:visited { color: #c9f; }
</style></head><body>
<h1>fpgagen face detection: __TITLE__</h1>
<div id="wrap">
 <div><img id="live" src="/stream.mjpg" alt="live stream"><div id="status">waiting for frames</div></div>
 <div><table id="metrics"><thead><tr><th>stage</th><th>frames</th><th>latency ms</th><th>max ms</th>
 <th>frames/s</th></tr></thead><tbody></tbody></table>
 <p id="extra"></p><h1>detections (<a href="/detections.json">/detections.json</a>)</h1><pre id="dets">-</pre></div>
</div>
<script>
async function poll() {
  try {
    const m = await (await fetch('/metrics.json', {cache: 'no-store'})).json();
    const rows = Object.entries(m.stages || {}).map(([s, v]) =>
      `<tr><td>${s}</td><td>${v.frames}</td><td>${v.latency_ms ?? '-'}</td><td>${v.max_ms ?? '-'}</td>` +
      `<td>${v.fps ?? '-'}</td></tr>`).join('');
    document.querySelector('#metrics tbody').innerHTML = rows;
    const drops = Object.entries(m.dropped || {}).map(([k, v]) => `${k} ${v}`).join(', ');
    document.getElementById('extra').textContent =
      `uptime ${m.uptime_s} s; dropped: ${drops || 'none'}; errors: ${m.errors ?? 0}`;
    const d = await (await fetch('/detections.json', {cache: 'no-store'})).json();
    if (d.frame !== undefined) {
      document.getElementById('status').textContent = `frame ${d.frame}: ${d.detections.length} face(s)`;
      const lines = d.detections.map(x => JSON.stringify(x));
      document.getElementById('dets').textContent = lines.join('\\n') || 'none';
    }
  } catch (e) { document.getElementById('status').textContent = 'server unreachable: ' + e; }
}
setInterval(poll, 500); poll();
</script></body></html>
"""


class _State:
    def __init__(self):
        self.cond = threading.Condition()
        self.jpeg: bytes | None = None
        self.jpeg_seq = 0
        self.message: dict = {}
        self.metrics: dict = {}
        self.stopping = False


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins every handler thread: none is left behind
    block_on_close = True

    def __init__(self, addr, state: _State, title: str, send_timeout: float):
        self.state, self.title, self.send_timeout = state, title, send_timeout
        super().__init__(addr, _Handler)


class _Handler(BaseHTTPRequestHandler):
    timeout = 5.0  # a client that connects and never finishes its request is cut off
    server: _Server

    def log_message(self, fmt, *args):  # quiet: the pipeline prints metrics instead
        pass

    def _send(self, body: bytes, ctype: str, status=HTTPStatus.OK) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - the http.server API
        state = self.server.state
        path = self.path.split("?", 1)[0]
        try:
            if path in ("/", "/index.html"):
                self._send(PAGE.replace("__TITLE__", self.server.title).encode(), "text/html; charset=utf-8")
            elif path == "/metrics.json":
                with state.cond:
                    body = json.dumps(state.metrics).encode()
                self._send(body, "application/json")
            elif path == "/detections.json":
                with state.cond:
                    body = json.dumps(state.message).encode()
                self._send(body, "application/json")
            elif path == "/frame.jpg":
                with state.cond:
                    jpeg = state.jpeg
                if jpeg is None:
                    self._send(b"no frame yet", "text/plain", HTTPStatus.SERVICE_UNAVAILABLE)
                else:
                    self._send(jpeg, "image/jpeg")
            elif path == "/stream.mjpg":
                self._stream(state)
            else:
                self._send(b"not found", "text/plain", HTTPStatus.NOT_FOUND)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            pass  # the browser went away

    def _stream(self, state: _State) -> None:
        self.connection.settimeout(self.server.send_timeout)  # a stalled browser is cut off, not waited for
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        seen = -1
        while True:
            with state.cond:
                while not state.stopping and state.jpeg_seq == seen:
                    state.cond.wait(0.5)
                if state.stopping:
                    return
                jpeg, seen = state.jpeg, state.jpeg_seq
            if jpeg is None:
                continue
            self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                             .encode() + jpeg + b"\r\n")
            self.wfile.flush()


class WebServer:
    """``WebServer(port=8080).start()``; a pipeline sink (``send``); ``close()`` joins every thread."""

    wants_jpeg = True
    wants_image = False  # it sends the JPEG and the detections, never the frame

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, title: str = "", send_timeout: float = 5.0,
                 log=print):
        self.host, self.requested_port, self.title, self.log = host, port, title, log
        self.send_timeout = send_timeout
        self.state = _State()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1] if self._httpd else self.requested_port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> WebServer:
        try:
            self._httpd = _Server((self.host, self.requested_port), self.state, self.title, self.send_timeout)
        except OSError as exc:
            raise FpgagenError(f"cannot listen on {self.host}:{self.requested_port} ({exc.strerror})",
                               "fpgagen serve --http-port",
                               "pick another port, 0 for any free one, or -1 to turn the page off") from None
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="fpgagen-http", daemon=True)
        self._thread.start()
        self.log(f"fpgagen: browser view on {self.url}")
        return self

    def send(self, result) -> None:
        msg = result.message()
        with self.state.cond:
            self.state.message = msg
            self.state.metrics = result.metrics
            if result.jpeg:
                self.state.jpeg, self.state.jpeg_seq = result.jpeg, self.state.jpeg_seq + 1
                self.state.cond.notify_all()

    def close(self) -> None:
        with self.state.cond:
            self.state.stopping = True
            self.state.cond.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
