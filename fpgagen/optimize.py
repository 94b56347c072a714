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
  output); ``reserve`` is what the FIFOs sized after the folding (``fifo.size_fifos``, ``fifo.size_graph_fifos``
  on a graph: a reconvergent branch needs depth) need beyond that, fed back by ``fold.fold_network``.
* Objective: the resources, as the sum of each one's share of its cap.

The report's totals are then exactly the plan's ``totals`` (kernels and converters as their cost models price
them, every stream at a 2-deep FIFO) plus the sized FIFOs' excess over 2-deep ones plus the board's shell;
``fold.fold_network`` checks the first equality and records the excess (``fifo_excess``).

Maximum FPS: the bottleneck T is the cycle count of some core or converter (throughput is the slowest node's), and
a larger T only adds choices, so feasibility is monotone in T: bisect the sorted candidate values with feasibility
solves, then solve for the least resources at the smallest feasible T. That is the lexicographic optimum
(fastest, then cheapest) under the model, proven by HiGHS (``mip_rel_gap = 0``). Target FPS: solve at
``T = f_clk / target``.
"""

from __future__ import annotations

import copy
import math
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
    variables: int = 0
    solves: int = 0


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
    """Variables and rows of the program for one cycle bound ``t`` (see the module docstring)."""

    def __init__(self, layers: list[Layer], streams: list[Stream], cores: list[list[Core]], caps: dict[str, float],
                 reserve: dict[str, float], t: float):
        self.layers, self.caps = layers, caps
        self.cores = [[c for c in cs if c.cycles <= t] for cs in cores]
        cols: list[tuple] = []  # what each column is: ("x", l, k) | ("y", l, k, g, o) | ("d", l, k) | ("z", pair)
        res_cols: list[dict[str, int]] = []
        integer: list[bool] = []
        upper: list[float] = []

        def col(kind, res, is_int=True, ub=1.0) -> int:
            cols.append(kind)
            res_cols.append(res)
            integer.append(is_int)
            upper.append(ub)
            return len(cols) - 1

        rows, lo, hi = [], [], []  # rows as lists of (column, value)
        self.x: list[list[int]] = []
        for li, cs in enumerate(self.cores):
            xs = []
            for ki, c in enumerate(cs):
                xi = col(("x", li, ki), c.base)
                xs.append(xi)
                for gi, alts in enumerate(c.groups):
                    if len(alts) == 1:
                        res_cols[xi] = add_resources(res_cols[xi], alts[0][1])
                        continue
                    ys = [col(("y", li, ki, gi, oi), d) for oi, (_, d) in enumerate(alts)]
                    rows.append([(y, 1) for y in ys] + [(xi, -1)])
                    lo.append(0)
                    hi.append(0)
                if c.dsp_max:
                    di = col(("d", li, ki), c.dsp_unit, ub=c.dsp_max)
                    rows.append([(di, 1), (xi, -c.dsp_max)])
                    lo.append(-np.inf)
                    hi.append(0)
            self.x.append(xs)
            rows.append([(xi, 1) for xi in xs])  # one core per node
            lo.append(1)
            hi.append(1)
        for si, s in enumerate(_inner(streams)):  # stream words agree, or a converter joins them
            prod, cons = self.cores[s.src], self.cores[s.dst]
            zs = []
            for u, v in _stream_words(layers, self.cores, s):
                if u == v:
                    zs.append((col(("z", si, u, v), dict.fromkeys(RESOURCES, 0), False), u, v))
                else:
                    w = converter(layers[s.src], u, v, s.src_port)
                    if w.cycles() <= t:
                        zs.append((col(("z", si, u, v), add_resources(w.resources(), base_fifo(w)), False), u, v))
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
        for r in RESOURCES:  # the budget
            rows.append([(i, rc[r]) for i, rc in enumerate(res_cols) if rc[r]])
            lo.append(-np.inf)
            hi.append(caps[r] - reserve.get(r, 0))
        self.cols, self.res_cols = cols, res_cols
        self.n = len(cols)
        rr = [i for i, row in enumerate(rows) for _ in row]
        cc = [c for row in rows for c, _ in row]
        vv = [v for row in rows for _, v in row]
        self.a = coo_array((vv, (rr, cc)), shape=(len(rows), self.n)).tocsr()
        self.lo, self.hi = np.array(lo, float), np.array(hi, float)
        self.integrality, self.upper = np.array(integer, int), np.array(upper, float)

    def cost_vector(self) -> np.ndarray:
        return np.array([sum(w * rc[r] / max(self.caps[r], 1.0) for r, w in OBJECTIVE_WEIGHTS.items())
                         for rc in self.res_cols])

    def solve(self, time_limit: float, relax: bool = False) -> dict[str, dict] | bool | None:
        """The least-resource choice per layer (attributes by layer name), or None if nothing fits. ``relax``:
        only whether the LP relaxation is feasible (a fast necessary condition). HiGHS' presolve is off: on these
        programs it costs several times the solve."""
        if any(not cs for cs in self.cores):
            return None
        res = milp(self.cost_vector(), integrality=0 if relax else self.integrality,
                   bounds=(np.zeros(self.n), self.upper), constraints=LinearConstraint(self.a, self.lo, self.hi),
                   options={"time_limit": time_limit, "mip_rel_gap": 0.0, "presolve": False})
        if relax:
            return res.x is not None or None
        if res.x is None:
            if res.status == 1:  # a limit was hit before any feasible point: no proof either way
                raise FpgagenError(f"the folding optimizer found no answer in {time_limit:g} s",
                                   "folding optimizer", "raise the time limit or fold by hand (--folding)")
            return None
        out: dict[str, dict] = {}
        picked = [kind for i, kind in enumerate(self.cols) if kind[0] in "xyd" and round(res.x[i])]
        for kind in sorted(picked, key=lambda k: "xyd".index(k[0])):  # the core first, then its styles
            core = self.cores[kind[1]][kind[2]]
            name = self.layers[kind[1]].name
            if kind[0] == "x":
                out[name] = dict(core.attrs)
            elif kind[0] == "y":
                out[name].update(core.groups[kind[3]][kind[4]][0])
            else:  # d <= PE * x, so a nonzero d belongs to the chosen core
                out[name][self.layers[kind[1]].DSP_COUNT] = round(res.x[self.cols.index(kind)]) * core.dsp_step
        return out


def optimize(net: Network, board: dict, ceilings: dict | None = None, target_fps: float | None = None,
             reserve: dict | None = None, time_limit: float = 60.0, cache: dict | None = None) -> Plan:
    """The optimal folding under the cost model (see the module docstring), for a chain or a stream graph.
    Raises FpgagenError if nothing fits the budget (naming the resources and the layers that need them) or the
    target FPS is out of reach."""
    start = time.perf_counter()
    layers, streams = nodes_and_streams(net)
    caps, reserve = caps_of(board, ceilings), reserve or {}
    cache = {} if cache is None else cache  # the choice space, reusable across calls on the same network
    key = ("cores", caps["DSP"] >= 1)
    if key not in cache:
        host_fed = {s.dst for s in streams if s.src == HOST}
        cache[key] = [layer_cores(lay, i in host_fed, caps["DSP"] >= 1) for i, lay in enumerate(layers)]
    cores = cache[key]
    solves, size = 0, 0

    def solve(t: float, relax: bool = False):
        nonlocal solves, size
        if not _fits_at_all(cores, caps, reserve, t):
            return None
        solves += 1
        prog = _Program(layers, streams, cores, caps, reserve, t)
        size = max(size, prog.n)
        return prog.solve(time_limit, relax)

    if target_fps is not None:
        t = math.floor(board["clock_mhz"] * 1e6 / target_fps)
        attrs = solve(t)
    else:
        floor = max(min(c.cycles for c in cs) for cs in cores)
        # the bottleneck is a core's or a width converter's cycle count (a converter can be the slowest process)
        cands = sorted({c.cycles for cs in cores for c in cs if c.cycles >= floor} |
                       {w.cycles() for w in _converters(layers, cores, streams) if w.cycles() >= floor})
        # The LP relaxation is feasible wherever the program is, and solves in a fraction of the time: bisect it
        # for a lower bound, then gallop up from there with exact solves and bisect the last step.
        lo, hi = 0, len(cands) - 1
        if solve(cands[hi], relax=True) is None:
            _explain_infeasible(layers, cores, caps, reserve, board, None)
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if solve(cands[mid], relax=True) else (mid + 1, hi)
        last, i, step = len(cands) - 1, lo, 1
        best = solve(cands[i])
        while best is None and i < last:  # gallop; cands[:i + 1] are infeasible
            lo, i, step = i + 1, min(i + step, last), step * 2
            best = solve(cands[i])
        hi = i
        while best is not None and lo < hi:  # bisect: cands[hi] feasible (best), cands[lo - 1] infeasible
            mid = (lo + hi) // 2
            found = solve(cands[mid])
            if found is None:
                lo = mid + 1
            else:
                best, hi = found, mid
        t, attrs = cands[hi], best
    if attrs is None:
        _explain_infeasible(layers, cores, caps, reserve, board, target_fps)
    return _plan(layers, streams, attrs, caps, time.perf_counter() - start, size, solves)


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


def _plan(layers, streams, attrs: dict[str, dict], caps, solve_s, n, solves) -> Plan:
    """Evaluate the chosen attributes with the layers' own models (converters included)."""
    parts = plan_parts(layers, streams, attrs)
    return Plan(attrs, max(p.cycles() for p, _ in parts), add_resources(*(r for _, r in parts)), caps, solve_s, n,
                solves)

def _least(cs: list[Core], r: str, t: float) -> float:
    """The least of resource ``r`` any core within ``t`` can take (each group at its cheapest, DSP at best)."""
    best = math.inf
    for c in cs:
        if c.cycles <= t:
            v = c.base[r] + sum(min(d[r] for _, d in alts) for alts in c.groups)
            v += min(0, c.dsp_max * c.dsp_unit.get(r, 0))
            best = min(best, v)
    return best


def _fits_at_all(cores, caps, reserve, t) -> bool:
    """Necessary condition: every resource fits alone when each layer takes its cheapest choice within ``t``."""
    return all(sum(_least(cs, r, t) for cs in cores) <= caps[r] - reserve.get(r, 0) for r in RESOURCES)


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
