"""Decoding LPYOLO's head: 3 anchors x (x, y, w, h, objectness, class) channels of a hardtanh in [-1, 1].

With ``y`` the dequantized output of a cell (column ``gx``, row ``gy``) and anchor ``(aw, ah)`` in pixels::

    cx = (y_x + 0.5 + gx) * stride        w = (y_w + 1)**2 * aw        conf = y_obj / 2 + 0.5
    cy = (y_y + 0.5 + gy) * stride        h = (y_h + 1)**2 * ah

Channel ``a * 6 + k`` holds field ``k`` of anchor ``a``. The score of a box is its objectness ``conf``
(a single class: the class channel is trained but does not gate the score).

Two paths give the same boxes (``tests/test_detect.py`` checks it with ``np.array_equal``):

* :func:`decode_codes`, the integer path for the accelerator's int8 codes ``q`` (``y = (q - z) * s``):
  ``conf > t`` is ``q > z + (2t - 1) / s``, so :func:`code_threshold` turns ``t`` into one integer once, the
  objectness channel is thresholded with integer compares, and only the few candidates that pass are
  converted to float;
* :func:`decode_float` for float outputs (the float model, or dequantized codes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FIELDS = 6  # x, y, w, h, objectness, class
OBJ = 4
STRIDE = 32
LPYOLO_ANCHORS = ((10, 14), (23, 27), (37, 58))  # the paper's anchors for WIDER FACE at 416x416


@dataclass(eq=False)
class Detections:
    """Boxes (N, 4) float64 x1 y1 x2 y2 and scores (N,) float64, best first after NMS."""

    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @staticmethod
    def empty() -> Detections:
        return Detections(np.zeros((0, 4)), np.zeros(0))


def code_threshold(conf: float, scale: float, zero_point: float = 0.0) -> int:
    """The smallest integer code ``q`` with ``(q - zero_point) * scale / 2 + 0.5 > conf`` (``scale > 0``).

    Exact for power-of-two scales (LPYOLO's hardtanh has ``scale = 2**-7``): the arithmetic below is then
    exact in float64. For other scales, values within float64 rounding of the boundary may differ.
    """
    if not scale > 0:
        raise ValueError(f"the output scale must be positive, got {scale}")
    bound = zero_point + (2.0 * conf - 1.0) / scale  # conf > t  <=>  q > bound
    return int(math.floor(bound)) + 1


def _boxes(y: np.ndarray, a: np.ndarray, gy: np.ndarray, gx: np.ndarray, anchors: np.ndarray,
           stride: int) -> np.ndarray:
    """y: (M, 4) float64 box fields of the candidates at anchor ``a``, cell (``gy``, ``gx``) -> x1 y1 x2 y2."""
    cx = (y[:, 0] + 0.5 + gx) * stride
    cy = (y[:, 1] + 0.5 + gy) * stride
    w = (y[:, 2] + 1.0) ** 2 * anchors[a, 0]
    h = (y[:, 3] + 1.0) ** 2 * anchors[a, 1]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def _split(out: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    out = np.asarray(out)
    if out.ndim != 3 or out.shape[0] != len(anchors) * FIELDS:
        raise ValueError(f"expected one output (C, H, W) with C = {len(anchors) * FIELDS}, got {out.shape}")
    return out.reshape(len(anchors), FIELDS, *out.shape[1:])  # (A, 6, H, W)


def decode_codes(codes: np.ndarray, scale: float, zero_point: float = 0.0, conf: float = 0.5,
                 anchors=LPYOLO_ANCHORS, stride: int = STRIDE) -> Detections:
    """Integer path: one image's output codes (C, H, W) -> boxes and scores (before NMS), in network pixels."""
    anchors = np.asarray(anchors, np.float64).reshape(-1, 2)
    q = _split(codes, anchors)
    if not np.issubdtype(q.dtype, np.integer):
        raise TypeError(f"decode_codes takes integer codes, got {q.dtype}")
    t = code_threshold(conf, scale, zero_point)
    a, gy, gx = np.nonzero(q[:, OBJ] >= t)  # integer compares over the whole objectness map
    if len(a) == 0:
        return Detections.empty()
    cand = q[a, :, gy, gx].astype(np.float64)  # (M, 6): only the candidates reach float
    y = (cand - zero_point) * scale
    return Detections(_boxes(y, a, gy, gx, anchors, stride), y[:, OBJ] / 2 + 0.5)


def decode_float(y: np.ndarray, conf: float = 0.5, anchors=LPYOLO_ANCHORS, stride: int = STRIDE) -> Detections:
    """Float path: one image's dequantized output (C, H, W) -> boxes and scores (before NMS)."""
    anchors = np.asarray(anchors, np.float64).reshape(-1, 2)
    y = _split(y, anchors).astype(np.float64)
    score = y[:, OBJ] / 2 + 0.5
    a, gy, gx = np.nonzero(score > conf)
    if len(a) == 0:
        return Detections.empty()
    cand = y[a, :, gy, gx]
    return Detections(_boxes(cand, a, gy, gx, anchors, stride), score[a, gy, gx])
