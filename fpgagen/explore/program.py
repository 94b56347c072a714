"""One integer program for bit widths and folding together (HAO's formulation on fpgagen's cost models), for chains
and graphs alike.

Variables of the explore: ``("w", i)``, weight layer i's width, and ``("a", k)``, explored activation quantizer k's
(fpgagen.explore.contract: a quantizer that several modules share is one variable, so the streams that must carry
one scale, as a residual add's shared quantizer, get one width).

The network's IR (fpgagen.streamline's lowering: a graph of streams, with forks, Concat, AddStreams, Upsample, ...)
is split into *units*: a sliding window with the MVAU it feeds (with the width converter between them where the
window's word differs from the MVAU's SIMD, as the folder may choose), or any other node alone (``units_of``). Which
variables a unit's cost depends on is read off the lowering, not assumed from a chain's shape: the IR is lowered at
a base width pattern and once more with each variable moved (``probe_configs``), and a unit depends on a variable
when the datatypes, resources or cycles of one of its nodes move with it (``signatures``, ``dependence``). So a
weight layer's width reaches its own MVAU (its weights, accumulator and thresholds) and, where its output is not
requantized, the nodes its stream feeds; an activation quantizer's reaches the node that thresholds to it and every
node its codes pass through (windows, maxpools, forks, a Concat, an Add, an Upsample) up to the next requantizing
one. The IR is then lowered at width patterns that give every unit every combination of the widths it depends on
(``covering_configs``: variables that meet in some unit get different colours, and the patterns are all widths per
colour). Each unit's options, per combination, are the layer's own folding cores and style alternatives priced by
``resources()`` and ``cycles()`` (``fpgagen.optimize.layer_cores``, which the folder uses), with Pareto-dominated
ones dropped.

Program variables: ``b[v, w]`` binary, variable v takes width w, one per v; ``x[u, key, o]`` binary, unit u takes
option o at the widths ``key`` of the variables it depends on, one per unit, with ``sum_{key[v]=w, o} x[u, key, o]
= b[v, w]`` for each of them (the unit's widths are the chosen ones); ``t`` >= every unit's cycles. Constraints:
every resource within the board's caps (``budget.caps_of``); the predicted loss ``sum s[v, w] b[v, w] <= L``.
Objective: ``t`` (the slowest node sets FPS), then resources (``solve``). ``sweep`` traces the front by the
equivalent dual: the least predicted loss within a bound on ``t`` (``min_loss``), at bounds spaced between the
front's two ends.

Not modelled here (the verification builds price them, and fold the network again with fpgagen's own folder):
the width converters between units whose words differ (on a graph, also those on the streams into and out of a
fork, Concat or Add), a window's input word following its producer's (each window option takes the input word it
is priced at), and FIFO depths beyond two words (a reconvergent branch's). On uniform-width LPYOLO the program
reaches the folder's optimum (575 FPS at 4 bits)."""

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
from ..ir import Network, in_ports, out_ports
from ..ir.layers import RESOURCES, add_resources, dtype_fields

DSP_STEPS = 8  # a core's DSP PEs: none, an eighth, ..., all of them (``_expand``)
PROGRAM_SLOWEST = 3.0  # the program's options: at most this many times slower than the fastest (``joint_program``)
SLOWEST = 8.0  # designs this many times slower than the fastest any could be are not priced (``core_window``)
MAX_LOWERINGS = 256  # width patterns ``covering_configs`` may ask for before the explore is refused

Var = tuple[str, int]  # ("w", i) | ("a", k)


@dataclass
class Unit:
    names: list[str]  # its IR nodes
    first: bool = False  # the host's input stream feeds it


def units_of(net: Network) -> list[Unit]:
    """The units of a lowered network, in its (topological) layer order: a sliding window whose one stream goes to
    a matrix unit (MVAU, XNOR MVAU) forms a unit with it; every other node is a unit alone."""
    edges = net.stream_edges()
    out_of: dict[str, list] = {}
    for e in edges:
        out_of.setdefault(e.src, []).append(e)
    fed_by_host = {e.dst for e in edges if e.src == "input"}
    paired: dict[str, str] = {}  # MVAU -> its window
    for lay in net.layers:
        outs = out_of.get(lay.name, [])
        if lay.TAKES_CONSUMER_SIMD and len(outs) == 1 and outs[0].dst != "output" and \
                net.layer(outs[0].dst).MATRIX_UNIT:
            paired[outs[0].dst] = lay.name
    windows = {w: m for m, w in paired.items()}
    units = []
    for lay in net.layers:
        if lay.name in paired:
            continue
        names = [lay.name, windows[lay.name]] if lay.name in windows else [lay.name]
        units.append(Unit(names, lay.name in fed_by_host))
    return units


def signatures(net: Network) -> dict[str, str]:
    """Per IR node, what its cost can depend on and what it costs at its default folding: its kind, the datatypes
    of its ports and of its other DataType fields (weights, accumulator, thresholds), its resources and cycles."""
    out = {}
    for lay in net.layers:
        dts = [dt.name for _, dt, _ in in_ports(lay)] + [dt.name for _, dt, _ in out_ports(lay)]
        fields = [f"{n}={getattr(lay, n).name}" for n in dtype_fields(lay)]
        out[lay.name] = f"{lay.kind}|{','.join(dts)}|{','.join(fields)}|{sorted(lay.resources().items())}|" \
                        f"{lay.cycles()}"
    return out


def probe_configs(w_grid: list[int], a_grid: list[int], n_weight: int, n_act: int
                  ) -> tuple[tuple[list[int], list[int]], dict[Var, tuple[list[int], list[int]]]]:
    """The base pattern (every variable at its grid's narrowest) and, per variable whose grid has more than one
    width, the base with that variable at its grid's widest."""
    base = ([min(w_grid)] * n_weight, [min(a_grid)] * n_act)
    probes: dict[Var, tuple[list[int], list[int]]] = {}
    for kind, n, grid in (("w", n_weight, w_grid), ("a", n_act, a_grid)):
        if len(grid) < 2:
            continue
        for i in range(n):
            wb, ab = list(base[0]), list(base[1])
            (wb if kind == "w" else ab)[i] = max(grid)
            probes[(kind, i)] = (wb, ab)
    return base, probes


def dependence(units: list[Unit], base: dict[str, str], probes: dict[Var, dict[str, str]], where: str
               ) -> list[list[Var]]:
    """Per unit, the variables whose move changes one of its nodes' signatures (``signatures``), in variable
    order (weights first)."""
    for var, sig in probes.items():
        if set(sig) != set(base):
            raise FpgagenError(f"the network lowers to different layers when {_var_name(var)} changes width", where,
                               "keep the topology independent of the bit widths")
    order = sorted(probes, key=lambda v: (v[0] != "w", v[1]))
    return [[v for v in order if any(probes[v][n] != base[n] for n in unit.names)] for unit in units]


def _var_name(var: Var) -> str:
    return f"weight_bits[{var[1]}]" if var[0] == "w" else f"act_bits[{var[1]}]"


def covering_configs(depends: list[list[Var]], w_grid: list[int], a_grid: list[int], n_weight: int, n_act: int,
                     where: str = "FACTORY") -> list[tuple[list[int], list[int]]]:
    """Width patterns under which every unit sees every combination of the widths of the variables it depends on.
    Variables of one kind that meet in some unit get different colours (greedily, in order); a pattern gives one
    width per colour, and the patterns are every such choice: ``|W|^(weight colours) x |A|^(act colours)`` of them
    (a chain: ``|W| x |A|^2``, each unit depending on its input's, its weights' and its output's widths)."""
    colour: dict[Var, int] = {}
    for kind, n in (("w", n_weight), ("a", n_act)):
        for i in range(n):
            near = {colour[v] for d in depends if (kind, i) in d for v in d if v in colour and v[0] == kind}
            colour[(kind, i)] = next(c for c in itertools.count() if c not in near)
    n_w = 1 + max((colour[("w", i)] for i in range(n_weight)), default=0)
    n_a = 1 + max((colour[("a", k)] for k in range(n_act)), default=0)
    total = len(w_grid) ** n_w * len(a_grid) ** n_a
    if total > MAX_LOWERINGS:
        raise FpgagenError(f"pricing every unit at every width combination it depends on takes {total} lowerings "
                           f"({n_w} weight and {n_a} activation width colours)", where,
                           "give fewer widths in --weight-bits/--act-bits, or tie quantizers that meet (a shared "
                           "act_quant counts as one)")
    out = []
    for ws in itertools.product(w_grid, repeat=n_w):
        for as_ in itertools.product(a_grid, repeat=n_a):
            out.append(([ws[colour[("w", i)]] for i in range(n_weight)],
                        [as_[colour[("a", k)]] for k in range(n_act)]))
    return out


def key_of(depends: list[Var], weight_bits: list[int], act_bits: list[int]) -> tuple[int, ...]:
    return tuple(weight_bits[i] if kind == "w" else act_bits[i] for kind, i in depends)


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


def unit_options(net: Network, unit: Unit, window: tuple[float, float, float] = (0, math.inf, 0)) -> list[Option]:
    """A unit's options: its cores within ``window`` (``core_window``), each with every combination of its style
    alternatives (DSP PEs none or all), priced by ``optimize.layer_cores``; dominated ones dropped."""
    layers = [net.layer(n) for n in unit.names]
    first = unit.first
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


def unit_tables(net: Network, slowest: float = SLOWEST) -> list[list[Option]]:
    """Every unit's options in one lowered network (what a lowering task returns)."""
    units = units_of(net)
    window = core_window(net, units, slowest)
    return [unit_options(net, unit, window) for unit in units]


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


def _dependence(table: dict[tuple, list[Option]], size: int) -> list[int]:
    """The positions of the key the unit's options actually depend on (fewest first): a variable may move a
    node's datatypes and leave its cost alone."""
    def sig(opts):
        return tuple((o.cycles, tuple(o.res[r] for r in RESOURCES)) for o in opts)

    for k in range(size + 1):
        for subset in itertools.combinations(range(size), k):
            groups: dict[tuple, tuple] = {}
            if all(groups.setdefault(tuple(key[p] for p in subset), sig(v)) == sig(v) for key, v in table.items()):
                return list(subset)
    return list(range(size))


def joint_program(tables: dict[tuple, list[list[Option]]], units: list[Unit], depends: list[list[Var]],
                  w_grid: list[int], a_grid: list[int], n_weight: int, n_act: int, board: dict, sens_weight,
                  sens_act, ceilings: dict | None = None, slowest: float = PROGRAM_SLOWEST) -> JointProgram:
    """The program from each width pattern's unit tables (``tables``: (weight widths, act widths) as tuples ->
    ``unit_tables`` of the IR lowered there; the patterns must cover every unit's combinations, as
    ``covering_configs`` gives them). Options more than ``slowest`` times slower than the fastest any design can
    be are left out (a smaller program: HiGHS solves the sweep's programs within its time limit)."""
    by_unit: list[dict[tuple, list[Option]]] = [{} for _ in units]
    for (wb, ab), table in tables.items():
        if len(table) != len(units):
            raise FpgagenError("the network lowers to different layers at different bit widths", "FACTORY",
                               "keep the topology independent of the bit widths")
        for u in range(len(units)):
            by_unit[u].setdefault(key_of(depends[u], list(wb), list(ab)), table[u])
    grids = {"w": list(w_grid), "a": list(a_grid)}
    for u, (unit, table) in enumerate(zip(units, by_unit, strict=True)):
        want = set(itertools.product(*(grids[kind] for kind, _ in depends[u])))
        if set(table) != want:
            raise FpgagenError(f"the cost tables miss width combinations of unit {'+'.join(unit.names)}", "explore",
                               "price the IR at covering_configs' patterns (a resumed run folder from another "
                               "fpgagen version: start over)")
    bound = max(min(o.cycles for opts in table.values() for o in opts) for table in by_unit)
    for table in by_unit:
        for key, opts in table.items():
            table[key] = [o for o in opts if o.cycles <= slowest * bound] or [min(opts, key=lambda o: o.cycles)]
    options, kept = [], []
    for u, table in enumerate(by_unit):
        keep = _dependence(table, len(depends[u]))
        reduced: dict[tuple, list[Option]] = {}
        for key, opts in table.items():
            reduced.setdefault(tuple(key[p] for p in keep), opts)
        options.append(reduced)
        kept.append([depends[u][p] for p in keep])
    return JointProgram(units, options, kept, list(w_grid), list(a_grid), n_weight, n_act,
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
        c = program.min_loss(round(bound), time_limit)
        log(f" period <= {round(bound):,} cycles: " + ("nothing fits" if c is None else
                                                    f"score {c.score:.4g}, {c.cycles:,} cycles, {c.solve_s:.1f} s"))
        if c is not None:
            choices.append(c)
    out: list[Choice] = []
    for c in sorted(choices, key=lambda c: (c.cycles, c.score)):
        if all((c.weight_bits, c.act_bits) != (o.weight_bits, o.act_bits) for o in out):
            out.append(c)
    return out
