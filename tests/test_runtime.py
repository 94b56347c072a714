"""The host runtime: backends (bit-exact, the pynq byte path through a fake pynq), the threaded pipeline (order,
backpressure, drop policy, errors, shutdown), protocol v1 and the stream server under hostile clients, the
viewer's reconnect, and ``fpgagen detect`` on a real photo. All traffic on 127.0.0.1."""

from __future__ import annotations

import _thread
import json
import socket
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
from runtime_nets import TINY_ANCHORS, TINY_SIZE, build_tiny, fake_pynq, moving_frames

from fpgagen import packing
from fpgagen.detect import Backend as DetectBackend
from fpgagen.detect import Detections, Detector
from fpgagen.errors import FpgagenError
from fpgagen.geometry import stream_geometry
from fpgagen.runtime import protocol
from fpgagen.runtime.backends import CSimBackend, PynqBackend, ReferenceBackend, write_runtime_spec
from fpgagen.runtime.model import FaceDetector, load_face_detector, write_detector_json
from fpgagen.runtime.pipeline import Pipeline, Result
from fpgagen.runtime.server import StreamServer
from fpgagen.runtime.sinks import CallbackSink, FileSink
from fpgagen.runtime.sources import Arrays, ImageFiles
from fpgagen.runtime.viewer import Viewer
from fpgagen.runtime.web import WebServer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def no_leaks():
    """Every thread a test starts is gone when it ends."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and set(threading.enumerate()) - before:
        time.sleep(0.05)
    leaked = [t.name for t in set(threading.enumerate()) - before]
    assert not leaked, f"threads left behind: {leaked}"


def _frames(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, TINY_SIZE, TINY_SIZE, 3), dtype=np.uint8)


# --- backends ---------------------------------------------------------------------------------------------------
def test_backends_bit_exact_and_pynq_bytes_are_the_pixels(tiny, tmp_path, monkeypatch):
    frames = _frames(3)
    ref, csim = ReferenceBackend(tiny), CSimBackend(tiny)
    assert ref.pixels_are_codes and ref.input_codes(frames) is frames  # uint8 goes in untouched: no copy
    want = ref.infer(frames)
    assert want.shape == (3, *tiny.net.out_stream_shape) and np.issubdtype(want.dtype, np.integer)
    assert np.array_equal(csim.infer(frames), want)

    (tmp_path / "design.bit").write_bytes(b"bit")
    pynq = fake_pynq(tiny.lib)
    monkeypatch.setitem(sys.modules, "pynq", pynq)
    board = PynqBackend(tiny, bitstream=tmp_path / "design.bit")
    assert pynq.overlays[0].path == str(tmp_path / "design.bit")
    assert np.array_equal(board.infer(frames), want)
    # what the DMA carried: the packed stream of the shared packing, which for 8-bit pixels is the NHWC bytes
    geometry = stream_geometry(tiny.net)
    sent = np.concatenate(pynq.sent)  # the three frames in one DMA transfer
    assert len(pynq.sent) == 1 and np.array_equal(sent, packing.frames_to_bytes(frames, geometry).reshape(-1))
    assert np.array_equal(sent, frames.reshape(-1))
    assert pynq.synced.count("flush") == 1 and pynq.synced.count("invalidate") == 1
    board.close()
    assert pynq.synced.count("free") == 6  # the ring: 3 input and 3 output buffers

    # a deploy directory on the board: runtime.json, detector.json and the bitstream, no IR (no qonnx there)
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    write_runtime_spec(tiny).rename(deploy / "runtime.json")
    write_detector_json(deploy, TINY_ANCHORS, TINY_SIZE)
    (deploy / "face.bit").write_bytes(b"bit")
    pynq.sent.clear()
    detector = load_face_detector(deploy, "pynq")
    assert detector.backend.acc is None and pynq.overlays[-1].path == str(deploy / "face.bit")
    assert np.array_equal(detector.backend.infer(frames), want)
    assert np.array_equal(np.concatenate(pynq.sent), frames.reshape(-1))


def test_backend_refuses_wrong_frames(tiny):
    ref = ReferenceBackend(tiny)
    for bad in (np.zeros((1, 32, 32, 3), np.uint8), np.zeros((1, TINY_SIZE, TINY_SIZE, 3), np.float32)):
        with pytest.raises(FpgagenError, match="letterbox"):
            ref.infer(bad)


def test_pynq_backend_without_pynq_is_a_clear_error(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynq", None)  # import pynq -> ImportError
    with pytest.raises(FpgagenError, match="pynq package is not installed"):
        PynqBackend(tiny)


def test_detector_needs_anchors(tiny, tmp_path):
    with pytest.raises(ValueError, match="anchors"):
        Detector(DetectBackend(lambda b: b, (2 ** -7, 0.0)), None)
    (tmp_path / "network.json").write_text((tiny.build_dir / "network.json").read_text())
    with pytest.raises(FpgagenError, match="anchors"):
        load_face_detector(tmp_path, "reference")


def test_face_detector_matches_the_detect_package(tiny):
    """The runtime's split stages give what fpgagen.detect.Detector gives on the same codes."""
    det = load_face_detector(tiny.build_dir, "reference")
    images = moving_frames(3, size=(90, 150))
    got = det(images)
    codes = ReferenceBackend(tiny).infer(np.stack([det.preprocess(im)[0] for im in images]))
    ref = Detector(DetectBackend(lambda b: codes.transpose(0, 3, 1, 2), det.backend.output_quant),
                   TINY_ANCHORS, TINY_SIZE)(images)
    assert sum(len(d) for d in got) > 0
    for a, b in zip(got, ref, strict=True):
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)


# --- pipeline ---------------------------------------------------------------------------------------------------
class SlowBackend:
    """Wraps a backend, taking at least ``delay`` seconds per call."""

    def __init__(self, inner, delay):
        self.inner, self.delay, self.calls = inner, delay, 0
        self.name, self.input_shape, self.output_quant = inner.name, inner.input_shape, inner.output_quant

    def infer(self, frames):
        self.calls += 1
        time.sleep(self.delay)
        return self.inner.infer(frames)


def _detector(tiny, delay=0.0):
    det = load_face_detector(tiny.build_dir, "reference")
    if delay:
        det.backend = SlowBackend(det.backend, delay)
    return det


def test_pipeline_keeps_order_and_equals_direct_detection(tiny, no_leaks):
    images = moving_frames(10)
    got = []
    pipe = Pipeline(Arrays(images), _detector(tiny), [CallbackSink(got.append)], batch=3, metrics_every=0,
                    log=lambda m: None)
    metrics = pipe.run()
    assert [r.index for r in got] == list(range(10))
    direct = _detector(tiny)(images)
    for r, d in zip(got, direct, strict=True):
        assert r.error is None and np.array_equal(r.detections.boxes, d.boxes)
    assert metrics["stages"]["inference"]["frames"] == 10 and metrics["dropped"]["source"] == 0
    assert all(metrics["stages"][s]["latency_ms"] is not None for s in ("preprocess", "inference", "postprocess"))


def test_backpressure_bounds_frames_in_flight_and_drops_nothing(tiny, no_leaks):
    produced, consumed, in_flight = [0], [0], []

    def images():
        for img in moving_frames(25):
            in_flight.append(produced[0] - consumed[0])
            produced[0] += 1
            yield img

    def slow_sink(result):
        time.sleep(0.02)
        consumed[0] += 1

    pipe = Pipeline(Arrays(images()), _detector(tiny), [CallbackSink(slow_sink)], queue_size=1, metrics_every=0,
                    log=lambda m: None)
    metrics = pipe.run()
    assert consumed[0] == 25 and metrics["dropped"]["source"] == 0
    # 4 queues of one frame plus one frame held by each of the 5 stage threads, at most
    assert max(in_flight) <= 9, max(in_flight)


def test_live_source_drops_the_oldest_frames(tiny, no_leaks):
    got = []
    det = _detector(tiny, delay=0.03)
    pipe = Pipeline(Arrays(moving_frames(60), live=True), det, [CallbackSink(got.append)], queue_size=2,
                    metrics_every=0, log=lambda m: None)
    metrics = pipe.run()
    indices = [r.index for r in got]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    dropped = metrics["dropped"]["source"] + metrics["dropped"]["stale"]
    assert dropped > 0 and dropped + len(got) == 60
    assert indices[-1] == 59  # the newest frame always gets through: the oldest are the ones dropped


def test_bad_images_give_clear_errors_and_the_pipeline_goes_on(tiny, tmp_path, no_leaks):
    folder = tmp_path / "in"
    folder.mkdir()
    good = moving_frames(1, size=(100, 140))[0]
    cv2.imwrite(str(folder / "a_good.png"), good)
    (folder / "b_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 20)
    (folder / "c_empty.png").write_bytes(b"")
    cv2.imwrite(str(folder / "d_grey.png"), cv2.cvtColor(good, cv2.COLOR_RGB2GRAY))
    cv2.imwrite(str(folder / "e_16bit.png"), good.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "f_tiny.png"), good[:4, :4])
    out = tmp_path / "out"
    logs = []
    sink = FileSink(out)
    Pipeline(ImageFiles([folder]), _detector(tiny), [sink], metrics_every=0, log=logs.append).run()
    assert set(sink.detections) == {"a_good.png", "d_grey.png", "e_16bit.png"}  # files: OpenCV converts those
    assert set(sink.errors) == {"b_corrupt.jpg", "c_empty.png", "f_tiny.png"}
    assert "cannot decode" in sink.errors["b_corrupt.jpg"] and "4x4 pixels" in sink.errors["f_tiny.png"]
    assert sum("skipped" in m for m in logs) == 3
    assert json.loads((out / "detections.json").read_text()).keys() == sink.detections.keys()
    assert sorted(p.name for p in out.glob("*.png")) == ["a_good.png", "d_grey.png", "e_16bit.png"]

    # arrays in memory must already be uint8 RGB: each bad one is refused with what to do, the rest go through
    grey, deep = good[..., 0], good.astype(np.uint16) * 257
    got = []
    Pipeline(Arrays([good, grey, deep, good[..., :2], good]), _detector(tiny), [CallbackSink(got.append)],
             metrics_every=0, log=lambda m: None).run()
    errors = [r.error for r in got]
    assert errors[0] is None and errors[4] is None
    assert "greyscale" in errors[1] and "COLOR_GRAY2RGB" in errors[1]
    assert "uint16" in errors[2] and "8-bit" in errors[2]
    assert "(H, W, 3)" in errors[3]


def test_ctrl_c_stops_every_thread(tiny, no_leaks):
    def forever():
        frames = moving_frames(4)
        i = 0
        while True:
            yield frames[i % 4]
            i += 1

    server = StreamServer(port=0, log=lambda m: None).start()
    web = WebServer(port=0, log=lambda m: None).start()
    pipe = Pipeline(Arrays(forever(), live=True), _detector(tiny), [server, web], metrics_every=0,
                    log=lambda m: None)
    timer = threading.Timer(0.6, _thread.interrupt_main)
    timer.start()
    start = time.monotonic()
    pipe.run()  # returns on the KeyboardInterrupt, after stopping everything
    timer.join()
    assert 0.5 < time.monotonic() - start < 5 and pipe.frames_out > 0


# --- protocol and the stream server -----------------------------------------------------------------------------
def _result(i, jpeg=b"\xff\xd8 jpeg \xff\xd9"):
    det = Detections(np.array([[1.0, 2.0, 30.5, 40.25]]), np.array([0.875]))
    return Result(i, f"frame_{i}", 1234.5 + i, None, det, None, {"stages": {"inference": {"fps": 3.5}}}, jpeg)


def test_protocol_messages():
    msg = protocol.encode({"frame": 3}, b"JPEG")
    assert msg[:4] == (len(msg) - 8).to_bytes(4, "big") and msg.endswith(b"JPEG")
    assert json.loads(msg[4:-4]) == {"frame": 3, "jpeg_bytes": 4}
    a, b = socket.socketpair()
    with a, b:
        a.sendall(msg + protocol.encode({"x": 1}) + (10 ** 9).to_bytes(4, "big"))
        assert protocol.read_message(b) == ({"frame": 3, "jpeg_bytes": 4}, b"JPEG")
        assert protocol.read_message(b) == ({"x": 1}, b"")
        with pytest.raises(protocol.ProtocolError, match="length"):
            protocol.read_message(b)  # a gigabyte header is refused before any allocation


def _connect(port, token=None):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if token is not None:
        sock.sendall(protocol.encode({"token": token}))
    return sock


def test_stream_round_trip_with_token(no_leaks):
    logs = []
    server = StreamServer(port=0, token="s3cret", info={"model": "m"}, handshake_timeout=1, log=logs.append).start()
    try:
        good = _connect(server.port, "s3cret")
        hello, _ = protocol.read_message(good)
        assert hello == {"protocol": "fpgagen-stream", "version": 1, "model": "m", "token_required": True}
        bad = _connect(server.port, "guess")
        refusal, _ = protocol.read_message(bad)  # told why instead of a hello, then dropped
        assert refusal == {"protocol": "fpgagen-stream", "version": 1, "refused": "wrong token"}
        assert bad.recv(100) == b""
        _wait(lambda: server.viewers == 1)
        sent = [_result(i) for i in range(3)]
        for r in sent:
            server.send(r)
        for r in sent:
            meta, jpeg = protocol.read_message(good)
            assert meta == json.loads(json.dumps(r.message())) and jpeg == r.jpeg
            assert meta["detections"] == [{"box": [1.0, 2.0, 30.5, 40.2], "score": 0.875}]
        good.close()
        bad.close()
        _wait(lambda: server.viewers == 0)
    finally:
        server.close()
    assert any("wrong token" in m for m in logs) and any("disconnected" in m for m in logs)


def _wait(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_hostile_clients_do_not_hurt_a_normal_viewer_or_memory(no_leaks, capsys):
    logs = []
    server = StreamServer(port=0, token="t", client_queue=4, send_timeout=1.0, handshake_timeout=0.5,
                          log=logs.append).start()
    jpeg = bytes(np.random.default_rng(0).integers(0, 256, 60_000, dtype=np.uint8))  # a 60 kB preview
    received, stop = [], threading.Event()

    def normal_viewer():
        sock = _connect(server.port, "t")
        sock.settimeout(5)
        protocol.check_hello(protocol.read_message(sock)[0])
        while not stop.is_set():
            meta, data = protocol.read_message(sock)
            assert data == jpeg
            received.append(meta["frame"])
        sock.close()

    viewer = threading.Thread(target=normal_viewer)
    viewer.start()
    _wait(lambda: server.viewers == 1)
    hostile = []
    garbage = _connect(server.port)
    garbage.sendall(np.random.default_rng(1).bytes(5000))  # garbage instead of a token
    half = _connect(server.port)
    half.sendall(b"\x00\x00")  # half a header, then silence
    vanish = _connect(server.port)
    vanish.close()  # connect and vanish
    chatty = _connect(server.port, "t")  # a valid viewer that then talks
    protocol.read_message(chatty)
    chatty.sendall(b"hello server")
    never_reads = socket.socket()
    never_reads.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    never_reads.connect(("127.0.0.1", server.port))
    never_reads.sendall(protocol.encode({"token": "t"}))
    hostile += [garbage, half, chatty, never_reads]

    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    sent = 0
    start = time.monotonic()
    while time.monotonic() - start < 3.0:  # ~100 frames/s of 60 kB for 3 s: 18 MB offered to each viewer
        server.send(_result(sent, jpeg))
        sent += 1
        time.sleep(0.01)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    stop.set()
    server.send(_result(sent, jpeg))
    viewer.join(5)
    drops = "\n".join(logs)
    for s in hostile:
        s.close()
    server.close()
    with capsys.disabled():
        print(f"\nhostile clients: {sent} frames x {len(jpeg) // 1000} kB sent; normal viewer got {len(received)}; "
              f"server Python heap peak +{peak / 1e6:.2f} MB (tracemalloc)")
    assert not viewer.is_alive() and len(received) >= 0.9 * sent  # the normal viewer kept receiving throughout
    assert received == sorted(received)
    assert "no token message" in drops and "sent 12 bytes" in drops and "stopped reading" in drops
    assert drops.count("dropped") >= 4
    # bounded: 4 queued messages per viewer (shared bytes objects) and transient buffers, far below 18 MB offered
    assert peak < 3e6, peak


def test_viewer_saves_frames_and_reconnects_after_a_server_restart(tiny, tmp_path, no_leaks):
    def run_server(port, frames):
        server = StreamServer(port=port, log=lambda m: None).start()
        _wait(lambda: server.viewers == 1)
        Pipeline(Arrays(moving_frames(frames)), _detector(tiny), [server], preview_fps=float("inf"), metrics_every=0,
                 log=lambda m: None).run()
        return server

    first = StreamServer(port=0, log=lambda m: None)
    first.start()
    port = first.port
    first.close()
    viewer = Viewer("127.0.0.1", port, save=tmp_path / "seen", show=False, retry=0.1, give_up_after=3,
                    max_frames=10, log=lambda m: None)
    thread = threading.Thread(target=viewer.run)
    thread.start()
    run_server(port, 6)  # sends 6 frames, closes: the viewer reconnects
    run_server(port, 4)
    thread.join(10)
    assert not thread.is_alive() and viewer.frames == 10 and viewer.connections == 2
    saved = sorted((tmp_path / "seen").glob("frame_*.jpg"))
    assert viewer.images == 10 and len(saved) == 6  # frame numbers restart with the second server
    img = cv2.imread(str(saved[0]))
    assert img is not None and img.shape == (120, 160, 3)
    lines = (tmp_path / "seen" / "detections.jsonl").read_text().splitlines()
    assert len(lines) == 10 and "detections" in json.loads(lines[0])


# --- fpgagen detect on a real photo -------------------------------------------------------------------------------
def test_detect_command_on_the_astronaut(tmp_path, capsys):
    """The shipped face detector (built on first use and cached), C-sim backend, one real photo."""
    import skimage.data

    from fpgagen.cli import main
    from fpgagen.data.sources import DEMO_FACE_BOXES
    from fpgagen.detect import iou_matrix

    photo = skimage.data.astronaut()
    cv2.imwrite(str(tmp_path / "astronaut.jpg"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    assert main(["detect", str(tmp_path / "astronaut.jpg"), "-o", str(tmp_path / "out"), "--backend", "csim"]) == 0
    found = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert list(found) == ["astronaut.jpg"]
    boxes = np.array([d["box"] for d in found["astronaut.jpg"]])
    assert len(boxes) >= 1 and (boxes[:, [0, 2]] <= 511).all() and (boxes[:, [1, 3]] <= 511).all()
    assert iou_matrix(boxes, np.array([DEMO_FACE_BOXES["astronaut"]]), plus_one=True).max() >= 0.5
    annotated = cv2.imread(str(tmp_path / "out" / "astronaut.png"))
    assert annotated.shape == photo.shape and not np.array_equal(annotated[..., ::-1], photo)


def test_detect_command_errors(tmp_path, capsys):
    from fpgagen.cli import main

    assert main(["detect", str(tmp_path / "missing.jpg"), "--accelerator", str(tmp_path)]) == 2
    assert "fpgagen: error:" in capsys.readouterr().err


def test_face_detector_refuses_a_non_detector(tiny):
    class Flat:
        name, input_shape, output_quant = "x", (64, 32, 3), (1.0, 0.0)

    with pytest.raises(FpgagenError, match="square"):
        FaceDetector(Flat(), TINY_ANCHORS)


def test_shipped_checkpoint_path_matches_the_trainer():
    import fpgagen
    from fpgagen.runtime.model import SHIPPED_CHECKPOINT
    from fpgagen.train import shipped_checkpoint

    assert shipped_checkpoint("w4a4") == Path(fpgagen.__file__).parent / "checkpoints" / SHIPPED_CHECKPOINT


@pytest.mark.parametrize("shape", [(480, 640), (640, 480), (416, 416), (300, 200), (1080, 1920), (200, 300)])
def test_fast_letterbox_has_the_training_letterbox_geometry(shape):
    """The host letterbox: the training letterbox's geometry, OpenCV's INTER_LINEAR_EXACT at every scale (what a
    --camera build's fabric computes, tests/test_letterbox.py)."""
    from fpgagen.data.transforms import letterbox
    from fpgagen.runtime.model import fast_letterbox

    image = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8), (9, 9), 3)
    got, box = fast_letterbox(image, 416)
    want, want_box = letterbox(image, 416)
    assert box == want_box and got.dtype == np.uint8 and got.shape == (416, 416, 3)
    nh, nw = round(shape[0] * box.scale), round(shape[1] * box.scale)
    content = np.zeros((416, 416), bool)
    content[int(box.dy):int(box.dy) + nh, int(box.dx):int(box.dx) + nw] = True
    assert np.array_equal(got[~content], want[~content]) and (got[~content] == 114).all()  # the same grey border
    exact = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR_EXACT)
    assert np.array_equal(got[content].reshape(nh, nw, 3), exact)
    if box.scale >= 0.5:  # bilinear and the training letterbox (area averaging when shrinking): the same picture
        assert np.abs(got.astype(int) - want.astype(int))[content].mean() < 2.0
    if box.scale == 1:
        assert np.array_equal(got, want)


@pytest.mark.parametrize("sig", ["SIGINT", pytest.param("SIGTERM", marks=pytest.mark.slow)])
def test_serve_command_shuts_down_cleanly_on_a_signal(tiny, tmp_path, sig):
    """``fpgagen serve`` in its own process: Ctrl-C (or kill) stops every thread, closes the ports, exits 0."""
    import os
    import signal
    import subprocess

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(moving_frames(3)):
        cv2.imwrite(str(folder / f"{i}.png"), img)
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "fpgagen.cli", "serve", str(tiny.build_dir), "--images",
                             str(folder), "--fps", "20", "--loop", "--backend", "reference", "--port", "0",
                             "--http-port", "0", "--metrics-every", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    stdout = []
    out_reader = threading.Thread(target=lambda: stdout.append(proc.stdout.read()), daemon=True)
    out_reader.start()
    try:
        _wait(lambda: any("browser view on" in line for line in lines), timeout=30)  # imports take a while
        time.sleep(1.0)
        proc.send_signal(getattr(signal, sig))
        proc.wait(timeout=10)  # stderr is the reader thread's alone: communicate() would race it for lines
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    out_reader.join(5)
    out = "".join(stdout)
    assert proc.returncode == 0, "".join(lines)
    assert any("interrupted, stopping" in line for line in lines)
    assert not any("threads still running" in line for line in lines)
    assert json.loads(out.strip().splitlines()[-1])["stages"]["inference"]["frames"] > 5


BOARD_SCRIPT = r'''
import importlib.abc, sys, types
import numpy as np

BLOCKED = {"torch", "brevitas", "qonnx", "onnx", "onnxruntime", "scipy", "jinja2", "hls4ml", "matplotlib", "skimage"}


class Block(importlib.abc.MetaPathFinder):  # a PYNQ-Z2 image has none of the compiler's dependencies
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not on the board")


sys.meta_path.insert(0, Block())
from fpgagen.csim import CSimLibrary  # the stand-in bitstream: the C-simulation library, bytes in, bytes out

lib = CSimLibrary(sys.argv[2])
pynq = types.ModuleType("pynq")


class Channel:
    def __init__(self, send):
        self.send, self.buffer, self.transferred = send, None, 0

    def transfer(self, buffer, nbytes=0):
        self.buffer = buffer
        if self.send:
            dma.results.append(lib.run(np.array(buffer[: nbytes or len(buffer)]).reshape(-1, lib.in_frame_bytes))
                               .reshape(-1))

    def wait(self):
        if not self.send:
            result = dma.results.pop(0)
            self.buffer[: len(result)] = result
            self.transferred = len(result)


dma = types.SimpleNamespace(sendchannel=Channel(True), recvchannel=Channel(False), results=[])
pynq.allocate = lambda shape, dtype: np.zeros(shape, dtype)
pynq.Overlay = lambda path: types.SimpleNamespace(ip_dict={"dma": {"type": "xilinx.com:ip:axi_dma:7.1"}}, dma=dma)
sys.modules["pynq"] = pynq

from fpgagen.runtime import Arrays, FileSink, Pipeline, StreamServer, WebServer, load_face_detector

detector = load_face_detector(sys.argv[1], "pynq")
frames = np.load(sys.argv[3])
assert np.array_equal(detector.backend.infer(frames), np.load(sys.argv[4]))
sinks = [StreamServer(port=0, log=lambda m: None).start(), WebServer(port=0, log=lambda m: None).start(),
         FileSink(sys.argv[5])]
Pipeline(Arrays(list(frames)), detector, sinks, metrics_every=0, log=print).run()
heavy = sorted(m for m in BLOCKED if m in sys.modules)
print("board path OK", len(sinks[2].detections), heavy)
'''


def test_board_runtime_needs_none_of_the_compiler_dependencies(tiny, tmp_path):
    """On the board: a deploy directory (runtime.json, detector.json, .bit), numpy, OpenCV and the image's pynq;
    no torch, qonnx, onnx, scipy or jinja2 is imported (they are blocked here)."""
    import os
    import subprocess

    deploy = tmp_path / "deploy"
    deploy.mkdir()
    write_runtime_spec(tiny).rename(deploy / "runtime.json")
    write_detector_json(deploy, TINY_ANCHORS, TINY_SIZE)
    (deploy / "face.bit").write_bytes(b"bit")
    frames = _frames(3, seed=5)
    np.save(tmp_path / "frames.npy", frames)
    np.save(tmp_path / "want.npy", ReferenceBackend(tiny).infer(frames))
    (tmp_path / "board.py").write_text(BOARD_SCRIPT)
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, str(tmp_path / "board.py"), str(deploy), str(tiny.lib.path),
                           str(tmp_path / "frames.npy"), str(tmp_path / "want.npy"), str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "board path OK 3 []" in proc.stdout


def test_accelerator_backend_streams_the_pixels_as_the_float_path_would(tiny):
    """fpgagen.detect.accelerator_backend now hands uint8 NHWC frames straight to the C-sim; same codes as the
    float NCHW path through the input quantizer."""
    from fpgagen.detect import accelerator_backend

    frames = _frames(2, seed=3)
    backend = accelerator_backend(tiny)
    want = tiny.run(frames.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255), codes=True)
    assert tiny.pixels_are_codes and np.array_equal(backend.run(frames), want)


def test_a_general_input_quantizer_goes_through_the_float_path(tmp_path):
    """An input scale of 2**-8 does not map pixel k to code k: the backend quantizes k/255 as the model would."""
    import nets

    import fpgagen

    model = nets.pow2_net()
    acc = fpgagen.build(fpgagen.export(model, tmp_path / "p.onnx"), out_dir=tmp_path / "b", verify=False,
                        log=lambda m: None)
    assert not acc.pixels_are_codes
    frames = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    got = ReferenceBackend(acc).infer(frames)
    want = acc.reference_stream(acc.quantize_input(frames.transpose(0, 3, 1, 2).astype(np.float32) / 255))
    assert np.array_equal(got, want)


def test_detect_keeps_every_result_when_names_collide(tiny, tmp_path, capsys):
    """dupA/img.png and dupB/img.png, x.jpg and x.png, and one file given twice: one entry and one annotated
    PNG each, nothing overwritten."""
    from fpgagen.cli import main

    frames = moving_frames(4, size=(80, 100))
    for sub, name, img in (("dupA", "img.png", frames[0]), ("dupB", "img.png", frames[1]), ("c", "x.jpg", frames[2]),
                           ("c", "x.png", frames[3])):
        (tmp_path / sub).mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / sub / name), img)
    inputs = [str(tmp_path / p) for p in ("dupA/img.png", "dupB/img.png", "c/x.jpg", "c/x.png", "c/x.png")]
    out = tmp_path / "out"
    assert main(["detect", *inputs, "-o", str(out), "--accelerator", str(tiny.build_dir),
                 "--backend", "reference"]) == 0, capsys.readouterr().err
    found = json.loads((out / "detections.json").read_text())
    assert list(found) == ["dupA/img.png", "dupB/img.png", "c/x.jpg", "c/x.png", "c/x.png#2"]
    pngs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert pngs == ["c/x.png", "c/x_png.png", "c/x_png_2.png", "dupA/img.png", "dupB/img.png"]
    # unique file names stay plain file names, as before
    assert main(["detect", inputs[0], inputs[2], "-o", str(tmp_path / "o2"), "--accelerator", str(tiny.build_dir),
                 "--backend", "reference"]) == 0
    assert list(json.loads((tmp_path / "o2" / "detections.json").read_text())) == ["img.png", "x.jpg"]


def test_serve_save_keeps_only_the_newest_frames(tiny, tmp_path, capsys, no_leaks):
    from fpgagen.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    for i, img in enumerate(moving_frames(3, size=(80, 100))):
        cv2.imwrite(str(folder / f"f{i}.png"), img)
    save = tmp_path / "save"
    assert main(["serve", str(tiny.build_dir), "--images", str(folder), "--loop", "--max-frames", "12",
                 "--save", str(save), "--save-max", "2", "--port", "0", "--http-port", "-1", "--backend",
                 "reference", "--metrics-every", "0"]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in save.glob("*.png")) == ["f1.png", "f2.png"]  # the newest two of f0 f1 f2 f0 ...
    assert list(json.loads((save / "detections.json").read_text())) == ["f1.png", "f2.png"]
    sink = FileSink(tmp_path / "many", keep=3)
    Pipeline(Arrays(moving_frames(10)), _detector(tiny), [sink], metrics_every=0, log=lambda m: None).run()
    assert len(list((tmp_path / "many").glob("*.png"))) == 3 and sink.removed == 7 and len(sink.detections) == 3
    assert main(["serve", "--images", str(folder), "--save-max", "-1"]) == 2
    assert "--save-max" in capsys.readouterr().err


def test_view_names_a_refused_token_and_a_missing_server(tmp_path, capsys, monkeypatch, no_leaks):
    from fpgagen.cli import main

    monkeypatch.delenv("FPGAGEN_TOKEN", raising=False)
    server = StreamServer(port=0, token="s3cret", handshake_timeout=0.3, log=lambda m: None).start()
    port = server.port
    try:
        for extra, why in ((["--token", "guess"], "wrong token"), ([], "no token came, and this server requires one")):
            assert main(["view", f"127.0.0.1:{port}", "--save", str(tmp_path / "v"), "--give-up-after", "2",
                         *extra]) == 2
            err = capsys.readouterr().err
            assert f"fpgagen: error: the server at 127.0.0.1:{port} refused this viewer ({why})" in err
            assert "--token" in err and "giving up" not in err and "Traceback" not in err
    finally:
        server.close()
    # closed now: nobody answers there
    assert main(["view", f"127.0.0.1:{port}", "--save", str(tmp_path / "v"), "--give-up-after", "0.3"]) == 2
    assert f"fpgagen: error: no 'fpgagen serve' answered at 127.0.0.1:{port} for 0.3 s" in capsys.readouterr().err


def test_port_in_use_and_missing_dma_messages_name_the_real_options(tiny, tmp_path, monkeypatch):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(FpgagenError) as err:
            WebServer("127.0.0.1", taken.getsockname()[1], log=lambda m: None).start()
    finally:
        taken.close()
    assert "0 for any free one, or -1 to turn the page off" in str(err.value)

    (tmp_path / "design.bit").write_bytes(b"bit")
    pynq = fake_pynq(tiny.lib)

    class NoDma(pynq.Overlay):
        def __init__(self, path):
            super().__init__(path)
            self.ip_dict = {"accel_0": {"type": "xilinx.com:hls:top:1.0"}}

    pynq.Overlay = NoDma
    monkeypatch.setitem(sys.modules, "pynq", pynq)
    with pytest.raises(FpgagenError, match=r"no AXI DMA in the overlay \(its IPs: accel_0\)") as err:
        PynqBackend(tiny, bitstream=tmp_path / "design.bit")
    assert "--dma" not in str(err.value) and "fpgagen.hwh" in str(err.value)
    with pytest.raises(FpgagenError, match="no IP named 'dma_x'"):
        PynqBackend(tiny, bitstream=tmp_path / "design.bit", dma="dma_x")


@pytest.mark.parametrize("args", [["--conf", "5"], ["--conf", "-1"], ["--conf", "0"], ["--nms-iou", "2"],
                                  ["--nms-iou", "nan"], ["--conf", "high"]])
def test_detect_refuses_scores_outside_zero_one(tmp_path, capsys, args):
    from fpgagen.cli import main

    assert main(["detect", str(tmp_path / "x.jpg"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fpgagen: error: argument --") and "is not a number in (0, 1" in err


def test_face_detector_refuses_scores_outside_zero_one(tiny):
    backend = ReferenceBackend(tiny)
    for conf, iou in ((-1, 0.3), (5, 0.3), (0.5, 2)):
        with pytest.raises(FpgagenError, match="use 0 < conf < 1"):
            FaceDetector(backend, TINY_ANCHORS, conf=conf, nms_iou=iou)


def test_detect_names_a_non_detector_and_a_missing_deploy_folder(tiny, tmp_path, capsys):
    from fpgagen.cli import main

    class Odd:
        name, input_shape, output_shape, output_quant = "x", (40, 40, 3), (1, 1, 6), (1.0, 0.0)

    with pytest.raises(FpgagenError, match="not a face detector"):
        FaceDetector(Odd(), TINY_ANCHORS)  # was: ValueError input_size must be a multiple of 32
    cv2.imwrite(str(tmp_path / "x.png"), moving_frames(1)[0])
    assert main(["detect", str(tmp_path / "x.png"), "--accelerator", str(tiny.build_dir), "--backend", "reference",
                 "--anchors", "10,14,23,27", "-o", str(tmp_path / "o")]) == 2
    assert "is not a face detector for 2 anchor(s)" in capsys.readouterr().err
    # on the board there is no torch to build the shipped detector with: say what to pass instead
    assert main(["detect", str(tmp_path / "x.png"), "--backend", "pynq", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "the pynq backend runs a bitstream, and none was given" in err and "--accelerator deploy/" in err


def test_detect_checks_its_inputs_before_building_anything(tmp_path, capsys, monkeypatch):
    """A typo in a path is reported at once, not after minutes of building the shipped detector."""
    from fpgagen.cli import main

    monkeypatch.setenv("FPGAGEN_CACHE", str(tmp_path / "cache"))
    cv2.imwrite(str(tmp_path / "ok.png"), moving_frames(1)[0])
    start = time.perf_counter()
    assert main(["detect", str(tmp_path / "ok.png"), str(tmp_path / "typo.jpg"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"fpgagen: error: no such image file: {tmp_path / 'typo.jpg'}" in err and "nothing was run" in err
    assert not (tmp_path / "cache").exists() and time.perf_counter() - start < 10  # no build was started
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    assert main(["detect", str(tmp_path / "ok.png"), "-o", str(blocker / "out")]) == 2
    assert "cannot create the output directory" in capsys.readouterr().err and not (tmp_path / "cache").exists()
