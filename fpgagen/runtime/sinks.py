"""Pipeline sinks besides the stream servers: annotated files plus detections.json, an OpenCV window, a callback."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..errors import FpgagenError
from .model import detections_json


class FileSink:
    """``out_dir/<image stem>.png`` annotated, and at close ``out_dir/detections.json``:
    ``{"<image file name>": [{"box": [x1, y1, x2, y2], "score": s}, ...]}`` in original-image pixels."""

    wants_jpeg = False

    def __init__(self, out_dir: str | Path, images: bool = True, every: int = 1):
        self.out_dir, self.images, self.every = Path(out_dir), images, max(1, every)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.detections: dict[str, list] = {}
        self.errors: dict[str, str] = {}
        self.written: list[Path] = []

    def send(self, result) -> None:
        from ..detect.draw import annotate, save_rgb

        if result.error is not None:
            self.errors[result.name] = result.error
            return
        self.detections[result.name] = detections_json(result.detections)
        if self.images and result.index % self.every == 0:
            path = self.out_dir / f"{Path(result.name).stem}.png"
            self.written.append(save_rgb(path, annotate(result.image, result.detections, min_size=0)))

    def close(self) -> None:
        (self.out_dir / "detections.json").write_text(json.dumps(self.detections, indent=1))


def has_display() -> bool:
    """A window can open: a desktop session and an OpenCV built with GUI support (not opencv-python-headless)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import cv2

    try:
        cv2.namedWindow("fpgagen-probe")
        cv2.destroyWindow("fpgagen-probe")
        return True
    except cv2.error:  # the headless OpenCV build has no windows
        return False


class DisplaySink:
    """An OpenCV window with the annotated frames (press q or Esc to stop: ``stopped`` becomes True)."""

    wants_jpeg = False

    def __init__(self, title: str = "fpgagen"):
        if not has_display():
            raise FpgagenError("no display for a window", "--show", "use --save DIR, or the browser view")
        self.title, self.stopped = title, False

    def send(self, result) -> None:
        import cv2

        from ..detect.draw import annotate

        if result.image is None:
            return
        cv2.imshow(self.title, cv2.cvtColor(annotate(result.image, result.detections, min_size=0),
                                            cv2.COLOR_RGB2BGR))
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.stopped = True

    def close(self) -> None:
        import cv2

        cv2.destroyAllWindows()


class CallbackSink:
    """Calls ``fn(result)`` for every frame (the notebook and the tests use it)."""

    wants_jpeg = False

    def __init__(self, fn, wants_jpeg: bool = False, wants_image: bool = True):
        self.fn, self.wants_jpeg, self.wants_image = fn, wants_jpeg, wants_image

    def send(self, result) -> None:
        self.fn(result)
