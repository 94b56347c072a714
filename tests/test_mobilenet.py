"""Depthwise convolution and global average pooling in whole Brevitas networks (tests/mobilenet_nets.py): the
small MobileNet built for pynq_z2 with the integer-program folder, its C-simulation equal to Brevitas evaluated
exactly (float64) and to Brevitas' float32 forward (np.array_equal on integer codes), the generated code lint-clean
and its arrays priced as the report charges them; the corner nets' numpy reference under both exporters."""

from __future__ import annotations

import graph_nets as G
import mobilenet_nets as M
import nets
import numpy as np
import pytest
from checks import check_memories_against_report

import fpgagen
from fpgagen import fifo, frontend, lint, streamline
from fpgagen.accelerator import Accelerator
from fpgagen.ir.network import layer_to_doc


def check_csim(model, acc, frames=2):
    x = nets.net_input(model, 2, shape=(frames, *model.input_shape[1:]))
    got = acc.run(x, codes=True)
    (exact,) = G.graph_exact_codes(model, x)
    assert np.array_equal(acc.reference(x, codes=True), exact)
    assert np.array_equal(got, exact), f"C-sim differs in {(got != exact).sum()} of {exact.size} codes"
    assert np.array_equal(got, G.graph_brevitas_codes(model, x)[0])
    assert len(np.unique(exact)) > 2
    return x, exact


def test_mobilenet_folds_and_is_bitexact(tmp_path, quiet):
    """fpgagen build (ILP folding on pynq_z2, C-sim == reference checked inside), then C-sim == exact Brevitas;
    the lint and the memories-from-code check; throughput is the slowest node's, within the budget."""
    model = M.mobilenet_net("mobilenet", seed=3)
    path = fpgagen.export(model, tmp_path / "mobilenet.onnx")
    acc = fpgagen.build(path, board="pynq_z2", out_dir=tmp_path / "build", log=quiet)
    kinds = [lay.kind for lay in acc.net.layers]
    assert kinds.count("VVU") == 4 and kinds.count("GlobalAveragePool") == 1
    assert {lay.name for lay in acc.net.layers if lay.kind == "SlidingWindow"} >= \
        {f"{lay.name}_window" for lay in acc.net.layers if lay.kind == "VVU"}  # every 3x3 depthwise is windowed
    pool = next(lay for lay in acc.net.layers if lay.kind == "GlobalAveragePool")
    assert pool.requantizes and pool.in_shapes[0] == (4, 4, 32)  # the QuantIdentity after it is folded in
    check_csim(model, acc)
    assert lint.lint_project(acc.build_dir / "hls", acc.net) == []
    doc, checked = check_memories_against_report(acc)
    assert checked == len(acc.net.layers)
    assert doc["fits"] and doc["fps_estimated"] == 100e6 / max(lay.cycles() for lay in acc.net.layers)
    fifos, shell = fifo.fifos_resources(acc.net), acc.board.get("shell", {}).get("LUT", 0)
    assert doc["budget"]["LUT"]["used"] == sum(lay.resources()["LUT"] for lay in acc.net.layers) + fifos["LUT"] + shell
    # the optimizer parallelised the depthwise units beyond one channel and one tap per cycle, and the build reads
    # back as the same network
    assert any(lay.pe * lay.simd > 1 for lay in acc.net.layers if lay.kind == "VVU")
    again = fpgagen.accelerator.load(tmp_path / "build", log=quiet)
    (docs, arrays), (docs_again, arrays_again) = new_kind_docs(acc.net), new_kind_docs(again.net)
    assert docs == docs_again and arrays.keys() == arrays_again.keys()
    assert all(np.array_equal(arrays[k], arrays_again[k]) for k in arrays)


def new_kind_docs(net):
    """The network file's view of the VVU and GlobalAveragePool layers: their documents and arrays."""
    arrays = {}
    docs = [layer_to_doc(lay, f"layer{i}", arrays) for i, lay in enumerate(net.layers)
            if lay.kind in ("VVU", "GlobalAveragePool")]
    return docs, arrays


@pytest.mark.parametrize("name,dynamo", [("depthwise_corners", True), ("mean", False),
                                         pytest.param("depthwise_corners", False, marks=pytest.mark.slow),
                                         pytest.param("mean", True, marks=pytest.mark.slow)])
def test_corner_nets_reference_bitexact(name, dynamo, tmp_path):
    """5x5 stride-2 and 1x1 depthwise convs, a 12-pixel average, ReduceMean: each exporter lowers them to the
    VVU and pool kinds, and the numpy reference equals Brevitas exactly (the MobileNet covers the legacy exporter
    in C-sim; the slow variants do the rest)."""
    model = M.mobilenet_net(name, seed=3)
    path = fpgagen.export(model, tmp_path / f"{name}.onnx", dynamo=dynamo)
    net = streamline.lower(frontend.load_qonnx(path), name=name)
    assert {"VVU", "GlobalAveragePool"} <= {lay.kind for lay in net.layers}
    x = nets.net_input(model, 1, shape=(3, *model.input_shape[1:]))
    (exact,) = G.graph_exact_codes(model, x)
    assert np.array_equal(Accelerator(net, tmp_path, {"clock_mhz": 100}).reference(x, codes=True), exact)
    assert np.array_equal(exact, G.graph_brevitas_codes(model, x)[0]) and len(np.unique(exact)) > 2


@pytest.mark.slow
@pytest.mark.parametrize("name,dynamo", [("mobilenet", True), ("depthwise_corners", False), ("mean", True)])
def test_nets_csim_bitexact_bounded_fifos(name, dynamo, tmp_path, quiet):
    """The other exporter and the corner nets through C-sim; the FIFO depths sized from the VVU's and the pool's
    stream patterns let the bounded-FIFO C-simulation (every process a thread) complete."""
    model = M.mobilenet_net(name, seed=5)
    path = fpgagen.export(model, tmp_path / f"{name}.onnx", dynamo=dynamo)
    acc = fpgagen.build(path, board="pynq_z2", out_dir=tmp_path / "build", log=quiet)
    check_csim(model, acc)
    acc.verify(frames=2, bounded_fifos=True)
    assert lint.lint_project(acc.build_dir / "hls", acc.net) == []
    assert check_memories_against_report(acc)[1] == len(acc.net.layers)
