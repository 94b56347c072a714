"""The test networks and LPYOLO export to QONNX whose execution gives Brevitas' exact integer codes."""

import nets
import numpy as np
import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.cleanup import cleanup_model

from fpgagen.brevitas_export import export
from fpgagen.models import lpyolo, output_codes

BUILDERS = {
    "conv_w4a4": lambda: nets.conv_net(4, 4),
    "conv_w2a2": lambda: nets.conv_net(2, 2, seed=1),
    "conv_w8a8": lambda: nets.conv_net(8, 8, seed=2),
    "pow2": nets.pow2_net,
    "fc": nets.fc_net,
    "conv1x1_stride2": nets.conv1x1_stride2_net,
    "acc_output": nets.acc_output_net,
    "float_layer": nets.float_layer_net,
    "unsupported_op": nets.unsupported_op_net,
}


def _load(path) -> ModelWrapper:
    return cleanup_model(ModelWrapper(str(path))).transform(InferShapes())


def _onnx_codes(mw, model, x) -> np.ndarray:
    """Execute the QONNX graph; turn its float output into codes with the graph's own output Quant
    node (or, for an accumulator output, with Brevitas' s_in*s_w)."""
    out_name = mw.graph.output[0].name
    y = execute_onnx(mw, {mw.graph.input[0].name: x})[out_name]
    last = mw.find_producer(out_name)
    if last.op_type == "Quant":
        return nets.to_codes(y, mw.get_initializer(last.input[1]), mw.get_initializer(last.input[2]))
    return nets.to_codes(y, *nets.output_quant(model, x))


def _check_exact(model, path, seeds=(0, 1), shape=None):
    mw = _load(path)
    for seed in seeds:
        x = nets.net_input(model, seed, shape)
        ref = nets.brevitas_codes(model, x)
        got = _onnx_codes(mw, model, x)
        assert got.shape == ref.shape and np.array_equal(got, ref), f"seed {seed}: codes differ"
    return mw


@pytest.mark.parametrize("name", BUILDERS)
def test_legacy_export_exact(name, tmp_path):
    model = BUILDERS[name]()
    _check_exact(model, export(model, tmp_path / "sub" / f"{name}.onnx"))


@pytest.mark.parametrize("name", ["conv_w4a4", "fc"])
def test_dynamo_export_exact(name, tmp_path):
    model = BUILDERS[name]()
    mw = _check_exact(model, export(model, tmp_path / f"{name}.onnx", dynamo=True))
    assert [i.name for i in mw.graph.input] == ["global_in"]  # weights are no graph inputs after cleanup


def test_builders_are_deterministic():
    x = nets.net_input(nets.conv_net(4, 4), 3)
    a, b, c = (nets.brevitas_codes(nets.conv_net(4, 4, seed=s), x) for s in (0, 0, 5))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_random_batchnorm_has_negative_gammas():
    bns = [m for m in nets.conv_net(4, 4).modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all((bn.weight < 0).any() and (bn.weight > 0).any() for bn in bns)


def test_pow2_net_has_many_ties():
    model = nets.pow2_net()
    assert nets.count_ties(model, torch.from_numpy(nets.net_input(model, 0))) >= 100


def test_fixture_nets_export_what_they_should(tmp_path):
    ops = {n.op_type for n in _load(export(nets.unsupported_op_net(), tmp_path / "u.onnx")).graph.node}
    assert "Sigmoid" in ops
    mw = _load(export(nets.float_layer_net(), tmp_path / "f.onnx"))
    conv = next(n for n in mw.graph.node if n.op_type == "Conv")
    assert mw.get_initializer(conv.input[1]) is not None  # float weights, no Quant in front


@pytest.mark.parametrize("name", BUILDERS)
def test_exact_codes_equal_brevitas_up_to_float32_boundaries(name):
    model = BUILDERS[name]()
    for seed in range(3):
        x = nets.net_input(model, seed, (2, *model.input_shape[1:]))
        if nets.float32_boundary_flips(model, x) == 0:
            assert np.array_equal(nets.exact_codes(model, x), nets.brevitas_codes(model, x))


def test_float32_boundary_case_is_explained():
    """A known case where Brevitas' float32 forward and exact arithmetic disagree (two values of
    layer 2 at y/s = 0.50000024 in float32, 0.49999995 exactly): 76 output codes differ."""
    model = nets.conv_net(4, 4, seed=1)
    x = nets.net_input(model, 5, (2, 3, 32, 32))
    assert nets.float32_boundary_flips(model, x) == 2
    assert (nets.exact_codes(model, x) != nets.brevitas_codes(model, x)).sum() == 76


def test_export_needs_input_shape(tmp_path):
    with pytest.raises(ValueError, match="input shape"):
        export(torch.nn.Sequential(torch.nn.Identity()), tmp_path / "x.onnx")


def test_lpyolo_w4a4_exact_at_64(tmp_path):
    shape = (1, 3, 64, 64)
    model = nets.randomize_bn(lpyolo(weight_bits=4, act_bits=4), seed=0, out_std=0.5, shape=shape)
    mw = _check_exact(model, export(model, tmp_path / "lpyolo.onnx", input_shape=shape), shape=shape)
    x = nets.net_input(model, 0, shape)
    assert np.array_equal(output_codes(model, torch.from_numpy(x)).numpy(), nets.brevitas_codes(model, x))
    # Input code == uint8 pixel, in Brevitas and in the exported Quant node (scale float32(1/255), zp 0).
    pixels = np.round(x.astype(np.float64) * 255).astype(np.int64)
    assert np.array_equal(nets.brevitas_codes(model[:1], x), pixels)
    q = mw.find_consumer(mw.graph.input[0].name)
    scale, zp, bits = (mw.get_initializer(i) for i in q.input[1:])
    assert q.op_type == "Quant" and scale == np.float32(1 / 255) and zp == 0 and bits == 8
    assert np.array_equal(np.round(x / scale + zp).astype(np.int64), pixels)


def test_lpyolo_416_output_shape():
    model = lpyolo()
    assert model.input_shape == (1, 3, 416, 416)
    with torch.no_grad():
        assert model(torch.zeros(model.input_shape)).shape == (1, 18, 13, 13)
