"""Networks with branches: Brevitas -> QONNX (both exporters) -> the stream graph; integer codes of the numpy
reference == Brevitas evaluated exactly == Brevitas' float32 forward (np.array_equal), and the graph survives
Network.save/load."""

from __future__ import annotations

import copy

import graph_nets as G
import nets
import numpy as np
import pytest
import torch
from checks import check_memories_against_report

import fpgagen
from fpgagen import fifo, fold, frontend, lint, streamline
from fpgagen.accelerator import Accelerator
from fpgagen.ir import Network, out_ports

EXPECTED_KINDS = {"residual": {"StreamFork", "AddStreams"}, "concat": {"StreamFork", "Concat"},
                  "upsample": {"Upsample"}, "pad_pool": {"MaxPool"},
                  "concat_conv": {"StreamFork", "Concat", "Upsample"}, "concat_conv1x1": {"StreamFork", "Concat"},
                  "concat_linear": {"StreamFork", "Concat"}}


def lower_net(name, tmp_path, dynamo, seed=3):
    model = G.graph_net(name, seed=seed)
    path = fpgagen.export(model, tmp_path / f"{name}.onnx", dynamo=dynamo)
    return model, streamline.lower(frontend.load_qonnx(path), name=name)


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
@pytest.mark.parametrize("name", sorted(EXPECTED_KINDS))
def test_graph_reference_bitexact(name, dynamo, tmp_path):
    model, net = lower_net(name, tmp_path, dynamo)
    assert EXPECTED_KINDS[name] <= {lay.kind for lay in net.layers}
    assert net.edges
    net.check_graph()
    x = nets.net_input(model, 1, shape=(3, *model.input_shape[1:]))
    ref = Accelerator(net, tmp_path, {"clock_mhz": 100}).reference(x, codes=True)
    (exact,) = G.graph_exact_codes(model, x)
    assert ref.shape == exact.shape
    assert np.array_equal(ref, exact), f"reference differs in {(ref != exact).sum()} of {exact.size} codes"
    assert np.array_equal(exact, G.graph_brevitas_codes(model, x)[0])
    assert len(np.unique(exact)) > 2
    # the graph round-trips through the build directory's files
    net.save(tmp_path)
    again = Network.load(tmp_path)
    assert [e.__dict__ for e in again.edges] == [e.__dict__ for e in net.edges]
    assert [lay.kind for lay in again.layers] == [lay.kind for lay in net.layers]
    assert np.array_equal(Accelerator(again, tmp_path, {"clock_mhz": 100}).reference(x, codes=True), exact)


def test_fork_gives_each_branch_its_own_quantizer(tmp_path):
    """A tensor of raw accumulators read twice keeps them raw: each branch's quantizer becomes its own layer
    instead of folding into the shared MVAU."""
    model, net = lower_net("residual", tmp_path, dynamo=False)
    fork = next(lay for lay in net.layers if lay.kind == "StreamFork")
    users = [e for e in net.edges if e.src == fork.name]
    assert sorted(e.src_port for e in users) == [0, 1]
    assert {e.dst for e in users} == {"add_0", "conv_1_window"}


def test_a_chain_is_a_graph_whose_edges_join_each_layer_to_the_next(tmp_path):
    """A single-path network is stored like any graph: its edges, each layer feeding the next."""
    model = nets.conv_net(4, 4, seed=1)
    net = streamline.lower(frontend.load_qonnx(fpgagen.export(model, tmp_path / "c.onnx")), name="c")
    names = [lay.name for lay in net.layers]
    assert [(e.src, e.dst) for e in net.edges] == list(zip(["input", *names], [*names, "output"], strict=True))


def test_graph_file_is_checked(tmp_path):
    """A damaged edge list is refused with the build directory's error, not a crash later."""
    _, net = lower_net("upsample", tmp_path, dynamo=False)
    net.edges = net.edges[:-1]  # the output stream is gone
    net.save(tmp_path)
    with pytest.raises(fpgagen.errors.FpgagenError, match="damaged"):
        Network.load(tmp_path)


def build_graph_net(name, tmp_path, quiet, dynamo=False, seed=3, **kwargs):
    model = G.graph_net(name, seed=seed)
    path = fpgagen.export(model, tmp_path / f"{name}.onnx", dynamo=dynamo)
    return model, fpgagen.build(path, board="pynq_z2", out_dir=tmp_path / "build", log=quiet, **kwargs)


@pytest.mark.parametrize("name,dynamo", [("residual", False), ("residual", True), ("concat", False),
                                         ("upsample", False), ("pad_pool", False), ("concat_conv", False),
                                         ("concat_conv1x1", True), ("concat_linear", False)])
def test_graph_csim_bitexact(name, dynamo, tmp_path, quiet):
    """fpgagen build (C-sim == reference checked inside), then C-sim == reference == Brevitas exactly."""
    model, acc = build_graph_net(name, tmp_path, quiet, dynamo)
    x = nets.net_input(model, 2, shape=(2, *model.input_shape[1:]))
    got = acc.run(x, codes=True)
    (exact,) = G.graph_exact_codes(model, x)
    assert np.array_equal(acc.reference(x, codes=True), exact)
    assert np.array_equal(got, exact), f"C-sim differs in {(got != exact).sum()} of {exact.size} codes"
    assert np.array_equal(got, G.graph_brevitas_codes(model, x)[0])
    # the build reads back as the same graph; the generated code passes the lint, and every layer's arrays in
    # the code price to what the report charges it
    assert fpgagen.accelerator.load(tmp_path / "build", log=quiet).net.edges == acc.net.edges
    assert lint.lint_project(acc.build_dir / "hls", acc.net) == []
    doc, checked = check_memories_against_report(acc)
    assert checked == len(acc.net.layers)
    # throughput is the slowest node; resources are every node plus every edge's FIFO, within the budget
    assert doc["fps_estimated"] == 100e6 / max(lay.cycles() for lay in acc.net.layers)
    assert doc["fits"]
    fifos, shell = fifo.fifos_resources(acc.net), acc.board.get("shell", {}).get("LUT", 0)
    assert doc["budget"]["LUT"]["used"] == sum(lay.resources()["LUT"] for lay in acc.net.layers) + fifos["LUT"] + shell


def test_reconvergent_fifo_sized_completes_too_small_deadlocks(tmp_path, quiet):
    """fork -> conv -> add with the skip: the skip's FIFO must hold the conv branch's latency. At the depths
    fifo.py sizes, the bounded-FIFO C-simulation (every process a thread, every stream bounded) completes and is
    bit-exact; with the skip's FIFO at 2 words every process blocks and the simulation reports the deadlock."""
    from fpgagen import codegen
    from fpgagen.accelerator import Accelerator

    model, acc = build_graph_net("residual", tmp_path, quiet, verify=False)
    net = acc.net
    fork = next(lay for lay in net.layers if lay.kind == "StreamFork")
    skip = next(e for e in net.edges if e.src == fork.name and e.dst.startswith("add"))
    assert skip.depth > 16  # a whole row of the conv branch's latency, at least
    acc.verify(frames=2, bounded_fifos=True)
    x = nets.net_input(model, 2, shape=(2, *model.input_shape[1:]))
    assert np.array_equal(acc.run(x, codes=True), G.graph_exact_codes(model, x)[0])
    # the schedule the depths come from is a valid bounded execution: every pop after its push, every push into
    # a free slot
    fifo.check_schedule(net)
    skip.depth, skip.storage = 2, "srl"
    codegen.generate(net, tmp_path / "small" / "hls", acc.board)
    small = Accelerator(net, tmp_path / "small", acc.board, log=quiet)
    with pytest.raises(Exception, match="deadlock"):
        small.verify(frames=1, bounded_fifos=True)


@pytest.mark.parametrize("name", ["concat_conv", "concat_conv1x1", "concat_linear"])
def test_concat_into_a_linear_layer_scales_each_channel_run(name, tmp_path):
    """A Concat of two branches at different scales read directly by a conv / fully connected layer: the branches'
    scales really differ (and not by a power of two), so the MVAU carries integer multipliers k, one per channel
    run, SIMD tiles never straddle a run, and its accumulator grows by their bits."""
    model, net = lower_net(name, tmp_path, dynamo=False)
    quant = G._act_params(model, nets.net_input(model, 1))[1]  # act proxy -> (scale, zero point, lo, hi)
    sa, sb = float(quant[model.ra.act_quant][0]), float(quant[model.rb.act_quant][0])
    assert sa != sb and np.log2(sa / sb) != np.round(np.log2(sa / sb))
    mvau = next(lay for lay in net.layers if getattr(lay, "in_scale", None) is not None)
    assert len(set(mvau.in_scale.tolist())) == 2 and np.gcd.reduce(mvau.in_scale) == 1
    ka, kb = sorted(set(mvau.in_scale.tolist()), key=lambda k: mvau.in_scale.tolist().index(k))
    assert np.isclose(ka / kb, sa / sb, rtol=1e-12)  # k_c = alpha_c / g
    assert all(np.unique(mvau.in_scale.reshape(-1, s), axis=1).shape[1] == 1 for s in mvau.simd_options())
    assert max(mvau.simd_options()) == 2  # gcd of the runs (4 and 6 channels)
    assert mvau.acc_dtype.bitwidth() > mvau.scale_bits


@pytest.mark.parametrize("shrink,message", [(2.0**-36, "accumulator"), (2.0**-48, "no integer grid")])
def test_concat_scales_too_far_apart_are_refused(shrink, message, tmp_path):
    """One branch's scale made 2^36 (2^48) times smaller: the exact common grid needs an accumulator wider than
    64 bits (multipliers wider than 62 bits), and the lowering refuses with what to do instead."""

    model = G.graph_net("concat_conv", seed=3)
    with torch.no_grad():
        for n, p in model.rb.named_parameters():
            if n.endswith("scaling_impl.value"):
                p.mul_(shrink)
    path = fpgagen.export(model, tmp_path / "far.onnx")
    with pytest.raises(fpgagen.errors.FpgagenError, match=message) as err:
        streamline.lower(frontend.load_qonnx(path), name="far")
    assert "(Conv)" in str(err.value) and "add a QuantIdentity after the Concat" in str(err.value)


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_per_channel_activation_scales_before_a_conv(dynamo, tmp_path, quiet):
    """A QuantReLU with one scale per channel feeding a conv: 8 runs of one channel each (SIMD 1 only), exact
    integer multipliers; the reference (both exporters) and the C-sim equal the exact replay and Brevitas."""
    model, net = lower_net("perchannel_act", tmp_path, dynamo)
    mvau = next(lay for lay in net.layers if getattr(lay, "in_scale", None) is not None)
    assert len(set(mvau.in_scale[:8].tolist())) == 8 and mvau.simd_options() == [1]
    x = nets.net_input(model, 1, shape=(2, *model.input_shape[1:]))
    (exact,) = G.graph_exact_codes(model, x)
    assert np.array_equal(Accelerator(net, tmp_path, {"clock_mhz": 100}).reference(x, codes=True), exact)
    assert np.array_equal(exact, G.graph_brevitas_codes(model, x)[0]) and len(np.unique(exact)) > 2
    if not dynamo:
        _, acc = build_graph_net("perchannel_act", tmp_path, quiet)
        assert np.array_equal(acc.run(x, codes=True), exact)
        assert lint.lint_project(acc.build_dir / "hls", acc.net) == []
        assert check_memories_against_report(acc)[1] == len(acc.net.layers)


def test_folding_file_on_a_graph(tmp_path, quiet):
    """A graph takes a user's folding file (the folding.json a build wrote reproduces its folding; every stream's
    FIFO is sized again, but for a layer whose entry sets ``fifo_depth``: its output streams keep that depth)."""
    import json

    model, first = build_graph_net("residual", tmp_path / "a", quiet, verify=False)
    written = json.loads((first.build_dir / "folding.json").read_text())
    path = tmp_path / "a" / "residual.onnx"
    again = fpgagen.build(path, board="pynq_z2", out_dir=tmp_path / "b", folding=written, log=quiet)
    assert [(lay.name, lay.folding(), lay.styles()) for lay in again.net.layers] == \
        [(lay.name, lay.folding(), lay.styles()) for lay in first.net.layers]
    assert [e.depth for e in again.net.edges] == [e.depth for e in first.net.edges]
    x = nets.net_input(model, 2, shape=(2, *model.input_shape[1:]))
    assert np.array_equal(again.run(x, codes=True), G.graph_exact_codes(model, x)[0])
    name = next(iter(written["layers"]))
    written["layers"][name]["fifo_depth"] = 64
    net = copy.deepcopy(first.net)
    fold.fold_network(net, first.board, folding=written)
    assert [e.depth for e in net.edges if e.src == name] == [64] * len(out_ports(net.layer(name)))
    assert [e.depth for e in net.edges if e.src != name] == [e.depth for e in first.net.edges if e.src != name]
