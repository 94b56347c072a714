"""The graph layer kinds (fpgagen/ir/kinds): each numpy reference against an independent torch/numpy
formulation, and each static kernel (templates/hls/fg_*.h) compiled with g++ against that reference, bit-exact."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from kinds_tb import KernelBench
from qonnx.core.datatype import BaseDataType, DataType

from fpgagen.errors import FpgagenError
from fpgagen.ir.kinds import GRAPH_KINDS, AffineView, Concat, QuantSpec, StreamFork, lower_concat, lower_fork
from fpgagen.ir.kinds.base import render_instance
from fpgagen.quant import IntRange

TB_DIR = Path(__file__).resolve().parent.parent / "build" / ".cache" / "kinds_tb"
_benches: dict[str, KernelBench] = {}


def bench(header: str, layers) -> KernelBench:
    if header not in _benches:
        _benches[header] = KernelBench(header, layers, TB_DIR)
    return _benches[header]


def node(op: str, name: str = "n0", **attrs):
    return SimpleNamespace(name=name, op_type=op,
                           attribute=[SimpleNamespace(name=k, i=v, ints=v if isinstance(v, list) else [])
                                      for k, v in attrs.items()])


def codes(rng, dtype: DataType, shape, frames=2, lo=None, hi=None):
    lo = int(dtype.min()) if lo is None else lo
    hi = int(dtype.max()) if hi is None else hi
    return rng.integers(lo, hi + 1, size=(frames, *shape), dtype=np.int64)


def quant_torch(real: torch.Tensor, quant: QuantSpec, clamp=None) -> torch.Tensor:
    """QONNX Quant (ROUND: half to even) in float64 torch, the independent formulation."""
    if clamp is not None:
        real = torch.clamp(real, clamp[0], clamp[1])
    s, z = torch.tensor(quant.scale), torch.tensor(quant.zero)
    return torch.clamp(torch.round(real / s + z), quant.range.lo, quant.range.hi).to(torch.int64)


def check_doc_roundtrip(layer):
    again = GRAPH_KINDS[layer.kind].from_doc(layer.to_doc())
    assert again.to_doc() == layer.to_doc()
    assert all(isinstance(d, BaseDataType) for d in (*again.in_dtypes, *again.out_dtypes))


def check_io_pattern(layer):
    reads, writes = layer.io_pattern()
    assert len(reads) == len(layer.in_shapes) and len(writes) == len(layer.out_shapes)
    for p, r in enumerate(reads):
        assert len(r) == layer.cycles() and r.sum() == layer.words_in(p)
    for q, w in enumerate(writes):
        assert len(w) == layer.cycles() and w.sum() == layer.words_out(q)


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
        assert np.allclose(view.real(ref), real.numpy(), rtol=0, atol=0)
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
