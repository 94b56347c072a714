"""GlobalAveragePool (fpgagen/ir/kinds/global_pool.py), added through the registration alone: the lowering's
thresholds on the integer sums against the Quant of the mean computed in exact rationals (ties to even at
k - 1/2, a 3x3 = 9-pixel mean, negative scales, offsets, a pending range), its kernel fg_global_pool.h compiled with
g++ against the reference on random and extreme codes at the edge folds, the ONNX forms it takes (GlobalAveragePool,
ReduceMean by attribute or input) and what it refuses."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from kinds_tb import TB_DIR, KernelBench, check_doc_roundtrip, check_io_pattern, codes
from onnx import helper
from qonnx.core.datatype import DataType

from fpgagen.errors import FpgagenError
from fpgagen.ir.kinds import KINDS, LOWERINGS, AffineView, LoweringContext, QuantSpec
from fpgagen.ir.kinds.base import render_instance
from fpgagen.ir.kinds.global_pool import GlobalAveragePool
from fpgagen.quant import IntRange


def gap_node(op="GlobalAveragePool", inputs=("x",), **attrs):
    return helper.make_node(op, list(inputs), ["y"], name="gap", **attrs)


def lower(name, view, shape, quant, pe):
    done = LOWERINGS["GlobalAveragePool"].rule(gap_node(), [view], [shape], LoweringContext(name, {}.get,
                                                                                             out_quant=quant))
    done.layer.set_folding(pe=pe)
    return done


U4, I8 = DataType["UINT4"], DataType["INT8"]
CASES = {
    # 2x2 mean of codes at scale 1/4 onto a grid of 1/8: q = S / 2, a tie at every odd sum (half to even)
    "gap_po2_ties": (AffineView(np.full(6, 0.25), np.zeros(6), U4), (2, 2, 6),
                     QuantSpec(np.array([0.125]), np.array([0.0]), IntRange(0, 15)), 2),
    # 3x3 = 9 pixels, a = 9/32, s = 1/16: q = S / 2 exactly (ties too) though 1/9 has no binary form
    "gap_9px_ties": (AffineView(np.full(4, 0.28125), np.zeros(4), U4), (3, 3, 4),
                     QuantSpec(np.array([0.0625]), np.array([0.0]), IntRange(0, 255)), 4),
    # float32 scales, per-channel offsets (as zero points make them) and negative scales (compared negated), a
    # signed output with a zero point, 3x5 = 15 pixels
    "gap_neg_offsets": (AffineView(np.float32([0.3, -0.2, 0.11, 0.05, 0.7, -0.013]),
                                   np.array([0.0, 0.125, -0.375, 0.0, 0.25, 0.0]), I8), (3, 5, 6),
                        QuantSpec(np.array([np.float32(0.07)]), np.array([1.0]), IntRange(-8, 7)), 3),
    # 1 pixel, onto a grid twice as fine: the code doubled and clipped
    "gap_1px": (AffineView(np.full(4, 0.5), np.zeros(4), I8), (1, 1, 4),
                QuantSpec(np.array([0.25]), np.array([0.0]), IntRange(-128, 127)), 4),
    # 1 pixel onto its own grid: the sums are the codes, no thresholds
    "gap_same_grid": (AffineView(np.full(4, 0.25), np.zeros(4), U4), (1, 1, 4),
                      QuantSpec(np.array([0.25]), np.array([0.0]), IntRange(0, 15)), 2),
    # no Quant after it: the sums themselves (4x4 = 16, a power of two), extreme codes
    "gap_sums": (AffineView(np.full(8, 0.125), np.zeros(8), I8), (4, 4, 8), None, 4),
}
LAYERS = {name: lower(name, view, shape, quant, pe) for name, (view, shape, quant, pe) in CASES.items()}


def exact_codes(view: AffineView, quant: QuantSpec, x: np.ndarray) -> np.ndarray:
    """The Quant of the mean, in exact rationals (Python's round of a Fraction is half to even)."""
    n = x.shape[1] * x.shape[2]
    sums = x.sum(axis=(1, 2))
    q = quant.for_channels(view.channels)
    out = np.empty(sums.shape, np.int64)
    for idx, s in np.ndenumerate(sums):
        c = idx[-1]
        mean = Fraction(float(view.scale[c])) * int(s) / n + Fraction(float(view.offset[c]))
        code = round(mean / Fraction(float(q.scale[c])) + Fraction(float(q.zero[c])))
        out[idx] = min(max(code, q.range.lo), q.range.hi)
    return out.reshape(x.shape[0], 1, 1, -1)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gap_reference_and_kernel(name):
    view, shape, quant, _ = CASES[name]
    done = LAYERS[name]
    layer = done.layer
    rng = np.random.default_rng(7)
    x = np.concatenate([codes(rng, view.dtype, shape, frames=4),
                        np.full((1, *shape), int(view.dtype.min())), np.full((1, *shape), int(view.dtype.max()))])
    (ref,) = layer.run([x])
    if quant is None or name == "gap_same_grid":
        assert not layer.requantizes and np.array_equal(ref, x.sum(axis=(1, 2), keepdims=True))
    if quant is None:
        assert np.array_equal(done.view.real(ref), view.real(x).mean(axis=(1, 2), keepdims=True))  # exact: n = 16
    else:
        assert np.array_equal(ref, exact_codes(view, quant, x))
        assert np.all((ref >= done.view.lo) & (ref <= done.view.hi))
    if name.endswith("ties"):  # the exact mean hits k - 1/2, so half to even is what the thresholds decide
        sums = x.sum(axis=(1, 2))
        assert np.any(sums % 2 == 1)
    (got,) = KernelBench("fg_global_pool.h", [d.layer for d in LAYERS.values()], TB_DIR).run(layer.name, [x])
    assert np.array_equal(got, ref)
    check_io_pattern(layer)
    check_doc_roundtrip(layer)
    assert KINDS["GlobalAveragePool"] is GlobalAveragePool


def test_gap_memories_and_folding():
    layer = LAYERS["gap_neg_offsets"].layer
    assert layer.requantizes and layer.negate.tolist() == [False, True, False, False, False, True]
    assert [o["pe"] for o in layer.fold_options() if o["thr_style"] == "bram"] == [1, 2, 3]  # not at PE = C
    sums, thr, neg = layer.memories()
    assert (sums.banks, sums.depth, sums.elems, sums.storage) == (1, 2, 3, "registers")
    # one word per channel fold, lane p's thresholds at p*NT (the layout of every thresholding kind)
    assert (thr.banks, thr.depth, thr.elems) == (1, 2, 3 * layer.nt) and (neg.banks, neg.depth, neg.elems) == (1, 2, 3)
    bram = GlobalAveragePool(**{**layer.__dict__, "thr_style": "bram"}).memories()
    assert bram[1].storage == "bram" and bram[2].storage == "lutram"  # a few flag bits are not worth a BRAM18
    assert layer.cycles() == 15 * 2 and layer.sum_dtype == DataType["INT12"]  # 15 x INT8
    text = render_instance(layer)
    assert "fg::global_pool_requant<" in text and "BIND_STORAGE variable=thresholds" in text
    assert "fg::global_pool<" in render_instance(LAYERS["gap_sums"].layer)
    with pytest.raises(FpgagenError, match="does not divide C=6"):
        layer.set_folding(pe=4)
    # registers hold C sums: more lanes need no more of them, only more adders
    one = GlobalAveragePool(**{**layer.__dict__, "pe": 1})
    assert one.resources()["LUT"] < GlobalAveragePool(**{**layer.__dict__, "pe": 6}).resources()["LUT"]


def test_gap_lowering_forms():
    """AdaptiveAvgPool2d(1) exports as GlobalAveragePool (legacy) or ReduceMean over axes (-1, -2) given as an input
    (opset 18, dynamo); x.mean((2, 3)) as ReduceMean with an axes attribute (older opsets) or input."""
    view, quant = AffineView(np.full(4, 0.25), np.zeros(4), U4), QuantSpec(np.array([0.5]), np.array([0.0]),
                                                                             IntRange(0, 7))
    rule = LOWERINGS["ReduceMean"].rule
    assert rule is LOWERINGS["GlobalAveragePool"].rule and LOWERINGS["ReduceMean"].fuses_quant
    for node, consts in ((gap_node("ReduceMean", ("x", "axes")), {"axes": np.array([-1, -2])}),
                         (gap_node("ReduceMean", axes=[2, 3], keepdims=0), {})):
        done = rule(node, [view], [(2, 2, 4)], LoweringContext("m", consts.get, out_quant=quant))
        assert done.layer.out_shapes[0] == (1, 1, 4) and done.layer.requantizes
    # no Quant after it: the sums stream in the type of their actual range (codes 0..5 of a UINT3, 4 pixels)
    narrow = AffineView(np.full(4, 0.25), np.zeros(4), DataType["UINT3"], lo=0, hi=5)
    done = rule(gap_node(), [narrow], [(2, 2, 4)], LoweringContext("m", {}.get))
    assert done.layer.out_dtypes[0] == done.view.dtype == DataType["UINT5"] and done.view.hi.max() == 20
    assert np.array_equal(done.layer.run([np.full((1, 2, 2, 4), 5)])[0], np.full((1, 1, 1, 4), 20))


@pytest.mark.parametrize("node,consts,shape,quant,view,match", [
    (gap_node("ReduceMean", axes=[1, 2, 3]), {}, (2, 2, 4), True, None, "axes"),
    (gap_node("ReduceMean", ("x", "a")), {}, (2, 2, 4), True, None, "non-constant axes"),
    (gap_node(), {}, (3, 3, 4), False, None, "not a power of two"),  # 1/9 has no exact binary form
    (gap_node(), {}, (2, 2, 4), True, AffineView(np.full(4, 0.25), np.zeros(4), U4, clamp=(0.0, 1.0)), "float"),
])
def test_gap_lowering_refuses(node, consts, shape, quant, view, match):
    view = view or AffineView(np.full(4, 0.25), np.zeros(4), U4)
    quant = QuantSpec(np.array([0.5]), np.array([0.0]), IntRange(0, 7)) if quant else None
    with pytest.raises(FpgagenError, match=match):
        LOWERINGS["GlobalAveragePool"].rule(node, [view], [shape], LoweringContext("g", consts.get, out_quant=quant))
