"""MVAU cases for the kernel unit tests (test_kernels_compute, test_kernels_stream): random INT weights and sorted
thresholds from a seed."""

import numpy as np

from fpgagen.ir import MVAU


def sorted_thresholds(rng, channels, nt, lo, hi):
    return np.sort(rng.integers(lo, hi, size=(channels, nt)), axis=1)


def mvau(name, mw, mh, pe, simd, pixels=5, nt=15, seed=0, wbits=4, abits=4, acc="INT16", out="UINT4", signed=False,
         **styles):
    rng = np.random.default_rng(seed)
    weights = rng.integers(-(2 ** (wbits - 1)), 2 ** (wbits - 1), size=(mh, mw))
    thresholds = sorted_thresholds(rng, mh, nt, -60, 60) if nt else None
    idt = f"INT{abits}" if signed else f"UINT{abits}"
    return MVAU(name, (1, pixels, mw), (1, pixels, mh), idt, out if nt else acc, weights=weights,
                thresholds=thresholds, weight_dtype=f"INT{wbits}", acc_dtype=acc, pe=pe, simd=simd, **styles)
