"""Integer quantizer semantics: QONNX ``Quant`` in numpy, and the thresholds that replace a requantization.

The thresholds are exact: for an integer input ``acc`` whose real value is ``alpha*acc + beta`` (per channel),
the output code of ``Quant(rounding_mode=ROUND)`` (round half to even, as numpy and torch round) is
``q_min + #{k : acc >= T_k}``. See shared/facts.md, "Quantizer semantics and thresholds".
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from qonnx.core.datatype import DataType

from .errors import FpgagenError


@dataclass(frozen=True)
class IntRange:
    """Inclusive integer code range of a quantizer."""

    lo: int
    hi: int

    @staticmethod
    def of(bits: int, signed: bool, narrow: bool) -> IntRange:
        if signed:
            return IntRange(-(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1)
        return IntRange(0, 2**bits - 1 - int(narrow))

    def dtype(self) -> DataType:
        return smallest_dtype(self.lo, self.hi)


def as_dtype(value: DataType | str) -> DataType:
    """A qonnx DataType from itself or its name: the IR stores DataType objects, names are for files and users."""
    return DataType[value] if isinstance(value, str) else value


def smallest_dtype(lo: int, hi: int) -> DataType:
    """Smallest UINTn/INTn DataType holding [lo, hi] (qonnx's helper only looks at one value)."""
    return _smallest_dtype(int(lo), int(hi))


@functools.lru_cache(maxsize=4096)  # the folder asks for the same few ranges thousands of times
def _smallest_dtype(lo: int, hi: int) -> DataType:
    if lo >= 0:
        return DataType[f"UINT{max(1, int(hi).bit_length())}"]
    bits = max((-lo - 1).bit_length(), max(hi, 0).bit_length()) + 1
    return DataType[f"INT{bits}"]


def quantize(x: np.ndarray, scale, zero_point, rng: IntRange) -> np.ndarray:
    """QONNX Quant (ROUND) to integer codes, computed in float32 exactly as brevitas/onnxruntime do."""
    x = np.asarray(x, dtype=np.float32)
    v = x / np.asarray(scale, dtype=np.float32) + np.asarray(zero_point, dtype=np.float32)
    return np.clip(np.round(v), rng.lo, rng.hi).astype(np.int64)


def requant_thresholds(
    alpha: np.ndarray,
    beta: np.ndarray,
    out_scale: np.ndarray,
    out_zero: np.ndarray,
    out_range: IntRange,
    in_lo: np.ndarray,
    in_hi: np.ndarray,
    center: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel integer thresholds for ``q = clip(round((alpha*(acc - center) + beta)/s + z))``.

    Returns ``(thresholds, negate)``: thresholds has shape (C, hi-lo) and is non-decreasing per row; where
    ``negate[c]`` the comparison is on ``-acc`` (alpha < 0 flips the inequality; we negate instead so hardware
    always compares ``>=``). Thresholds are clipped to [in_lo, in_hi + 1] per channel: anything below never
    fails, anything above never passes, so the clipped values keep the semantics and bound the bit width.

    For alpha > 0: ``round(v) >= k`` iff ``v > k - 1/2`` or (``v == k - 1/2`` and k even, half-to-even).
    With ``u_k = (s*(k - 1/2 - z) - beta)/alpha``, ``acc >= T_k`` where ``T_k = ceil(u_k)`` unless ``u_k`` is an
    integer and k odd, then ``T_k = u_k + 1``. alpha == 0 gives a constant channel. ``center`` (exact, default 0)
    is added after the division (subtracted where negated), so an exact tie stays exact.
    """
    alpha = np.asarray(alpha, np.float64)
    beta = np.asarray(beta, np.float64)
    c = alpha.shape[0]
    s = np.broadcast_to(np.asarray(out_scale, np.float64), (c,))
    z = np.broadcast_to(np.asarray(out_zero, np.float64), (c,))
    negate = alpha < 0
    a = np.abs(alpha)
    # Negating acc maps its range [lo, hi] to [-hi, -lo].
    lo = np.where(negate, -np.asarray(in_hi), np.asarray(in_lo)).astype(np.int64)
    hi = np.where(negate, -np.asarray(in_lo), np.asarray(in_hi)).astype(np.int64)
    shift = _signed_center(center, negate)
    ks = np.arange(out_range.lo + 1, out_range.hi + 1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (s[:, None] * (ks[None, :] - 0.5 - z[:, None]) - beta[:, None]) / a[:, None] + shift[:, None]
        is_int = np.isfinite(u) & (u == np.floor(u))
        odd = (ks.astype(np.int64) % 2 != 0)[None, :]
        t = np.where(is_int & odd, u + 1, np.ceil(u))
        # float64 decides ceil(u) unless u lies within its rounding error of an integer: a wide accumulator (an
        # MVAU on input channels at several scales multiplies them by integers of ~24 bits) makes |u| large and
        # that error near one. Those few are redone in exact rationals of the same float64 parameters.
        bound = (np.abs(s[:, None] * (ks[None, :] - 0.5 - z[:, None])) + np.abs(beta[:, None])) / a[:, None]
        near = np.isfinite(u) & (np.abs(u - np.round(u)) <= 2.0**-44 * (bound + np.abs(shift[:, None]) + 1))
    for ch, j in zip(*np.nonzero(near), strict=True):
        exact = (Fraction(s[ch]) * (int(ks[j]) - Fraction(1, 2) - Fraction(z[ch])) - Fraction(beta[ch])) \
            / Fraction(a[ch]) + Fraction(shift[ch])
        t[ch, j] = exact + 1 if exact.denominator == 1 and int(ks[j]) % 2 else math.ceil(exact)
    with np.errstate(divide="ignore", invalid="ignore"):
        # alpha == 0: v is the constant beta/s + z; the channel passes level k iff round(v) >= k.
        const_code = np.clip(np.round(beta / s + z), out_range.lo, out_range.hi)
        t = np.where((a == 0)[:, None], np.where(const_code[:, None] >= ks[None, :], -np.inf, np.inf), t)
    t = np.clip(t, lo[:, None], hi[:, None] + 1).astype(np.int64)
    if not np.all(np.diff(t, axis=1) >= 0):  # only non-finite scales or offsets get here (validate refuses them)
        bad = int(np.argmax(~np.all(np.diff(t, axis=1) >= 0, axis=1)))
        raise FpgagenError(f"the requantization of channel {bad} has no monotone integer thresholds (alpha "
                           f"{alpha[bad]:g}, beta {beta[bad]:g}, output scale {s[bad]:g})", "activation quantizer",
                           "check the model's scales, BatchNorm and bias for NaN, infinity or zero")
    return t, negate


def _signed_center(center, negate: np.ndarray) -> np.ndarray:
    """The exact offset in terms of the compared value: ``center`` for acc, ``-center`` where -acc is compared."""
    if center is None:
        return np.zeros(negate.shape)
    center = np.broadcast_to(np.asarray(center, np.float64), negate.shape)
    return np.where(negate, -center, center)


def bipolar_thresholds(alpha: np.ndarray, beta: np.ndarray, in_lo: np.ndarray, in_hi: np.ndarray,
                       center: np.ndarray | None = None):
    """Per-channel single threshold for BipolarQuant on ``alpha*(acc - center) + beta``: code 1 (+s) iff the value
    is >= 0 (qonnx and brevitas map 0 to +1), else 0 (-s). Returns ``(thresholds (C, 1), negate)`` as
    ``requant_thresholds`` does: with ``a = |alpha|`` and ``x = -acc`` where alpha < 0, the value is >= 0 iff
    ``x >= -beta/a + center`` (``- center`` for -acc), so ``T = ceil(that)``; alpha == 0 gives a constant channel.
    Ties (a value of exactly 0) are frequent in binary nets: ``-beta/a`` is exactly 0 when beta is."""
    alpha = np.asarray(alpha, np.float64)
    beta = np.asarray(beta, np.float64)
    negate = alpha < 0
    a = np.abs(alpha)
    lo = np.where(negate, -np.asarray(in_hi), np.asarray(in_lo)).astype(np.int64)
    hi = np.where(negate, -np.asarray(in_lo), np.asarray(in_hi)).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = -beta / a + _signed_center(center, negate)
        t = np.where(a == 0, np.where(beta >= 0, -np.inf, np.inf), np.ceil(u))
    return np.clip(t, lo, hi + 1).astype(np.int64)[:, None], negate


def apply_thresholds(x: np.ndarray, thresholds: np.ndarray, base: int, negate: np.ndarray | None = None):
    """Reference multi-threshold: ``base + #{k : x_c >= T_ck}`` on the last (channel) axis."""
    x = np.asarray(x, np.int64)
    if negate is not None and negate.any():
        x = np.where(negate, -x, x)
    count = np.zeros(x.shape, np.int64)
    for k in range(thresholds.shape[1]):  # loop over levels keeps memory at one copy of x
        count += x >= thresholds[:, k]
    return base + count


def common_grid(scales, where: str, max_bits: int = 62) -> tuple[float, np.ndarray]:
    """The coarsest grid of a set of positive per-channel scales: ``(g, k)`` with ``scales[c] == g * k[c]`` exactly,
    ``k`` positive integers with no common factor. Every float is a dyadic rational m * 2^e, so g is the gcd of the
    numerators over the lcm of the denominators (a power of two): g is dyadic too and float64 holds it exactly.
    A dot product of codes taken at per-channel scales is then ``g * sum_c w_c * k_c * q_c``, an integer sum.
    Refuses multipliers over ``max_bits`` bits (scales too far apart for any integer accumulator to hold)."""
    fracs = [Fraction(float(s)) for s in np.asarray(scales, np.float64).reshape(-1)]
    if not fracs or min(fracs) <= 0:
        raise FpgagenError("per-channel input scales must be positive to share an integer grid", where,
                           "quantize the input with an unsigned or signed activation quantizer of positive scale")
    grid = Fraction(math.gcd(*(f.numerator for f in fracs)), math.lcm(*(f.denominator for f in fracs)))
    ks = [int(f / grid) for f in fracs]
    top = max(ks)
    if top.bit_length() > max_bits:
        raise FpgagenError(f"the input's per-channel scales ({float(min(fracs)):.3g} to {float(max(fracs)):.3g}) "
                           f"share no integer grid narrower than {top.bit_length()} bits per multiplier", where,
                           "add a QuantIdentity after the Concat, or share one quantizer between the branches")
    return float(grid), np.array(ks, np.int64)
