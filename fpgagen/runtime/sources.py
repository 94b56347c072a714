"""Frame sources: a camera (OpenCV, live), a video file, image files or a folder, or arrays in memory.

Every source yields :class:`~fpgagen.runtime.pipeline.Frame` objects with uint8 RGB images. An unreadable image
becomes a frame that carries its error, so the pipeline reports it and goes on with the next one. Files are read
with OpenCV, which turns greyscale and 16-bit images into 8-bit RGB.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..errors import FpgagenError
from .pipeline import Frame

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm"}


def _cv2():
    import cv2

    return cv2


def read_image(path: str | Path) -> np.ndarray:
    """An image file -> uint8 RGB (H, W, 3); greyscale and 16-bit files are converted by OpenCV."""
    cv2 = _cv2()
    path = Path(path)
    if not path.is_file():
        raise FpgagenError("no such image file", str(path), "check the path")
    data = np.fromfile(str(path), np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise FpgagenError("cannot decode the image (corrupt, empty or not an image)", str(path),
                           "pass a JPEG, PNG, BMP, TIFF or WebP file")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def expand_paths(paths) -> list[Path]:
    """Files as given, folders as their image files (sorted by name)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            if not found:
                raise FpgagenError("no image files in the folder", str(p), f"add {', '.join(sorted(IMAGE_SUFFIXES))}")
            out += found
        else:
            out.append(p)
    if not out:
        raise FpgagenError("no input images", "fpgagen detect", "pass image files or folders")
    return out


def unique_names(paths: list[Path]) -> list[str]:
    """What each image is called in detections.json and the annotated file names: its file name, or, when two
    inputs share one (dupA/img.png and dupB/img.png), its path relative to the inputs' common folder; the same
    file given twice gets '#2', '#3', ... So no result ever overwrites another."""
    names = [p.name for p in paths]
    if len(set(names)) < len(names):
        resolved = [p.resolve() for p in paths]
        root = Path(os.path.commonpath([str(r.parent) for r in resolved]))
        names = [r.relative_to(root).as_posix() for r in resolved]
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


class ImageFiles:
    """Image files (or folders of them), read one at a time. Not live unless paced at ``fps`` (then, like a
    camera, the oldest waiting frame is dropped when the pipeline falls behind); ``loop`` replays them."""

    def __init__(self, paths, fps: float | None = None, loop: bool = False, max_frames: int | None = None):
        self.paths = expand_paths(paths)
        self.names = unique_names(self.paths)
        self.fps, self.loop, self.max_frames = fps, loop, max_frames
        self.live = bool(fps)

    def frames(self, stop):
        period = 1.0 / self.fps if self.fps else 0.0
        next_t = time.perf_counter()
        i = 0
        while self.max_frames is None or i < self.max_frames:
            path, name = self.paths[i % len(self.paths)], self.names[i % len(self.paths)]
            if stop.is_set() or (i >= len(self.paths) and not self.loop):
                return
            if period:
                delay = next_t - time.perf_counter()
                if delay > 0 and stop.wait(delay):
                    return
                next_t = max(next_t + period, time.perf_counter() - period)
            start = time.perf_counter()
            try:
                yield Frame(i, name, read_image(path), start)
            except FpgagenError as exc:
                yield Frame(i, name, None, start, error=str(exc))
            i += 1


class Arrays:
    """Images already in memory: an iterable of arrays or (name, array) pairs. ``fps`` paces them like a camera
    (and makes the source live: when the pipeline falls behind, the oldest waiting frame is dropped)."""

    def __init__(self, images, fps: float | None = None, live: bool | None = None):
        self.images, self.fps = images, fps
        self.live = bool(fps) if live is None else live

    def frames(self, stop):
        period = 1.0 / self.fps if self.fps else 0.0
        next_t = time.perf_counter()
        for i, item in enumerate(self.images):
            if stop.is_set():
                return
            if period:
                delay = next_t - time.perf_counter()
                if delay > 0 and stop.wait(delay):
                    return
                next_t += period
            name, image = item if isinstance(item, tuple) else (f"frame_{i:06d}", item)
            yield Frame(i, name, image, time.perf_counter())


class VideoCapture:
    """An OpenCV capture: a camera index (live) or a video file (paced at ``fps`` if given, else as fast as the
    pipeline takes frames; ``loop`` replays it)."""

    def __init__(self, what: str | int, fps: float | None = None, loop: bool = False, max_frames: int | None = None):
        cv2 = _cv2()
        self.is_camera = isinstance(what, int) or str(what).isdigit()
        if not self.is_camera and not Path(what).is_file():
            raise FpgagenError("no such video file", str(what), "check the path")
        self.what = int(what) if self.is_camera else str(what)
        self.cap = cv2.VideoCapture(self.what)
        if not self.cap.isOpened():
            kind = "camera" if self.is_camera else "video"
            raise FpgagenError(f"OpenCV cannot open the {kind}", str(what),
                               "check the device (ls /dev/video*) or the file's codec")
        self.fps, self.loop, self.max_frames = fps, loop, max_frames
        self.live = self.is_camera or bool(fps)

    def frames(self, stop):
        cv2 = _cv2()
        period = 1.0 / self.fps if self.fps else 0.0
        next_t = time.perf_counter()
        i = 0
        while not stop.is_set() and (self.max_frames is None or i < self.max_frames):
            start = time.perf_counter()
            ok, bgr = self.cap.read()
            if not ok:
                if self.loop and not self.is_camera and i > 0:
                    self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    continue
                return
            if period:
                delay = next_t - time.perf_counter()
                if delay > 0 and stop.wait(delay):
                    return
                next_t = max(next_t + period, time.perf_counter() - period)
            yield Frame(i, f"frame_{i:06d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), start)
            i += 1

    def close(self) -> None:
        self.cap.release()
