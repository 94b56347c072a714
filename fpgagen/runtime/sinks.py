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
    ``{"<image name>": [{"box": [x1, y1, x2, y2], "score": s}, ...]}`` in original-image pixels. Image names
    are unique (fpgagen.runtime.sources.unique_names); two that would share an annotated file (x.jpg, x.png)
    get ``x.png`` and ``x_png.png``. ``keep``: only the newest ``keep`` frames stay (PNGs on disk and entries
    in detections.json), so a long ``fpgagen serve --save`` is bounded."""

    wants_jpeg = False

    def __init__(self, out_dir: str | Path, images: bool = True, every: int = 1, keep: int | None = None):
        self.out_dir, self.images, self.every = Path(out_dir), images, max(1, every)
        self.keep = keep
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.detections: dict[str, list] = {}
        self.errors: dict[str, str] = {}
        self.written: list[Path] = []
        self.removed = 0
        self._png_of: dict[str, Path] = {}  # image name -> its annotated file, one file per name
        self._png_taken: set[Path] = set()

    def _png_path(self, name: str) -> Path:
        if name not in self._png_of:
            rel = Path(name.replace("#", "_"))
            path = self.out_dir / rel.with_suffix(".png")
            if path in self._png_taken:  # x.jpg and x.png: keep both
                path = self.out_dir / rel.with_name(rel.name.replace(".", "_") + ".png")
            self._png_of[name] = path
            self._png_taken.add(path)
        return self._png_of[name]

    def send(self, result) -> None:
        from ..detect.draw import annotate, save_rgb

        if result.error is not None:
            self.errors[result.name] = result.error
            return
        self.detections.pop(result.name, None)  # a replayed name moves to the end (newest)
        self.detections[result.name] = detections_json(result.detections)
        if self.images and result.index % self.every == 0:
            path = self._png_path(result.name)
            if self.keep is not None and path in self.written:  # a replayed frame (serve --loop) moves to the end
                self.written.remove(path)
            self.written.append(save_rgb(path, annotate(result.image, result.detections, min_size=0)))
        if self.keep is not None:
            while len(self.written) > self.keep:
                old = self.written.pop(0)
                old.unlink(missing_ok=True)
                self._png_taken.discard(old)
                self.removed += 1
            while len(self.detections) > self.keep:
                name = next(iter(self.detections))
                del self.detections[name]
                self._png_of.pop(name, None)

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
