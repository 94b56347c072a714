"""One integer program for bit widths and folding together (HAO's formulation on fpgagen's cost models).

The network's IR (a chain: sliding window -> MVAU [-> maxpool] ... as fpgagen.streamline lowers it) is split into
*units*: a sliding window with the MVAU it feeds (with the width converter between them where the window's word
differs from the MVAU's SIMD, as the folder may choose), or any other node alone. A unit belongs to the segment of
weight layer j (the nodes after MVAU j-1 up to MVAU j), whose costs depend only on (a_{j-1}, w_j, a_j): the widths
of its input activation, its weights and its output activation (thresholds). Each unit's options, per width triple,
are the layer's own folding cores and style alternatives priced by ``resources()`` and ``cycles()``
(``fpgagen.optimize.layer_cores``, which the folder uses), with Pareto-dominated ones dropped. The IRs come from
lowering the factory's network at a few width patterns that cover every triple (``cost_configs``).

Variables: ``b[v, w]`` binary, variable v (a weight layer's or activation quantizer's width) takes w, one per v;
``x[u, key, o]`` binary, unit u takes option o at the widths ``key`` of the variables it depends on, one per
unit, with ``sum_{key[v]=w, o} x[u, key, o] = b[v, w]`` for each of them (the unit's widths are the chosen
ones); ``t`` >= every unit's cycles. Constraints: every resource within the board's caps (``budget.caps_of``);
the predicted loss ``sum s[v, w] b[v, w] <= L``. Objective: ``t`` (the slowest node sets FPS), then resources
(``solve``). ``sweep`` traces the front by the equivalent dual: the least predicted loss within a bound on ``t``
(``min_loss``), at bounds spaced between the front's two ends.

Not modelled here (the verification builds price them, and fold the network again with fpgagen's own folder):
the width converters between units whose words differ, a window's input word following its producer's (each
window option takes the input word it is priced at), and FIFO depths beyond two words. On uniform-width LPYOLO
the program reaches the folder's optimum (575 FPS at 4 bits)."""

from __future__ import annotations

import copy
import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import LinearConstraint, milp
from scipy.sparse import coo_array

from .. import optimize
from ..budget import caps_of
from ..errors import FpgagenError
from ..ir import Network
from ..ir.layers import RESOURCES, add_resources

IN, OUT = "in", "out"  # the fixed ends: the network's input and output quantizers
DSP_STEPS = 8  # a core's DSP PEs: none, an eighth, ..., all of them (``_expand``)
PROGRAM_SLOWEST = 3.0  # the program's options: at most this many times slower than the fastest (``joint_program``)
SLOWEST = 8.0  # designs this many times slower than the fastest any could be are not priced (``core_window``)


def cost_configs(w_grid: list[int], a_grid: list[int]) -> list[tuple[int, int, int]]:
    """(w, a_even, a_odd) patterns: all weights w, activation k at a_even (k even) or a_odd (k odd). Over every
    ordered pair of activation widths, segment j sees every (a_{j-1}, w, a_j) triple."""
    return [(w, ae, ao) for w in w_grid for ae in a_grid for ao in a_grid]


def config_bits(cfg: tuple[int, int, int], n_weight: int, n_act: int) -> tuple[list[int], list[int]]:
    w, ae, ao = cfg
    return [w] * n_weight, [ae if k % 2 == 0 else ao for k in range(n_act)]


@dataclass
class Unit:
    names: list[str]  # its IR nodes
    segment: int


def units_of(net: Network, n_weight: int, n_act: int, where: str) -> list[Unit]:
    names = [lay.name for lay in net.layers]
    path = {(a, 0, b, 0) for a, b in zip(["input", *names], [*names, "output"], strict=True)}
    if {(e.src, e.src_port, e.dst, e.dst_port) for e in net.stream_edges()} != path:  # a fork, a join, a skip
        raise FpgagenError("explore's integer program handles chain networks (no branches) for now", where,
                           "explore a chain-shaped network, or fold a graph with 'fpgagen build'")
    matrix = [i for i, lay in enumerate(net.layers) if lay.MATRIX_UNIT]
    if len(matrix) != n_weight or n_act != n_weight - 1:
        raise FpgagenError(f"the lowered network has {len(matrix)} matrix units for {n_weight} weight layers and "
                           f"{n_act} explored activation quantizers", where,
                           "explore a chain with one activation quantizer after each weight layer but the last")
    units, i, layers = [], 0, net.layers
    while i < len(layers):
        lay = layers[i]
        seg = min(sum(1 for m in matrix if m < i), n_weight - 1)
        if lay.TAKES_CONSUMER_SIMD and i + 1 < len(layers) and layers[i + 1].MATRIX_UNIT:
            units.append(Unit([lay.name, layers[i + 1].name], seg))
            i += 2
        else:
            units.append(Unit([lay.name], seg))
            i += 1
    return units


def segment_key(seg: int, weight_bits: list[int], act_bits: list[int]) -> tuple:
    return (act_bits[seg - 1] if seg > 0 else IN, weight_bits[seg], act_bits[seg] if seg < len(act_bits) else OUT)


# --- options -----------------------------------------------------------------------------------------------
@dataclass
class Option:
    cycles: int
    res: dict[str, int]
    attrs: dict[str, dict]  # per IR node


def _expand(core: optimize.Core) -> list[tuple[dict, dict[str, int]]]:
    """A core with one alternative from every style group, and DSP PEs in ``DSP_STEPS`` steps up to the most it can
    take (the DSP48E1s are few, so a layer may need to split its PEs between DSPs and LUTs)."""
    out = []
    dsp_choices = sorted({core.dsp_max * q // DSP_STEPS for q in range(DSP_STEPS + 1)})
    for combo in itertools.product(*core.groups) if core.groups else [()]:
        for d in dsp_choices:
            attrs = dict(core.attrs)
            res = dict(core.base)
            for alt, delta in combo:
                attrs.update(alt)
                res = add_resources(res, delta)
            if d:
                res = add_resources(res, {r: v * d for r, v in core.dsp_unit.items()})
            out.append((attrs, res, d * core.dsp_step))
    return [(a, r) if not ds else ({**a, "dsp_pe": ds}, r) for a, r, ds in out]


PRUNE_ON = ("LUT", "BRAM18", "DSP")  # FF seldom binds on these boards, LUTRAM is inside LUT


def _front(items: list[Option], floor: float = 0) -> list[Option]:
    """The options no other beats on cycles (any at or below ``floor`` counts as ``floor``: no design is faster
    than that) and on LUT, BRAM18 and DSP."""
    if not items:
        return items
    keys = np.array([[max(o.cycles, floor), *(o.res[r] for r in PRUNE_ON)] for o in items], float)
    order = np.lexsort(keys.T[::-1])
    kept: list[int] = []
    for i in order:
        if kept and np.any(np.all(keys[kept] <= keys[i], axis=1)):
            continue
        kept.append(int(i))
    return [items[i] for i in sorted(kept)]


def _restricted(layer, cores: list[dict]):
    """``layer`` whose ``fold_cores()`` offers only ``cores`` (so ``optimize.layer_cores`` prices just those)."""
    probe = copy.copy(layer)
    probe.fold_cores = lambda: [dict(c) for c in cores]
    return probe


def _cycles_of(layer, core: dict) -> int:
    probe = copy.copy(layer)
    probe.__dict__.update(core)
    return probe.cycles()


def core_window(net: Network, units: list[Unit], slowest: float = SLOWEST) -> tuple[float, float, float]:
    """The cycle range worth pricing: from a quarter of the bound no design can beat (the slowest unit at its
    fastest core) to ``slowest`` times it. A core much faster than the slowest unit must be is never needed (a
    less parallel one is as fast as the design and cheaper), and designs ``slowest`` times slower than the
    fastest possible are not worth a front point. The third figure is that bound."""
    bound = 0
    for unit in units:
        lay = net.layer(unit.names[-1])
        bound = max(bound, min(_cycles_of(lay, c) for c in lay.fold_cores()))
    return bound / 4, bound * slowest, bound


def _pick(layer, low: float, high: float) -> list[dict]:
    """The cores whose cycles lie in [low, high]; the slowest one if none does (a small layer)."""
    cores = [(c, _cycles_of(layer, c)) for c in layer.fold_cores()]
    inside = [c for c, cyc in cores if low <= cyc <= high]
    return inside or [max(cores, key=lambda cc: cc[1])[0]]


def unit_options(net: Network, unit: Unit, first: bool, window: tuple[float, float, float] = (0, math.inf, 0)
                 ) -> list[Option]:
    """A unit's options: its cores within ``window`` (``core_window``), each with every combination of its style
    alternatives (DSP PEs none or all), priced by ``optimize.layer_cores``; dominated ones dropped."""
    layers = [net.layer(n) for n in unit.names]
    low, high, floor = window
    if len(layers) == 1:
        lay = layers[0]
        lay = _restricted(lay, _pick(lay, low, high))
        return _front([Option(c.cycles, res, {lay.name: attrs}) for c in optimize.layer_cores(lay, first)
                       for attrs, res in _expand(c)], floor)
    window_layer, mvau = layers
    mvau = _restricted(mvau, _pick(mvau, low, high))
    by_simd: dict[int, list[Option]] = {}
    for c in optimize.layer_cores(window_layer, first):
        for attrs, res in _expand(c):
            by_simd.setdefault(attrs["simd"], []).append(Option(c.cycles, res, {window_layer.name: attrs}))
    feeds: dict[int, list[Option]] = {}  # per MVAU SIMD: the window options with the converter they need
    out = []
    for c in optimize.layer_cores(mvau, False):
        simd = c.attrs["simd"]
        if simd not in feeds:
            # the window may stream narrower or wider words than the MVAU takes: a width converter joins them
            # (what fold.link_streams inserts), priced and timed by its own model with its 2-deep FIFO
            combos = []
            for s_w, windows in by_simd.items():
                extra, extra_cycles = dict.fromkeys(RESOURCES, 0), 0
                if s_w != simd:
                    dwc = optimize.converter(window_layer, s_w, simd)
                    extra, extra_cycles = add_resources(dwc.resources(), optimize.base_fifo(dwc)), dwc.cycles()
                combos += [Option(max(w.cycles, extra_cycles), add_resources(w.res, extra), w.attrs) for w in windows]
            feeds[simd] = _front(combos, floor)
        mine = _front([Option(c.cycles, res, {mvau.name: attrs}) for attrs, res in _expand(c)], floor)
        for w in feeds[simd]:
            for m in mine:
                out.append(Option(max(w.cycles, m.cycles), add_resources(w.res, m.res), {**w.attrs, **m.attrs}))
    return _front(out, floor)


def unit_tables(net: Network, n_weight: int, n_act: int, slowest: float = SLOWEST) -> list[list[Option]]:
    """Every unit's options in one lowered network (what a lowering task returns)."""
    units = units_of(net, n_weight, n_act, "FACTORY")
    window = core_window(net, units, slowest)
    return [unit_options(net, unit, i == 0, window) for i, unit in enumerate(units)]


def options_to_json(tables: list[list[Option]]) -> list[list[dict]]:
    return [[{"cycles": int(o.cycles), "res": {r: int(v) for r, v in o.res.items()},
              "attrs": {n: {k: v if isinstance(v, str) else int(v) for k, v in a.items()} for n, a in o.attrs.items()}}
             for o in opts] for opts in tables]


def options_from_json(doc: list[list[dict]]) -> list[list[Option]]:
    return [[Option(o["cycles"], o["res"], o["attrs"]) for o in opts] for opts in doc]


# --- the program -------------------------------------------------------------------------------------------
@dataclass
class Choice:
    weight_bits: list[int]
    act_bits: list[int]
    cycles: int
    resources: dict[str, int]
    attrs: dict[str, dict]
    score: float
    optimal: bool
    solve_s: float


@dataclass
class JointProgram:
    """The program over units x width keys x options; ``solve(L)`` for a predicted-loss budget L."""

    units: list[Unit]
    options: list[dict[tuple, list[Option]]]  # per unit: key (widths of the variables it depends on) -> options
    depends: list[list[tuple[str, int]]]  # per unit: the variables its key lists, e.g. [("a", 0), ("w", 1)]
    w_grid: list[int]
    a_grid: list[int]
    n_weight: int
    n_act: int
    caps: dict[str, float]
    sens_weight: list[dict[int, float]]
    sens_act: list[dict[int, float]]
    columns: int = 0
    _built: dict = field(default_factory=dict, repr=False)

    def _variables(self) -> list[tuple[str, int, int]]:
        return ([("w", i, b) for i in range(self.n_weight) for b in self.w_grid] +
                [("a", k, b) for k in range(self.n_act) for b in self.a_grid])

    def build(self) -> None:
        bits = self._variables()
        index = {v: j for j, v in enumerate(bits)}
        cols: list[tuple] = [("b", v) for v in bits]
        cyc: list[float] = [0.0] * len(bits)
        res: list[dict] = [dict.fromkeys(RESOURCES, 0)] * len(bits)
        for u, table in enumerate(self.options):
            for key, opts in table.items():
                for o, opt in enumerate(opts):
                    cols.append(("x", u, key, o))
                    cyc.append(opt.cycles)
                    res.append(opt.res)
        t_col = len(cols)
        cols.append(("t",))
        n = len(cols)
        rows, lo, hi = [], [], []
        for i in range(self.n_weight):  # one width per variable
            rows.append([(index[("w", i, b)], 1) for b in self.w_grid])
            lo.append(1)
            hi.append(1)
        for k in range(self.n_act):
            rows.append([(index[("a", k, b)], 1) for b in self.a_grid])
            lo.append(1)
            hi.append(1)
        start = len(bits)
        unit_cols: list[list[int]] = []
        for u, table in enumerate(self.options):
            mine = list(range(start, start + sum(len(v) for v in table.values())))
            start += len(mine)
            unit_cols.append(mine)
            rows.append([(c, 1) for c in mine])  # one option per unit
            lo.append(1)
            hi.append(1)
            for pos, (kind, idx) in enumerate(self.depends[u]):  # its widths are the chosen ones
                grid = self.w_grid if kind == "w" else self.a_grid
                for b in grid:
                    rows.append([(c, 1) for c in mine if cols[c][2][pos] == b] + [(index[(kind, idx, b)], -1)])
                    lo.append(0)
                    hi.append(0)
            rows.append([(c, cyc[c]) for c in mine] + [(t_col, -1)])  # t >= the unit's cycles
            lo.append(-np.inf)
            hi.append(0)
        self.budget_row = len(rows)
        for r in RESOURCES:
            rows.append([(c, res[c][r]) for c in range(start) if res[c][r]])
            lo.append(-np.inf)
            hi.append(self.caps[r])
        self.loss_row = len(rows)
        sens = {**{("w", i, b): self.sens_weight[i][b] for i in range(self.n_weight) for b in self.w_grid},
                **{("a", k, b): self.sens_act[k][b] for k in range(self.n_act) for b in self.a_grid}}
        rows.append([(index[v], sens[v]) for v in bits if sens[v]])
        lo.append(-np.inf)
        hi.append(np.inf)
        rr = [i for i, row in enumerate(rows) for _ in row]
        cc = [c for row in rows for c, _ in row]
        vv = [v for row in rows for _, v in row]
        self._built = {"a": coo_array((vv, (rr, cc)), shape=(len(rows), n)).tocsr(), "lo": np.array(lo, float),
                       "hi": np.array(hi, float), "cols": cols, "t": t_col, "n": n, "unit_cols": unit_cols}
        weights = optimize.OBJECTIVE_WEIGHTS
        cost = np.array([sum(w * rc[r] / max(self.caps[r], 1.0) for r, w in weights.items()) for rc in res] + [0.0])
        self._built["cost"] = cost
        self._built["cycles"] = np.array(cyc + [0.0])
        self.columns = n
        self._bits = bits

    def solve(self, loss_budget: float = math.inf, time_limit: float = 60.0,
              fixed: tuple[list[int], list[int]] | None = None) -> Choice | None:
        """The fastest choice whose predicted loss is within ``loss_budget`` (None: nothing fits); ``fixed``
        (weight widths, activation widths): only the folding is free (a point's planned FPS and resources).

        As fpgagen.optimize does: the slowest unit's cycles are one of the options' cycle counts, and a larger
        bound only adds choices, so the smallest feasible bound is bisected with feasibility solves (objective
        0: the first integer point ends a solve), then the least resources are solved for at that bound.
        ``optimal`` is false when a solve hit ``time_limit`` (then its bound counts as infeasible)."""
        if not self._built:
            self.build()
        b = self._built
        n, t_col = b["n"], b["t"]
        hi = b["hi"].copy()
        hi[self.loss_row] = loss_budget if math.isfinite(loss_budget) else np.inf
        integrality = np.ones(n)
        integrality[t_col] = 0
        base_upper = np.ones(n)
        base_upper[t_col] = np.inf
        if fixed is not None:
            want = {("w", i, b) for i, b in enumerate(fixed[0])} | {("a", k, b) for k, b in enumerate(fixed[1])}
            for j, v in enumerate(self._bits):
                base_upper[j] = 1.0 if v in want else 0.0
        cyc = b["cycles"]
        constraints = LinearConstraint(b["a"], b["lo"], hi)
        start, proven = time.perf_counter(), True

        def run(bound: float, cost: np.ndarray):
            nonlocal proven
            upper = base_upper.copy()
            upper[cyc > bound] = 0.0
            res = milp(cost, integrality=integrality, bounds=(np.zeros(n), upper), constraints=constraints,
                       options={"time_limit": time_limit, "mip_rel_gap": 1e-4})
            if res.status == 1:  # a limit: no proof either way
                proven = False
            return None if res.x is None else res.x

        zero = np.zeros(n)
        cands = sorted({int(c) for c in cyc[len(self._bits):t_col]})
        lo, top = 0, len(cands) - 1
        if run(cands[top], zero) is None:
            return None
        while lo < top:
            mid = (lo + top) // 2
            if run(cands[mid], zero) is None:
                lo = mid + 1
            else:
                top = mid
        x = run(cands[top], b["cost"])
        if x is None:  # the resource solve ran out of time: any feasible point at that bound
            x = run(cands[top], zero)
        if x is None:
            return None
        return self._choice(x, proven, time.perf_counter() - start)

    def min_loss(self, bound: int, time_limit: float = 60.0) -> Choice | None:
        """The least predicted loss of any choice whose slowest unit runs within ``bound`` cycles (resources
        next). Its loss L makes it the answer to ``solve(L)`` as well (the same front point, reached in one solve
        instead of a bisection): ``sweep`` traces the front this way."""
        if not self._built:
            self.build()
        b = self._built
        n, t_col = b["n"], b["t"]
        sens = {**{("w", i, w): self.sens_weight[i][w] for i in range(self.n_weight) for w in self.w_grid},
                **{("a", k, a): self.sens_act[k][a] for k in range(self.n_act) for a in self.a_grid}}
        cost = b["cost"] * 1e-6  # resources only break ties
        for j, v in enumerate(self._bits):
            cost[j] = sens[v]
        integrality = np.ones(n)
        integrality[t_col] = 0
        upper = np.ones(n)
        upper[t_col] = np.inf
        upper[b["cycles"] > bound] = 0.0
        start = time.perf_counter()
        res = milp(cost, integrality=integrality, bounds=(np.zeros(n), upper),
                   constraints=LinearConstraint(b["a"], b["lo"], b["hi"]),
                   options={"time_limit": time_limit, "mip_rel_gap": 1e-4})
        if res.x is None:
            return None
        return self._choice(res.x, res.status == 0, time.perf_counter() - start)

    def _choice(self, x: np.ndarray, optimal: bool, took: float) -> Choice:
        b = self._built
        x = np.round(x)
        wb = [next(bb for bb in self.w_grid if x[self._bits.index(("w", i, bb))]) for i in range(self.n_weight)]
        ab = [next(bb for bb in self.a_grid if x[self._bits.index(("a", k, bb))]) for k in range(self.n_act)]
        attrs, cycles, total = {}, 0, dict.fromkeys(RESOURCES, 0)
        for u, mine in enumerate(b["unit_cols"]):
            c = next(c for c in mine if x[c])
            _, _, key, o = b["cols"][c]
            opt = self.options[u][key][o]
            attrs.update(opt.attrs)
            cycles = max(cycles, opt.cycles)
            total = add_resources(total, opt.res)
        score = sum(self.sens_weight[i][w] for i, w in enumerate(wb)) + sum(self.sens_act[k][a]
                                                                           for k, a in enumerate(ab))
        return Choice(wb, ab, int(cycles), total, attrs, float(score), optimal, took)


def _dependence(table: dict[tuple, list[Option]]) -> list[int]:
    """The positions of the key (a_in, w, a_out) the unit's options actually depend on."""
    def sig(opts):
        return tuple((o.cycles, tuple(o.res[r] for r in RESOURCES)) for o in opts)

    for size in range(4):
        for subset in itertools.combinations(range(3), size):
            groups: dict[tuple, tuple] = {}
            if all(groups.setdefault(tuple(k[p] for p in subset), sig(v)) == sig(v) for k, v in table.items()):
                return list(subset)
    return [0, 1, 2]


def joint_program(tables: dict[tuple, list[list[Option]]], units: list[Unit], w_grid: list[int], a_grid: list[int],
                  n_weight: int, n_act: int, board: dict, sens_weight, sens_act, ceilings: dict | None = None,
                  slowest: float = PROGRAM_SLOWEST) -> JointProgram:
    """The program from each width pattern's unit tables (``cost_configs`` -> ``unit_tables``); options more than
    ``slowest`` times slower than the fastest any design can be are left out (a smaller program: HiGHS solves
    the sweep's programs within its time limit)."""
    by_unit: list[dict[tuple, list[Option]]] = [{} for _ in units]
    for cfg, table in tables.items():
        if len(table) != len(units):
            raise FpgagenError("the network lowers to different layers at different bit widths", "FACTORY",
                               "keep the topology independent of the widths")
        wb, ab = config_bits(cfg, n_weight, n_act)
        for u, unit in enumerate(units):
            by_unit[u].setdefault(segment_key(unit.segment, wb, ab), table[u])
    bound = max(min(o.cycles for opts in table.values() for o in opts) for table in by_unit)
    for table in by_unit:
        for key, opts in table.items():
            table[key] = [o for o in opts if o.cycles <= slowest * bound] or [min(opts, key=lambda o: o.cycles)]
    options, depends = [], []
    for unit, table in zip(units, by_unit, strict=True):
        keep = _dependence(table)
        seg = unit.segment
        var = [("a", seg - 1), ("w", seg), ("a", seg)]
        keep = [p for p in keep if next(iter(table))[p] not in (IN, OUT)]  # a fixed end is no variable
        reduced: dict[tuple, list[Option]] = {}
        for key, opts in table.items():
            reduced.setdefault(tuple(key[p] for p in keep), opts)
        options.append(reduced)
        depends.append([var[p] for p in keep])
    return JointProgram(units, options, depends, list(w_grid), list(a_grid), n_weight, n_act,
                        caps_of(board, ceilings), sens_weight, sens_act)


def sweep(program: JointProgram, budgets: int = 8, time_limit: float = 60.0, log=lambda m: None) -> list[Choice]:
    """The front: its two ends (the fastest design at any loss, ``solve(inf)``; the fastest at no predicted loss,
    ``solve(0)``), and between them ``budgets`` frame-period bounds spaced geometrically, each solved for the
    least predicted loss (``min_loss``), which is the loss budget whose fastest design it is. Distinct width
    choices, fastest first."""
    fastest = program.solve(math.inf, time_limit)
    if fastest is None:
        return []
    log(f" fastest at any loss: {fastest.cycles:,} cycles, score {fastest.score:.4g}, {fastest.solve_s:.1f} s")
    choices = [fastest]
    widest = program.solve(0.0, time_limit)
    if widest is not None:
        log(f" fastest at no predicted loss: {widest.cycles:,} cycles, {widest.solve_s:.1f} s")
        choices.append(widest)
    slow = widest.cycles if widest is not None else fastest.cycles * SLOWEST
    for bound in np.geomspace(fastest.cycles, slow, budgets + 2)[1:-1]:
        c = program.min_loss(int(bound), time_limit)
        log(f" period <= {int(bound):,} cycles: " + ("nothing fits" if c is None else
                                                    f"score {c.score:.4g}, {c.cycles:,} cycles, {c.solve_s:.1f} s"))
        if c is not None:
            choices.append(c)
    out: list[Choice] = []
    for c in sorted(choices, key=lambda c: (c.cycles, c.score)):
        if all((c.weight_bits, c.act_bits) != (o.weight_bits, o.act_bits) for o in out):
            out.append(c)
    return out
