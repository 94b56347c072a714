"""The graph layer kinds (fpgagen/ir/kinds): each numpy reference against an independent torch/numpy
formulation, and each static kernel (templates/hls/fg_*.h) compiled with g++ against that reference, bit-exact."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
import torch
from kinds_tb import TB_DIR, KernelBench, check_doc_roundtrip, check_io_pattern, codes, kernel_dir
from onnx import helper
from qonnx.core.datatype import DataType

from fpgagen.csim import ap_types_include
from fpgagen.errors import FpgagenError
from fpgagen.ir import MVAU
from fpgagen.ir.kinds import (
    KINDS,
    AffineView,
    GraphLayer,
    MaxPool,
    QuantSpec,
    StreamFork,
    Upsample,
    XnorMVAU,
    lower_add,
    lower_concat,
    lower_fork,
    lower_maxpool,
    lower_resize,
    pad_of_node,
    xnor_from_mvau,
    xnor_rewrite,
)
from fpgagen.ir.kinds.base import TEMPLATE_DIR, render_instance
from fpgagen.quant import IntRange
from fpgagen.reference import run_layer

_benches: dict[str, KernelBench] = {}


def bench(header: str, layers) -> KernelBench:
    if header not in _benches:
        _benches[header] = KernelBench(header, layers, TB_DIR)
    return _benches[header]


def node(op: str, name: str = "n0", inputs=("x",), **attrs):
    return helper.make_node(op, list(inputs), ["y"], name=name, **attrs)



def quant_torch(real: torch.Tensor, quant: QuantSpec, clamp=None) -> torch.Tensor:
    """QONNX Quant (ROUND: half to even) in float64 torch, the independent formulation."""
    if clamp is not None:
        real = torch.clamp(real, clamp[0], clamp[1])
    s, z = torch.tensor(quant.scale), torch.tensor(quant.zero)
    return torch.clamp(torch.round(real / s + z), quant.range.lo, quant.range.hi).to(torch.int64)



# --- StreamFork ---------------------------------------------------------------------------------------------
FORKS = [StreamFork("fork_k2", ((3, 5, 6),), ((3, 5, 6),) * 2, (DataType["UINT4"],), (DataType["UINT4"],) * 2, pe=3),
         StreamFork("fork_k3", ((1, 7, 4),), ((1, 7, 4),) * 3, (DataType["INT8"],), (DataType["INT8"],) * 3, pe=1)]


@pytest.mark.parametrize("layer", FORKS, ids=lambda x: x.name)
def test_fork_kernel(layer):
    rng = np.random.default_rng(1)
    layer.validate()
    x = codes(rng, layer.in_dtypes[0], layer.in_shapes[0])
    ref = layer.run([x])
    assert len(ref) == layer.branches and all(np.array_equal(r, x) for r in ref)
    got = bench("fg_fork.h", FORKS).run(layer.name, [x])
    assert all(np.array_equal(g, r) for g, r in zip(got, ref, strict=True))
    check_io_pattern(layer)
    check_doc_roundtrip(layer)


def test_fork_lowering_and_folding():
    view = AffineView(np.full(4, 0.5), np.zeros(4), DataType["UINT3"])
    fork, views = lower_fork("f", view, (2, 2, 4), 3)
    assert fork.branches == 3 and len(views) == 3 and views[0] is view
    assert [o["pe"] for o in fork.fold_options()] == [1, 2, 4]
    with pytest.raises(FpgagenError, match="does not divide"):
        fork.set_folding(pe=3)
    with pytest.raises(FpgagenError, match="at least 2"):
        lower_fork("f", view, (2, 2, 4), 1)


# --- Concat -------------------------------------------------------------------------------------------------
def concat_cases():
    """(layer, views, quant): the concat lowered from branch views, with the Quant after it (or None)."""
    u4 = DataType["UINT4"]
    out_u4 = QuantSpec(np.array([0.25]), np.array([0.0]), IntRange(0, 15))
    cases = []
    # K=2, scales differ by a power of two: ties at every other code (round half to even).
    v0 = AffineView(np.full(4, 0.25), np.zeros(4), u4)
    v1 = AffineView(np.full(6, 0.125), np.zeros(6), u4)
    cases.append(("concat_po2_ties", [v0, v1], [(3, 3, 4), (3, 3, 6)], out_u4, 2))
    # K=3, different channel counts and types, a negative per-channel scale, a signed branch, float scales.
    i5 = DataType["INT5"]
    v2 = AffineView(np.array([0.3, -0.2, 0.1, 0.05]), np.array([0.0, 0.1, -0.3, 0.0]), i5)
    v3 = AffineView(np.full(2, 0.25), np.zeros(2), u4)  # already on the output grid: identity thresholds
    v4 = AffineView(np.full(6, 0.07), np.full(6, 0.01), DataType["UINT3"], clamp=(0.0, 0.3))
    signed_out = QuantSpec(np.array([0.25]), np.array([0.0]), IntRange(-8, 7))
    cases.append(("concat_k3_mixed", [v2, v3, v4], [(2, 5, 4), (2, 5, 2), (2, 5, 6)], signed_out, 2))
    # No Quant after it: the codes pass through with their per-channel views side by side.
    cases.append(("concat_passthrough", [v0, v1, v3], [(1, 3, 4), (1, 3, 6), (1, 3, 2)], None, 2))
    # Every branch already on the grid: no thresholds either.
    cases.append(("concat_same_grid", [v3, v0], [(2, 2, 2), (2, 2, 4)], out_u4, 1))
    out = []
    for name, views, shapes, quant, pe in cases:
        layer, view = lower_concat(node("Concat", name, axis=1), views, shapes, name, quant)
        layer.set_folding(pe=pe)
        out.append((layer, views, quant, view))
    return out


CONCATS = concat_cases()


@pytest.mark.parametrize("case", CONCATS, ids=lambda c: c[0].name)
def test_concat_reference_and_kernel(case):
    layer, views, quant, view = case
    rng = np.random.default_rng(2)
    xs = [codes(rng, v.dtype, s, frames=3) for v, s in zip(views, layer.in_shapes, strict=True)]
    (ref,) = layer.run(xs)
    # independent: dequantize every branch exactly (float64), torch.cat, requantize half to even
    real = torch.cat([torch.tensor(v.real(x)) for v, x in zip(views, xs, strict=True)], dim=-1)
    if quant is None:
        assert np.array_equal(ref, np.concatenate(xs, axis=-1))
        assert np.array_equal(view.real(ref), real.numpy())
    else:
        expect = quant_torch(real, quant, views[0].clamp if len({v.clamp for v in views}) == 1 else None)
        if any(v.clamp for v in views):  # per-branch clamps: apply each branch's own
            parts = [quant_torch(torch.tensor(v.real(x)), quant.for_channels(v.channels), v.clamp)
                     for v, x in zip(views, xs, strict=True)]
            expect = torch.cat(parts, dim=-1)
        assert np.array_equal(ref, expect.numpy())
        assert np.all((ref >= view.lo) & (ref <= view.hi))
    got = bench("fg_concat.h", [c[0] for c in CONCATS]).run(layer.name, xs)
    assert np.array_equal(got[0], ref)
    check_io_pattern(layer)
    check_doc_roundtrip(layer)


def test_concat_requantizes_only_when_needed():
    by_name = {c[0].name: c[0] for c in CONCATS}
    assert by_name["concat_po2_ties"].requantizes and by_name["concat_k3_mixed"].requantizes
    assert not by_name["concat_passthrough"].requantizes and not by_name["concat_same_grid"].requantizes
    assert by_name["concat_k3_mixed"].negate.any()  # the negative scale is compared negated
    mixed = by_name["concat_k3_mixed"]
    assert {m.name for m in mixed.memories()} == {"thresholds", "negate"}
    assert mixed.resources()["LUT"] > by_name["concat_same_grid"].resources()["LUT"]
    assert mixed.pe_options() == [1, 2]
    text = render_instance(mixed)
    assert "#pragma HLS BIND_STORAGE variable=thresholds" in text and "concat_requant" in text


def test_concat_errors():
    v = AffineView(np.full(2, 0.25), np.zeros(2), DataType["UINT4"])
    with pytest.raises(FpgagenError, match="axis"):
        lower_concat(node("Concat", axis=2), [v, v], [(1, 1, 2)] * 2, "c")
    with pytest.raises(FpgagenError, match="pending"):
        w = AffineView(np.full(2, 0.25), np.zeros(2), DataType["UINT4"], clamp=(0.0, 1.0))
        lower_concat(node("Concat", axis=1), [v, w], [(1, 1, 2)] * 2, "c")
    layer, _ = lower_concat(node("Concat", axis=1), [v, v], [(1, 1, 2)] * 2, "c")
    with pytest.raises(FpgagenError, match="does not divide"):
        layer.set_folding(pe=4)


# --- Upsample -----------------------------------------------------------------------------------------------
UPSAMPLES = [Upsample("up_2x2", ((3, 5, 4),), ((6, 10, 4),), (DataType["UINT4"],), (DataType["UINT4"],),
                      factor=(2, 2), pe=2),
             Upsample("up_3x1_odd", ((1, 3, 3),), ((3, 3, 3),), (DataType["INT3"],), (DataType["INT3"],),
                      factor=(3, 1), pe=1),
             Upsample("up_1x3", ((2, 3, 6),), ((2, 9, 6),), (DataType["UINT2"],), (DataType["UINT2"],),
                      factor=(1, 3), pe=3)]


@pytest.mark.parametrize("layer", UPSAMPLES, ids=lambda x: x.name)
def test_upsample_reference_and_kernel(layer):
    layer.validate()
    rng = np.random.default_rng(3)
    x = codes(rng, layer.in_dtypes[0], layer.in_shapes[0])
    (ref,) = layer.run([x])
    t = torch.tensor(x, dtype=torch.float64).permute(0, 3, 1, 2)
    expect = torch.nn.functional.interpolate(t, scale_factor=layer.factor, mode="nearest").permute(0, 2, 3, 1)
    assert np.array_equal(ref, expect.numpy().astype(np.int64))
    (got,) = bench("fg_upsample.h", UPSAMPLES + RANDOM_UPSAMPLES).run(layer.name, [x])
    assert np.array_equal(got, ref)
    check_io_pattern(layer)
    check_doc_roundtrip(layer)
    (row,) = layer.memories()
    assert row.depth == (layer.in_shapes[0][1] if layer.factor[0] > 1 else 1) * layer.channel_words


def test_resize_lowering():
    view = AffineView(np.full(4, 0.5), np.zeros(4), DataType["UINT3"])
    scales = {"s": np.array([1, 1, 2, 2], np.float32), "bad": np.array([1, 1, 1.5, 2], np.float32)}
    torch_like = node("Resize", "r", ("x", "", "s"), mode="nearest", coordinate_transformation_mode="asymmetric",
                      nearest_mode="floor")
    layer, out = lower_resize(torch_like, view, (3, 5, 4), "up", scales.get)
    assert layer.factor == (2, 2) and layer.out_shapes[0] == (6, 10, 4) and out is view
    default_modes = node("Resize", "r", ("x", "", "s"), mode="nearest")  # half_pixel, round_prefer_floor
    assert lower_resize(default_modes, view, (3, 5, 4), "up", scales.get)[0].factor == (2, 2)
    with pytest.raises(FpgagenError, match="does not repeat"):
        lower_resize(node("Resize", "r", ("x", "", "s"), mode="nearest", coordinate_transformation_mode="asymmetric",
                          nearest_mode="round_prefer_ceil"), view, (3, 5, 4), "up", scales.get)
    with pytest.raises(FpgagenError, match="not an integer upsampling"):
        lower_resize(node("Resize", "r", ("x", "", "bad"), mode="nearest"), view, (4, 4, 4), "up", scales.get)
    with pytest.raises(FpgagenError, match="mode 'linear'"):
        lower_resize(node("Resize", "r", ("x", "", "s"), mode="linear"), view, (3, 5, 4), "up", scales.get)


# --- AddStreams ---------------------------------------------------------------------------------------------
def add_cases():
    u4, i4 = DataType["UINT4"], DataType["INT4"]
    cases = [
        # same scales: a plain integer add, the raw sum is the output code
        ("add_same_raw", AffineView(np.full(4, 0.25), np.zeros(4), u4), AffineView(np.full(4, 0.25), np.zeros(4), i4),
         None, 2),
        # same scales, a Quant after it on the same grid but a narrower range: thresholds that clip
        ("add_same_clip", AffineView(np.full(4, 0.25), np.zeros(4), u4), AffineView(np.full(4, 0.25), np.zeros(4), u4),
         QuantSpec(np.array([0.25]), np.array([0.0]), IntRange(0, 15)), 4),
        # scales 2:1 (a shift), requantized to a coarser grid with ties (half to even)
        ("add_po2_ties", AffineView(np.full(6, 0.25), np.zeros(6), u4), AffineView(np.full(6, 0.125), np.zeros(6), i4),
         QuantSpec(np.array([0.5]), np.array([0.0]), IntRange(-8, 7)), 3),
        # ratio 3:2, offsets, negative per-channel scales on both branches
        ("add_neg_scales", AffineView(np.array([0.375, -0.375, 0.1875]), np.array([0.125, 0.0, -0.25]), u4),
         AffineView(np.array([0.25, -0.25, 0.125]), np.zeros(3), i4),
         QuantSpec(np.array([0.25]), np.array([1.0]), IntRange(-8, 7)), 1),
        # float32 scales as brevitas exports them: exact factors of 24-bit significands (wide constant multipliers)
        ("add_float32_scales", AffineView(np.full(4, np.float32(0.3)), np.zeros(4), u4),
         AffineView(np.full(4, np.float32(0.2)), np.zeros(4), u4),
         QuantSpec(np.array([np.float32(0.35)]), np.array([0.0]), IntRange(0, 7)), 2),
    ]
    out = []
    for name, a, b, quant, pe in cases:
        shape = (2, 3, a.channels)
        layer, view = lower_add(node("Add", name, ("a", "b")), [a, b], [shape, shape], name, quant)
        layer.set_folding(pe=pe)
        out.append((layer, [a, b], quant, view))
    return out


ADDS = add_cases()


@pytest.mark.parametrize("case", ADDS, ids=lambda c: c[0].name)
def test_add_reference_and_kernel(case):
    layer, views, quant, view = case
    rng = np.random.default_rng(4)
    xs = [codes(rng, v.dtype, layer.in_shapes[0], frames=3) for v in views]
    (ref,) = layer.run(xs)
    real = torch.tensor(views[0].real(xs[0])) + torch.tensor(views[1].real(xs[1]))
    if quant is None:
        assert np.allclose(view.real(ref), real.numpy(), rtol=1e-12, atol=1e-12)
        assert layer.out_dtypes[0] == layer.acc_dtype
    else:
        assert np.array_equal(ref, quant_torch(real, quant.for_channels(views[0].channels)).numpy())
    assert np.all((ref >= view.lo) & (ref <= view.hi))
    (got,) = bench("fg_add.h", [c[0] for c in ADDS]).run(layer.name, xs)
    assert np.array_equal(got, ref)
    check_io_pattern(layer)
    check_doc_roundtrip(layer)


def test_add_factors_and_errors():
    by_name = {c[0].name: c[0] for c in ADDS}
    assert by_name["add_same_raw"].factors == (1, 1) and not by_name["add_same_raw"].requantizes
    assert by_name["add_po2_ties"].factors == (2, 1)
    assert by_name["add_neg_scales"].factors == (3, 2) and by_name["add_neg_scales"].negate.any()
    a = AffineView(np.full(2, 0.25), np.zeros(2), DataType["UINT4"])
    with pytest.raises(FpgagenError, match="not the same on every channel"):
        mixed = AffineView(np.array([0.25, 0.5]), np.zeros(2), DataType["UINT4"])
        lower_add(node("Add", inputs=("a", "b")), [a, mixed], [(1, 1, 2)] * 2, "add")
    with pytest.raises(FpgagenError, match="wider than"):
        tiny = AffineView(np.full(2, np.float32(1e-7)), np.zeros(2), DataType["UINT4"])
        lower_add(node("Add", inputs=("a", "b")), [a, tiny],
                  [(1, 1, 2)] * 2, "add")
    with pytest.raises(FpgagenError, match="float activation"):
        lower_add(node("Add", inputs=("a", "b")), [a, AffineView(np.full(2, 0.25), np.zeros(2), DataType["UINT4"],
                                                                 clamp=(0, 1))], [(1, 1, 2)] * 2, "add")


# --- MaxPool (both kernels: the lowering's layer picks one) ---------------------------------------------------
def maxpool_cases():
    u4, i5 = DataType["UINT4"], DataType["INT5"]
    pos = AffineView(np.full(4, 0.5), np.zeros(4), u4)
    signed = AffineView(np.full(3, 0.25), np.full(3, 0.5), i5)  # code of 0.0 is -2
    mk = lambda name, **a: node("MaxPool", name, **a)  # noqa: E731
    cases = [
        # TinyYOLOv3: zero pad one row at the bottom and one column at the right (torch F.pad (0, 1, 0, 1)), then
        # 2x2 at stride 1
        ("mp_yolo_s1", mk("mp_yolo_s1", kernel_shape=[2, 2], strides=[1, 1]), pos, (5, 5, 4), ((0, 0, 1, 1), 0.0), 2),
        # overlapping 3x3 stride 2 with MaxPool's own pads (-inf), odd sizes
        ("mp_3x3_s2_pads", mk("mp_3x3_s2_pads", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), signed,
         (7, 5, 3), None, 1),
        # kernel == stride, a single row of windows, floor mode dropping a partial window
        ("mp_2x2_s2", mk("mp_2x2_s2", kernel_shape=[2, 2], strides=[2, 2]), pos, (3, 5, 4), None, 4),
        # non-square kernel and stride, a pad whose code (-2) is inside the signed range
        ("mp_2x3_s1x2", mk("mp_2x3_s1x2", kernel_shape=[2, 3], strides=[1, 2]), signed, (4, 7, 3),
         ((1, 0, 0, 2), 0.0), 3),
    ]
    out = []
    for name, n, view, shape, pre_pad, pe in cases:
        layer, out_view = lower_maxpool(n, view, shape, name, pre_pad)
        layer.set_folding(pe=pe)
        out.append((layer, view, pre_pad, out_view))
    return out


MAXPOOLS = maxpool_cases()


@pytest.mark.parametrize("case", MAXPOOLS, ids=lambda c: c[0].name)
def test_maxpool_reference_and_kernel(case):
    layer, view, pre_pad, out_view = case
    rng = np.random.default_rng(5)
    x = codes(rng, view.dtype, layer.in_shapes[0], frames=3)
    (ref,) = layer.run([x])
    # independent: torch on the real values, F.pad with the pad's real value, max_pool2d with its own -inf pads
    t = torch.tensor(view.real(x)).permute(0, 3, 1, 2)
    if pre_pad is not None:
        (pt, pl, pb, pr), value = pre_pad
        t = torch.nn.functional.pad(t, (pl, pr, pt, pb), value=value)
        pooled = torch.nn.functional.max_pool2d(t, layer.kernel, layer.stride)
    else:
        own = layer.pads
        assert own[0] == own[2] and own[1] == own[3]  # torch pads symmetrically
        pooled = torch.nn.functional.max_pool2d(t, layer.kernel, layer.stride, padding=(own[0], own[1]))
    expect = pooled.permute(0, 2, 3, 1).numpy()
    assert np.array_equal(out_view.real(ref), expect)
    (got,) = bench("fg_maxpool.h", [c[0] for c in MAXPOOLS] + RANDOM_MAXPOOLS).run(layer.name, [x])
    assert np.array_equal(got, ref)
    check_io_pattern(layer)
    check_doc_roundtrip(layer)


def test_maxpool_memory_and_errors():
    yolo = next(c[0] for c in MAXPOOLS if c[0].name == "mp_yolo_s1")
    assert not yolo.plain and "fg::maxpool_general<" in render_instance(yolo)
    (rows,) = yolo.memories()
    assert (rows.banks, rows.reads, rows.writes) == (4, 1, 1) and rows.ports_ok()
    assert rows.depth == 3 * yolo.channel_words  # ceil(6 padded columns / KW=2) pixels per bank
    assert yolo.cycles() == 6 * 6 * 2 and yolo.out_shapes[0] == (5, 5, 4)
    view = AffineView(np.full(2, 0.5), np.zeros(2), DataType["UINT4"])
    with pytest.raises(FpgagenError, match="negative or zero"):
        lower_maxpool(node("MaxPool", kernel_shape=[2, 2]), AffineView(np.array([0.5, -0.5]), np.zeros(2),
                                                                       DataType["UINT4"]), (2, 2, 2), "mp")
    with pytest.raises(FpgagenError, match="not one integer code"):
        lower_maxpool(node("MaxPool", kernel_shape=[2, 2]), view, (2, 2, 2), "mp", ((0, 1, 0, 1), 0.25))
    with pytest.raises(FpgagenError, match="ceil_mode"):
        lower_maxpool(node("MaxPool", kernel_shape=[2, 2], ceil_mode=1), view, (3, 3, 2), "mp")


def test_maxpool_picks_the_cheaper_kernel_for_non_overlapping_windows():
    """kernel == stride without padding: the non-overlapping kernel (KH-1 row memories of OW words, plus the
    pipeline depth in cycles); the same window through the general kernel costs KH*KW banks. Any other window,
    or a wider output type, takes the general kernel."""
    plain = next(c[0] for c in MAXPOOLS if c[0].name == "mp_2x2_s2")
    assert plain.plain and "fg::maxpool<" in render_instance(plain)
    colmax, rowmax = plain.memories()
    assert (rowmax.banks, rowmax.depth) == (1, plain.out_shape[1] * plain.channel_words)
    assert plain.cycles() == 3 * 5 * plain.channel_words + plain.PIPELINE_DEPTH
    general = MaxPool("g", plain.in_shape, plain.out_shape, plain.in_dtype, DataType["UINT5"], kernel=(2, 2),
                      pe=plain.pe)
    assert not general.plain and general.cycles() == 3 * 5 * general.channel_words
    (rows,) = general.memories()
    assert rows.banks * rows.depth > rowmax.banks * rowmax.depth
    assert not MaxPool("s", (4, 4, 2), (3, 3, 2), DataType["UINT4"], DataType["UINT4"], kernel=(2, 2),
                       stride=(1, 1)).plain


def test_pad_of_node():
    consts = {"p": np.array([0, 0, 0, 0, 0, 0, 1, 1]), "v": np.array(0.0, np.float32),
              "bad": np.array([0, 1, 0, 0, 0, 0, 0, 0])}
    assert pad_of_node(node("Pad", "pad", ("x", "p", "v"), mode="constant"), consts.get) == ((0, 0, 1, 1), 0.0)
    with pytest.raises(FpgagenError, match="spatial"):
        pad_of_node(node("Pad", "pad", ("x", "bad")), consts.get)
    with pytest.raises(FpgagenError, match="reflect"):
        pad_of_node(node("Pad", "pad", ("x", "p"), mode="reflect"), consts.get)


# --- random configurations of the two kernels with the most counters ----------------------------------------
def random_maxpools(n: int = 8) -> list[MaxPool]:
    rng = np.random.default_rng(11)
    out = []
    for i in range(n):
        kh, kw = (int(v) for v in rng.integers(1, 4, 2))
        sh, sw = (int(v) for v in rng.integers(1, 4, 2))
        pads = tuple(int(v) for v in rng.integers(0, 2, 4))
        h = int(rng.integers(max(1, kh - pads[0] - pads[2]), 7))
        w = int(rng.integers(max(1, kw - pads[1] - pads[3]), 7))
        c = int(rng.choice([1, 2, 3, 6]))
        pe = int(rng.choice([d for d in range(1, c + 1) if c % d == 0]))
        dt = DataType[str(rng.choice(["UINT3", "INT4", "UINT8"]))]
        ph, pw = h + pads[0] + pads[2], w + pads[1] + pads[3]
        out_shape = ((ph - kh) // sh + 1, (pw - kw) // sw + 1, c)
        pad = int(rng.integers(int(dt.min()), int(dt.max()) + 1))
        layer = MaxPool(f"mp_rand{i}", (h, w, c), out_shape, dt, dt, kernel=(kh, kw), stride=(sh, sw), pads=pads,
                        pad_value=pad, pe=pe)
        layer.validate()
        out.append(layer)
    return out


def random_upsamples(n: int = 6) -> list[Upsample]:
    rng = np.random.default_rng(12)
    out = []
    for i in range(n):
        fy, fx = (int(v) for v in rng.integers(1, 4, 2))
        h, w, c = int(rng.integers(1, 5)), int(rng.integers(1, 5)), int(rng.choice([1, 2, 4, 5]))
        pe = int(rng.choice([d for d in range(1, c + 1) if c % d == 0]))
        dt = DataType[str(rng.choice(["UINT2", "INT6"]))]
        layer = Upsample(f"up_rand{i}", ((h, w, c),), ((h * fy, w * fx, c),), (dt,), (dt,), factor=(fy, fx), pe=pe)
        layer.validate()
        out.append(layer)
    return out


RANDOM_MAXPOOLS, RANDOM_UPSAMPLES = random_maxpools(), random_upsamples()


@pytest.mark.parametrize("layer", RANDOM_MAXPOOLS, ids=lambda x: x.name)
def test_maxpool_random_configs(layer):
    x = codes(np.random.default_rng(13), layer.in_dtypes[0], layer.in_shapes[0], frames=2)
    (ref,) = layer.run([x])
    t = torch.nn.functional.pad(torch.tensor(x, dtype=torch.float64).permute(0, 3, 1, 2),
                                (layer.pads[1], layer.pads[3], layer.pads[0], layer.pads[2]), value=layer.pad_value)
    expect = torch.nn.functional.max_pool2d(t, layer.kernel, layer.stride).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(ref, expect.astype(np.int64))
    (got,) = bench("fg_maxpool.h", [c[0] for c in MAXPOOLS] + RANDOM_MAXPOOLS).run(layer.name, [x])
    assert np.array_equal(got, ref)
    check_io_pattern(layer)


@pytest.mark.parametrize("layer", RANDOM_UPSAMPLES, ids=lambda x: x.name)
def test_upsample_random_configs(layer):
    x = codes(np.random.default_rng(14), layer.in_dtypes[0], layer.in_shapes[0], frames=2)
    (got,) = bench("fg_upsample.h", UPSAMPLES + RANDOM_UPSAMPLES).run(layer.name, [x])
    assert np.array_equal(got, layer.run([x])[0])
    check_io_pattern(layer)


# --- the emitted code is what the models price, and what an HLS engineer signs off -------------------------
def xnor_cases() -> list[XnorMVAU]:
    rng = np.random.default_rng(21)

    def sorted_thresholds(mh, nt, mw):
        return np.sort(rng.integers(-mw - 1, mw + 2, size=(mh, nt)), axis=1)

    def weights(mh, mw):
        return rng.choice([-1, 1], size=(mh, mw))

    bip = DataType["BIPOLAR"]
    cases = [("xnor_bipolar_out", (2, 3, 8), 6, 1, bip, -1, 3, 4),  # BipolarQuant after it: one threshold
             ("xnor_int_out", (1, 1, 12), 4, 3, DataType["UINT2"], 0, 2, 12),  # 3 thresholds, SF = 1
             ("xnor_raw_acc", (2, 2, 6), 3, 0, None, 0, 1, 2)]  # no quantizer: acc itself, SF = 3, NF = 3
    out = []
    for name, shape, mh, nt, odt, base, pe, simd in cases:
        thr = sorted_thresholds(mh, nt, shape[2]) if nt else None
        layer = xnor_from_mvau(name, shape, weights(mh, shape[2]), thr, base, odt, bip)
        layer.set_folding(pe=pe, simd=simd)
        out.append(layer)
    return out


XNORS = xnor_cases()


@pytest.mark.parametrize("layer", XNORS, ids=lambda x: x.name)
def test_xnor_reference_and_kernel(layer):
    rng = np.random.default_rng(22)
    x = rng.choice([-1, 1], size=(3, *layer.in_shapes[0]))
    (ref,) = layer.run([x])
    # independent: the integer MVAU in torch on -1/+1 values, and the XNOR-popcount identity on the bits
    acc = torch.einsum("nhwk,ok->nhwo", torch.tensor(x), torch.tensor(layer.weights)).numpy()
    xb, wb = (x + 1) // 2, (layer.weights + 1) // 2
    popcount = (xb[..., None, :] == wb).sum(-1)
    assert np.array_equal(acc, 2 * popcount - layer.mw)
    if layer.thresholds is None:
        expect = acc
    else:
        passed = (acc[..., None] >= layer.thresholds).sum(-1)
        assert np.array_equal(passed, (popcount[..., None] >= layer.popcount_thresholds()).sum(-1))
        expect = 2 * passed - 1 if layer.out_dtypes[0].name == "BIPOLAR" else layer.out_base + passed
    assert np.array_equal(ref, expect)
    (got,) = bench("fg_xnor.h", XNORS).run(layer.name, [x])
    assert np.array_equal(got, ref)
    check_io_pattern(layer)
    check_doc_roundtrip(layer)


def binary_mvau_cases() -> list[MVAU]:
    """Integer MVAUs on {0, 1} codes with -1/+1 weights, as the walk builds them for W1A1 layers: a thresholded one
    (a Quant after it) and a final one streaming its accumulator W @ b."""
    rng = np.random.default_rng(23)
    out = []
    cases = (("bin_thr", (2, 2, 10), 4, 3, 2, 5), ("bin_acc", (1, 2, 12), 6, 0, 3, 4))
    for name, (h, w, mw), mh, nt, pe, simd in cases:
        wts = rng.choice([-1, 1], size=(mh, mw))
        wts[0] = -1  # one neuron all -1: its offset is MW
        thr = np.sort(rng.integers(-mw, mw + 2, size=(mh, nt)), axis=1) if nt else None
        acc_dt = DataType[f"INT{(mw).bit_length() + 1}"]
        mvau = MVAU(name, (h, w, mw), (h, w, mh), "BINARY", "UINT2" if nt else acc_dt.name, weights=wts,
                    thresholds=thr, out_base=0, weight_dtype="INT2", acc_dtype=acc_dt, pe=pe, simd=simd)
        out.append(mvau)
    return out


@pytest.mark.parametrize("mvau", binary_mvau_cases(), ids=lambda m: m.name)
def test_xnor_rewrite_of_binary_mvau(mvau, tmp_path):
    """The rewrite keeps the MVAU's output exactly (thresholded codes, or the accumulator on the bits), and the
    kernel streams the same."""
    layer = xnor_rewrite(mvau)
    assert layer is not None and layer.kind == "XnorMVAU" and layer.out_dtypes[0] == mvau.odt
    layer.set_folding(pe=mvau.pe, simd=mvau.simd)
    rng = np.random.default_rng(24)
    x = rng.integers(0, 2, size=(3, *mvau.in_shape))
    want = run_layer(mvau, x)
    (ref,) = layer.run([x])
    assert np.array_equal(ref, want)
    (got,) = KernelBench("fg_xnor.h", [layer], tmp_path).run(layer.name, [x])
    assert np.array_equal(got, ref)
    check_io_pattern(layer)
    check_doc_roundtrip(layer)
    assert xnor_rewrite(MVAU("keep", (1, 1, 2), (1, 1, 1), "UINT2", "INT4", weights=np.array([[1, -1]]))) is None
    assert xnor_rewrite(MVAU("keep", (1, 1, 2), (1, 1, 1), "BINARY", "INT4", weights=np.array([[1, 0]]))) is None


def test_xnor_lowering_errors():
    with pytest.raises(FpgagenError, match="bipolar"):
        xnor_from_mvau("x", (1, 1, 2), np.array([[1, 0]]), None, 0, None, DataType["BIPOLAR"])
    with pytest.raises(FpgagenError, match="bipolar"):
        xnor_from_mvau("x", (1, 1, 2), np.array([[1, -1]]), None, 0, None, DataType["UINT2"])
    layer = XNORS[0]
    with pytest.raises(FpgagenError, match="does not divide"):
        layer.set_folding(simd=3)
    layer.set_folding(pe=3, simd=4)


ALL_LAYERS = (FORKS + [c[0] for c in CONCATS] + UPSAMPLES + [c[0] for c in ADDS] + [c[0] for c in MAXPOOLS]
              + RANDOM_MAXPOOLS + RANDOM_UPSAMPLES + XNORS)
ARRAY = re.compile(r"^\s*(?:static const )?(\S+(?:<\d+>)?) (\w+)\[(\d+)\]\[(\d+)\]\[(\d+)\]", re.M)
BIND = re.compile(r"#pragma HLS BIND_STORAGE variable=(\w+) type=(\w+) impl=(\w+)")
PARTITION_ALL = re.compile(r"#pragma HLS ARRAY_PARTITION variable=(\w+) complete dim=0")


@pytest.mark.parametrize("layer", ALL_LAYERS, ids=lambda x: x.name)
def test_emitted_memories_match_declarations(layer):
    """Every array the instance emits is one of memories(), with the declared shape, storage and port type (so
    the resources priced from memories() are those of the code), and every declaration is emitted."""
    text = render_instance(layer)
    emitted = {m.group(2): m for m in ARRAY.finditer(text)}
    binds = {m.group(1): (m.group(2), m.group(3)) for m in BIND.finditer(text)}
    registers = set(PARTITION_ALL.findall(text))
    declared = {m.name: m for m in layer.memories()}
    assert set(emitted) == set(declared)
    for name, m in declared.items():
        assert m.ports_ok()
        ctype, banks, depth, elems = emitted[name].group(1, 3, 4, 5)
        assert (int(banks), int(depth), int(elems)) == (m.banks, m.depth, m.elems)
        if m.storage == "registers":
            assert name in registers and name not in binds
        else:
            assert binds[name] == (m.bind_type, m.storage)
        if "ap_" in ctype:  # a RAM's element type is its declared width (ROMs: FG_ROM_TYPE of thr_t, checked below)
            assert int(re.search(r"<(\d+)>", ctype).group(1)) == m.elem_bits
    for thr in (m for m in declared.values() if m.name == "thresholds"):
        assert re.search(rf"typedef ap_u?int<{thr.elem_bits}> thr_t;", text)
    assert layer.resources()["BRAM18"] == sum(m.resources()["BRAM18"] for m in declared.values())


KERNEL_HEADERS = sorted({cls.KERNEL_HEADER for cls in KINDS.values() if issubclass(cls, GraphLayer)} |
                        {"fg_maxpool_general.h"})  # MaxPool's kernel for any window (its KERNEL_HEADER includes it)


@pytest.mark.parametrize("header", KERNEL_HEADERS)
def test_kernel_header_lint(header):
    """No dependence pragma, no run-time division or modulo, a label on every loop, a pipeline or unroll pragma as
    the first line of every loop body."""
    code = (TEMPLATE_DIR / header).read_text()
    assert "DEPENDENCE" not in code
    body = re.sub(r"//[^\n]*", "", code)
    body = re.sub(r"#include [^\n]*", "", body)
    assert not re.search(r"[^/*]\s*[/%]\s*[^/*=]", body), "no / or % in a kernel (use counters)"
    lines = body.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"\s*for \(", line):
            assert re.match(r"\s*\w+:\s*$", lines[i - 1]), f"{header}:{i + 1}: unlabelled loop"
            assert re.match(r"\s*#pragma HLS (PIPELINE II=1|UNROLL)", lines[i + 1]), f"{header}:{i + 1}: no pragma"


# --- a reconvergent path: fork -> concat deadlocks unless the FIFO of the branch read second is deep enough ---
def _atomic_sim(layers, edges, depths, frames=2, limit=10_000) -> bool:
    """Cycle model of the io patterns: each process runs its next iteration in a cycle when every port it reads
    in that iteration holds a word and every port it writes has room (whole iterations, as the hardware stalls
    them); a word written in a cycle is readable from the next. ``edges``: (producer, out port, consumer, in port);
    the frame source and sink are unbounded. Returns whether all frames complete."""
    pats = [layer.io_pattern() for layer in layers]
    fill = {e: 0 for e in edges}
    step = [0] * len(layers)
    total = [frames * layer.cycles() for layer in layers]
    for _ in range(limit):
        if step == total:
            return True
        fire = []
        for i, (reads, writes) in enumerate(pats):
            if step[i] == total[i]:
                fire.append(False)
                continue
            it = step[i] % len(reads[0])
            ok = all(fill[e] > 0 for e in edges if e[2] == i and reads[e[3]][it])
            ok &= all(fill[e] < depths[e] for e in edges if e[0] == i and writes[e[1]][it])
            fire.append(ok)
        for i, (reads, writes) in enumerate(pats):
            if fire[i]:
                it = step[i] % len(reads[0])
                for e in edges:
                    fill[e] += int(e[0] == i and writes[e[1]][it]) - int(e[2] == i and reads[e[3]][it])
                step[i] += 1
        if not any(fire):
            return False
    return False


BOUNDED_TB = r"""
#include "fg_fork.h"
#include "fg_concat.h"
#include <cstdlib>
#include <iostream>
fg::BoundedSim *fg::bounded_sim = nullptr;
thread_local const char *fg::current_layer = "";
%(instances)s
int main(int argc, char **argv) {
    typedef fg::Vec<ap_uint<4>, %(pe)d> W;
    hls::stream<W> x("x"), b0("b0"), b1("b1"), y("y");
    fg::BoundedSim sim;
    fg::bounded_sim = &sim;
    sim.depth[&x] = std::make_pair(2u, "x");
    sim.depth[&b0] = std::make_pair(unsigned(atoi(argv[1])), "b0");
    sim.depth[&b1] = std::make_pair(unsigned(atoi(argv[2])), "b1");
    sim.live = 4;
    std::vector<std::string> errors;
    std::mutex errors_lock;
    std::vector<std::thread> threads;
    auto process = [&](const char *name, std::function<void()> body) {
        threads.emplace_back([&, name, body] {
            fg::current_layer = name;
            try { body(); } catch (const std::exception &e) {
                std::lock_guard<std::mutex> held(errors_lock); errors.push_back(e.what()); }
            sim.leave();
        });
    };
    process("source", [&] {
        for (unsigned i = 0; i < %(frames)d * %(words)d; i++) {
            W w;
            for (unsigned e = 0; e < %(pe)d; e++) w.v[e] = (i * %(pe)d + e) %% 16;
            fg::push(x, w);
        }
    });
    process("fork", [&] { for (unsigned f = 0; f < %(frames)d; f++) %(fork)s(x, b0, b1); });
    process("concat", [&] { for (unsigned f = 0; f < %(frames)d; f++) %(concat)s(b0, b1, y); });
    process("sink", [&] {
        for (unsigned i = 0; i < %(frames)d * 2 * %(words)d; i++) {
            W w = fg::pop(y);
            for (unsigned e = 0; e < %(pe)d; e++) std::cout << w.v[e].to_int64() << ' ';
        }
    });
    for (std::thread &t : threads) t.join();
    if (!errors.empty()) { std::cout << "\nERROR " << errors.front() << std::endl; return 3; }
    return 0;
}
"""


def test_reconvergent_fork_concat_needs_the_branch_depth():
    shape, pe, frames = (2, 3, 6), 1, 2
    u4 = DataType["UINT4"]
    fork = StreamFork("fork_x", (shape,), (shape,) * 2, (u4,), (u4,) * 2, pe=pe)
    view = AffineView(np.full(shape[2], 0.5), np.zeros(shape[2]), u4)
    concat, _ = lower_concat(node("Concat", "concat_xx", axis=1), [view, view], [shape, shape], "concat_xx")
    concat.set_folding(pe=pe)
    words_per_pixel = shape[2] // pe
    # the io patterns predict: branch 1 must hold one pixel of branch 0's words while concat reads branch 0
    edges = [(0, 0, 1, 0), (0, 1, 1, 1)]
    need = min(d for d in range(1, 20) if _atomic_sim([fork, concat], edges, {edges[0]: 2, edges[1]: d}))
    assert need == words_per_pixel
    assert not _atomic_sim([fork, concat], edges, {edges[0]: 2, edges[1]: need - 1})

    headers = kernel_dir(TB_DIR)
    src = BOUNDED_TB % dict(instances=render_instance(fork) + "\n" + render_instance(concat), pe=pe, frames=frames,
                            words=fork.words_in(0), fork=fork.name, concat=concat.name)
    src = "#include <functional>\n" + src
    exe, cpp = headers / "bounded", headers / "bounded.cpp"
    if not (exe.is_file() and cpp.is_file() and cpp.read_text() == src):  # compiled once per content
        cpp.write_text(src)
        subprocess.run(["g++", "-std=c++14", "-O1", "-DFG_SIM_BOUNDED_FIFOS", "-pthread", "-isystem",
                        str(ap_types_include()), "-I", str(headers), str(cpp), "-o", str(exe)],
                       check=True, capture_output=True)
    ok = subprocess.run([str(exe), "2", str(need)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout[-500:]
    x = (np.arange(frames * np.prod(shape)) % 16).reshape(frames, *shape)
    (ref,) = concat.run(fork.run([x]))
    assert np.array_equal(np.array(ok.stdout.split(), np.int64).reshape(ref.shape), ref)
    # C-sim pushes a fork's outputs one after the other, so it still completes one word shallower than the
    # whole-iteration model (which hardware needs); two shallower, it reports the deadlock.
    stuck = subprocess.run([str(exe), "2", str(need - 2)], capture_output=True, text=True, timeout=60)
    assert stuck.returncode == 3 and "deadlock with bounded FIFOs" in stuck.stdout


def test_lowering_rules_compose_on_a_small_graph():
    """The views the rules return feed the next rules: a residual pool, an upsample and a concat at different
    scales (TinyYOLOv3's shapes in miniature), integer references chained, against the float graph in torch."""
    rng = np.random.default_rng(31)
    u4 = DataType["UINT4"]
    x_view = AffineView(np.full(4, 0.25), np.zeros(4), u4)
    z_view = AffineView(np.full(3, np.float32(0.3)), np.zeros(3), DataType["INT4"])
    q_sum = QuantSpec(np.array([0.5]), np.array([0.0]), IntRange(0, 15))
    q_out = QuantSpec(np.array([0.25]), np.array([0.0]), IntRange(-16, 15))
    fork, (xa, xb) = lower_fork("fork", x_view, (4, 4, 4), 2)
    pool, a_view = lower_maxpool(node("MaxPool", "pool", kernel_shape=[2, 2], strides=[1, 1]), xa, (4, 4, 4), "pool",
                                 ((0, 0, 1, 1), 0.0))
    add, s_view = lower_add(node("Add", "add", ("a", "b")), [a_view, xb], [(4, 4, 4)] * 2, "add", q_sum)
    scales = {"s": np.array([1, 1, 2, 2], np.float32)}
    up, u_view = lower_resize(node("Resize", "up", ("x", "", "s"), mode="nearest",
                                   coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
                              s_view, (4, 4, 4), "up", scales.get)
    cat, out_view = lower_concat(node("Concat", "cat", axis=1), [u_view, z_view], [(8, 8, 4), (8, 8, 3)], "cat",
                                 q_out)
    assert add.requantizes and cat.requantizes and add.factors == (1, 1)
    x = codes(rng, u4, (4, 4, 4), frames=4)
    z = codes(rng, z_view.dtype, (8, 8, 3), frames=4)
    b0, b1 = fork.run([x])
    (p,) = pool.run([b0])
    (s,) = add.run([p, b1])
    (u,) = up.run([s])
    (y,) = cat.run([u, z])
    # the float graph
    f = torch.nn.functional
    xr = torch.tensor(x_view.real(x)).permute(0, 3, 1, 2)
    pooled = f.max_pool2d(f.pad(xr, (0, 1, 0, 1), value=0.0), 2, 1)
    summed = quant_torch((pooled + xr).permute(0, 2, 3, 1), q_sum.for_channels(4)).permute(0, 3, 1, 2) * 0.5
    upsampled = f.interpolate(summed, scale_factor=2, mode="nearest").permute(0, 2, 3, 1)
    expect = quant_torch(torch.cat([upsampled, torch.tensor(z_view.real(z))], dim=-1), q_out.for_channels(7))
    assert np.array_equal(y, expect.numpy())
    assert np.array_equal(out_view.real(y), expect.numpy() * 0.25)


class _PadPoolUpCat(torch.nn.Module):
    """What TinyYOLOv3 exports around its second head, in float: a (0, 1, 0, 1) zero pad and a 2x2 stride-1
    pool, a nearest 2x upsample, and a concat of two branches at different scales."""

    def __init__(self):
        super().__init__()
        self.up = torch.nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x):
        pooled = torch.nn.functional.max_pool2d(torch.nn.functional.pad(x, (0, 1, 0, 1)), 2, 1)
        return torch.cat([self.up(x), self.up(x) * 2], 1), pooled


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_rules_on_exported_onnx(dynamo, tmp_path):
    """The lowering rules read the nodes both torch exporters write (after qonnx cleanup folds the pad
    arithmetic), and the kinds reproduce onnxruntime's output of the exported graph exactly."""
    import onnxruntime as ort
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    path = tmp_path / "m.onnx"
    torch.onnx.export(_PadPoolUpCat().eval(), torch.zeros(1, 3, 4, 5), str(path), dynamo=dynamo, opset_version=18)
    model = cleanup_model(ModelWrapper(str(path)))
    nodes = {n.op_type: n for n in model.graph.node}
    view = AffineView(np.full(3, 0.5), np.zeros(3), DataType["UINT4"])
    pre_pad = pad_of_node(nodes["Pad"], model.get_initializer)
    assert pre_pad == ((0, 0, 1, 1), 0.0)
    pool, _ = lower_maxpool(nodes["MaxPool"], view, (4, 5, 3), "pool", pre_pad)
    up, up_view = lower_resize(nodes["Resize"], view, (4, 5, 3), "up", model.get_initializer)
    doubled = AffineView(up_view.scale * 2, up_view.offset * 2, up_view.dtype)  # the Mul, folded into the view
    cat, cat_view = lower_concat(nodes["Concat"], [up_view, doubled], [(8, 10, 3)] * 2, "cat")
    q = codes(np.random.default_rng(41), DataType["UINT4"], (4, 5, 3), frames=1)
    (u,) = up.run([q])
    (c,) = cat.run([u, u])
    (p,) = pool.run([q])
    sess = ort.InferenceSession(model.model.SerializeToString())
    feed = {model.graph.input[0].name: view.real(q).transpose(0, 3, 1, 2).astype(np.float32)}
    got_cat, got_pool = sess.run(None, feed)
    assert np.array_equal(cat_view.real(c), got_cat.transpose(0, 2, 3, 1))
    assert np.array_equal(view.real(p), got_pool.transpose(0, 2, 3, 1))
