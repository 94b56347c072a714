"""FIFO sizing: the depths from the stream schedule give full throughput in a cycle-level bounded-FIFO run, too
small ones stall, none deadlocks; and (with the templates' bounded streams) the C-simulation passes with them."""

import nets
import numpy as np
import pytest

import fpgagen
from fpgagen import fifo, fold
from fpgagen.ir import MVAU, InputSpec, MaxPool, Network, OutputSpec, SlidingWindow


def _mvau(name, shape, mh, seed):
    rng = np.random.default_rng(seed)
    return MVAU(name, shape, (*shape[:2], mh), "UINT2", "UINT2", weights=rng.integers(-8, 8, (mh, shape[2])),
                thresholds=np.sort(rng.integers(-40, 40, (mh, 3)), axis=1), weight_dtype="INT4", acc_dtype="INT10")


def bursty_net() -> Network:
    """Windows, neuron-folded MVAUs (bursty reads), a max pool and width converters: every pattern the kernels
    have, with rates that differ along the chain."""
    layers = [SlidingWindow("c0_window", (10, 10, 4), (10, 10, 36), "UINT2", "UINT2", pads=(1, 1, 1, 1), simd=4),
              _mvau("c0", (10, 10, 36), 8, 0), MaxPool("pool", (10, 10, 8), (5, 5, 8), "UINT2", "UINT2", pe=2),
              SlidingWindow("c1_window", (5, 5, 8), (5, 5, 72), "UINT2", "UINT2", pads=(1, 1, 1, 1), simd=1),
              _mvau("c1", (5, 5, 72), 6, 1)]
    layers[1].pe, layers[1].simd = 2, 4  # NF = 4: reads in bursts of SF words, one in four pixel slots
    # c1_window (SIMD 1) reads a row's input in a burst at the start of each output row, then only emits
    layers[4].pe, layers[4].simd = 3, 24
    net = Network("bursty", InputSpec((1, 4, 10, 10), np.ones(1), np.zeros(1), 0, 3, "UINT2"),
                  OutputSpec("codes", (1, 6, 5, 5), np.ones(1), np.zeros(1), "UINT2"), layers)
    fold.link_streams(net)
    return net


def test_patterns_match_the_cycle_models():
    net = bursty_net()
    pats = fifo.stream_patterns(net, frames=1)
    for layer in net.layers:
        assert len(pats[layer.name][0][0]) == layer.cycles()
    assert any(lay.kind == "WidthConverter" for lay in net.layers)


def test_sized_fifos_reach_the_bottleneck_rate_in_a_bounded_run():
    net = bursty_net()
    fifo.size_fifos(net)
    period = net.bottleneck().cycles()
    assert fifo.check_schedule(net) == period
    run = fifo.simulate(net, frames=4)
    assert run["period"] == period
    depths = [e.depth for e in net.stream_edges()]
    assert all(peak <= depth for peak, depth in zip(run["peak"], depths, strict=True))


def test_too_shallow_fifos_stall_but_never_deadlock():
    net = bursty_net()
    fifo.size_fifos(net)
    period = net.bottleneck().cycles()
    default = fifo.simulate(net, frames=4, depths=[2] * len(net.edges))
    assert default["period"] > period  # HLS's default depth 2 stalls the bottleneck here
    for depth in (1, 2):  # a chain cannot deadlock: every frame comes out, whatever the depths
        assert len(fifo.simulate(net, frames=4, depths=[depth] * len(net.edges))["frame_done"]) == 4


def test_optimizer_build_sets_fifo_depths(tmp_path, quiet):
    path = fpgagen.export(nets.conv_net(4, 4, seed=3), tmp_path / "m.onnx")
    acc = fpgagen.build(path, out_dir=tmp_path / "b", verify=False, log=quiet, ceilings={"LUT": 0.2})
    assert fifo.check_schedule(acc.net) == acc.net.bottleneck().cycles()
    top = (acc.hls_dir / "top.cpp").read_text()
    for e in acc.net.edges[1:]:
        assert f"variable={e.src}_out depth={e.depth}" in top
    run = fifo.simulate(acc.net, frames=3)
    assert run["period"] == acc.net.bottleneck().cycles()


def test_bounded_fifo_csim_passes_with_sized_depths(tmp_path, quiet):
    """The C-simulation with every process on its own thread and every stream bounded to the depth fifo.py chose
    still equals the reference and Brevitas (no deadlock, no lost word), on a folding with deep FIFOs."""
    model = nets.conv_net(4, 4, seed=5)
    path = fpgagen.export(model, tmp_path / "m.onnx")
    acc = fpgagen.build(path, out_dir=tmp_path / "b", verify=False, log=quiet, ceilings={"LUT": 0.12})
    assert max(e.depth for e in acc.net.edges) > 2
    acc.verify(frames=2, bounded_fifos=True)
    x = nets.net_input(model, 2, shape=(2, 3, 32, 32))
    assert np.array_equal(acc.run(x, codes=True), nets.exact_codes(model, x))


@pytest.mark.slow
def test_bounded_fifo_csim_at_depth_one_completes_and_the_model_says_it_stalls(tmp_path, quiet):
    """Every stream bounded to ONE word: fifo.py's proof says a chain cannot deadlock at any depth >= 1, so the
    bounded C-simulation (every process on its own thread, blocking on full and empty streams) still completes
    and stays bit-exact; the cycle-level model says such depths cost throughput, and the sized ones do not."""
    from fpgagen import codegen
    from fpgagen.accelerator import Accelerator

    model = nets.conv_net(4, 4, seed=5)
    acc = fpgagen.build(fpgagen.export(model, tmp_path / "m.onnx"), out_dir=tmp_path / "b", verify=False,
                        log=quiet, ceilings={"LUT": 0.12})
    sized = fifo.simulate(acc.net, frames=3)
    assert sized["period"] == acc.net.bottleneck().cycles()
    starved = fifo.simulate(acc.net, frames=3, depths=[1] * len(acc.net.edges))
    assert len(starved["frame_done"]) == 3 and starved["period"] > sized["period"]
    for e in acc.net.edges:
        e.depth, e.storage = 1, "srl"
    codegen.generate(acc.net, tmp_path / "small" / "hls", acc.board)
    assert "depth=1\n" in (tmp_path / "small" / "hls" / "top.cpp").read_text()
    small = Accelerator(acc.net, tmp_path / "small", acc.board, log=quiet)
    small.verify(frames=1, bounded_fifos=True)


def test_optimizer_says_why_it_plans_again(monkeypatch):
    """When the sized FIFOs push the planned design over the budget, the log says so before the second, slower
    design (LPYOLO: '385.2 FPS' then '355.6 FPS' with no word on why)."""
    from fpgagen import optimize
    from fpgagen.board import load_board
    from fpgagen.budget import caps_of

    board = load_board("pynq_z2")
    caps, plans, calls = caps_of(board), [], []
    real_optimize, real_size = optimize.optimize, fifo.size_fifos

    def recording(*args, **kwargs):
        plans.append(real_optimize(*args, **kwargs))
        return plans[-1]

    def first_too_big(net, **kwargs):
        got = real_size(net, **kwargs)
        calls.append(1)
        if len(calls) == 1:  # FIFOs that take the LUTs the plan left free, and one more
            got = {**got, "LUT": got["LUT"] + int(caps["LUT"] - plans[-1].totals["LUT"]) + 1}
        return got

    monkeypatch.setattr(optimize, "optimize", recording)
    monkeypatch.setattr(fifo, "size_fifos", first_too_big)
    lines = []
    fold.fold_network(bursty_net(), board, log=lines.append)
    assert len(plans) == 2
    why = [line for line in lines if "does not fit once its FIFOs are sized" in line]
    assert len(why) == 1 and "LUT" in why[0] and "plans again with that reserved" in why[0], lines
    assert lines.index(why[0]) == 1  # between the first design's line and the second's
