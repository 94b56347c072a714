"""Greedy non-maximum suppression and box overlaps."""

from __future__ import annotations

import numpy as np

from .decode import Detections


def iou_matrix(a: np.ndarray, b: np.ndarray, plus_one: bool = False) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), both x1 y1 x2 y2 -> (N, M).

    ``plus_one=True`` is the WIDER FACE / PASCAL VOC convention: a box covers ``x2 - x1 + 1`` pixels.
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    one = 1.0 if plus_one else 0.0
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + one
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + one
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0] + one) * (a[:, 3] - a[:, 1] + one)
    area_b = (b[:, 2] - b[:, 0] + one) * (b[:, 3] - b[:, 1] + one)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def nms(det: Detections, iou: float = 0.3, max_out: int | None = None) -> Detections:
    """Keep the best-scoring box, drop boxes overlapping it by more than ``iou``, repeat.

    Ties in score keep the box that came first (a stable sort), so the result is deterministic.
    """
    if len(det) == 0:
        return Detections.empty()
    order = np.argsort(-det.scores, kind="stable")
    boxes = det.boxes[order]
    overlaps = iou_matrix(boxes, boxes)
    suppressed = np.zeros(len(order), bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        if max_out is not None and len(keep) >= max_out:
            break
        suppressed |= overlaps[i] > iou
    keep = np.array(keep, np.int64)
    return Detections(boxes[keep], det.scores[order][keep])
