"""Image geometry shared by training and detection: letterboxing and the training augmentation."""

from __future__ import annotations

import math
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


def letterbox_size(width: int, height: int, size: int) -> tuple[float, int, int, int, int]:
    """fpgagen's letterbox geometry for a ``width`` x ``height`` image in a ``size`` square: (scale, nw, nh, dx,
    dy): scale = size / max(W, H), the scaled size rounded (at least 1 pixel), centred (offsets rounded down)."""
    scale = size / max(height, width)
    nw, nh = max(1, round(width * scale)), max(1, round(height * scale))
    return scale, nw, nh, (size - nw) // 2, (size - nh) // 2


def linear_exact_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's INTER_LINEAR_EXACT along one axis of ``src`` -> ``dst`` pixels: for each output pixel the left
    source index ``i`` (at most src - 2) and the 8-bit fixed-point weight ``c`` in [0, 256] of pixel i + 1; the
    value is ``p[i] * (256 - c) + p[i + 1] * c`` (8 fraction bits).

    OpenCV's scheme, reimplemented from its documented behaviour (learned from resize.cpp, checked against
    cv2.resize in tests/test_letterbox.py): the source position is (d + 0.5) * (1 / (dst / src)) - 0.5 in IEEE
    double arithmetic, rounded at every step as written; its floor is the left pixel and its fraction, times 256,
    rounded half to even, the weight. Positions left of pixel 0 repeat pixel 0; positions at or beyond the last
    pixel repeat it (here: left pixel src - 2, weight 256). A 1-pixel axis repeats its pixel."""
    left, weight = np.zeros(dst, np.int64), np.zeros(dst, np.int64)
    if src == 1:
        return left, weight
    scale = 1.0 / (dst / src)
    for d in range(dst):
        pos = scale * (float(d) + 0.5) - 0.5
        i = math.floor(pos)
        if i < 0:
            left[d], weight[d] = 0, 0
        elif i >= src - 1:
            left[d], weight[d] = src - 2, 256
        else:
            left[d], weight[d] = i, int(np.rint((pos - i) * 256.0))
    return left, weight


def resize_linear_exact(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR_EXACT)`` in integer numpy, from
    ``linear_exact_taps``: rows then columns at 8 fraction bits each, one rounding at the end (+2^15, >> 16)."""
    h, w = image.shape[:2]
    xl, xc = linear_exact_taps(w, width)
    yl, yc = linear_exact_taps(h, height)
    img = image.astype(np.int64)
    right = np.minimum(xl + 1, w - 1)
    rows = img[:, xl] * (256 - xc)[None, :, None] + img[:, right] * xc[None, :, None]  # (h, width, C), 8.8
    below = np.minimum(yl + 1, h - 1)
    out = rows[yl] * (256 - yc)[:, None, None] + rows[below] * yc[:, None, None]
    return ((out + (1 << 15)) >> 16).astype(np.uint8)


def letterbox_exact(image: np.ndarray, size: int, pad: int = PAD_VALUE) -> tuple[np.ndarray, Letterbox]:
    """``letterbox``'s geometry with OpenCV's bit-exact bilinear resize (``cv2.INTER_LINEAR_EXACT``) at every
    scale: the host letterbox that equals the fabric's (fpgagen.ir.kinds.letterbox) bit for bit, on any
    platform. ``letterbox`` (area averaging when shrinking) stays the training transform."""
    h, w = image.shape[:2]
    scale, nw, nh, dx, dy = letterbox_size(w, h, size)
    out = np.empty((size, size, 3), np.uint8)
    out[:dy], out[dy + nh:] = pad, pad
    out[dy:dy + nh, :dx], out[dy:dy + nh, dx + nw:] = pad, pad
    region = out[dy:dy + nh, dx:dx + nw]
    if (nw, nh) == (w, h):
        region[...] = image
    else:
        region[...] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR_EXACT)
    return out, Letterbox(scale, dx, dy)


def fit_exact(image: np.ndarray, width: int, height: int, pad: int = PAD_VALUE) -> tuple[np.ndarray, Letterbox]:
    """``image`` scaled (INTER_LINEAR_EXACT) to fit a ``width`` x ``height`` frame, keeping its aspect, centred on
    the pad value: how a photo becomes a camera-sized frame for a build with the letterbox in the fabric."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = min(width, max(1, round(w * scale))), min(height, max(1, round(h * scale)))
    dx, dy = (width - nw) // 2, (height - nh) // 2
    out = np.full((height, width, 3), pad, np.uint8)
    out[dy:dy + nh, dx:dx + nw] = image if (nw, nh) == (w, h) else \
        cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR_EXACT)
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
