"""Exactness of the quantizer-to-threshold folding, against direct evaluation of the quantizer."""

import numpy as np
import pytest

from fpgagen.quant import IntRange, apply_thresholds, quantize, requant_thresholds, smallest_dtype


def direct(acc, alpha, beta, s, z, rng):
    """round-half-even(clip) of the real value, in float64 (exact for the dyadic cases below)."""
    v = (alpha[:, None] * acc[None, :] + beta[:, None]) / s[:, None] + z[:, None]
    return np.clip(np.round(v), rng.lo, rng.hi).astype(np.int64)


def check(alpha, beta, s, z, rng, lo=-300, hi=300):
    acc = np.arange(lo, hi + 1)
    c = alpha.shape[0]
    t, neg = requant_thresholds(alpha, beta, s, z, rng, np.full(c, lo), np.full(c, hi))
    got = apply_thresholds(acc[None, :].repeat(c, 0).T, t, rng.lo, neg).T
    want = direct(acc, alpha, beta, s, z, rng)
    assert np.array_equal(got, want)
    return want


@pytest.mark.parametrize("signed,narrow,bits", [(False, False, 4), (True, False, 4), (True, True, 8), (False, True, 2)])
def test_thresholds_match_quantizer_random_float(signed, narrow, bits):
    g = np.random.default_rng(bits + 2 * signed + narrow)
    c = 16
    alpha = g.normal(0, 0.02, c)
    alpha[0] = 0.0  # a constant channel
    beta = g.normal(0, 1, c)
    check(alpha, beta, np.full(c, 0.11), np.zeros(c), IntRange.of(bits, signed, narrow))


def test_thresholds_resolve_ties_half_to_even():
    # Power-of-two scales put many values exactly on k - 1/2; negative alpha flips the comparison.
    c = 6
    alpha = np.array([2.0**-4, -(2.0**-4), 2.0**-3, -(2.0**-5), 2.0**-2, 2.0**-6])
    beta = np.array([0.0, 2.0**-5, -(2.0**-3), 0.25, 0.0, 2.0**-7])
    want = check(alpha, beta, np.full(c, 2.0**-2), np.zeros(c), IntRange.of(4, True, False), lo=-64, hi=64)
    v = (alpha[:, None] * np.arange(-64, 65)[None, :] + beta[:, None]) / 0.25
    ties = np.sum(v - np.floor(v) == 0.5)
    assert ties > 50  # the case really exercises ties
    assert want.min() < 0 < want.max()


def test_thresholds_with_zero_point_and_per_channel_scale():
    g = np.random.default_rng(7)
    c = 8
    rng = IntRange.of(4, False, False)
    check(g.normal(0, 0.01, c), g.normal(0, 1, c), g.uniform(0.05, 0.2, c), np.full(c, 3.0), rng)


def test_thresholds_clip_to_input_range_keeps_semantics():
    alpha, beta = np.array([1.0]), np.array([0.0])
    t, _ = requant_thresholds(alpha, beta, np.array([1.0]), np.array([0.0]), IntRange(0, 255), np.array([0]),
                              np.array([10]))
    assert t.min() >= 0 and t.max() <= 11
    assert np.array_equal(apply_thresholds(np.arange(11)[:, None], t, 0)[:, 0], np.arange(11))


def test_quantize_rounds_half_to_even_in_float32():
    q = quantize(np.array([0.5, 1.5, 2.5, -0.5, 300.0]), 1.0, 0.0, IntRange(0, 255))
    assert q.tolist() == [0, 2, 2, 0, 255]


def test_smallest_dtype():
    assert smallest_dtype(0, 15).name == "UINT4"
    assert smallest_dtype(-8, 7).name == "INT4"
    assert smallest_dtype(-9, 7).name == "INT5"
    assert smallest_dtype(-1, 128).name == "INT9"


def test_common_grid_is_exact_for_non_power_of_two_ratios():
    """Scales alpha_c = g * k_c exactly (Fractions), k coprime integers; float32 scales whose ratio is not a power
    of two need wide multipliers (24-bit mantissas), a power-of-two ratio only a shift's worth."""
    from fractions import Fraction

    from fpgagen.quant import common_grid

    scales = np.array([1 / 15, 1 / 15, 3 / 31, 3 / 31, 0.25], np.float32)
    g, k = common_grid(scales, "test")
    assert all(Fraction(float(s)) == Fraction(g) * int(kc) for s, kc in zip(scales, k, strict=True))
    assert np.gcd.reduce(k) == 1 and k.dtype == np.int64 and int(k.max()).bit_length() > 20
    assert k[0] == k[1] and k[2] == k[3] and len(set(k.tolist())) == 3
    g2, k2 = common_grid(np.array([0.5, 0.125, 0.375]), "test")  # 4/8, 1/8, 3/8
    assert g2 == 0.125 and k2.tolist() == [4, 1, 3]
    g3, k3 = common_grid(np.full(4, 0.1, np.float32), "test")  # one scale: k = 1, g = the scale
    assert g3 == float(np.float32(0.1)) and k3.tolist() == [1, 1, 1, 1]


def test_common_grid_refuses_scales_too_far_apart():
    from fpgagen.errors import FpgagenError
    from fpgagen.quant import common_grid

    with pytest.raises(FpgagenError, match="share no integer grid") as err:
        common_grid(np.array([1.0, 2.0**-70 * 3]), "node 'conv' (Conv)")
    assert "node 'conv'" in str(err.value) and "QuantIdentity after the Concat" in str(err.value)
    with pytest.raises(FpgagenError, match="positive"):
        common_grid(np.array([0.5, -0.25]), "node 'conv' (Conv)")


def test_thresholds_on_a_wide_accumulator_are_exact_rationals():
    """An accumulator of ~41 bits (an MVAU on inputs at several scales): u = (s*(k - 1/2) - beta)/alpha is ~2^40,
    where float64's rounding error nears the distance to the next integer. Every threshold equals the one solved
    in exact rationals of the same float64 parameters; the plain float64 formula misses at least one here."""
    import math
    from fractions import Fraction

    rng = np.random.default_rng(0)
    c = 400
    alpha, beta = rng.uniform(0.5, 1.5, c) * 2.0**-40, rng.uniform(-1, 1, c)
    s, z, out = np.full(c, np.float32(1 / 15), np.float64), np.zeros(c), IntRange(0, 15)
    t, _ = requant_thresholds(alpha, beta, s, z, out, np.full(c, -(2**51)), np.full(c, 2**51))
    ks = np.arange(1, 16)
    exact = np.zeros_like(t)
    for ch in range(c):
        for j, k in enumerate(ks):
            u = (Fraction(s[ch]) * (int(k) - Fraction(1, 2)) - Fraction(beta[ch])) / Fraction(alpha[ch])
            exact[ch, j] = u + 1 if u.denominator == 1 and k % 2 else math.ceil(u)
    assert np.array_equal(t, exact)
    u = (s[:, None] * (ks[None, :] - 0.5) - beta[:, None]) / alpha[:, None]
    plain = np.where((u == np.floor(u)) & (ks % 2 == 1)[None], u + 1, np.ceil(u)).astype(np.int64)
    assert (plain != exact).any()
