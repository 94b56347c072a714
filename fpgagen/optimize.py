"""Folding optimizer: the optimal PE/SIMD/memory/multiplier choice per layer under a board budget, as a mixed
integer linear program solved by HiGHS (``scipy.optimize.milp``).

The network is a graph of nodes (the layers, width converters left out) joined by streams, each from one node's
output port to another node's input port (``nodes_and_streams``); a chain is the special case where each node feeds the
next on port 0, and it takes the same program, column for column.

Domain: each node's ``fold_cores()`` (PE, SIMD: they set its cycles and the word of every port) and, per core, its
``style_groups()`` (memory styles, threshold mode, DSP PEs: they change resources only, each group additively).

Program for a cycle bound T (width converters on the streams are part of the model):

* ``x[l, k]`` binary: node ``l`` takes core ``k`` (only cores with cycles <= T exist); ``sum_k x[l, k] = 1``.
* ``y[l, k, g, o]`` binary: alternative ``o`` of style group ``g``; ``sum_o y[l, k, g, o] = x[l, k]``.
  The DSP-PE group is linear: ``d[l, k]`` integer, ``0 <= d <= PE_k * x[l, k]``, each unit moving one PE's
  products from LUTs to DSP48E1s.
* ``z[e, u, v]`` in [0, 1]: on the stream ``e`` from port ``a`` of producer ``p`` to port ``b`` of consumer ``q``
  the producer emits words of ``u`` elements and the consumer takes words of ``v``:
  ``sum_v z[e,u,v] = sum_{k: out_a(k)=u} x[p,k]`` and ``sum_u z[e,u,v] = sum_{k: in_b(k)=v} x[q,k]``. Both
  right-hand sides are one-hot, so ``z`` is exactly the product of the two choices, and a width converter's
  resources (``u != v``, only if its cycles are <= T) enter linearly. That is what the fold step emits: a
  converter on exactly the streams whose two words differ (``fold.link_streams``; the kinds with several ports
  take one word on all of them, so a fork, concat or add gets its converters on its streams like any node).
  A sliding window takes its producer's word (it accepts any word dividing C), so only ``v = u``; a window fed by
  the host takes whole pixels. Streams from the host and to the host carry the node's own word (no converter).
* Budget: for every resource r, ``sum res_r <= ceiling_r * board_r - shell_r - reserve_r``. Every stream but the
  host's input is charged a 2-deep FIFO of its width (each output port of a node's core, and each converter's
  output); ``reserve`` is what the FIFOs sized after the folding (``fifo.size_fifos``: a reconvergent branch needs
  depth) need beyond that, fed back by ``fold.fold_network``.
* Objective: the resources, as the sum of each one's share of its cap.

The report's totals are then exactly the plan's ``totals`` (kernels and converters as their cost models price
them, every stream at a 2-deep FIFO) plus the sized FIFOs' excess over 2-deep ones plus the board's shell;
``fold.fold_network`` checks the first equality and records the excess (``fifo_excess``).

Maximum FPS: the bottleneck T is the cycle count of some core or converter (throughput is the slowest node's), and
a larger T only adds choices, so feasibility is monotone in T: bisect the sorted candidate values with feasibility
solves, then solve for the least resources at the smallest feasible T. That is the lexicographic optimum
(fastest, then cheapest) under the model, proven by HiGHS: the fastest exactly (every smaller bound is proven
infeasible), the resources to within ``RESOURCE_GAP`` of the least (``mip_rel_gap``; 0 asks for an exact proof).
Target FPS: solve at ``T = f_clk / target``.

Work. The program is built once per fold for every core and converter (``_Program``); the program for a bound T
is its columns whose process runs within T. The search bisects the LP relaxation (a necessary condition, cheap)
for a lower bound, gallops up from it with exact solves and bisects the last step with feasibility-only solves
(objective 0: the first integer point ends it). The FIFO reserve loop (``fold.fold_network``) calls again with a
larger reserve: every bound proven infeasible stays infeasible, so the search resumes at the bound it found.
Every solve is recorded (``SolveRecord``: size, status, branch-and-bound nodes, gap); ``work_done`` sums them
for the report and the benchmark, and ``Plan.optimal`` is true only when HiGHS proved the returned choice
optimal to within the gap asked (``Plan.gap``: the gap it proved; fpgagen.report's ``proof_text`` says it in
words). HiGHS writes nothing to the console: its log, and the lines its C++ prints with printf, go to the
build's logs/fold_milp.log.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import ctypes
import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import LinearConstraint, milp
from scipy.sparse import coo_array

from .budget import caps_of, ceilings_of  # noqa: F401 - ceilings_of: callers read it here too
from .errors import FpgagenError
from .fifo import fifo_resources
from .ir import Layer, Network, WidthConverter, in_ports, out_ports
from .ir.layers import RESOURCES, add_resources

# The least-resource solve at the fastest bound stops once HiGHS proves its answer within 0.5% of the least: the last
# fraction of a percent of LUTs can cost a thousand branch-and-bound nodes (TinyYOLOv3: 11.7 s against 1.1 s),
# and it never changes the FPS, which stays proven exactly.
RESOURCE_GAP = 0.005
OBJECTIVE_WEIGHTS = {"LUT": 1.0, "BRAM18": 1.0, "DSP": 1.0, "FF": 0.1}  # LUTRAM is inside LUT
HOST = -1  # a stream end that is the host (the DMA input or output), not a node


@dataclass
class Core:
    """One core of one node with its style groups, as deltas on the core's base resources."""

    attrs: dict
    cycles: int
    in_words: tuple[int, ...]  # per input port
    out_words: tuple[int, ...]  # per output port
    base: dict[str, int]
    groups: list[list[tuple[dict, dict[str, int]]]]  # per group: (attrs, resource delta)
    dsp_max: int = 0  # units of dsp_step DSP PEs
    dsp_unit: dict[str, int] = field(default_factory=dict)
    dsp_step: int = 1  # DSP PEs per unit (2 where pairs share a DSP chain)


@dataclass(frozen=True)
class Stream:
    """One stream between nodes (indices into the node list, ``HOST`` for the host), converters left out."""

    src: int
    src_port: int
    dst: int
    dst_port: int


@dataclass
class Plan:
    """The optimizer's answer: the attributes per layer, the bottleneck cycles and the totals (2-deep FIFOs)."""

    attrs: dict[str, dict]
    cycles: int
    totals: dict[str, int]
    caps: dict[str, float]
    solve_s: float
    variables: int = 0  # columns of the program (every core and converter)
    solves: int = 0
    records: list[SolveRecord] = field(default_factory=list)  # every solve, in order
    optimal: bool = False  # HiGHS proved the final solve optimal (and every bound below it infeasible)
    gap: float | None = None  # the relative gap HiGHS proved on the final solve (0 when optimal)


@dataclass
class SolveRecord:
    """One HiGHS run: what was asked (``kind``: "lp" relaxation, "feasible", "optimal"), at which cycle bound, on
    how large a program, and what came back. ``nodes`` (branch and bound) does not depend on the machine's load."""

    kind: str
    cycles: int
    columns: int
    rows: int
    nonzeros: int
    integers: int
    status: str  # optimal | infeasible | limit | unbounded | other
    feasible: bool
    seconds: float
    nodes: int = 0
    gap: float | None = None


# --- budget ---------------------------------------------------------------------------------------------------
# --- the graph ------------------------------------------------------------------------------------------------
def nodes_and_streams(net: Network) -> tuple[list[Layer], list[Stream]]:
    """The layers without width converters, and the streams between them with every converter chain collapsed
    (a converter sits on one stream, port 0 in and out). A chain's streams run host -> 0 -> 1 -> ... -> host."""
    nodes = [lay for lay in net.layers if not lay.INSERTED_BY_FOLD]
    index = {lay.name: i for i, lay in enumerate(nodes)}
    edges = net.stream_edges()
    out_of = {(e.src, e.src_port): e for e in edges}
    streams = []
    for e in edges:
        if e.src not in index and e.src != "input":  # starts at a converter: covered from its producer
            continue
        dst, dst_port = e.dst, e.dst_port
        while dst not in index and dst != "output":
            nxt = out_of[(dst, 0)]
            dst, dst_port = nxt.dst, nxt.dst_port
        streams.append(Stream(index.get(e.src, HOST), e.src_port, index.get(dst, HOST), dst_port))
    return nodes, streams


def _inner(streams: list[Stream]) -> list[Stream]:
    """The streams between two nodes (the ones that can need a width converter)."""
    return [s for s in streams if s.src != HOST and s.dst != HOST]


# --- the choice space -----------------------------------------------------------------------------------------
def _probe(layer: Layer, attrs: dict) -> Layer:
    probe = copy.copy(layer)
    probe.__dict__.update(attrs)
    return probe


def _sub(a: dict, b: dict) -> dict[str, int]:
    return {r: a[r] - b[r] for r in RESOURCES}


def _words(layer) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return tuple(w for _, _, w in in_ports(layer)), tuple(w for _, _, w in out_ports(layer))


def layer_cores(layer: Layer, first: bool, dsp: bool = True) -> list[Core]:
    """Every core of ``layer`` with its style groups as resource deltas (dominated alternatives dropped). A sliding
    window's input word is its producer's (any divisor of C; C when the host feeds it, ``first``)."""
    cores = [{**c, **w} for c in layer.fold_cores() for w in layer.input_word_options(first)]
    out = []
    for attrs in cores:
        core = _probe(layer, attrs)
        groups = core.style_groups()
        base_attrs = {k: v for g in groups for k, v in g[0].items()}
        base = _probe(core, base_attrs)
        base_res = base.resources()
        deltas, dsp_max, dsp_unit, dsp_step = [], 0, {}, 1
        key = layer.DSP_COUNT
        for g in groups:
            if key and all(set(o) == {key} for o in g):  # linear: one unit per step of DSP PEs (1, or a packed pair)
                counts = sorted(o[key] for o in g)
                dsp_step = counts[1] if len(counts) > 1 else 1
                dsp_max = counts[-1] // dsp_step if dsp else 0
                if dsp_max:
                    dsp_unit = _sub(_probe(base, {key: dsp_step}).resources(), base_res)
                continue
            alts = [(o, _sub(_probe(base, o).resources(), base_res)) for o in g]
            deltas.append(_pareto_alts(alts))
        base_res = add_resources(base_res, base_fifo(base))
        out.append(Core({**attrs, **base_attrs}, base.cycles(), *_words(base), base_res, deltas,
                        dsp_max, dsp_unit, dsp_step))
    return out


def base_fifo(layer: Layer) -> dict[str, int]:
    """The least FIFO every stream out of ``layer`` has: 2 words of that port's word (what codegen emits by
    default), one per output port."""
    return add_resources(*(fifo_resources(2, word * dt.bitwidth(), "srl") for _, dt, word in out_ports(layer)))


def _pareto_alts(alts: list[tuple[dict, dict]]) -> list[tuple[dict, dict]]:
    keys = np.array([[d[r] for r in RESOURCES] for _, d in alts])
    front: list[int] = []
    for i in np.lexsort(keys.T[::-1]):
        if not front or not np.any(np.all(keys[front] <= keys[i], axis=1)):
            front.append(int(i))
    return [alts[i] for i in sorted(front)]


def converter(producer: Layer, u: int, v: int, port: int = 0) -> WidthConverter:
    """The width converter on the stream out of ``producer``'s output ``port`` (words of u -> words of v)."""
    shape, dt, _ = out_ports(producer)[port]
    return WidthConverter(f"{producer.name}_dwc{port}", shape, shape, dt, dt, in_elems=u, out_elems=v)


def _stream_words(nodes: list[Layer], cores: list[list[Core]], s: Stream) -> list[tuple[int, int]]:
    """The (producer word, consumer word) pairs the stream can carry."""
    return [(u, v) for u in sorted({c.out_words[s.src_port] for c in cores[s.src]})
            for v in sorted({c.in_words[s.dst_port] for c in cores[s.dst]}) if _allowed(nodes[s.dst], u, v)]


def _converters(nodes: list[Layer], cores: list[list[Core]], streams: list[Stream]) -> list[WidthConverter]:
    """Every width converter a choice of cores can need (producer word u != consumer word v)."""
    return [converter(nodes[s.src], u, v, s.src_port) for s in _inner(streams)
            for u, v in _stream_words(nodes, cores, s) if u != v]


def _allowed(consumer: Layer, u: int, v: int) -> bool:
    return consumer.takes_word(u, v)


# --- the program ----------------------------------------------------------------------------------------------
class _Program:
    """Variables and rows of the program (see the module docstring), built once for every core and converter;
    the program for a cycle bound ``t`` is its columns whose cycles are <= t (``solve``)."""

    def __init__(self, layers: list[Layer], streams: list[Stream], cores: list[list[Core]], caps: dict[str, float]):
        self.layers, self.caps, self.cores = layers, caps, cores
        cols: list[tuple] = []  # what each column is: ("x", l, k) | ("y", l, k, g, o) | ("d", l, k) | ("z", pair)
        res_cols: list[dict[str, int]] = []
        integer: list[bool] = []
        upper: list[float] = []
        cycles: list[int] = []  # a column exists in the program for t iff its process's cycles are <= t

        def col(kind, res, cyc, is_int=True, ub=1.0) -> int:
            cols.append(kind)
            res_cols.append(res)
            integer.append(is_int)
            upper.append(ub)
            cycles.append(cyc)
            return len(cols) - 1

        rows, lo, hi = [], [], []  # rows as lists of (column, value)
        self.x: list[list[int]] = []
        for li, cs in enumerate(cores):
            xs = []
            for ki, c in enumerate(cs):
                xi = col(("x", li, ki), c.base, c.cycles)
                xs.append(xi)
                for gi, alts in enumerate(c.groups):
                    if len(alts) == 1:
                        res_cols[xi] = add_resources(res_cols[xi], alts[0][1])
                        continue
                    ys = [col(("y", li, ki, gi, oi), d, c.cycles) for oi, (_, d) in enumerate(alts)]
                    rows.append([(y, 1) for y in ys] + [(xi, -1)])
                    lo.append(0)
                    hi.append(0)
                if c.dsp_max:
                    di = col(("d", li, ki), c.dsp_unit, c.cycles, ub=c.dsp_max)
                    rows.append([(di, 1), (xi, -c.dsp_max)])
                    lo.append(-np.inf)
                    hi.append(0)
            self.x.append(xs)
            rows.append([(xi, 1) for xi in xs])  # one core per node
            lo.append(1)
            hi.append(1)
        priced: dict[tuple, tuple[int, dict[str, int]]] = {}  # converters alike in elements, type and words
        for si, s in enumerate(_inner(streams)):  # stream words agree, or a converter joins them
            prod, cons = cores[s.src], cores[s.dst]
            zs = []
            for u, v in _stream_words(layers, cores, s):
                if u == v:
                    zs.append((col(("z", si, u, v), dict.fromkeys(RESOURCES, 0), 0, False), u, v))
                    continue
                shape, dt, _ = out_ports(layers[s.src])[s.src_port]
                key = (math.prod(shape), dt.name, u, v)
                if key not in priced:
                    w = converter(layers[s.src], u, v, s.src_port)
                    priced[key] = (w.cycles(), add_resources(w.resources(), base_fifo(w)))
                cyc, res = priced[key]
                zs.append((col(("z", si, u, v), res, cyc, False), u, v))
            # a word no core within t has leaves its row with z's only: they are then 0
            for u in sorted({c.out_words[s.src_port] for c in prod}):
                rows.append([(z, 1) for z, zu, _ in zs if zu == u] +
                            [(self.x[s.src][k], -1) for k, c in enumerate(prod) if c.out_words[s.src_port] == u])
                lo.append(0)
                hi.append(0)
            for v in sorted({c.in_words[s.dst_port] for c in cons}):
                rows.append([(z, 1) for z, _, zv in zs if zv == v] +
                            [(self.x[s.dst][k], -1) for k, c in enumerate(cons) if c.in_words[s.dst_port] == v])
                lo.append(0)
                hi.append(0)
        self.budget_rows = len(rows)
        for r in RESOURCES:  # the budget (its right-hand side is set per solve: caps - reserve)
            rows.append([(i, rc[r]) for i, rc in enumerate(res_cols) if rc[r]])
            lo.append(-np.inf)
            hi.append(caps[r])
        self.cols, self.res_cols = cols, res_cols
        self.n = len(cols)
        rr = [i for i, row in enumerate(rows) for _ in row]
        cc = [c for row in rows for c, _ in row]
        vv = [v for row in rows for _, v in row]
        self.a = coo_array((vv, (rr, cc)), shape=(len(rows), self.n)).tocsc()
        self.lo, self.hi = np.array(lo, float), np.array(hi, float)
        self.integrality, self.upper = np.array(integer, int), np.array(upper, float)
        self.cycles = np.array(cycles, np.int64)
        self.cost = np.array([sum(w * rc[r] / max(caps[r], 1.0) for r, w in OBJECTIVE_WEIGHTS.items())
                              for rc in res_cols])
        # per node, per core: its resources at its cheapest styles without DSP PEs, one DSP unit's, and the most
        # units; and its cycles with the least of each resource it can take (DSP units at their best)
        self.parts = [(np.array([[c.base[r] + sum(min(d[r] for _, d in alts) for alts in c.groups) for r in RESOURCES]
                                 for c in cs], float).reshape(len(cs), len(RESOURCES)),
                       np.array([[c.dsp_unit.get(r, 0) for r in RESOURCES] for c in cs], float).reshape(len(cs),
                                                                                                      len(RESOURCES)),
                       np.array([c.dsp_max for c in cs], float)) for cs in cores]
        self.least = [(np.array([c.cycles for c in cs]), part + np.minimum(0.0, most[:, None] * unit))
                      for cs, (part, unit, most) in zip(cores, self.parts, strict=True)]
        # per column, the core it belongs to (an index into the cores of all nodes in order), -1 for a stream's;
        # a style alternative's resources beyond its group's cheapest (0 for the other columns)
        first = np.cumsum([0] + [len(cs) for cs in cores])
        self.owner = np.array([first[c[1]] + c[2] if c[0] in "xyd" else -1 for c in cols], np.int64)
        self.least_of_core = np.concatenate([least for _, least in self.least])
        self.extra = np.zeros((len(cols), len(RESOURCES)))
        for i, c in enumerate(cols):
            if c[0] == "y":
                alts = cores[c[1]][c[2]].groups[c[3]]
                self.extra[i] = [alts[c[4]][1][r] - min(d[r] for _, d in alts) for r in RESOURCES]

    def possible(self, t: float, reserve: dict) -> np.ndarray | None:
        """Which columns can be in a solution within ``t``: a core is left out when, for some resource, it needs
        more than the budget leaves once every other node takes its cheapest core within ``t`` (converters only
        add), so no solution of the program holds it. Exact, and HiGHS' presolve is off: a core of 8 million LUTs
        would otherwise sit in the LUT row, scaling it badly. None if nothing fits at all."""
        mins = []
        for cycles, least in self.least:
            within = least[cycles <= t]
            if not len(within):
                return None
            mins.append(within.min(axis=0))
        slack = np.array([self.caps[r] - reserve.get(r, 0) for r in RESOURCES]) - np.sum(mins, axis=0)
        if np.any(slack < 0):
            return None
        core_ok = np.concatenate([_dsp_units_fit(*parts, slack + m) for parts, m in zip(self.parts, mins, strict=True)])
        # a style alternative: its core at its least with that alternative instead of the group's cheapest
        room = np.concatenate([np.broadcast_to(slack + m, (len(least), len(RESOURCES)))
                               for (_, least), m in zip(self.least, mins, strict=True)])
        owner = np.maximum(self.owner, 0)
        alt_ok = np.all(self.least_of_core[owner] + self.extra <= room[owner], axis=1)
        return (self.cycles <= t) & np.where(self.owner >= 0, core_ok[owner] & alt_ok, True)

    def candidates(self, floor: int) -> list[int]:
        """Every cycle count a bottleneck can have (a core's or a width converter's), from ``floor`` on."""
        return sorted({int(c) for c in np.unique(self.cycles) if c >= floor})

    def solve(self, t: float, reserve: dict, kind: str, time_limit: float, log_file: str | None = None,
              gap: float = 0.0) -> tuple[dict[str, dict] | None, SolveRecord | None]:
        """The program for the cycle bound ``t`` with ``reserve`` kept free. ``kind``: "optimal", the least-resource
        choice per layer (attributes by layer name; proven optimal unless the record says otherwise); "feasible",
        any choice within the budget (the objective is 0, so the first one found is optimal); "lp", only whether
        the LP relaxation is feasible (a fast necessary condition: the attributes are then ``{}``). None if nothing
        fits. HiGHS' presolve is off: on these programs it costs more than it saves; ``possible`` drops the cores
        that cannot fit instead."""
        keep = self.possible(t, reserve)
        if keep is None:  # not even each resource alone fits: no solve, no record
            return None, None
        a = self.a[:, keep]
        hi = self.hi.copy()
        hi[self.budget_rows:] = [self.caps[r] - reserve.get(r, 0) for r in RESOURCES]
        cost = self.cost[keep] if kind == "optimal" else np.zeros(int(keep.sum()))
        integrality = self.integrality[keep] if kind != "lp" else None
        # HiGHS logs to the console only (scipy's wrapper cannot open its log file): with fd 1 sent to the log
        options = {"time_limit": time_limit, "mip_rel_gap": gap if kind == "optimal" else 0.0, "presolve": False,
                   "disp": log_file is not None}
        if log_file is not None:
            with open(log_file, "a") as f:
                f.write(f"\n=== fpgagen: {kind} solve at a bound of {t} cycles ===\n")
        start = time.perf_counter()
        with _solver_output_to(log_file):
            res = milp(cost, integrality=integrality, bounds=(np.zeros(a.shape[1]), self.upper[keep]),
                       constraints=LinearConstraint(a, self.lo, hi), options=options)
        record = SolveRecord(kind, int(t) if math.isfinite(t) else -1, a.shape[1], a.shape[0], int(a.nnz),
                             int(np.count_nonzero(self.integrality[keep])) if kind != "lp" else 0,
                             _STATUS.get(res.status, "other"), res.x is not None, time.perf_counter() - start,
                             int(res.get("mip_node_count") or 0), res.get("mip_gap"))
        if res.x is None:
            if res.status == 1:  # a limit was hit before any feasible point: no proof either way
                raise FpgagenError(f"the folding optimizer found no answer in {time_limit:g} s",
                                   "folding optimizer", "raise the time limit or fold by hand (--folding)")
            return None, record
        if kind == "lp":
            return {}, record
        x = np.zeros(self.n)
        x[keep] = res.x
        out: dict[str, dict] = {}
        picked = [i for i, c in enumerate(self.cols) if c[0] in "xyd" and round(x[i])]
        for i in sorted(picked, key=lambda i: "xyd".index(self.cols[i][0])):  # the core first, then its styles
            what = self.cols[i]
            core = self.cores[what[1]][what[2]]
            name = self.layers[what[1]].name
            if what[0] == "x":
                out[name] = dict(core.attrs)
            elif what[0] == "y":
                out[name].update(core.groups[what[3]][what[4]][0])
            else:  # d <= PE * x, so a nonzero d belongs to the chosen core
                out[name][self.layers[what[1]].DSP_COUNT] = round(x[i]) * core.dsp_step
        return out, record


_STATUS = {0: "optimal", 1: "limit", 2: "infeasible", 3: "unbounded"}


@contextlib.contextmanager
def _solver_output_to(path: str | None):
    """HiGHS' C++ code prints some lines with printf, whatever its options say: send the process's stdout (fd 1)
    into the solver log (or nowhere) while it runs, flushing the C buffer before handing fd 1 back."""
    sys.stdout.flush()
    libc = ctypes.CDLL(None)
    saved = os.dup(1)
    target = os.open(path or os.devnull, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.dup2(target, 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(target)


def optimize(net: Network, board: dict, ceilings: dict | None = None, target_fps: float | None = None,
             reserve: dict | None = None, time_limit: float = 60.0, cache: dict | None = None,
             resource_gap: float = RESOURCE_GAP,
             log_file: str | None = None) -> Plan:
    """The optimal folding under the cost model (see the module docstring), for a chain or a stream graph.
    Raises FpgagenError if nothing fits the budget (naming the resources and the layers that need them) or the
    target FPS is out of reach.

    ``cache``: reused across calls on the same network and board (``fold.fold_network``'s reserve loop): the
    choice space, the program, and which bounds were proven infeasible (they stay infeasible under a larger
    reserve). ``log_file``: HiGHS' log (and its stray console lines) go there."""
    start = time.perf_counter()
    layers, streams = nodes_and_streams(net)
    caps, reserve = caps_of(board, ceilings), reserve or {}
    cache = {} if cache is None else cache
    key = ("program", caps["DSP"] >= 1, tuple(caps.values()))
    if key not in cache:
        host_fed = {s.dst for s in streams if s.src == HOST}
        cores = [layer_cores(lay, i in host_fed, caps["DSP"] >= 1) for i, lay in enumerate(layers)]
        cache[key] = _Program(layers, streams, cores, caps)
    prog: _Program = cache[key]
    cores = prog.cores
    records: list[SolveRecord] = []
    answer: list[SolveRecord] = []  # the solve whose choice is returned

    def solve(t: float, kind: str):
        attrs, record = prog.solve(t, reserve, kind, time_limit, log_file, resource_gap)
        if record is None:
            return None
        records.append(record)
        if attrs is not None and kind == "optimal":
            answer[:] = [record]
        return attrs

    if target_fps is not None:
        t = math.floor(board["clock_mhz"] * 1e6 / target_fps)
        attrs = solve(t, "optimal")
    else:
        # the bottleneck is a core's or a width converter's cycle count (a converter can be the slowest process)
        cands = prog.candidates(max(min(c.cycles for c in cs) for cs in cores))
        hi = len(cands) - 1
        if solve(cands[hi], "lp") is None:
            _explain_infeasible(layers, cores, caps, reserve, board, None)
        # Bounds below what an earlier call proved infeasible at a reserve no larger stay infeasible; that bound
        # itself usually still fits (the reserve loop adds little), so it is tried first.
        known = cache.get(("infeasible below", key))
        lo = 0
        if known and all(reserve.get(r, 0) >= known[1].get(r, 0) for r in RESOURCES):
            lo = bisect.bisect_left(cands, known[0])
            i, step = lo, 1
            while i < hi and solve(cands[i], "lp") is None:  # gallop up from it: the new bound is usually near
                lo, i, step = i + 1, min(i + step, hi), step * 2
            hi = i
        # The LP relaxation is feasible wherever the program is, and solves in a fraction of the time: bisect it
        # for a lower bound, then gallop up from there with exact solves and bisect the last step (feasibility
        # only: the least resources are solved for at the bound found).
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if solve(cands[mid], "lp") is not None else (mid + 1, hi)
        last, i, step = len(cands) - 1, lo, 1
        attrs = solve(cands[i], "optimal")
        while attrs is None and i < last:  # gallop; cands[:i + 1] are infeasible
            lo, i, step = i + 1, min(i + step, last), step * 2
            attrs = solve(cands[i], "optimal")
        hi = i
        if attrs is not None:
            while lo < hi:  # bisect: cands[hi] feasible, cands[lo - 1] infeasible
                mid = (lo + hi) // 2
                if solve(cands[mid], "feasible") is None:
                    lo = mid + 1
                else:
                    hi = mid
            cache[("infeasible below", key)] = (cands[hi], dict(reserve))
            if hi < i:
                attrs = solve(cands[hi], "optimal")
    if attrs is None:
        _explain_infeasible(layers, cores, caps, reserve, board, target_fps)
    return _plan(layers, streams, attrs, caps, time.perf_counter() - start, prog.n, records, answer[0])


def program_size(net: Network, board: dict, ceilings: dict | None = None) -> dict[str, int]:
    """The size of the integer program ``optimize`` builds for ``net`` (every core and converter: the program at
    the loosest bound; each solve takes the columns within its bound)."""
    layers, streams = nodes_and_streams(net)
    caps = caps_of(board, ceilings)
    host_fed = {s.dst for s in streams if s.src == HOST}
    prog = _Program(layers, streams, [layer_cores(lay, i in host_fed, caps["DSP"] >= 1)
                                      for i, lay in enumerate(layers)], caps)
    return {"variables": prog.n, "integers": int(np.count_nonzero(prog.integrality)), "rows": prog.a.shape[0],
            "nonzeros": int(prog.a.nnz)}


def work_done(records: list[SolveRecord], plan: Plan) -> dict:
    """What the solver did over a fold (every ``optimize`` call of the reserve loop): the program's size, how many
    solves of each kind, HiGHS' branch-and-bound nodes (the load-independent measure of its work), whether the
    final plan is proven optimal and the gap HiGHS proved on it."""
    largest = max(records, key=lambda r: r.columns)
    return {"variables": plan.variables, "columns_solved": largest.columns, "rows": largest.rows,
            "nonzeros": largest.nonzeros, "solves": len(records),
            "mip_solves": sum(r.kind != "lp" for r in records), "lp_solves": sum(r.kind == "lp" for r in records),
            "nodes": sum(r.nodes for r in records), "seconds": round(sum(r.seconds for r in records), 3),
            "optimal": plan.optimal, "gap": plan.gap}


def plan_parts(layers: list[Layer], streams: list[Stream], attrs: dict[str, dict]) -> list[tuple[Layer, dict]]:
    """Every process the chosen attributes make, with what the model charges it: each node (its kernel and a
    2-deep FIFO per output port), and a width converter (kernel and FIFO) on each stream whose words differ."""
    probes = [_probe(lay, attrs[lay.name]) for lay in layers]
    parts = [(p, add_resources(p.resources(), base_fifo(p))) for p in probes]
    for s in _inner(streams):
        u, v = out_ports(probes[s.src])[s.src_port][2], in_ports(probes[s.dst])[s.dst_port][2]
        if u != v:
            w = converter(probes[s.src], u, v, s.src_port)
            parts.append((w, add_resources(w.resources(), base_fifo(w))))
    return parts


def _plan(layers, streams, attrs: dict[str, dict], caps, solve_s, n, records, final: SolveRecord) -> Plan:
    """Evaluate the chosen attributes with the layers' own models (converters included)."""
    parts = plan_parts(layers, streams, attrs)
    return Plan(attrs, max(p.cycles() for p, _ in parts), add_resources(*(r for _, r in parts)), caps, solve_s, n,
                len(records), records, final.status == "optimal", final.gap)


def _dsp_units_fit(part: np.ndarray, unit: np.ndarray, most: np.ndarray, room: np.ndarray) -> np.ndarray:
    """Per core: whether some whole number of DSP units d in [0, most] keeps every resource within ``room``
    (part + d * unit <= room, each resource one interval of d)."""
    lo, hi = np.zeros(len(most)), most.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = (room - part) / unit
    up, down = unit > 0, unit < 0
    hi = np.minimum(hi, np.where(up, np.floor(bound + 1e-9), np.inf).min(axis=1, initial=np.inf))
    lo = np.maximum(lo, np.where(down, np.ceil(bound - 1e-9), -np.inf).max(axis=1, initial=-np.inf))
    flat = np.all(np.where(unit == 0, part <= room, True), axis=1)
    return flat & (lo <= hi)


def _least(cs: list[Core], r: str, t: float) -> float:
    """The least of resource ``r`` any core within ``t`` can take (each group at its cheapest, DSP at best)."""
    best = math.inf
    for c in cs:
        if c.cycles <= t:
            v = c.base[r] + sum(min(d[r] for _, d in alts) for alts in c.groups)
            v += min(0, c.dsp_max * c.dsp_unit.get(r, 0))
            best = min(best, v)
    return best


def _explain_infeasible(layers, cores, caps, reserve, board, target_fps) -> None:
    """Raise the error a user can act on: which resource cannot fit even fully folded, and where it goes."""
    over = []
    for r in ("LUT", "BRAM18", "DSP", "LUTRAM", "FF"):
        least = {lay.name: _least(cs, r, math.inf) for lay, cs in zip(layers, cores, strict=True)}
        need = sum(least.values()) + reserve.get(r, 0)
        if need > caps[r]:
            top = sorted(least.items(), key=lambda kv: -kv[1])[:3]
            over.append(f"{r} needs at least {need:,.0f} of {caps[r]:,.0f} available "
                        f"({', '.join(f'{n} {v:,.0f}' for n, v in top)})")
    name = board["name"]
    if over:
        raise FpgagenError(f"the network does not fit {name} even fully folded: " + "; ".join(over),
                           "folding optimizer", "use a larger board, a smaller or narrower network, or raise --ceiling")
    if target_fps is not None:
        raise FpgagenError(f"no folding reaches {target_fps:g} FPS within the {name} budget",
                           "folding optimizer", "lower --target-fps (omit it for the fastest design that fits)")
    raise FpgagenError(f"no folding fits {name}: each resource fits alone but not all together",
                       "folding optimizer", "raise --ceiling or use a larger board")
