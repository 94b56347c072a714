"""One integer program for bit widths and folding together (HAO's formulation on fpgagen's cost models).

The network's IR (a chain: sliding window -> MVAU [-> maxpool] ... as fpgagen.streamline lowers it) is split
into *units*: a sliding window with the MVAU it feeds (they share SIMD: the window takes its consumer's), or any
other node alone. A unit belongs to the segment of weight layer j (the nodes after MVAU j-1 up to MVAU j), whose
costs depend only on (a_{j-1}, w_j, a_j): the widths of its input activation, its weights and its output
activation (thresholds). Each unit's options, per width triple, are the layer's own folding cores and style
alternatives priced by ``resources()`` and ``cycles()`` (``fpgagen.optimize.layer_cores``, which the folder
uses), with Pareto-dominated ones dropped. The IRs come from lowering the factory's network at a few width
patterns that cover every triple (``cost_configs``).

Variables: ``b[v, w]`` binary, variable v (a weight layer's or activation quantizer's width) takes w, one per v;
``x[u, key, o]`` binary, unit u takes option o at the widths ``key`` of the variables it depends on, one per
unit, with ``sum_{key[v]=w, o} x[u, key, o] = b[v, w]`` for each of them (the unit's widths are the chosen
ones); ``t`` >= every unit's cycles. Constraints: every resource within the board's caps (``budget.caps_of``);
the predicted loss ``sum s[v, w] b[v, w] <= L``. Objective: ``t`` (the slowest node sets FPS), then resources.
Sweeping ``L`` traces the front.

Not modelled here (the verification builds price them, and fold the network again with fpgagen's own folder):
the width converters between units whose words differ, and FIFO depths beyond two words."""

from __future__ import annotations

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
    if not net.is_chain:
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
    """A core with one alternative from every style group, DSP PEs none or all."""
    out = []
    dsp_choices = [0, core.dsp_max] if core.dsp_max else [0]
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


def _front(items: list[Option]) -> list[Option]:
    """The options no other beats on cycles and every resource."""
    if not items:
        return items
    keys = np.array([[o.cycles, *(o.res[r] for r in RESOURCES)] for o in items], float)
    order = np.lexsort(keys.T[::-1])
    kept: list[int] = []
    for i in order:
        if kept and np.any(np.all(keys[kept] <= keys[i], axis=1)):
            continue
        kept.append(int(i))
    return [items[i] for i in sorted(kept)]


def unit_options(net: Network, unit: Unit, first: bool) -> list[Option]:
    layers = [net.layer(n) for n in unit.names]
    if len(layers) == 1:
        lay = layers[0]
        return _front([Option(c.cycles, res, {lay.name: attrs}) for c in optimize.layer_cores(lay, first)
                       for attrs, res in _expand(c)])
    window, mvau = layers
    by_simd: dict[int, list[Option]] = {}
    for c in optimize.layer_cores(window, first):
        for attrs, res in _expand(c):
            by_simd.setdefault(attrs["simd"], []).append(Option(c.cycles, res, {window.name: attrs}))
    by_simd = {s: _front(v) for s, v in by_simd.items()}
    out = []
    for c in optimize.layer_cores(mvau, False):
        mine = _front([Option(c.cycles, res, {mvau.name: attrs}) for attrs, res in _expand(c)])
        for w in by_simd.get(c.attrs["simd"], []):
            for m in mine:
                out.append(Option(max(w.cycles, m.cycles), add_resources(w.res, m.res), {**w.attrs, **m.attrs}))
    return _front(out)


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
        self.columns = n
        self._bits = bits

    def solve(self, loss_budget: float = math.inf, time_limit: float = 60.0) -> Choice | None:
        """The fastest choice whose predicted loss is within ``loss_budget`` (None: nothing fits)."""
        if not self._built:
            self.build()
        b = self._built
        n, t_col = b["n"], b["t"]
        hi = b["hi"].copy()
        hi[self.loss_row] = loss_budget if math.isfinite(loss_budget) else np.inf
        cycles_top = max(max((o.cycles for opts in t.values() for o in opts), default=1) for t in self.options)
        cost = b["cost"].copy()
        cost[t_col] = 1.0 / cycles_top * 1e3  # FPS first: a 0.1% faster design outweighs any resource saving
        integrality = np.ones(n)
        integrality[t_col] = 0
        upper = np.ones(n)
        upper[t_col] = np.inf
        start = time.perf_counter()
        res = milp(cost, integrality=integrality, bounds=(np.zeros(n), upper),
                   constraints=LinearConstraint(b["a"], b["lo"], hi),
                   options={"time_limit": time_limit, "mip_rel_gap": 1e-4})
        took = time.perf_counter() - start
        if res.x is None:
            return None
        x = np.round(res.x)
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
        return Choice(wb, ab, int(cycles), total, attrs, float(score), res.status == 0, took)


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


def joint_program(nets: dict[tuple, Network], w_grid: list[int], a_grid: list[int], n_weight: int, n_act: int,
                  board: dict, sens_weight, sens_act, ceilings: dict | None = None) -> JointProgram:
    """The program from lowered networks ``nets[(w, a_even, a_odd)]`` (``cost_configs``)."""
    first_net = next(iter(nets.values()))
    units = units_of(first_net, n_weight, n_act, "FACTORY")
    names = [[lay.name for lay in net.layers] for net in nets.values()]
    if any(n != names[0] for n in names):
        raise FpgagenError("the network lowers to different layers at different bit widths", "FACTORY",
                           "keep the topology independent of the widths")
    tables: list[dict[tuple, list[Option]]] = [{} for _ in units]
    for cfg, net in nets.items():
        wb, ab = config_bits(cfg, n_weight, n_act)
        for u, unit in enumerate(units):
            key = segment_key(unit.segment, wb, ab)
            if key not in tables[u]:
                tables[u][key] = unit_options(net, unit, u == 0)
    options, depends = [], []
    for unit, table in zip(units, tables, strict=True):
        keep = _dependence(table)
        seg = unit.segment
        var = [("a", seg - 1), ("w", seg), ("a", seg)]
        reduced: dict[tuple, list[Option]] = {}
        for key, opts in table.items():
            reduced.setdefault(tuple(key[p] for p in keep), opts)
        fixed = [p for p in keep if key[p] in (IN, OUT)]
        if fixed:  # a fixed end is no variable: drop it from the key
            keep2 = [p for p in keep if p not in fixed]
            reduced = {tuple(k[keep.index(p)] for p in keep2): v for k, v in reduced.items()}
            keep = keep2
        options.append(reduced)
        depends.append([var[p] for p in keep])
    return JointProgram(units, options, depends, list(w_grid), list(a_grid), n_weight, n_act,
                        caps_of(board, ceilings), sens_weight, sens_act)


def sweep(program: JointProgram, budgets: int = 8, time_limit: float = 60.0, log=lambda m: None) -> list[Choice]:
    """Solve at ``budgets`` predicted-loss budgets from the least any fitting design needs to unbounded (the
    fastest design); distinct width choices, fastest first."""
    top = sum(max(s.values()) for s in program.sens_weight) + sum(max(s.values()) for s in program.sens_act)
    fastest = program.solve(math.inf, time_limit)
    if fastest is None:
        return []
    choices = [fastest]
    levels = np.geomspace(max(top * 1e-4, 1e-9), max(fastest.score, 1e-8), budgets - 1) if fastest.score > 0 else []
    for level in [0.0, *levels]:
        c = program.solve(float(level), time_limit)
        log(f"  budget {level:.4g}: " + ("nothing fits" if c is None else
                                         f"{c.cycles:,} cycles, score {c.score:.4g}, {c.solve_s:.1f} s"))
        if c is not None and all((c.weight_bits, c.act_bits) != (o.weight_bits, o.act_bits) for o in choices):
            choices.append(c)
    return sorted(choices, key=lambda c: c.cycles)
