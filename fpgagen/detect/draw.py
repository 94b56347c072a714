"""Annotated images: detections (green, with their score) and, optionally, reference faces (thin yellow)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .decode import Detections

GREEN, YELLOW = (40, 220, 60), (255, 210, 0)


def annotate(image: np.ndarray, det: Detections, truth: np.ndarray | None = None, min_size: int = 416
             ) -> np.ndarray:
    """uint8 RGB image -> a copy with boxes drawn; small images are enlarged so the labels stay legible."""
    f = max(1.0, min_size / max(image.shape[:2]))
    out = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST) if f > 1 else image.copy()
    thick = max(1, round(max(out.shape[:2]) / 400))
    if truth is not None:
        for b in np.asarray(truth, np.float64).reshape(-1, 4) * f:
            cv2.rectangle(out, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), YELLOW, 1, cv2.LINE_AA)
    for b, s in zip(det.boxes * f, det.scores, strict=True):
        p1, p2 = (int(round(b[0])), int(round(b[1]))), (int(round(b[2])), int(round(b[3])))
        cv2.rectangle(out, p1, p2, GREEN, thick + 1, cv2.LINE_AA)
        label = f"{s:.2f}"
        scale = 0.4 * thick
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        # the label sits on the box's top-left corner, moved inside the image where the box touches an edge
        x = max(0, min(p1[0], out.shape[1] - tw - 5))
        y = min(max(p1[1], th + 4), out.shape[0] - 1)
        cv2.rectangle(out, (x, y - th - 4), (x + tw + 4, y), GREEN, -1)
        cv2.putText(out, label, (x + 2, y - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
    return out


def save_rgb(path: str | Path, image: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def mosaic(images: list[np.ndarray], cols: int = 4, tile: int = 312) -> np.ndarray:
    """Tile images (resized to ``tile`` px squares) into one grid, for a contact sheet."""
    tiles = [cv2.resize(im, (tile, tile), interpolation=cv2.INTER_AREA) for im in images]
    while len(tiles) % cols:
        tiles.append(np.zeros((tile, tile, 3), np.uint8))
    rows = [np.concatenate(tiles[i:i + cols], axis=1) for i in range(0, len(tiles), cols)]
    return np.concatenate(rows, axis=0)
