"""VVU (fpgagen/ir/kinds/vvu.py), the depthwise-convolution kind added through the registration alone: its numpy
reference against torch's grouped conv2d (float64, exact), its kernel fg_vvu.h compiled with g++ against that
reference on random and extreme codes at the edge folds (SIMD = 1 and PE = C, one channel per cycle, every tap in
one cycle, a 1x1 kernel), its lowering rule and what it refuses, and its memories and folding."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from kinds_tb import TB_DIR, KernelBench, check_doc_roundtrip, check_io_pattern, codes
from onnx import helper
from qonnx.core.datatype import DataType

from fpgagen.errors import FpgagenError
from fpgagen.ir.kinds import KINDS, AffineView, LoweringContext, lowering_for
from fpgagen.ir.kinds.base import render_instance
from fpgagen.ir.kinds.mvau import lower_conv
from fpgagen.ir.kinds.sliding_window import SlidingWindow
from fpgagen.ir.kinds.vvu import VVU, lower_depthwise


def vvu(name, c, k, out_hw, in_dt, w_dt, acc_dt, pe, simd, rng, extreme=False, mem_style="lutram"):
    """A VVU on ``c`` channels with a k x k kernel and random weights of ``w_dt`` (``extreme``: every weight at the
    type's minimum, the largest products)."""
    lo, hi = int(w_dt.min()), int(w_dt.max())
    w = np.full((c, k * k), lo) if extreme else rng.integers(lo, hi + 1, (c, k * k))
    layer = VVU(name, ((*out_hw, k * k * c),), ((*out_hw, c),), (in_dt,), (acc_dt,), weights=w, weight_dtype=w_dt,
                kernel=(k, k), pe=pe, simd=simd, mem_style=mem_style)
    layer.validate()
    return layer


def vvu_cases():
    rng = np.random.default_rng(11)
    u4, i4, u8, i8 = (DataType[n] for n in ("UINT4", "INT4", "UINT8", "INT8"))
    return [
        vvu("vvu_pe2_simd1", 6, 3, (2, 3), u4, DataType["INT3"], DataType["INT11"], 2, 1, rng),
        vvu("vvu_pe1_bram", 3, 3, (3, 2), i4, i4, DataType["INT11"], 1, 1, rng, mem_style="bram"),
        vvu("vvu_pec_simd3", 4, 3, (2, 2), u4, i4, DataType["INT12"], 4, 3, rng),
        vvu("vvu_all_taps", 5, 5, (1, 3), i4, DataType["INT3"], DataType["INT11"], 5, 25, rng),  # one word per pixel
        vvu("vvu_1x1", 8, 1, (2, 3), u8, i8, DataType["INT16"], 4, 1, rng),  # no window: K = 1
        vvu("vvu_extreme", 4, 3, (2, 2), u8, i8, DataType["INT20"], 2, 1, rng, extreme=True),
    ]


VVUS = vvu_cases()


def window_frames(rng, dt, shape, frames=3, extreme=False):
    """Image frames (N, H, W, C) of ``dt`` codes; ``extreme``: the type's maximum everywhere."""
    if extreme:
        return np.full((frames, *shape), int(dt.max()), np.int64)
    return codes(rng, dt, shape, frames)


@pytest.mark.parametrize("layer", VVUS, ids=lambda x: x.name)
def test_vvu_reference_and_kernel(layer):
    """A sliding window's reference builds the VVU's input from an image; the VVU's reference equals torch's
    grouped conv2d on that image (float64, exact for these sizes); the g++-compiled kernel equals the reference."""
    rng = np.random.default_rng(12)
    (kh, kw), c = layer.kernel, layer.channels
    oh, ow = layer.out_shapes[0][:2]
    extreme = layer.name == "vvu_extreme"
    # strided padded 3x3, 'same' 5x5, 1x1; the extreme case unpadded, so that every window is all real pixels
    stride, pad = (1, 0) if extreme else (2, 1) if kh == 3 else (1, kh // 2)
    ih, iw = (oh - 1) * stride + kh - 2 * pad, (ow - 1) * stride + kw - 2 * pad
    image = window_frames(rng, layer.in_dtypes[0], (ih, iw, c), extreme=extreme)
    window = SlidingWindow("w", (ih, iw, c), (oh, ow, kh * kw * c), layer.in_dtypes[0], layer.in_dtypes[0],
                           kernel=(kh, kw), stride=(stride, stride), pads=(pad,) * 4, pad_value=0)
    x = window.reference(image)
    (ref,) = layer.run([x])
    weight = torch.tensor(layer.weights.reshape(c, 1, kh, kw), dtype=torch.float64)
    expect = torch.nn.functional.conv2d(torch.tensor(image, dtype=torch.float64).permute(0, 3, 1, 2), weight,
                                        stride=stride, padding=pad, groups=c).permute(0, 2, 3, 1)
    assert np.array_equal(ref, expect.numpy().astype(np.int64))
    acc = layer.acc_dtype
    assert acc.min() <= ref.min() and ref.max() <= acc.max()
    if extreme:  # every product is max code x min weight: the accumulator's far end is reached
        assert ref.min() == kh * kw * int(layer.in_dtypes[0].max()) * int(layer.weight_dtype.min())
    (got,) = KernelBench("fg_vvu.h", VVUS, TB_DIR).run(layer.name, [x])
    assert np.array_equal(got, ref)
    # random window words (not from an image): every element of every word reaches its own lane and tap
    x = codes(rng, layer.in_dtypes[0], layer.in_shapes[0], frames=2)
    (got,) = KernelBench("fg_vvu.h", VVUS, TB_DIR).run(layer.name, [x])
    assert np.array_equal(got, layer.run([x])[0])
    check_io_pattern(layer)
    check_doc_roundtrip(layer)
    assert KINDS["VVU"] is VVU


def test_vvu_folding_and_memories():
    by_name = {lay.name: copy.deepcopy(lay) for lay in VVUS}  # folded here, not in the kernel bench
    layer = by_name["vvu_pec_simd3"]
    # PE over channels with one tap per cycle, or every channel with SIMD taps: what the window can feed
    assert layer.fold_cores() == [{"pe": 1, "simd": 1}, {"pe": 2, "simd": 1}, {"pe": 4, "simd": 1},
                                  {"pe": 4, "simd": 3}, {"pe": 4, "simd": 9}]
    assert [o for o in layer.fold_options() if o["simd"] == 9] == [{"pe": 4, "simd": 9, "mem_style": "lutram"}]
    with pytest.raises(FpgagenError, match="SIMD=3 with PE=2"):
        layer.set_folding(pe=2, simd=3)
    with pytest.raises(FpgagenError, match="does not divide C=4"):
        layer.set_folding(pe=3, simd=1)
    layer.set_folding(pe=4, simd=3)
    assert layer.cycles() == 2 * 2 * 3 and layer.in_words == (12,) and layer.out_words == (4,)
    weights, acc = layer.memories()
    assert (weights.banks, weights.depth, weights.elems, weights.elem_bits) == (1, 3, 12, 4)
    assert (acc.depth, acc.elems, acc.storage, acc.writes) == (1, 4, "registers", 1)
    # the fully parallel unit keeps its weights as constants; a BRAM ROM is priced as one
    assert by_name["vvu_all_taps"].memories()[0].storage == "registers"
    bram = by_name["vvu_pe1_bram"]
    assert bram.memories()[0].storage == "bram" and bram.resources()["BRAM18"] == 1
    text = render_instance(bram)
    assert "BIND_STORAGE variable=weights type=rom_1p impl=bram" in text and "fg::vvu<vvu_pe1_bram_config>" in text
    # more parallelism costs more logic and fewer cycles
    slow, fast = VVU(**{**bram.__dict__, "pe": 1}), VVU(**{**bram.__dict__, "pe": 3})
    assert fast.cycles() * 3 == slow.cycles() and fast.resources()["LUT"] > slow.resources()["LUT"]


# --- lowering -----------------------------------------------------------------------------------------------
def conv(group, k=3, name="dw", **attrs):
    inputs = ["x", "w"] + (["b"] if attrs.pop("bias", False) else [])
    return helper.make_node("Conv", inputs, ["y"], name=name, group=group, kernel_shape=[k, k], **attrs)


def context(weight_codes, scale, bias=None):
    weight = SimpleNamespace(codes=weight_codes, scale=np.asarray(scale, np.float32), dtype=DataType["INT3"])
    consts = {"b": bias} if bias is not None else {}
    return LoweringContext("dw", consts.get, quantized={"w": weight}.get)


def test_depthwise_lowering():
    """Only grouped Convs are the VVU's; a padded strided depthwise conv lowers to a window and a VVU whose view
    is the exact affine map of the accumulator (checked against the real-valued conv in float64)."""
    assert lowering_for(conv(1)).rule is lower_conv and lowering_for(conv(4)).rule is lower_depthwise  # group 1: MVAU
    rng = np.random.default_rng(4)
    w = rng.integers(-4, 4, (4, 1, 3, 3))
    scale = np.array([0.5, 0.25, 0.125, 1.0])
    bias = np.array([0.125, -0.25, 0.0, 0.375], np.float32)  # dyadic, as the scales: every real value is exact
    view = AffineView(np.full(4, 0.0625), np.zeros(4), DataType["UINT4"])
    done = lowering_for(conv(4)).rule(conv(4, strides=[2, 2], pads=[1, 1, 1, 1], bias=True), [view], [(5, 6, 4)],
                                      context(w, scale.reshape(4, 1, 1, 1), bias))
    (window,), layer = done.feeders, done.layer
    assert (window.kernel, window.stride, window.pads, window.pad_value) == ((3, 3), (2, 2), (1, 1, 1, 1), 0)
    assert layer.out_shapes[0] == (3, 3, 4) and layer.in_shapes[0] == window.out_shape
    x = codes(rng, DataType["UINT4"], (5, 6, 4), frames=2)
    (acc,) = layer.run([window.reference(x)])
    real = torch.nn.functional.conv2d(torch.tensor(view.real(x)).permute(0, 3, 1, 2),
                                      torch.tensor(w * scale.reshape(4, 1, 1, 1)),
                                      torch.tensor(bias, dtype=torch.float64), stride=2, padding=1,
                                      groups=4).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(done.view.real(acc), real)
    assert np.all((acc >= done.view.lo) & (acc <= done.view.hi)) and done.passthrough is None
    # 1x1, stride 1, unpadded: no window; positive weights on unsigned codes: unsigned accumulators, the type the
    # walk gives the view's range (the stream's two ends agree)
    plain = lowering_for(conv(4, k=1)).rule(conv(4, k=1), [view], [(5, 6, 4)],
                                            context(np.full((4, 1, 1, 1), 3), 0.5))
    assert plain.feeders == () and plain.layer.acc_dtype == plain.view.dtype == DataType["UINT6"]  # 3 x 15


@pytest.mark.parametrize("node,view,match", [
    (conv(2), None, "group=2 on 4 channels"),
    (conv(4, dilations=[2, 2]), None, "dilated"),
    (conv(4, auto_pad="SAME_UPPER"), None, "auto_pad SAME_UPPER"),
    (conv(4, pads=[1, 1, 1, 1]), AffineView(np.full(4, 0.5), np.full(4, 0.25), DataType["UINT4"]), "code of 0"),
    (conv(4), AffineView(np.full(4, 0.5), np.zeros(4), DataType["UINT4"], clamp=(0.0, 1.0)), "float activation"),
])
def test_depthwise_lowering_refuses(node, view, match):
    view = view or AffineView(np.full(4, 0.5), np.zeros(4), DataType["UINT4"])
    group = next(a.i for a in node.attribute if a.name == "group")
    w = np.ones((4, 4 // group, 3, 3), np.int64)
    with pytest.raises(FpgagenError, match=match):
        lowering_for(node).rule(node, [view], [(4, 4, 4)], context(w, 0.5))
    with pytest.raises(FpgagenError, match="float"):  # no Quant before the weights
        lowering_for(conv(4)).rule(conv(4), [view], [(4, 4, 4)], LoweringContext("dw", {}.get))
