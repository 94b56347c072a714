"""Both A9 cores: the camera in a process of its own, frames in shared memory, the preview encoded there too.

The capture process reads each camera frame straight into a free slot of a :class:`SharedFrames` ring
(``multiprocessing.shared_memory``; no pickling, no copy between the processes) and hands the slot number over a
bounded queue. The inference process (the :class:`~fpgagen.runtime.pipeline.Pipeline`, through
:class:`SharedCamera`) copies the frame into its DMA buffer once, decodes and runs NMS, and gives the slot back
when the frame's result has gone out. A live camera never waits: with no free slot, the oldest frame not yet
taken is dropped and its slot reused.

The JPEG preview is made off the inference path, in the capture process: at the preview rate it decimates the
newest frame, draws the latest detections the inference process sent back, encodes it, and passes the bytes on
(a bounded queue that keeps the newest). So the per-frame work of the inference process is the copy, the decode
and NMS, and the result message (``fpgagen/runtime/host_model.py`` prices exactly these stages).
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from multiprocessing import shared_memory

import numpy as np

from ..errors import FpgagenError
from .pipeline import Frame

POLL_S = 0.05


class SharedFrames:
    """``slots`` uint8 frames of ``shape`` (H, W, 3) in one shared-memory block; ``name`` attaches to one."""

    def __init__(self, shape: tuple[int, int, int], slots: int, name: str | None = None):
        self.shape, self.slots = tuple(int(v) for v in shape), int(slots)
        size = int(np.prod(self.shape)) * self.slots
        self.owner = name is None
        self.shm = shared_memory.SharedMemory(create=True, size=size) if self.owner else \
            shared_memory.SharedMemory(name=name)
        self.array = np.ndarray((self.slots, *self.shape), np.uint8, buffer=self.shm.buf)

    @property
    def name(self) -> str:
        return self.shm.name

    def close(self) -> None:
        del self.array
        self.shm.close()
        if self.owner:
            self.shm.unlink()


class CvCamera:
    """An OpenCV camera (index) or video file read into a given array: ``cap.read(image)`` writes in place, then
    one in-place BGR -> RGB pass (skipped with ``bgr=True``, for a build that takes BGR)."""

    def __init__(self, what, bgr: bool = False):
        self.what, self.bgr, self.cap = what, bgr, None

    def open(self) -> tuple[int, int]:
        import cv2

        self.cap = cv2.VideoCapture(int(self.what) if str(self.what).isdigit() else str(self.what))
        if not self.cap.isOpened():
            raise FpgagenError("OpenCV cannot open the camera", str(self.what), "check the device (ls /dev/video*)")
        return int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))

    def read(self, into: np.ndarray) -> bool:
        import cv2

        ok, got = self.cap.read(into)
        if not ok or got is None:
            return False
        if got is not into:  # OpenCV allocated (a size or layout it could not write in place)
            into[...] = got
        if not self.bgr:
            cv2.cvtColor(into, cv2.COLOR_BGR2RGB, dst=into)
        return True

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()


def _capture_main(camera, shm_name, shape, slots, free, ready, stop, previews, detections, preview_fps,
                  preview_side, max_frames, dropped):
    """The capture process: camera -> free slot -> ready queue; a live camera drops the oldest waiting frame."""
    frames = SharedFrames(shape, slots, name=shm_name)
    camera.open()
    last_preview, latest = -1e9, None
    index = 0
    try:
        while not stop.is_set() and (max_frames is None or index < max_frames):
            try:
                slot = free.get_nowait()
            except queue.Empty:
                try:  # every slot is taken: reuse the oldest frame the inference side has not taken yet
                    slot, _, _ = ready.get(timeout=POLL_S)
                    with dropped.get_lock():
                        dropped.value += 1
                except queue.Empty:
                    continue  # all of them are in the pipeline: wait for one to come back
            captured = time.perf_counter()
            if not camera.read(frames.array[slot]):
                free.put(slot)
                break
            ready.put((slot, index, captured))
            index += 1
            while True:  # the newest detections, for the preview
                try:
                    latest = detections.get_nowait()
                except queue.Empty:
                    break
            if preview_fps and captured - last_preview >= 1.0 / preview_fps:
                last_preview = captured
                jpeg = _preview(frames.array[slot], latest, preview_side)
                try:
                    previews.put_nowait(jpeg)
                except queue.Full:  # keep the newest: drop the waiting one
                    try:
                        previews.get_nowait()
                    except queue.Empty:
                        pass
                    try:
                        previews.put_nowait(jpeg)
                    except queue.Full:  # the other side raced us: skip this preview, the next one comes soon
                        pass
    finally:
        ready.put(None)  # end of input
        camera.close()
        frames.array = None
        frames.shm.close()


def _preview(image: np.ndarray, det, side: int) -> bytes:
    from ..detect import Detections
    from .pipeline import preview_jpeg

    boxes, scores = det if det is not None else (np.zeros((0, 4)), np.zeros(0))
    return preview_jpeg(image, Detections(np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores)), side)


class SharedCamera:
    """A pipeline source whose frames come from a capture process through shared memory (see the module).

    ``camera``: an object with ``open() -> (W, H)``, ``read(into) -> bool`` and ``close()``, picklable (a
    :class:`CvCamera`); ``shape`` (H, W, 3) the frames'. ``slots`` must cover the frames the pipeline holds at
    once (its queues and the DMA ring's transfers in flight)."""

    live = True

    def __init__(self, camera, shape, slots: int = 24, preview_fps: float = 10.0, preview_side: int = 640,
                 max_frames: int | None = None):
        ctx = mp.get_context("spawn")  # no fork of a process with threads
        self.frames_ring = SharedFrames(shape, slots)
        self.free, self.ready = ctx.Queue(slots), ctx.Queue(slots + 1)  # + the end marker
        for s in range(slots):
            self.free.put(s)
        self.previews, self.detections = ctx.Queue(1), ctx.Queue(4)
        self.stop_event = ctx.Event()
        self.dropped = ctx.Value("i", 0)  # frames the capture process dropped (no free slot: the oldest waiting)
        self.process = ctx.Process(target=_capture_main, daemon=True, name="fpgagen-capture",
                                   args=(camera, self.frames_ring.name, tuple(shape), slots, self.free, self.ready,
                                         self.stop_event, self.previews, self.detections, preview_fps,
                                         preview_side, max_frames, self.dropped))
        self.process.start()

    def frames(self, stop):
        while not stop.is_set():
            try:
                item = self.ready.get(timeout=POLL_S)
            except queue.Empty:
                if not self.process.is_alive():
                    if self.process.exitcode:
                        raise FpgagenError(f"the capture process failed (exit code {self.process.exitcode})",
                                           "fpgagen serve --camera", "see its traceback above") from None
                    return
                continue
            if item is None:
                return
            slot, index, captured = item
            yield Frame(index, f"frame_{index:06d}", self.frames_ring.array[slot], captured,
                        release=lambda slot=slot: self.free.put(slot))

    def publish(self, detections) -> None:
        """The latest detections, for the preview (never blocks: a full queue keeps the older ones)."""
        try:
            self.detections.put_nowait((np.asarray(detections.boxes), np.asarray(detections.scores)))
        except queue.Full:
            pass

    def take_preview(self) -> bytes | None:
        try:
            return self.previews.get_nowait()
        except queue.Empty:
            return None

    def close(self) -> None:
        self.stop_event.set()
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(2)
        for q in (self.free, self.ready, self.previews, self.detections):
            q.cancel_join_thread()
            q.close()
        self.frames_ring.close()


def shared_camera(index: int, preview_fps: float = 10.0, max_frames: int | None = None, slots: int = 24,
                  bgr: bool = False) -> SharedCamera:
    """``fpgagen serve --camera INDEX`` on the board: the camera's frame size probed here, then the capture
    process started on it."""
    import cv2

    cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        raise FpgagenError("OpenCV cannot open the camera", str(index), "check the device (ls /dev/video*)")
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    return SharedCamera(CvCamera(index, bgr=bgr), (h, w, 3), slots=slots, preview_fps=preview_fps,
                        max_frames=max_frames)
