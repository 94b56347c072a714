"""The Brevitas models users write, on the straight-chain IR: an FC over a still spatial feature map, QuantTensor
outputs, float pre-processing before the input quantizer (host side), a float affine after the last layer (host
side), non-narrow signed weights under negative per-channel scales, and standalone Threshold layers. Bit-exact
means np.array_equal on integer codes: C-sim == numpy reference == Brevitas in exact arithmetic."""

import nets
import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch
from checks import assert_bitexact, build_net
from qonnx.core.onnx_exec import execute_onnx

import fpgagen
from fpgagen.errors import FpgagenError
from fpgagen.frontend import load_qonnx

EXPORTERS = pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])


@EXPORTERS
def test_fc_over_spatial_feature_map_bitexact(dynamo, tmp_path_factory, quiet):
    """Flatten of a 4x4x10 map into QuantLinear(160): the MVAU takes the whole map as one 160-vector (the
    stream's (y, x, c) raster reinterpreted; weights permuted from torch's (c, y, x) flatten order)."""
    model = nets.readme_net(seed=3)
    acc = build_net(model, tmp_path_factory, quiet, "readme", dynamo=dynamo)
    fc = acc.net.layers[-1]
    assert fc.kind == "MVAU" and fc.in_shape == (1, 1, 160)
    producer = [lay for lay in acc.net.layers if lay.kind != "WidthConverter"][-2]
    assert producer.kind == "MaxPool" and producer.out_shape == (4, 4, 10)
    assert_bitexact(model, acc, frames=4)


def test_fc_over_spatial_map_folded_across_pixels(tmp_path, quiet):
    """SIMD 32 makes one FC input word span 3.2 pixels of the 10-channel map; PE 5 and a maxpool PE 2 need
    width converters. Results must not change."""
    model = nets.readme_net(seed=4)
    path = fpgagen.export(model, tmp_path / "m.onnx")
    probe = fpgagen.build(path, out_dir=tmp_path / "probe", verify=False, log=quiet)
    folding = {lay.name: {k: 1 for k in lay.folding() if k != "ifm_word"} for lay in probe.net.layers
               if lay.folding()}
    fc = probe.net.layers[-1].name
    folding[fc].update(pe=5, simd=32, thr_mode="search")  # 255 levels: binary search keeps it small
    folding["maxpool_1"].update(pe=2)
    acc = fpgagen.build(path, out_dir=tmp_path / "b", folding=folding, log=quiet)
    assert (acc.net.layer(fc).simd, acc.net.layer(fc).pe) == (32, 5)
    assert any(lay.kind == "WidthConverter" for lay in acc.net.layers)
    assert_bitexact(model, acc, frames=3)
    acc.verify(bounded_fifos=True)  # every process concurrent on streams bounded to the sized FIFO depths


def test_quant_tensor_output_uses_the_value(tmp_path_factory, quiet):
    model = nets.quant_tensor_net(seed=2)
    d = tmp_path_factory.mktemp("qt")
    path = fpgagen.export(model, d / "qt.onnx", dynamo=False)
    assert len(onnx.load(str(path)).graph.output) == 6  # value, scale, zero point, bit width, signed, training
    acc = fpgagen.build(path, out_dir=d / "build", log=quiet)
    assert acc.net.output.kind == "codes"
    x, _ = assert_bitexact(model, acc)
    if nets.float32_boundary_flips(model, x) == 0:
        with torch.no_grad():
            y = model(torch.from_numpy(x))
        assert np.array_equal(acc.run(x), y.value.numpy())


def _with_runtime_output(path, out_index: int, dst):
    """The same QuantTensor export, but output ``out_index`` computed from the graph input (not a constant)."""
    proto = onnx.load(str(path))
    name = proto.graph.output[out_index].name
    kept = [init for init in proto.graph.initializer if init.name != name]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept)
    proto.graph.node.append(onnx.helper.make_node("ReduceMax", [proto.graph.input[0].name], [name], keepdims=0))
    onnx.save(proto, str(dst))
    return dst


def test_quant_tensor_output_metadata_must_be_constant(tmp_path, quiet):
    path = fpgagen.export(nets.quant_tensor_net(seed=2), tmp_path / "qt.onnx", dynamo=False)
    bad = _with_runtime_output(path, 1, tmp_path / "runtime_scale.onnx")
    with pytest.raises(FpgagenError, match="scale.*not a constant"):
        fpgagen.build(bad, out_dir=tmp_path / "b", log=quiet)


def test_quant_tensor_output_metadata_must_match_its_quantizer(tmp_path, quiet):
    """A constant second output that is not the value's quantizer scale is a second network output."""
    path = fpgagen.export(nets.quant_tensor_net(seed=2), tmp_path / "qt.onnx", dynamo=False)
    proto = onnx.load(str(path))
    scale = next(i for i in proto.graph.initializer if i.name == proto.graph.output[1].name)
    other = onnx.numpy_helper.from_array(2 * onnx.numpy_helper.to_array(scale), "other_scale")
    proto.graph.initializer.append(other)
    proto.graph.output[1].name = "other_scale"
    onnx.save(proto, str(tmp_path / "other.onnx"))
    with pytest.raises(FpgagenError, match="differs from the scale"):
        fpgagen.build(tmp_path / "other.onnx", out_dir=tmp_path / "b", log=quiet)


def test_a_second_real_output_is_a_stream(tmp_path, quiet):
    """A graph output taken inside the network (the first QuantReLU's codes) beside the last layer's: two outputs,
    each bit-exact against Brevitas evaluated exactly (graph_nets' float64 replay of every activation)."""
    import graph_nets as GN
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    model = nets.conv_net(4, 4, seed=1)
    path = fpgagen.export(model, tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    acts = [n for n in proto.graph.node if n.op_type == "Quant"
            and n.input[0] not in {i.name for i in proto.graph.initializer}]
    name = acts[1].output[0]  # acts[0] quantizes the input
    shape = ModelWrapper(proto).transform(InferShapes()).get_tensor_shape(name)
    kept = [vi for vi in proto.graph.value_info if vi.name != name]  # an output is described once, as an output
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(kept)
    proto.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape))
    onnx.save(proto, str(tmp_path / "two.onnx"))
    acc = fpgagen.build(tmp_path / "two.onnx", out_dir=tmp_path / "b", log=quiet)
    assert len(acc.net.outputs) == 2 and acc.net.outputs[1].shape == tuple(shape)
    x = nets.net_input(model, 3, shape=(2, 3, 32, 32))
    got = acc.run(x, codes=True)
    log = GN.graph_exact_codes(model, x, all_layers=True)  # (codes, t, scale) of every activation, call order
    assert np.array_equal(got[0], log[-1][0]) and np.array_equal(got[1], log[1][0])
    assert len(np.unique(got[1])) > 2


def _first_quant_codes_qonnx(path, x):
    """Codes of the first activation Quant as qonnx + onnxruntime compute them in float32, frame by frame."""
    model = load_qonnx(path)
    quant = next(n for n in model.graph.node if n.op_type == "Quant"
                 and model.get_initializer(n.input[0]) is None)
    scale = model.get_initializer(quant.input[1])
    zero = model.get_initializer(quant.input[2])
    codes = []
    for frame in x:
        ctx = execute_onnx(model, {model.graph.input[0].name: frame[None]}, return_full_exec_context=True)
        codes.append(np.round(ctx[quant.output[0]] / scale + zero).astype(np.int64)[0])
    return np.stack(codes)


@EXPORTERS
def test_float_preprocessing_runs_on_the_host_exactly(dynamo, tmp_path_factory, quiet):
    """(x - mean) / std * 1.5 before the input QuantIdentity: the host computes it in float32 in the graph's
    order, so its input codes equal Brevitas' and onnxruntime's, and the outputs are bit-exact."""
    model = nets.normalized_net(seed=5)
    d = tmp_path_factory.mktemp("norm")
    path = fpgagen.export(model, d / "norm.onnx", dynamo=dynamo)
    acc = fpgagen.build(path, out_dir=d / "build", log=quiet)
    assert [step["op"] for step in acc.net.input.pre] == ["Sub", "Div", "Mul"]
    x = np.random.default_rng(1).random((4, 3, 16, 16), dtype=np.float32)  # off-grid floats
    host = acc.quantize_input(x).transpose(0, 3, 1, 2)
    seen = []
    hook = model.body[0].register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        y = model(torch.from_numpy(x))
    hook.remove()
    brevitas = np.round(seen[0].numpy() / float(model.body[0].act_quant.scale())).astype(np.int64)
    assert np.array_equal(host, brevitas)
    assert np.array_equal(host, _first_quant_codes_qonnx(path, x))
    assert len(np.unique(host)) > 50 and host.min() < 0 < host.max()
    with torch.no_grad():
        x_pre = model.pre(torch.from_numpy(x)).numpy()
    exact = nets.exact_codes(model.body, x_pre)
    got = acc.run(x, codes=True)
    assert np.array_equal(acc.reference(x, codes=True), exact)
    assert np.array_equal(got, exact)
    if nets.float32_boundary_flips(model.body, x_pre) == 0:
        assert np.array_equal(acc.run(x), y.numpy())


def test_preprocessing_reloads(tmp_path, quiet):
    """InputSpec.pre survives Network.save/load: the reloaded accelerator computes the same codes."""
    model = nets.normalized_net(seed=6)
    acc = fpgagen.build(fpgagen.export(model, tmp_path / "m.onnx"), out_dir=tmp_path / "b", log=quiet)
    again = fpgagen.load(acc.build_dir, log=quiet)
    x = np.random.default_rng(2).random((2, 3, 16, 16), dtype=np.float32)
    assert again.net.input.pre == acc.net.input.pre
    assert np.array_equal(again.quantize_input(x), acc.quantize_input(x))


def test_float_preprocessing_must_keep_the_batch_axis(tmp_path, quiet):
    class Folded(torch.nn.Module):
        def __init__(self, body):
            super().__init__()
            self.body = body

        def forward(self, x):
            return self.body(x.reshape(1, 3, 16, 16) * 2.0)

    body = nets.normalized_net(seed=5).body
    model = Folded(body).eval()
    path = fpgagen.export(model, tmp_path / "m.onnx", input_shape=(3, 16, 16))
    with pytest.raises(FpgagenError, match="keep the batch axis"):
        fpgagen.build(path, out_dir=tmp_path / "b", log=quiet)


@EXPORTERS
def test_float_affine_after_last_layer_runs_on_the_host(dynamo, tmp_path_factory, quiet):
    """A per-channel float x * w + b after a final QuantConv2d: the accelerator returns the integer accumulators
    (bit-exact), the host applies Mul then Add in float32, and acc.run(x) equals the torch output exactly (the
    conv's float32 output is exact here: power-of-two scales, small integers)."""
    model = nets.float_affine_out_net(seed=7)
    acc = build_net(model, tmp_path_factory, quiet, "affine_out", dynamo=dynamo)
    assert acc.net.output.kind == "accumulators"
    assert [step["op"] for step in acc.net.output.post] == ["Mul", "Add"]
    x = nets.net_input(model, 2, shape=(3, 3, 16, 16))
    exact = nets.exact_codes(model[:-1], x)
    assert np.array_equal(acc.reference(x, codes=True), exact)
    assert np.array_equal(acc.run(x, codes=True), exact)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy()
    assert np.array_equal(acc.run(x), y)
    assert (y < 0).any() and (y > 0).any()
    again = fpgagen.load(acc.build_dir, log=quiet)  # OutputSpec.post survives save/load
    assert np.array_equal(again.run(x), y)


def test_nonnarrow_weights_under_negative_scales_bitexact(tmp_path_factory, quiet):
    """Rows of signed non-narrow INT4 weights ([-8, 7]) under negative BatchNorm gammas are negated: -(-8) = +8
    needs INT5, so that layer's weight type is widened by one bit (and only where it happens)."""
    model = nets.nonnarrow_negative_scale_net(seed=8)
    codes = [m.quant_weight().int().numpy() for m in model if isinstance(m, nets.QuantConv2d)]
    gammas = [m.weight.detach().numpy() for m in model if isinstance(m, torch.nn.BatchNorm2d)]
    assert all((c == -8).any() for c in codes)
    assert all(((c == -8).reshape(len(g), -1).any(axis=1) & (g < 0)).any() for c, g in zip(codes, gammas,
                                                                                           strict=True))
    acc = build_net(model, tmp_path_factory, quiet, "nonnarrow")
    mvaus = [lay for lay in acc.net.layers if lay.kind == "MVAU"]
    for lay in mvaus:
        assert lay.weights.max() == 8 and lay.weight_dtype.name == "INT5"
        dt = lay.weight_dtype
        assert dt.min() <= lay.weights.min() and lay.weights.max() <= dt.max()
    assert_bitexact(model, acc)


def test_standalone_threshold_layers_bitexact(tmp_path_factory, quiet):
    """A QuantIdentity after a MaxPool (other scale, 4 bits signed) and a BatchNorm + QuantReLU after a MaxPool
    cannot be absorbed by an MVAU: two Threshold layers, one of them comparing -x (negative gammas)."""
    model = nets.standalone_threshold_net(seed=9)
    acc = build_net(model, tmp_path_factory, quiet, "thresholds")
    thresholds = [lay for lay in acc.net.layers if lay.kind == "Threshold"]
    assert len(thresholds) == 2
    assert thresholds[0].odt.signed() and not thresholds[0].negate.any()
    assert thresholds[1].negate.any() and not thresholds[1].negate.all()
    assert_bitexact(model, acc, frames=4)


def test_float_affine_after_a_quantized_output(tmp_path_factory, quiet):
    """The same host-side affine after a quantized output: the codes are bit-exact, and brevitas' float32
    dequantization followed by Mul, Add in float32 equals the torch output exactly."""
    model = nets.quant_tensor_net(seed=4)
    model[-1].return_quant_tensor = False
    model.append(nets.ChannelAffine(6, seed=4))
    acc = build_net(model, tmp_path_factory, quiet, "affine_codes")
    assert acc.net.output.kind == "codes" and [s["op"] for s in acc.net.output.post] == ["Mul", "Add"]
    x = nets.net_input(model, 3, shape=(3, 3, 16, 16))
    exact = nets.exact_codes(model[:-1], x)
    assert np.array_equal(acc.run(x, codes=True), exact)
    if nets.float32_boundary_flips(model[:-1], x) == 0:
        with torch.no_grad():
            y = model(torch.from_numpy(x)).numpy()
        assert np.array_equal(acc.run(x), y)
