"""The threaded host pipeline: source -> preprocess -> inference -> postprocess -> output (sinks).

One thread per stage, joined by bounded queues, so the stages overlap (on the board the ARM letterboxes frame
n + 1 and decodes frame n - 1 while the fabric runs frame n). A full queue blocks the stage before it
(backpressure); a live source (a camera) never blocks: it drops the oldest waiting frame instead, so the
picture stays current and no queue grows. End of input travels down the queues as a marker and every thread
ends; ``stop()`` (Ctrl-C) ends them all within a fraction of a second. Per-stage latency and throughput are
kept in :class:`Metrics` (printed periodically, and as JSON).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..detect import Detections
from ..errors import FpgagenError
from .model import detections_json

STAGES = ("source", "preprocess", "inference", "postprocess", "output")
POLL_S = 0.05  # how often a waiting thread looks at the stop flag


class _End:
    """End of input, passed down the queues."""


END = _End()


@dataclass(eq=False)
class Frame:
    index: int
    name: str
    image: np.ndarray | None  # the original uint8 RGB image
    captured: float = field(default_factory=time.perf_counter)
    error: str | None = None
    net_input: np.ndarray | None = None
    box: object = None  # the Letterbox
    codes: np.ndarray | None = None
    detections: Detections | None = None
    release: object = None  # called once the frame is done with (a shared-memory slot goes back to the camera)


@dataclass(eq=False)
class Result:
    """What sinks receive, once per frame, in input order."""

    index: int
    name: str
    time: float  # wall clock (time.time()) when the frame finished
    image: np.ndarray | None
    detections: Detections | None
    error: str | None
    metrics: dict
    jpeg: bytes | None = None  # the annotated preview, at the preview rate only
    latency_s: float = 0.0

    def message(self) -> dict:
        """The frame's protocol message (without the JPEG)."""
        dets = detections_json(self.detections) if self.detections is not None else []
        msg = {"frame": self.index, "name": self.name, "time": round(self.time, 3), "detections": dets,
               "metrics": self.metrics, "jpeg_bytes": len(self.jpeg) if self.jpeg else 0}
        if self.error:
            msg["error"] = self.error
        return msg


class Metrics:
    """Thread-safe per-stage counters: frames, recent latency (mean and max over a window), throughput."""

    def __init__(self, window: int = 50):
        self._lock = threading.Lock()
        self._start = time.perf_counter()
        self._lat = {s: deque(maxlen=window) for s in (*STAGES, "end_to_end")}
        self._done = {s: deque(maxlen=window) for s in (*STAGES, "end_to_end")}
        self.frames = dict.fromkeys((*STAGES, "end_to_end"), 0)
        # frames a live source dropped: at the source, or waiting for the accelerator (viewers keep their own counts)
        self.dropped = {"source": 0, "stale": 0}
        self.errors = 0

    def record(self, stage: str, seconds: float, frames: int = 1) -> None:
        now = time.perf_counter()
        with self._lock:
            self.frames[stage] += frames
            for _ in range(frames):
                self._lat[stage].append(seconds / frames)
                self._done[stage].append(now)

    def drop(self, where: str, n: int = 1) -> None:
        with self._lock:
            self.dropped[where] = self.dropped.get(where, 0) + n

    def error(self) -> None:
        with self._lock:
            self.errors += 1

    def snapshot(self) -> dict:
        with self._lock:
            stages = {}
            for s, lat in self._lat.items():
                done = self._done[s]
                span = done[-1] - done[0] if len(done) > 1 else 0.0
                stages[s] = {"frames": self.frames[s],
                             "latency_ms": round(1e3 * sum(lat) / len(lat), 2) if lat else None,
                             "max_ms": round(1e3 * max(lat), 2) if lat else None,
                             "fps": round((len(done) - 1) / span, 2) if span > 0 else None}
            return {"uptime_s": round(time.perf_counter() - self._start, 2), "stages": stages,
                    "dropped": dict(self.dropped), "errors": self.errors}

    def format(self) -> str:
        snap = self.snapshot()
        parts = []
        for s, m in snap["stages"].items():
            if m["latency_ms"] is not None:
                fps = f"{m['fps']:.1f}/s" if m["fps"] else "-"
                parts.append(f"{s} {m['latency_ms']:.1f} ms {fps}")
        drops = ", ".join(f"{k} {v}" for k, v in snap["dropped"].items() if v)
        return (f"[metrics {snap['uptime_s']:.0f}s] " + " | ".join(parts) + (f" | dropped {drops}" if drops else "")
                + (f" | errors {snap['errors']}" if snap["errors"] else ""))


class Pipeline:
    """``Pipeline(source, detector, sinks).run()``: every frame of ``source`` through ``detector`` into each sink.

    ``queue_size`` bounds every queue; ``batch`` frames at most go to the backend per call (when waiting);
    ``preview_fps`` is how often an annotated JPEG is made for the sinks that want one (``wants_jpeg``)."""

    def __init__(self, source, detector, sinks=(), queue_size: int = 2, batch: int = 1, preview_fps: float = 10.0,
                 preview_size: int = 640, metrics_every: float = 5.0, log=print):
        if queue_size < 1 or batch < 1:
            raise FpgagenError(f"queue size {queue_size}, batch {batch}", "Pipeline", "use positive sizes")
        self.source, self.detector, self.sinks = source, detector, list(sinks)
        self.batch, self.preview_fps, self.preview_size = batch, preview_fps, preview_size
        self.metrics_every, self.log = metrics_every, log
        self.metrics = Metrics()
        self.queues = [queue.Queue(maxsize=queue_size) for _ in STAGES[1:]]
        self._stop = threading.Event()
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []
        self.failure: BaseException | None = None
        self.frames_out = 0

    # --- queue helpers that never block past a stop ---------------------------------------------------------
    def _put(self, q: queue.Queue, item) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _put_latest(self, q: queue.Queue, item) -> None:
        """A live source's put: when the queue is full, the oldest waiting frame makes room."""
        while not self._stop.is_set():
            try:
                q.put_nowait(item)
                return
            except queue.Full:
                try:
                    old = q.get_nowait()
                except queue.Empty:
                    continue
                if old is END:  # never drop the end marker (cannot happen: it is put last), keep it
                    q.put_nowait(old)
                    return
                if old.release is not None:
                    old.release()
                self.metrics.drop("source" if q is self.queues[0] else "stale")

    def _get(self, q: queue.Queue):
        while not self._stop.is_set():
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                continue
        return END

    # --- stages -----------------------------------------------------------------------------------------------
    def _source(self) -> None:
        out = self.queues[0]
        live = getattr(self.source, "live", False)
        try:
            for frame in self.source.frames(self._stop):
                if self._stop.is_set():
                    break
                self.metrics.record("source", time.perf_counter() - frame.captured)
                if live:
                    self._put_latest(out, frame)
                else:
                    self._put(out, frame)
        finally:
            self._put(out, END)

    def _preprocess(self) -> None:
        inq, out = self.queues[0], self.queues[1]
        # a live source's frames waiting for the accelerator go stale too: drop the oldest there as well, so the
        # latency stays about one inference instead of growing with every queue in front of the accelerator
        live = getattr(self.source, "live", False)
        while (frame := self._get(inq)) is not END:
            if frame.error is None:
                start = time.perf_counter()
                try:
                    frame.net_input, frame.box = self.detector.preprocess(frame.image, frame.name)
                except FpgagenError as exc:
                    frame.error = str(exc)
                self.metrics.record("preprocess", time.perf_counter() - start)
            if live and frame.error is None:
                self._put_latest(out, frame)
            else:
                self._put(out, frame)
        self._put(out, END)

    def _inference(self) -> None:
        if hasattr(self.detector.backend, "ring"):  # the board: frames in flight through the DMA ring
            self._inference_in_flight()
            return
        inq, out = self.queues[1], self.queues[2]
        ended = False
        while not ended:
            first = self._get(inq)
            if first is END:
                break
            frames = [first]
            while len(frames) < self.batch:  # take what is already waiting, never wait for a full batch
                try:
                    nxt = inq.get_nowait()
                except queue.Empty:
                    break
                if nxt is END:
                    ended = True
                    break
                frames.append(nxt)
            good = [f for f in frames if f.error is None]
            if good:
                start = time.perf_counter()
                try:
                    codes = self.detector.backend.infer(np.stack([f.net_input for f in good]))
                    for f, c in zip(good, codes, strict=True):
                        f.codes = c
                except FpgagenError as exc:
                    for f in good:
                        f.error = str(exc)
                self.metrics.record("inference", time.perf_counter() - start, len(good))
            for f in frames:
                self._put(out, f)
        self._put(out, END)

    def _inference_in_flight(self) -> None:
        """Frames go to the DMA ring as they come (what is waiting, up to a transfer's worth); while transfers are
        in flight the stage never blocks on its input, it collects the oldest result instead. Frames leave in
        input order (one that failed earlier waits for those before it)."""
        inq, out = self.queues[1], self.queues[2]
        backend = self.detector.backend
        ring = backend.ring
        order: deque = deque()  # every frame taken, in input order; ready ones leave from the front
        ready: set[int] = set()
        started: dict[int, float] = {}
        ended = False
        while not (ended and not order) and not self._stop.is_set():
            frames = []
            while len(frames) < ring.k and not ended:
                if ring.pending or frames:
                    try:
                        nxt = inq.get_nowait()
                    except queue.Empty:
                        break
                else:
                    nxt = self._get(inq)
                if nxt is END:
                    ended = True
                else:
                    frames.append(nxt)
            order.extend(frames)
            ready.update(id(f) for f in frames if f.error is not None)
            runnable = [f for f in frames if f.error is None]
            now = time.perf_counter()
            started.update((id(f), now) for f in runnable)
            try:
                done = (ring.submit([backend.frame_bytes(f.net_input[None])[0] for f in runnable], runnable)
                        if runnable else ring.collect_one())
            except FpgagenError as exc:
                for f in runnable:
                    f.error = str(exc)
                    ready.add(id(f))
                done = []
            for d in done:
                f = d.tag
                if d.error:
                    f.error = d.error
                else:
                    f.codes = backend.decode(d.data[None])[0]
                self.metrics.record("inference", time.perf_counter() - started.pop(id(f), now))
                ready.add(id(f))
            while order and id(order[0]) in ready:
                f = order.popleft()
                ready.discard(id(f))
                self._put(out, f)
        self._put(out, END)

    def _postprocess(self) -> None:
        inq, out = self.queues[2], self.queues[3]
        while (frame := self._get(inq)) is not END:
            if frame.error is None:
                start = time.perf_counter()
                frame.detections = self.detector.postprocess(frame.codes, frame.box, frame.image.shape)
                self.metrics.record("postprocess", time.perf_counter() - start)
            self._put(out, frame)
        self._put(out, END)

    def _output(self) -> None:
        inq = self.queues[3]
        want_jpeg = any(getattr(s, "wants_jpeg", False) for s in self.sinks)
        keep_image = any(getattr(s, "wants_image", True) for s in self.sinks)
        last_jpeg = last_print = -1e9
        while (frame := self._get(inq)) is not END:
            start = time.perf_counter()
            jpeg = None
            if frame.error is not None:
                self.metrics.error()
                self.log(f"fpgagen: skipped {frame.name}: {frame.error}")
            elif want_jpeg and start - last_jpeg >= 1.0 / max(self.preview_fps, 1e-6):
                if hasattr(self.source, "take_preview"):  # made off the inference path, in the capture process
                    self.source.publish(frame.detections)
                    jpeg = self.source.take_preview()
                else:
                    jpeg = preview_jpeg(frame.image, frame.detections, self.preview_size)
                last_jpeg = start
            image = frame.image
            if frame.release is not None:  # a shared-memory slot, reused by the camera once released: the sinks
                image = image.copy() if keep_image and image is not None else None  # that keep images get a copy
            result = Result(frame.index, frame.name, time.time(), image, frame.detections, frame.error,
                            self.metrics.snapshot(), jpeg, start - frame.captured)
            for sink in self.sinks:
                sink.send(result)
            if frame.release is not None:
                frame.release()
            self.metrics.record("output", time.perf_counter() - start)
            if frame.error is None:
                self.metrics.record("end_to_end", time.perf_counter() - frame.captured)
            self.frames_out += 1
            if self.metrics_every and start - last_print >= self.metrics_every:
                last_print = start
                self.log(self.metrics.format())

    # --- lifecycle ----------------------------------------------------------------------------------------------
    def _guard(self, target):
        def body():
            try:
                target()
            except BaseException as exc:  # a bug or a broken backend: stop everything, report it from run()
                self.failure = exc
                self._stop.set()
            finally:
                if target == self._output:
                    self._done.set()
        return body

    def start(self) -> Pipeline:
        for name, target in zip(STAGES, (self._source, self._preprocess, self._inference, self._postprocess,
                                         self._output), strict=True):
            t = threading.Thread(target=self._guard(target), name=f"fpgagen-{name}", daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """True once every frame went through (end of input), or the pipeline stopped."""
        return self._done.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every stage and join its thread; close the source and the sinks."""
        self._stop.set()
        deadline = time.perf_counter() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.perf_counter()))
        for closer in (getattr(self.source, "close", None), *(getattr(s, "close", None) for s in self.sinks)):
            if closer is not None:
                closer()
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            self.log(f"fpgagen: threads still running after {timeout:.0f} s: {', '.join(alive)}")

    def run(self) -> dict:
        """Start, wait for the end of input or Ctrl-C, stop; returns the final metrics (a dict)."""
        self.start()
        try:
            while not self.wait(0.2):
                pass
        except KeyboardInterrupt:
            self.log("fpgagen: interrupted, stopping")
        finally:
            self.stop()
        if self.failure is not None and not isinstance(self.failure, KeyboardInterrupt):
            raise self.failure
        return self.metrics.snapshot()

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def preview_jpeg(image: np.ndarray, det: Detections | None, max_side: int = 640, quality: int = 80) -> bytes:
    """The annotated frame, scaled down to ``max_side``, as JPEG bytes (what viewers and the browser receive)."""
    import cv2

    from ..detect.draw import annotate

    f = min(1.0, max_side / max(image.shape[:2]))
    small = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else image
    det = det if det is not None else Detections.empty()
    shown = annotate(small, Detections(det.boxes * f, det.scores), min_size=0)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(shown, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise FpgagenError("OpenCV could not encode a JPEG", "preview", "check the OpenCV install")
    return buf.tobytes()


def metrics_json(metrics: Metrics) -> str:
    return json.dumps(metrics.snapshot(), indent=1)
