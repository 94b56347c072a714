"""The folding optimizer: optimal under the cost model (checked against brute force), its errors, and the cost
model's floor (FINN-R's formulas)."""

import copy
import itertools
import math

import numpy as np
import pytest
from qonnx.core.datatype import DataType

from fpgagen import fifo, fold, optimize
from fpgagen.errors import FpgagenError
from fpgagen.ir import (
    MVAU,
    Edge,
    InputSpec,
    MaxPool,
    Network,
    OutputSpec,
    SlidingWindow,
    WidthConverter,
    in_ports,
    out_ports,
)
from fpgagen.ir.kinds import Concat, StreamFork
from fpgagen.ir.layers import RESOURCES, add_resources, bram18


def tiny_board(**caps) -> dict:
    res = {"LUT": 4000, "FF": 100000, "BRAM18": 8, "DSP": 20, "LUTRAM": 2000, **caps}
    return {"name": "tiny", "clock_mhz": 100, "resources": res, "ceilings": dict.fromkeys(RESOURCES, 1.0)}


def _mvau(name, shape, mh, seed, nt=3, wbits=4):
    rng = np.random.default_rng(seed)
    mw = shape[2]
    weights = rng.integers(-(2 ** (wbits - 1)), 2 ** (wbits - 1), (mh, mw))
    thresholds = np.sort(rng.integers(-60, 60, (mh, nt)), axis=1)
    return MVAU(name, shape, (*shape[:2], mh), "UINT2", "UINT2", weights=weights, thresholds=thresholds,
                weight_dtype=f"INT{wbits}", acc_dtype="INT10")


def _net(layers) -> Network:
    return Network("tiny", InputSpec((1, 2, 6, 6), np.ones(1), np.zeros(1), 0, 3, "UINT2"),
                   OutputSpec("codes", (1, 4, 3, 3), np.ones(1), np.zeros(1), "UINT2"), layers)


def window_net() -> Network:
    """SlidingWindow -> MVAU -> MaxPool: window SIMD options, converters both sides, every style."""
    win = SlidingWindow("conv_window", (6, 6, 2), (6, 6, 18), "UINT2", "UINT2", kernel=(3, 3), pads=(1, 1, 1, 1))
    return _net([win, _mvau("conv", (6, 6, 18), 4, 0), MaxPool("pool", (6, 6, 4), (3, 3, 4), "UINT2", "UINT2")])


def mvau_chain() -> Network:
    """MVAU -> MVAU: the consumer's SIMD against the producer's PE (width converters or not)."""
    return _net([_mvau("fc_0", (4, 4, 6), 4, 1), _mvau("fc_1", (4, 4, 4), 6, 2)])


def brute_force(net: Network, board: dict, t_max: float | None = None):
    """Every combination of every layer's options: the least bottleneck cycles, then the least cost; or, with
    ``t_max``, the least cost within t_max cycles."""
    caps = optimize.caps_of(board)
    options = []
    for i, lay in enumerate(net.layers):
        opts = lay.fold_options()
        if isinstance(lay, SlidingWindow) and i == 0:
            opts = [{**o, "ifm_word": lay.channels} for o in opts]
        if caps["DSP"] < 1:
            opts = [o for o in opts if not o.get("dsp_pe")]
        probes = [optimize._probe(lay, o) for o in opts]
        options.append([(p, add_resources(p.resources(), optimize.base_fifo(p)), p.cycles()) for p in probes])
    best = None
    for combo in itertools.product(*options):
        res = add_resources(*(c[1] for c in combo))
        cycles = max(c[2] for c in combo)
        for (prev, _, _), (nxt, _, _) in zip(combo, combo[1:], strict=False):
            if prev.out_word != nxt.in_word and not isinstance(nxt, SlidingWindow):
                w = optimize.converter(prev, prev.out_word, nxt.in_word)
                res = add_resources(res, w.resources(), optimize.base_fifo(w))
                cycles = max(cycles, w.cycles())
        if cycles > (t_max or math.inf) or any(res[r] > caps[r] for r in RESOURCES):
            continue
        key = (0 if t_max else cycles, _cost(res, caps))
        if best is None or key < best[0]:
            best = (key, combo)
    return best


def _totals(layers, streams, attrs):
    return add_resources(*(r for _, r in optimize.plan_parts(layers, streams, attrs)))


def _cost(res, caps):
    return sum(w * res[r] / max(caps[r], 1.0) for r, w in optimize.OBJECTIVE_WEIGHTS.items())


BUDGETS = [{}, {"LUT": 2600}, {"LUT": 2600, "DSP": 0}, {"LUT": 3000, "BRAM18": 0, "DSP": 6}, {"LUT": 1800}]


@pytest.mark.parametrize("make", [window_net, mvau_chain], ids=["window", "chain"])
@pytest.mark.parametrize("caps", BUDGETS, ids=[str(b) for b in BUDGETS])
def test_optimizer_matches_brute_force(make, caps):
    net, board = make(), tiny_board(**caps)
    (cycles, cost), _ = brute_force(net, board)
    plan = optimize.optimize(net, board, resource_gap=0.0)
    assert plan.cycles == cycles
    assert _cost(plan.totals, optimize.caps_of(board)) == pytest.approx(cost, rel=1e-9, abs=1e-12)
    # by default: as fast, and the resources within the gap HiGHS proved (at most RESOURCE_GAP)
    default = optimize.optimize(make(), board)
    assert default.cycles == cycles and default.optimal and default.gap <= optimize.RESOURCE_GAP
    assert _cost(default.totals, optimize.caps_of(board)) <= cost * (1 + optimize.RESOURCE_GAP) + 1e-12
    # the plan's own accounting equals the layers' models once applied (the style groups add up exactly)
    fold.apply_plan(net, plan)
    assert net.bottleneck().cycles() == cycles
    assert add_resources(*(lay.resources() for lay in net.layers),
                         *(optimize.base_fifo(lay) for lay in net.layers)) == plan.totals


@pytest.mark.parametrize("make", [window_net, mvau_chain], ids=["window", "chain"])
@pytest.mark.parametrize("caps", BUDGETS, ids=[str(b) for b in BUDGETS])
def test_pruning_cores_that_cannot_fit_keeps_the_optimum(make, caps):
    """``_Program.possible`` leaves out the cores no solution can hold: at every bound, the least cost is the
    same as over every column within the bound, and it does leave some out under a budget without block RAM."""
    net, board = make(), tiny_board(**caps)
    layers, streams = optimize.nodes_and_streams(net)
    caps_ = optimize.caps_of(board)
    host_fed = {s.dst for s in streams if s.src == optimize.HOST}
    cores = [optimize.layer_cores(lay, i in host_fed, caps_["DSP"] >= 1) for i, lay in enumerate(layers)]
    prog = optimize._Program(layers, streams, cores, caps_)
    everything = optimize._Program(layers, streams, cores, caps_)
    everything.possible = lambda t, reserve: everything.cycles <= t
    pruned = 0
    for t in prog.candidates(0):
        keep = prog.possible(t, {})
        pruned += 0 if keep is None else int(np.count_nonzero((prog.cycles <= t) & ~keep))
        mine, _ = prog.solve(t, {}, "optimal", 60.0)
        full, _ = everything.solve(t, {}, "optimal", 60.0)
        assert (mine is None) == (full is None), t
        if mine is not None:
            assert _cost(_totals(layers, streams, mine), caps_) == pytest.approx(
                _cost(_totals(layers, streams, full), caps_), rel=1e-9, abs=1e-12), t
    if caps.get("BRAM18") == 0:  # the cores that need block RAM or more DSPs than there are cannot be held
        assert pruned > 0


@pytest.mark.parametrize("make", [window_net, mvau_chain], ids=["window", "chain"])
def test_target_fps_is_the_cheapest_design_that_reaches_it(make):
    net, board = make(), tiny_board(LUT=3000)
    fastest = brute_force(net, board)[0][0]
    target_cycles = 3 * fastest
    (cycles, cost), _ = brute_force(net, board, t_max=target_cycles)
    plan = optimize.optimize(net, board, target_fps=100e6 / target_cycles, resource_gap=0.0)
    assert plan.cycles <= target_cycles
    assert _cost(plan.totals, optimize.caps_of(board)) == pytest.approx(cost, rel=1e-9, abs=1e-12)


def test_infeasible_even_fully_folded_names_resource_and_layers():
    with pytest.raises(FpgagenError) as info:
        optimize.optimize(window_net(), tiny_board(LUT=500))
    msg = str(info.value)
    assert "does not fit tiny even fully folded" in msg and "LUT needs at least" in msg
    assert "of 500 available" in msg and "conv" in msg


def test_unreachable_target_fps():
    with pytest.raises(FpgagenError, match="no folding reaches 1e\\+09 FPS"):
        optimize.optimize(window_net(), tiny_board(), target_fps=1e9)


def test_fold_network_never_returns_a_design_over_budget():
    net = window_net()
    info = fold.fold_network(net, tiny_board(LUT=2600))
    assert all(info["resources"][r] <= tiny_board(LUT=2600)["resources"][r] for r in RESOURCES)
    with pytest.raises(FpgagenError, match="does not fit tiny: LUT"):
        fold.fold_network(window_net(), tiny_board(LUT=1800),
                          folding={"conv": {"pe": 4, "simd": 18}, "conv_window": {"simd": 18}})


@pytest.mark.parametrize("entry, message", [
    ({"conv": {"pe": 3}}, "PE=3 does not divide MH=4"),
    ({"conv_window": {"simd": 4}}, "SIMD=4 must divide the channels"),
    ({"conv": {"pe": 2, "dsp_pe": 3}}, "dsp_pe=3 must lie between 0 and PE=2"),
    ({"conv": {"mem_style": "flash"}}, "mem_style='flash' is not a valid choice"),
    ({"conv": {"thr_mode": "magic"}}, "thr_mode='magic' is not a valid choice"),
    ({"conv": {"simd": 2.5}}, '"simd" = 2.5 is neither a whole number nor a style name'),
])
def test_user_folding_errors_are_clear(entry, message):
    with pytest.raises(FpgagenError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        fold.fold_network(window_net(), tiny_board(), folding=entry)
    assert "layer conv" in str(info.value)


def test_user_folding_round_trips_through_folding_json():
    net = window_net()
    fold.fold_network(net, tiny_board(LUT=3000))
    saved = fold.folding_of(net)
    again = window_net()
    fold.fold_network(again, tiny_board(LUT=3000), folding=saved)
    assert fold.folding_of(again) == saved


# --- the cost model ----------------------------------------------------------------------------------------------
def finn_r_lut(m: MVAU) -> float:
    """FINN-R's published MVAU LUT formula (shared/facts.md), with the exceptions the model argues: a 1-deep ROM
    holds constants (no threshold/weight memory); the threshold ROM stores TB-bit values, not ACC-bit ones."""
    w, a = m.weight_dtype.bitwidth(), m.in_bits
    acc = m.acc_dtype.bitwidth()
    nf, sf = m.mh // m.pe, m.mw // m.simd
    mult = m.simd * (2 * math.ceil((w + a) / 6) - 1) * (w + a)
    adder = (w + a) * (2 * m.simd - 1)
    thr = m.nt * m.thr_bits * math.ceil(nf / 64) if nf > 1 else 0
    lutram = m.pe * m.simd * w * math.ceil(nf * sf / 64) if m.mem_style == "lutram" and nf * sf > 1 else 0
    return 300 + 1.1 * m.pe * (mult + adder + acc + thr + m.nt * acc) + lutram


@pytest.fixture(scope="module")
def lpyolo_ir(tmp_path_factory):
    from fpgagen import export, frontend, streamline
    from fpgagen.models import lpyolo

    path = export(lpyolo(4, 4), tmp_path_factory.mktemp("lpyolo") / "lpyolo_w4a4.onnx")
    return streamline.lower(frontend.load_qonnx(path), name="lpyolo_w4a4")


def test_mvau_model_never_undercuts_finn_r(lpyolo_ir):
    """Same folding, LUT multipliers, parallel thresholds: LUT and BRAM18 are at least 90% of FINN-R's."""
    checked = 0
    for m in (lay for lay in lpyolo_ir.layers if isinstance(lay, MVAU)):
        for core in m.fold_cores():
            for mem in ("lutram", "bram"):
                p = optimize._probe(m, {**core, "mem_style": mem, "thr_style": "lutram", "thr_mode": "parallel",
                                        "dsp_pe": 0})
                res = p.resources()
                assert res["LUT"] >= 0.9 * finn_r_lut(p), (m.name, core, mem)
                nf, sf = p.mh // p.pe, p.mw // p.simd
                if mem == "bram" and nf * sf > 1:
                    assert res["BRAM18"] >= 0.9 * bram18(nf * sf, p.pe * p.simd * p.weight_dtype.bitwidth())
                checked += 1
    assert checked > 500


def test_lpyolo_program_size_is_bounded(lpyolo_ir):
    """The work, not the time: LPYOLO W4A4's integer program (every core and converter) stays the size it is
    (10,760 variables, 4,120 rows, 45,811 nonzeros when this was written); a change that blows it up fails here."""
    from fpgagen.board import load_board

    size = optimize.program_size(lpyolo_ir, load_board("pynq_z2"))
    assert size["variables"] <= 12_000 and size["rows"] <= 4_600 and size["nonzeros"] <= 52_000, size


def test_solver_output_goes_to_the_log_not_the_console(tmp_path, capfd):
    """HiGHS prints nothing to the user's terminal (not even its printf lines): its log goes to ``solver_log``;
    the fold says how much it solved and that the answer is proven optimal."""
    log = tmp_path / "milp.log"
    info = fold.fold_network(tiny_graph(), tiny_board(LUT=1100, DSP=1), solver_log=log)
    out, err = capfd.readouterr()
    assert "HiGHS" not in out + err and "Solving" not in out + err
    text = log.read_text()
    assert text.count("Running HiGHS") == info["milp"]["solves"] > 0
    assert info["milp"]["optimal"] and info["milp"]["gap"] <= optimize.RESOURCE_GAP


def test_every_layer_is_costed(lpyolo_ir):
    for lay in lpyolo_ir.layers:
        fold.greedy_fold(lpyolo_ir, 1e6)
        assert lay.resources()["LUT"] > 0, lay.name


@pytest.mark.slow
@pytest.mark.parametrize("bits, floor", [((4, 4), 300), ((8, 3), 250), ((2, 4), 450)])
def test_lpyolo_meets_the_fps_goal(bits, floor, tmp_path_factory):
    from fpgagen import export, frontend, streamline
    from fpgagen.board import load_board
    from fpgagen.models import lpyolo

    path = export(lpyolo(*bits), tmp_path_factory.mktemp("lp") / "m.onnx")
    net = streamline.lower(frontend.load_qonnx(path), name="m")
    board = load_board("pynq_z2")
    info = fold.fold_network(net, board)
    fps = board["clock_mhz"] * 1e6 / net.bottleneck().cycles()
    assert fps >= floor  # solve time is a benchmark figure (scripts/bench_fold.py prints it), not a test
    assert info["solve_s"] > 0
    # the work, not the time: the whole reserve loop takes a bounded number of solves, and the answer is proven
    work = info["milp"]
    assert work["optimal"] and work["gap"] <= optimize.RESOURCE_GAP
    assert work["solves"] <= 30 and work["mip_solves"] <= 10, work
    assert fifo.check_schedule(net) == net.bottleneck().cycles()
    assert all(lay.resources()["LUT"] > 0 for lay in net.layers)


@pytest.mark.parametrize("nt", [1, 2, 3, 15, 255])
def test_threshold_search_tables_count_exactly(nt):
    """thr_mode=search: S comparisons against the search ROMs give #{k : acc >= T_k}, for every accumulator."""
    rng = np.random.default_rng(nt)
    thresholds = np.sort(rng.integers(-300, 300, (6, nt)), axis=1)
    m = MVAU("m", (1, 1, 4), (1, 1, 6), "UINT4", "UINT8", weights=np.zeros((6, 4), int), thresholds=thresholds,
             acc_dtype="INT10", pe=2, thr_mode="search")
    tables = m.search_tables()
    assert len(tables) == math.ceil(math.log2(nt + 1)) and tables[0].shape == (2, 3, 1)
    acc = np.arange(-512, 512)
    for ch in range(6):
        j = np.zeros_like(acc)
        for table in tables:
            j = 2 * j + (acc >= table[ch % 2, ch // 2][j])
        assert np.array_equal(j, (acc[:, None] >= thresholds[ch]).sum(axis=1))


# --- stream graphs -----------------------------------------------------------------------------------------------
def tiny_graph() -> Network:
    """fc_0 -> fork -> (fc_1 | the skip) -> a requantizing concat: PE/SIMD on both sides of a fork and of a join,
    a graph kind's style group, and converters on any of the streams."""
    u2 = DataType["UINT2"]
    rng = np.random.default_rng(7)
    layers = [_mvau("fc_0", (4, 4, 6), 4, 1),
              StreamFork("fork_0", ((4, 4, 4),), ((4, 4, 4),) * 2, (u2,), (u2,) * 2),
              _mvau("fc_1", (4, 4, 4), 4, 2),
              Concat("concat_0", ((4, 4, 4), (4, 4, 4)), ((4, 4, 8),), (u2, u2), (u2,),
                     thresholds=np.sort(rng.integers(0, 4, (8, 3)), axis=1), negate=rng.random(8) < 0.3)]
    edges = [Edge("input", 0, "fc_0", 0), Edge("fc_0", 0, "fork_0", 0), Edge("fork_0", 0, "fc_1", 0),
             Edge("fc_1", 0, "concat_0", 0), Edge("fork_0", 1, "concat_0", 1), Edge("concat_0", 0, "output", 0)]
    net = Network("tiny_graph", InputSpec((1, 6, 4, 4), np.ones(1), np.zeros(1), 0, 3, "UINT2"),
                  OutputSpec("codes", (1, 8, 4, 4), np.ones(1), np.zeros(1), "UINT2"), layers, edges)
    net.check_graph()
    return net


def _fifo2(layer) -> dict:
    """A 2-deep SRL FIFO on every output port (what codegen emits before sizing)."""
    return add_resources(*(fifo.fifo_resources(2, word * dt.bitwidth(), "srl") for _, dt, word in out_ports(layer)))


def brute_force_graph(net: Network, board: dict, t_max: float | None = None):
    """Every combination of every node's fold options (numpy over the whole product), a width converter on every
    stream between nodes whose words differ: the least bottleneck cycles, then the least cost, within the caps (or,
    with ``t_max``, the least cost within t_max cycles). Returns ((cycles, cost), {layer name: option})."""
    caps = optimize.caps_of(board)
    index = {lay.name: i for i, lay in enumerate(net.layers)}
    options, res, cycles, words_in, words_out = [], [], [], [], []
    for lay in net.layers:
        opts = [o for o in lay.fold_options() if caps["DSP"] >= 1 or not o.get("dsp_pe")]
        probes = [optimize._probe(lay, o) for o in opts]
        options.append(opts)
        res.append(np.array([[add_resources(p.resources(), _fifo2(p))[r] for r in RESOURCES] for p in probes]))
        cycles.append(np.array([p.cycles() for p in probes]))
        words_in.append(np.array([[w for _, _, w in in_ports(p)] for p in probes]))
        words_out.append(np.array([[w for _, _, w in out_ports(p)] for p in probes]))
    pick = [g.ravel() for g in np.indices([len(o) for o in options])]
    total = sum(r[i] for r, i in zip(res, pick, strict=True)).astype(float)
    slowest = np.max([c[i] for c, i in zip(cycles, pick, strict=True)], axis=0)
    for e in net.edges:
        if e.src == "input" or e.dst == "output":
            continue
        s, d = index[e.src], index[e.dst]
        u, v = words_out[s][pick[s], e.src_port], words_in[d][pick[d], e.dst_port]
        shape, dt, _ = out_ports(net.layers[s])[e.src_port]
        for a, b in {(int(a), int(b)) for a, b in zip(u, v, strict=True) if a != b}:
            w = WidthConverter("dwc", shape, shape, dt.name, dt.name, in_elems=a, out_elems=b)
            hit = (u == a) & (v == b)
            total[hit] += [add_resources(w.resources(), _fifo2(w))[r] for r in RESOURCES]
            slowest[hit] = np.maximum(slowest[hit], w.cycles())
    ok = np.all(total <= np.array([caps[r] for r in RESOURCES]), axis=1) & (slowest <= (t_max or math.inf))
    cost = sum(wt * total[:, RESOURCES.index(r)] / max(caps[r], 1.0) for r, wt in optimize.OBJECTIVE_WEIGHTS.items())
    fastest = slowest[ok].min() if t_max is None else slowest[ok].max()
    best = np.flatnonzero(ok & (slowest == fastest)) if t_max is None else np.flatnonzero(ok)
    best = best[np.argmin(cost[best])]
    return (int(fastest), float(cost[best])), {lay.name: options[i][pick[i][best]] for i, lay in enumerate(net.layers)}


GRAPH_BUDGETS = [{}, {"LUT": 1800}, {"LUT": 1400, "DSP": 0}, {"LUT": 1100, "DSP": 0}, {"LUT": 1000, "DSP": 2}]


@pytest.mark.parametrize("caps", GRAPH_BUDGETS, ids=[str(b) for b in GRAPH_BUDGETS])
def test_graph_optimizer_matches_brute_force(caps):
    net, board = tiny_graph(), tiny_board(**caps)
    (cycles, cost), _ = brute_force_graph(net, board)
    plan = optimize.optimize(net, board, resource_gap=0.0)
    assert plan.cycles == cycles
    assert _cost(plan.totals, optimize.caps_of(board)) == pytest.approx(cost, rel=1e-9, abs=1e-12)
    # by default: as fast, and the resources within the gap HiGHS proved (at most RESOURCE_GAP)
    default = optimize.optimize(tiny_graph(), board)
    assert default.cycles == cycles and default.optimal and default.gap <= optimize.RESOURCE_GAP
    assert _cost(default.totals, optimize.caps_of(board)) <= cost * (1 + optimize.RESOURCE_GAP) + 1e-12
    # applied: the converters the plan paid for are on the graph, and the layers' own models add up to the plan
    fold.apply_plan(net, plan)
    net.check_graph()
    for e in net.edges:
        if e.src != "input" and e.dst != "output":
            assert out_ports(net.layer(e.src))[e.src_port][2] == in_ports(net.layer(e.dst))[e.dst_port][2]
    assert max(lay.cycles() for lay in net.layers) == cycles
    assert add_resources(*(lay.resources() for lay in net.layers), *map(_fifo2, net.layers)) == plan.totals


def test_graph_target_fps_is_the_cheapest_design_that_reaches_it():
    net, board = tiny_graph(), tiny_board(LUT=1800)
    target_cycles = 3 * brute_force_graph(net, board)[0][0]
    (_, cost), _ = brute_force_graph(net, board, t_max=target_cycles)
    plan = optimize.optimize(net, board, target_fps=100e6 / target_cycles, resource_gap=0.0)
    assert plan.cycles <= target_cycles
    assert _cost(plan.totals, optimize.caps_of(board)) == pytest.approx(cost, rel=1e-9, abs=1e-12)


def test_graph_infeasible_even_fully_folded_names_resource_and_layers():
    with pytest.raises(FpgagenError) as info:
        optimize.optimize(tiny_graph(), tiny_board(LUT=500))
    msg = str(info.value)
    assert "does not fit tiny even fully folded" in msg and "LUT needs at least" in msg and "fc_0" in msg


def test_graph_fold_report_equals_the_model():
    """fold_network on a graph: the FIFOs are sized on the graph, and the totals it reports are the plan's (every
    kernel, converter and 2-deep FIFO) plus the sized FIFOs' excess, nothing else (this board has no shell)."""
    from fpgagen import report

    net, board = tiny_graph(), tiny_board(LUT=1100, DSP=0)  # a board without DSPs reports "none on the device"
    info = fold.fold_network(net, board)
    assert any(lay.kind == "WidthConverter" for lay in net.layers)
    assert info["optimizer"] == "ilp"
    assert info["resources"] == add_resources(info["model_resources"], info["fifo_excess"])
    assert info["resources"] == add_resources(*(lay.resources() for lay in net.layers),
                                              fifo.fifos_resources(net))
    doc = report.summary(net, board, info)
    assert {r: doc["budget"][r]["used"] for r in RESOURCES} == info["resources"]
    assert doc["fits"]
    assert doc["budget"]["DSP"]["fraction_of_device"] is None and "none on the device" in report.markdown(doc)


def test_graph_fifo_reserve_feedback():
    """The skip branch's FIFO is sized deeper than 2 words; with the LUT cap set to exactly what the first plan
    charges, those extra LUTs do not fit, so fold_network solves again with them reserved, and the design it
    returns fits with its sized FIFOs."""
    first = fold.fold_network(tiny_graph(), tiny_board(LUT=1100, DSP=1))
    assert first["fifo_excess"]["LUT"] > 0  # the reconvergent path needs depth
    cap = first["model_resources"]["LUT"]
    net, board = tiny_graph(), tiny_board(LUT=cap, DSP=1)
    info = fold.fold_network(net, board)
    assert info["fifo_reserve"].get("LUT", 0) > 0  # the loop ran again with the excess reserved
    assert info["model_resources"]["LUT"] + info["fifo_reserve"]["LUT"] <= cap
    assert info["resources"] == add_resources(info["model_resources"], info["fifo_excess"])
    assert info["resources"]["LUT"] <= cap


GRAPH_NET_NAMES = ["concat", "pad_pool", "residual", "upsample"]


@pytest.fixture(scope="module")
def lowered_graph_nets(tmp_path_factory):
    import graph_nets as G

    from fpgagen import export, frontend, streamline

    out = {}
    for name in GRAPH_NET_NAMES:
        path = export(G.graph_net(name, seed=3), tmp_path_factory.mktemp(name) / f"{name}.onnx")
        out[name] = streamline.lower(frontend.load_qonnx(path), name=name)
    return out


@pytest.mark.parametrize("name", GRAPH_NET_NAMES)
def test_graph_nets_milp_beats_the_greedy_within_the_budget(lowered_graph_nets, name):
    """On pynq_z2: the MILP's slowest node is no slower than the greedy graph fold's (bisected on the period within
    the same budget), its design fits, and the totals are the model's plus the sized FIFOs' excess and the shell."""
    from fpgagen.board import load_board

    board = load_board("pynq_z2")
    greedy, milp_net = copy.deepcopy(lowered_graph_nets[name]), copy.deepcopy(lowered_graph_nets[name])
    fold.fold_network(greedy, board, optimizer="greedy")
    info = fold.fold_network(milp_net, board)
    milp_cycles = max(lay.cycles() for lay in milp_net.layers)
    assert milp_cycles <= max(lay.cycles() for lay in greedy.layers)
    caps = optimize.caps_of(board)
    assert all(info["model_resources"][r] + info["fifo_reserve"].get(r, 0) <= caps[r] + 1e-9 for r in RESOURCES)
    assert info["resources"] == add_resources(info["model_resources"], info["fifo_excess"], board["shell"])
    ceil = optimize.ceilings_of(board)
    assert all(info["resources"][r] <= ceil[r] * board["resources"][r] for r in RESOURCES)
    fifo.check_schedule(milp_net)  # the sized depths hold schedule S
    assert all(e.depth >= 2 for e in milp_net.edges)


def test_budget_lives_in_one_module_and_optimize_does_not_import_fold():
    """The budget (ceilings, caps, the fit check) is defined once, in fpgagen.budget; the optimizer depends on it
    and on the IR only, the build step (fold) on the optimizer: no import cycle between them."""
    import subprocess
    import sys

    code = ("import sys, fpgagen.optimize as o, fpgagen.budget as b; "
            "print('fpgagen.fold' in sys.modules, o.caps_of is b.caps_of, o.ceilings_of is b.ceilings_of)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True", "True"]
    assert fold.check_budget.__module__ == "fpgagen.budget"
