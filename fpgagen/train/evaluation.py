"""AP of checkpoints (or any detector) on a WIDER-layout split: the float and quantized models side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import WiderFace
from ..detect import BAND_NOTE, BANDS, Detections, Detector, GroundTruth, evaluate, plot_pr, torch_backend
from ..detect.evaluate import APResult
from .model import load_checkpoint

AP_CONF = 0.01  # score floor for AP: low, so the precision-recall curve runs to its end
NMS_IOU = 0.3


def detect_dataset(detector: Detector, dataset: WiderFace, batch: int = 16, limit: int | None = None
                   ) -> tuple[list[Detections], list[GroundTruth]]:
    dets, truths = [], []
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for start in range(0, n, batch):
        samples = [dataset[i] for i in range(start, min(n, start + batch))]
        dets += detector([s.image for s in samples])
        truths += [GroundTruth(s.boxes, s.ignore) for s in samples]
    return dets, truths


def checkpoint_detector(path: str | Path, input_size: int = 416, conf: float = AP_CONF, nms_iou: float = NMS_IOU
                        ) -> tuple[Detector, dict]:
    """A torch-backed detector for a checkpoint: quantized models on the integer-code path, float on floats."""
    model, info = load_checkpoint(path)
    backend = torch_backend(model, name=info["kind"])
    return Detector(backend, info["anchors"], input_size, conf, nms_iou), info


def evaluate_checkpoints(checkpoints: dict[str, str | Path], dataset: WiderFace, input_size: int = 416,
                         limit: int | None = None, log=None) -> dict[str, dict[str, APResult]]:
    """``{label: {band: APResult}}`` for each checkpoint, all on the same images."""
    results = {}
    for label, path in checkpoints.items():
        if log:
            log(f"evaluating {label} ({path}) on {dataset.root} [{dataset.split}] at {input_size}")
        det, _ = checkpoint_detector(path, input_size)
        dets, truths = detect_dataset(det, dataset, limit=limit)
        results[label] = evaluate(dets, truths)
    return results


def ap_table(results: dict[str, dict[str, APResult]]) -> str:
    """A Markdown table: one row per model, one column per band, AP in percent, plus the face counts."""
    bands = list(BANDS)
    first = next(iter(results.values()))
    head = "| model | " + " | ".join(f"{b} AP" for b in bands) + " |"
    rule = "|---|" + "---:|" * len(bands)
    rows = [head, rule]
    for label, res in results.items():
        rows.append(f"| {label} | " + " | ".join(_pct(res[b].ap) for b in bands) + " |")
    rows.append("| faces | " + " | ".join(str(first[b].n_faces) for b in bands) + " |")
    return "\n".join(rows) + f"\n\nAP at IoU 0.5 (+1-pixel convention, VOC all-point); {BAND_NOTE}."


def _pct(v: float) -> str:
    return "n/a" if not np.isfinite(v) else f"{100 * v:.1f}"


def write_pr_plot(results: dict[str, dict[str, APResult]], path: str | Path, title: str) -> Path:
    curves = {f"{label} {band.split(' ')[0]}": res[band] for label, res in results.items()
              for band in ("all",)}
    plot_pr(curves, path, title)
    return Path(path)
