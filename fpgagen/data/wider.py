"""WIDER FACE: the ``wider_face_{train,val}_bbx_gt.txt`` format and a loader for the directory layout.

The annotation file repeats one record per image::

    0--Parade/0_Parade_marchingband_1_849.jpg      image path, relative to WIDER_<split>/images
    1                                              number of faces N
    449 330 122 149 0 0 0 0 0 0                    N lines: x1 y1 w h blur expression illumination
                                                   invalid occlusion pose

A record with N = 0 is still followed by one line of ten zeros, which is not a face and is skipped.
Boxes can run past the image edge; :func:`clip_boxes` clips them once the image size is known.

Directory layout (the official archives unpacked side by side; the synthetic set is written the same way)::

    ROOT/wider_face_split/wider_face_{split}_bbx_gt.txt
    ROOT/WIDER_{split}/images/<event>/<name>.jpg

Boxes in memory are ``(x1, y1, x2, y2)`` with ``x2 = x1 + w`` and ``y2 = y1 + h``, the convention of the
official evaluation, whose overlaps count ``x2 - x1 + 1`` pixels (see ``fpgagen.detect.evaluate``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import FpgagenError

ATTRIBUTES = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
SPLITS = ("train", "val")


@dataclass(eq=False)
class WiderRecord:
    """One image's annotation as written: ``boxes`` (N, 4) int x1 y1 w h, ``attrs`` (N, 6) int."""

    path: str
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    attrs: np.ndarray = field(default_factory=lambda: np.zeros((0, 6), np.int64))

    @property
    def invalid(self) -> np.ndarray:
        """Boolean (N,): faces WIDER marks invalid; an evaluation ignores them."""
        return self.attrs[:, ATTRIBUTES.index("invalid")] != 0 if len(self.attrs) else np.zeros(0, bool)


def _ints(line: str, lineno: int, where: str, count: int | None = None) -> list[int]:
    try:
        values = [int(float(v)) for v in line.split()]
    except ValueError:
        raise FpgagenError(f"expected numbers at line {lineno}, got {line[:60]!r}", where,
                           "pass an unmodified wider_face_{train,val}_bbx_gt.txt") from None
    if count is not None and len(values) < count:
        raise FpgagenError(f"expected {count} numbers at line {lineno}, got {len(values)}", where,
                           "each face line is: x1 y1 w h blur expression illumination invalid occlusion pose")
    return values


def parse_wider_gt(text: str, where: str = "<annotation text>") -> list[WiderRecord]:
    """Parse the text of a WIDER ground-truth file into records (zero-face records included, with no boxes)."""
    lines = [(i + 1, ln.strip()) for i, ln in enumerate(text.splitlines())]
    lines = [(i, ln) for i, ln in lines if ln]
    records, k = [], 0
    while k < len(lines):
        lineno, path = lines[k]
        if k + 1 >= len(lines):
            raise FpgagenError(f"image {path!r} at line {lineno} has no face count", where,
                               "the file is truncated; pass the complete annotation file")
        count_line, count_text = lines[k + 1]
        n = _ints(count_text, count_line, where, 1)[0]
        if n < 0:
            raise FpgagenError(f"negative face count {n} at line {count_line}", where, "check the file")
        rows = max(n, 1)  # N == 0 is followed by one line of zeros
        if k + 2 + rows > len(lines) and n > 0:
            raise FpgagenError(f"image {path!r} at line {lineno} announces {n} faces but the file ends", where,
                               "the file is truncated; pass the complete annotation file")
        body = lines[k + 2:k + 2 + rows]
        if n == 0:
            # Skip the placeholder line only when it is one (ten numbers); tolerate files that omit it.
            if body and len(body[0][1].split()) == 10 and all(_is_int(v) for v in body[0][1].split()):
                k += 3
            else:
                k += 2
            records.append(WiderRecord(path))
            continue
        values = np.array([_ints(t, i, where, 10)[:10] for i, t in body], np.int64)
        records.append(WiderRecord(path, values[:, :4].copy(), values[:, 4:10].copy()))
        k += 2 + n
    return records


def _is_int(text: str) -> bool:
    try:
        int(float(text))
    except ValueError:
        return False
    return True


def read_wider_gt(path: str | Path) -> list[WiderRecord]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise FpgagenError(f"cannot read the WIDER annotation ({exc.strerror})", str(path),
                           "pass --data pointing at the unpacked WIDER FACE directory") from None
    return parse_wider_gt(text, str(path))


def format_wider_gt(records: list[WiderRecord]) -> str:
    out = []
    for rec in records:
        out += [rec.path, str(len(rec.boxes))]
        if len(rec.boxes) == 0:
            out.append("0 0 0 0 0 0 0 0 0 0 ")
        attrs = rec.attrs if len(rec.attrs) == len(rec.boxes) else np.zeros((len(rec.boxes), 6), np.int64)
        for box, att in zip(rec.boxes, attrs, strict=True):
            out.append(" ".join(str(int(v)) for v in (*box, *att)) + " ")
    return "\n".join(out) + "\n"


def write_wider_gt(records: list[WiderRecord], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_wider_gt(records))
    return path


def clip_boxes(boxes_xywh: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """WIDER x1 y1 w h -> (x1, y1, x2, y2) float32 clipped to the image ``[0, width-1] x [0, height-1]``.

    Returns ``(boxes, keep)``: ``keep`` (N,) marks the boxes that still have positive width and height after
    clipping (a box entirely outside the image, or with w or h <= 0, is dropped); ``boxes`` holds only those.
    """
    b = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
    x1, y1 = b[:, 0], b[:, 1]
    x2, y2 = x1 + b[:, 2], y1 + b[:, 3]
    keep = (b[:, 2] > 0) & (b[:, 3] > 0)
    xyxy = np.stack([np.clip(x1, 0, width - 1), np.clip(y1, 0, height - 1),
                     np.clip(x2, 0, width - 1), np.clip(y2, 0, height - 1)], axis=1)
    keep &= (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    return xyxy[keep].astype(np.float32), keep


@dataclass(eq=False)
class Sample:
    """One image with its faces: ``image`` uint8 RGB (H, W, 3); ``boxes`` float32 (N, 4) x1 y1 x2 y2, clipped;
    ``ignore`` bool (N,): faces an evaluation neither rewards nor punishes (WIDER's invalid flag)."""

    name: str
    image: np.ndarray
    boxes: np.ndarray
    ignore: np.ndarray


def read_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3); grey images are expanded to three channels."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FpgagenError("cannot read the image", str(path), "check that the file exists and is a JPEG or PNG")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def gt_file(root: str | Path, split: str) -> Path:
    return Path(root) / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"


def image_dir(root: str | Path, split: str) -> Path:
    return Path(root) / f"WIDER_{split}" / "images"


class WiderFace:
    """The WIDER FACE layout under ``root`` for one split; also reads the synthetic set, written the same way.

    ``ds[i]`` is a :class:`Sample`; ``ds.records`` are the raw annotations. Images are read on access.
    """

    def __init__(self, root: str | Path, split: str = "val", limit: int | None = None):
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise FpgagenError(f"limit {limit!r} is not a whole number >= 1", "--limit", "pass e.g. --limit 100")
        self.root, self.split = Path(root), split
        gt = gt_file(root, split)
        if not gt.is_file():
            raise FpgagenError(f"no {gt.name} under {self.root / 'wider_face_split'}", str(self.root),
                               "point --data at the directory holding wider_face_split/ and WIDER_train|val/")
        self.records = read_wider_gt(gt)[:limit]
        self.images = image_dir(root, split)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Sample:
        rec = self.records[i]
        image = read_image(self.images / rec.path)
        h, w = image.shape[:2]
        boxes, keep = clip_boxes(rec.boxes, w, h)
        ignore = rec.invalid[keep] if len(rec.boxes) else np.zeros(0, bool)
        return Sample(rec.path, image, boxes, ignore)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]
