"""Image geometry shared by training and detection: letterboxing and the training augmentation."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into a square network input: ``net = orig * scale + (dx, dy)``."""

    scale: float
    dx: float
    dy: float

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        b = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
        b[:, [0, 2]] = (b[:, [0, 2]] - self.dx) / self.scale
        b[:, [1, 3]] = (b[:, [1, 3]] - self.dy) / self.scale
        return b

    def to_network(self, boxes: np.ndarray) -> np.ndarray:
        b = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
        b[:, [0, 2]] = b[:, [0, 2]] * self.scale + self.dx
        b[:, [1, 3]] = b[:, [1, 3]] * self.scale + self.dy
        return b


def letterbox(image: np.ndarray, size: int, pad: int = PAD_VALUE) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` (H, W, 3) uint8 to fit ``size`` x ``size`` keeping its aspect, centred on grey padding."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp) if (nw, nh) != (w, h) else image
    out = np.full((size, size, 3), pad, np.uint8)
    dx, dy = (size - nw) // 2, (size - nh) // 2
    out[dy:dy + nh, dx:dx + nw] = resized
    return out, Letterbox(scale, dx, dy)


def augment(image: np.ndarray, boxes: np.ndarray, size: int, rng: np.random.Generator,
            zoom: tuple[float, float] = (0.7, 1.3), min_visible: float = 0.45, min_side: float = 4.0
            ) -> tuple[np.ndarray, np.ndarray]:
    """Random zoom, translation and flip into a ``size`` square, then brightness/contrast/saturation jitter.

    ``boxes`` are x1 y1 x2 y2 in ``image``; boxes less than ``min_visible`` inside the output, or smaller than
    ``min_side`` pixels, are dropped. Returns ``(uint8 RGB (size, size, 3), float32 boxes (M, 4))``.
    """
    h, w = image.shape[:2]
    s = size / max(h, w) * rng.uniform(*zoom)
    flip = rng.random() < 0.5
    # output = s * (flipped input) + t; the translation keeps at least part of the image in view
    tx = rng.uniform(min(0.0, size - w * s), max(0.0, size - w * s))
    ty = rng.uniform(min(0.0, size - h * s), max(0.0, size - h * s))
    sx = -s if flip else s
    ox = tx + (w * s if flip else 0.0)
    M = np.array([[sx, 0, ox], [0, s, ty]], np.float32)
    fill = tuple(int(v) for v in rng.integers(0, 256, 3)) if rng.random() < 0.5 else (PAD_VALUE,) * 3
    out = cv2.warpAffine(image, M, (size, size), flags=cv2.INTER_LINEAR if s > 1 else cv2.INTER_AREA,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    xs = b[:, [0, 2]] * sx + ox
    nb = np.stack([xs.min(1), b[:, 1] * s + ty, xs.max(1), b[:, 3] * s + ty], axis=1)
    area = (nb[:, 2] - nb[:, 0]) * (nb[:, 3] - nb[:, 1])
    clipped = np.clip(nb, 0, size - 1)
    vis = (clipped[:, 2] - clipped[:, 0]).clip(0) * (clipped[:, 3] - clipped[:, 1]).clip(0)
    keep = (vis >= min_visible * np.maximum(area, 1e-9)) & ((clipped[:, 3] - clipped[:, 1]) >= min_side) \
        & ((clipped[:, 2] - clipped[:, 0]) >= min_side)
    out = photometric(out, rng)
    return out, clipped[keep].astype(np.float32)


def photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    img = image.astype(np.float32)
    if rng.random() < 0.1:
        img = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)
    else:
        grey = img.mean(axis=2, keepdims=True)
        img = grey + (img - grey) * rng.uniform(0.6, 1.4)  # saturation
    img = (img - 128) * rng.uniform(0.75, 1.25) + 128 + rng.uniform(-25, 25)
    return np.clip(img, 0, 255).astype(np.uint8)
