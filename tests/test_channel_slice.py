"""ChannelSlice (fpgagen/ir/kinds/channel_slice.py), the kind added through the registration alone: its kernel
against its numpy reference, its lowering rule, and a Brevitas net with ``x[:, a:b]`` built by ``fpgagen.build``
(C-sim == reference checked inside) whose codes equal Brevitas' exactly (np.array_equal)."""

from __future__ import annotations

import graph_nets as G
import nets
import numpy as np
import pytest
import torch
from kinds_tb import TB_DIR, KernelBench, check_doc_roundtrip, check_io_pattern, codes
from onnx import helper
from qonnx.core.datatype import DataType

import fpgagen
from fpgagen.errors import FpgagenError
from fpgagen.ir.kinds import KINDS, LOWERINGS, AffineView, LoweringContext
from fpgagen.ir.kinds.channel_slice import ChannelSlice

SLICES = [ChannelSlice("slice_mid", ((3, 4, 8),), ((3, 4, 4),), (DataType["UINT4"],), (DataType["UINT4"],), start=2,
                       pe=2),
          ChannelSlice("slice_tail", ((2, 3, 6),), ((2, 3, 5),), (DataType["INT8"],), (DataType["INT8"],), start=1)]


@pytest.mark.parametrize("layer", SLICES, ids=lambda x: x.name)
def test_slice_kernel(layer):
    rng = np.random.default_rng(5)
    layer.validate()
    x = codes(rng, layer.in_dtypes[0], layer.in_shapes[0])
    (ref,) = layer.run([x])
    assert np.array_equal(ref, x[..., layer.start:layer.stop])
    (got,) = KernelBench("fg_slice.h", SLICES, TB_DIR).run(layer.name, [x])
    assert np.array_equal(got, ref)
    check_io_pattern(layer)
    check_doc_roundtrip(layer)
    assert KINDS["ChannelSlice"] is ChannelSlice


def test_slice_lowering():
    consts = {"s": np.array([2]), "e": np.array([-1]), "a": np.array([1]), "one": np.array([1]),
              "two": np.array([2]), "ax2": np.array([2])}
    view = AffineView(np.arange(1, 7) / 8, np.zeros(6), DataType["UINT4"])
    ctx = LoweringContext("sl", consts.get)
    rule = LOWERINGS["Slice"].rule

    def slice_node(*inputs):
        return helper.make_node("Slice", ["x", *inputs], ["y"], name="sl")

    done = rule(slice_node("s", "e", "a", "one"), [view], [(2, 2, 6)], ctx)
    assert (done.layer.start, done.layer.stop) == (2, 5) and done.passthrough == [(0, 2), (0, 3), (0, 4)]
    assert np.array_equal(done.view.scale, view.scale[2:5])
    assert [o["pe"] for o in done.layer.fold_options()] == [1]  # gcd(6, 2, 5) = 1
    for inputs, match in ((("s", "e", "a", "two"), "step 1"), (("s", "e", "ax2"), "axes"), (("s", "nope"), "constant")):
        with pytest.raises(FpgagenError, match=match):
            rule(slice_node(*inputs), [view], [(2, 2, 6)], ctx)
    with pytest.raises(FpgagenError, match="does not divide"):
        SLICES[0].set_folding(pe=4)


class SliceNet(torch.nn.Module):
    """conv -> QuantReLU -> channels 2..5 -> conv -> QuantReLU."""

    input_shape = (1, 3, 6, 6)

    def __init__(self):
        super().__init__()
        self.input_quant = G.QuantIdentity(act_quant=G.PixelQuant)
        self.stem, self.out = G._block(3, 8), G._block(4, 6)

    def forward(self, x):
        return self.out(self.stem(self.input_quant(x))[:, 2:6])


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_slice_net_csim_bitexact(dynamo, tmp_path, quiet):
    model = G.build_net(SliceNet, 4)
    path = fpgagen.export(model, tmp_path / "slice.onnx", dynamo=dynamo)
    acc = fpgagen.build(path, board="pynq_z2", out_dir=tmp_path / "build", log=quiet)
    assert "ChannelSlice" in {lay.kind for lay in acc.net.layers}
    x = nets.net_input(model, 2, shape=(2, *model.input_shape[1:]))
    got = acc.run(x, codes=True)
    (exact,) = G.graph_exact_codes(model, x)
    assert np.array_equal(acc.reference(x, codes=True), exact)
    assert np.array_equal(got, exact), f"C-sim differs in {(got != exact).sum()} of {exact.size} codes"
    assert np.array_equal(got, G.graph_brevitas_codes(model, x)[0])
    assert len(np.unique(exact)) > 2
