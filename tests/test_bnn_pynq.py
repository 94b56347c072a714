"""FINN's example networks from ``brevitas_examples.bnn_pynq`` (CNV, TFC, SFC at 1W1A, 1W2A, 2W2A; random init,
random BatchNorm/TensorNorm statistics), built by ``fpgagen.build`` as they are: the float ``2x - 1`` (and TFC/SFC's
reshape) runs on the host before the input quantizer, BipolarQuant weights/activations go through the exact affine
view (codes {0, 1}; weights -1/+1 in a 2-bit ROM), and TensorNorm runs on the host in float32 after the last layer.

Checked per net, with np.array_equal: C-sim == numpy reference (accumulator codes); the last layer's integer output
== Brevitas replayed in exact arithmetic == Brevitas' float32 forward; and ``acc.run(x)`` (TensorNorm included) ==
the torch model's output, bit for bit. One small net per exporter runs by default; the rest under ``-m slow``.
"""

import nets
import numpy as np
import pytest
import torch
from checks import check_memories_against_report

import fpgagen
from fpgagen import lint

DEFAULT = {("tfc_1w1a", False), ("sfc_1w2a", True), ("tfc_2w2a", False)}
CASES = [pytest.param(name, dynamo, id=f"{name}-{'dynamo' if dynamo else 'legacy'}",
                      marks=() if (name, dynamo) in DEFAULT else pytest.mark.slow)
         for name in nets.BNN_PYNQ for dynamo in (False, True)]


@pytest.mark.parametrize("name,dynamo", CASES)
def test_bnn_pynq_bitexact(name, dynamo, tmp_path, quiet):
    model = nets.bnn_pynq_net(name, seed=sum(map(ord, name)))
    path = fpgagen.export(model, tmp_path / f"{name}.onnx", dynamo=dynamo)
    acc = fpgagen.build(path, out_dir=tmp_path / "build", log=quiet)  # verifies C-sim == reference itself
    assert acc.net.input.pre, "the 2x - 1 pre-processing runs on the host"
    assert [step["op"] for step in acc.net.output.post] == ["Sub", "Div", "Mul", "Add"]  # TensorNorm
    bits = name.split("_")[1]
    mvaus = [lay for lay in acc.net.layers if lay.kind == "MVAU"]
    assert all(lay.weight_dtype.name == "INT2" for lay in mvaus)  # -1/+1 (1W) or -1/0/+1 (2W)
    if bits == "1w1a":  # every layer on bipolar codes {0, 1} is an XNOR-popcount unit, the last one included
        xnors = [lay for lay in acc.net.layers if lay.kind == "XnorMVAU"]
        assert xnors and all(lay.in_dtypes[0].name == "BINARY" for lay in xnors)
        assert all(lay.idt.name != "BINARY" for lay in mvaus)
        assert xnors[-1].bits_acc  # streams the accumulator on the bits, which the host dequantizes (TensorNorm)
        # the XNOR units' arrays in the generated code are what the report prices; the code passes the lint
        _, checked = check_memories_against_report(acc)
        assert checked == len(acc.net.layers)
        assert lint.lint_project(acc.build_dir / "hls", acc.net) == []
    else:
        assert not any(lay.kind == "XnorMVAU" for lay in acc.net.layers)

    x = nets.bnn_pynq_input(model, frames=2, seed=1)
    got = acc.run(x, codes=True)
    assert np.array_equal(got, acc.reference(x, codes=True))
    spec = acc.net.output
    real = got * np.asarray(spec.scale, np.float64) + np.asarray(spec.offset, np.float64)
    assert np.array_equal(real, np.round(real))
    exact, brevitas = nets.bnn_pynq_exact(model, x)
    assert np.array_equal(np.round(real).astype(np.int64), exact)
    assert np.array_equal(exact, brevitas)
    assert len(np.unique(exact)) > 4
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy()
    assert np.array_equal(acc.run(x), y)


def test_greedy_folds_xnor_units(tmp_path):
    """The greedy baseline folds XNOR-popcount units like MVAUs (it asks every matrix unit for its SIMD options)."""
    from fpgagen import fold, frontend, streamline
    from fpgagen.board import load_board

    model = nets.bnn_pynq_net("tfc_1w1a", seed=1)
    net = streamline.lower(frontend.load_qonnx(fpgagen.export(model, tmp_path / "m.onnx")), name="m")
    fold.fold_network(net, load_board("pynq_z2"), optimizer="greedy", target_fps=100_000)
    xnors = [lay for lay in net.layers if lay.kind == "XnorMVAU"]
    assert xnors and all(lay.cycles() <= 1000 for lay in xnors)  # 100 MHz / 100,000 FPS
    assert any(lay.simd > 1 for lay in xnors)
