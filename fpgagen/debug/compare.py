"""Per-tap comparison of two sources' codes, and the quantization health of one source's codes.

A difference between an integer source (csim, reference, board) and a float32 one (qonnx, brevitas) is a float32
rounding case when it is one code and the float32 pre-rounding value t = y/s + z lies within ``BOUNDARY_TOL`` code
units of a boundary k - 1/2 inside the code range: the rule tests/support/nets.py applies to every
bit-exactness test (its near_boundary and float32 boundary-flip checks; only there can float32 and exact
arithmetic legitimately disagree). Every other difference is a divergence.
"""

from __future__ import annotations

import numpy as np

BOUNDARY_TOL = 1e-3  # code units, as tests/support/nets.py near_boundary's default
CLIP_FLAG = 0.25  # a share of codes at a clipping end above this is flagged
SQNR_FLAG_DB = 10.0  # a quantizer whose noise is within 10 dB of its signal is flagged


def near_boundary(t: np.ndarray, lo: int, hi: int, tol: float = BOUNDARY_TOL) -> np.ndarray:
    """Mask of values within ``tol`` of a rounding boundary k - 1/2 inside (lo, hi), exact ties included."""
    t = np.asarray(t, np.float64)
    d = np.abs(t - np.floor(t) - 0.5)
    return (d <= tol) & (t > lo) & (t < hi)


def nchw_index(index_nhwc) -> list[int]:
    """A stream index (n, h, w, c) as the (n, c, h, w) of torch's layout."""
    n, h, w, c = (int(v) for v in index_nhwc)
    return [n, c, h, w]


def compare_codes(a: np.ndarray, b: np.ndarray, lo: int, hi: int, t: np.ndarray | None = None) -> dict:
    """``a`` vs ``b`` (N, H, W, C): how many differ, the largest |delta|, the first differing index (n, c, h, w),
    the pattern (differences per channel and per delta), and with ``t`` (the float source's pre-rounding value)
    how many are float32 k - 1/2 boundary cases."""
    if a.shape != b.shape:
        return {"shape_a": list(a.shape), "shape_b": list(b.shape), "differing": int(max(a.size, b.size)),
                "max_abs_diff": None, "first_index": None, "shape_mismatch": True, "boundary": 0,
                "all_boundary": False}
    diff = a.astype(np.int64) - b.astype(np.int64)
    bad = diff != 0
    n_bad = int(bad.sum())
    doc = {"shape": [int(a.shape[0]), int(a.shape[3]), int(a.shape[1]), int(a.shape[2])],  # n, c, h, w
           "differing": n_bad, "of": int(a.size), "max_abs_diff": int(np.abs(diff).max(initial=0)),
           "first_index": None, "boundary": 0, "all_boundary": False}
    if n_bad:
        doc["first_index"] = nchw_index(np.argwhere(bad)[0])
        first = tuple(np.argwhere(bad)[0])
        doc["first_values"] = [int(a[first]), int(b[first])]
        per_channel = bad.sum(axis=(0, 1, 2))
        top = np.argsort(-per_channel, kind="stable")[:8]
        doc["pattern"] = {"channels": {int(c): int(per_channel[c]) for c in top if per_channel[c]},
                          "deltas": {int(d): int(k) for d, k in zip(*np.unique(diff[bad], return_counts=True),
                                                                     strict=True)},
                          "frames": [int(v) for v in bad.reshape(bad.shape[0], -1).sum(1)]}
        if t is not None and t.shape == a.shape:
            boundary = bad & (np.abs(diff) == 1) & near_boundary(t, lo, hi)
            doc["boundary"] = int(boundary.sum())
            doc["all_boundary"] = doc["boundary"] == n_bad
    return doc


def health(codes: np.ndarray, lo: int, hi: int) -> dict:
    """Quantization health of one tap's codes: shares at the range's ends (clipping), codes never used, channels
    that never change (dead), and the flags a reader should look at."""
    codes = np.asarray(codes)
    total = max(codes.size, 1)
    clip_low = float((codes <= lo).sum() / total)
    clip_high = float((codes >= hi).sum() / total)
    doc = {"range": [lo, hi], "clip_low": round(clip_low, 6), "clip_high": round(clip_high, 6)}
    span = hi - lo + 1
    if span <= 4096:
        used = np.unique(codes)
        doc["unused_codes"] = int(span - np.count_nonzero((used >= lo) & (used <= hi)))
        doc["codes"] = span
    flat = codes.reshape(-1, codes.shape[-1])
    dead = np.flatnonzero(flat.min(axis=0) == flat.max(axis=0))
    doc["dead_channels"] = [int(c) for c in dead]
    flags = []
    # an unsigned range starting at 0 behind a ReLU: code 0 is the ReLU's own zero, not clipping
    if clip_high > CLIP_FLAG:
        flags.append(f"{clip_high:.0%} of codes at the maximum {hi} (the activation range clips)")
    if clip_low > CLIP_FLAG and lo < 0:
        flags.append(f"{clip_low:.0%} of codes at the minimum {lo} (the activation range clips)")
    if len(dead) and flat.shape[0] > 1:
        flags.append(f"{len(dead)} of {flat.shape[1]} channels never change (dead)")
    doc["flags"] = flags
    return doc
