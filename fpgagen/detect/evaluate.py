"""WIDER-style average precision: IoU >= 0.5 with the +1-pixel convention and the VOC all-point envelope.

Matching (per image, detections in descending score): a detection takes the ground-truth face it overlaps
most. At IoU >= 0.5 it is a true positive if that face is unclaimed, a false positive if another detection
claimed it first, and is *ignored* (neither) if the face is marked ignore (WIDER's invalid flag). Below 0.5
it is a false positive. Over the whole set, precision and recall follow the detections in descending score,
and AP is the area under the precision envelope (the precision at each recall replaced by the best precision
at any higher recall), summed over every recall step: the VOC all-point AP.

**Face-height bands** (:data:`BANDS`, heights ``y2 - y1`` in the evaluated image's pixels) break the AP down by
face size. They are this project's own split, *not* the official WIDER FACE easy/medium/hard split (which
comes from .mat files that cannot be rebuilt from the annotation text). In a band, faces outside it count as
ignored, and so does an unmatched detection whose height lies outside it (as COCO's area ranges do); a face
within a band but missed still costs recall.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .decode import Detections
from .nms import iou_matrix

BANDS = {"all": (0.0, np.inf), "small (h<32px)": (0.0, 32.0), "medium (32-96px)": (32.0, 96.0),
         "large (h>=96px)": (96.0, np.inf)}
BAND_NOTE = "face-height bands are fpgagen's own split, not the official WIDER FACE easy/medium/hard"
TP, FP, IGNORED = 1, 0, -1


@dataclass(eq=False)
class GroundTruth:
    """One image's faces: boxes (N, 4) x1 y1 x2 y2 and ignore (N,) bool."""

    boxes: np.ndarray
    ignore: np.ndarray = None

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, np.float64).reshape(-1, 4)
        if self.ignore is None:
            self.ignore = np.zeros(len(self.boxes), bool)
        self.ignore = np.asarray(self.ignore, bool).reshape(-1)


@dataclass(eq=False)
class APResult:
    name: str
    ap: float
    n_faces: int  # ground-truth faces counted (not ignored)
    n_detections: int  # detections counted (not ignored)
    precision: np.ndarray = field(repr=False)
    recall: np.ndarray = field(repr=False)
    scores: np.ndarray = field(repr=False)


def match_image(det: Detections, gt: GroundTruth, iou: float = 0.5, band: tuple[float, float] | None = None
                ) -> np.ndarray:
    """Label each detection of one image TP (1), FP (0) or IGNORED (-1); detections in the order given."""
    labels = np.full(len(det), FP, np.int64)
    if len(det) == 0:
        return labels
    ignore = gt.ignore.copy()
    if band is not None:
        gh = gt.boxes[:, 3] - gt.boxes[:, 1]
        ignore |= (gh < band[0]) | (gh >= band[1])
    claimed = np.zeros(len(gt.boxes), bool)
    overlaps = iou_matrix(det.boxes, gt.boxes, plus_one=True)
    for i in np.argsort(-det.scores, kind="stable"):
        if len(gt.boxes):
            j = int(np.argmax(overlaps[i]))
            if overlaps[i, j] >= iou:
                if ignore[j]:
                    labels[i] = IGNORED
                elif not claimed[j]:
                    labels[i], claimed[j] = TP, True
                continue  # a second detection of a claimed face stays a false positive
        if band is not None:
            dh = det.boxes[i, 3] - det.boxes[i, 1]
            if dh < band[0] or dh >= band[1]:
                labels[i] = IGNORED
    return labels


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point AP: area under the monotone precision envelope, summed over every recall change."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def average_precision(detections: list[Detections], truths: list[GroundTruth], iou: float = 0.5,
                      band: tuple[float, float] | None = None, name: str = "all") -> APResult:
    """AP over a set of images (``detections[i]`` belongs to ``truths[i]``)."""
    if len(detections) != len(truths):
        raise ValueError(f"{len(detections)} detection lists for {len(truths)} images")
    scores, labels, n_faces = [], [], 0
    for det, gt in zip(detections, truths, strict=True):
        lab = match_image(det, gt, iou, band)
        scores.append(det.scores[lab != IGNORED])
        labels.append(lab[lab != IGNORED])
        ignore = gt.ignore.copy()
        if band is not None:
            gh = gt.boxes[:, 3] - gt.boxes[:, 1]
            ignore |= (gh < band[0]) | (gh >= band[1])
        n_faces += int((~ignore).sum())
    scores = np.concatenate(scores) if scores else np.zeros(0)
    labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    tp = np.cumsum(labels == TP)
    fp = np.cumsum(labels == FP)
    recall = tp / n_faces if n_faces else np.zeros(len(tp))
    precision = tp / np.maximum(tp + fp, 1)
    ap = voc_ap(recall, precision) if n_faces else float("nan")
    return APResult(name, ap, n_faces, len(labels), precision, recall, scores)


def evaluate(detections: list[Detections], truths: list[GroundTruth], iou: float = 0.5,
             bands: dict[str, tuple[float, float]] = BANDS) -> dict[str, APResult]:
    """AP for the whole set and each face-height band: ``{band name: APResult}``."""
    return {name: average_precision(detections, truths, iou, None if name == "all" else rng, name)
            for name, rng in bands.items()}


def plot_pr(curves: dict[str, APResult], path, title: str = "precision-recall") -> None:
    """Write a PNG of precision against recall, one line per entry, AP in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    for label, res in curves.items():
        ax.plot(res.recall, res.precision, label=f"{label}: AP {100 * res.ap:.1f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
