"""FIFO depths of every stream, sized from each kernel's stream pattern, and a stream-level check.

Every kernel is one flat pipelined loop at II=1, entered once per frame; ``io_pattern()`` says, per iteration and
per port, whether it pops and pushes (``fpgagen.ir.layers.pipelined_pattern``). A network is a graph of processes
(the DMA source, every layer, the output adapter, whose pattern is ``output_adapter_pattern``) joined by its
edges. ``schedule`` builds a schedule S over ``FRAMES`` frames in which the bottleneck runs back to back,
every process downstream of it as early and every other one as late as its neighbours allow, each then moved
within that window to need the fewest FIFO bits; where that is no valid execution holding less than a frame per
FIFO (a reconvergent branch can make it so), the ASAP-then-ALAP schedule instead. Each FIFO is sized to the most
words S holds in it, so S is an execution of the bounded system, and the hardware's (least) times are no later
than S's: no deadlock, and where S runs the bottleneck back to back, no stall. The model and the proofs
are in docs/fifo_sizing.md. ``check_schedule`` re-verifies S against the chosen depths, ``simulate`` runs the
bounded FIFOs cycle by cycle (small networks), and the bounded-FIFO C-simulation runs the generated processes on
streams bounded to these depths.

Memories. Each stream's FIFO is declared by ``fifo_memory`` (a ``fpgagen.ir.memory.Memory`` with ``fifo=True``)
and priced from that declaration by ``fifo_resources``; top.cpp emits it with ``#pragma HLS STREAM depth=`` and
``BIND_STORAGE type=fifo impl=``, and report.json lists it per layer under ``fifo``. FIFOs are not in a layer's
``memories()``, so nothing is counted twice.
"""

from __future__ import annotations

import math

import numpy as np

from .geometry import stream_geometry
from .ir import Edge, Network, in_ports
from .ir.memory import SRL_DEPTH, Memory, add_resources, bram18, resources

FRAMES = 3


class FifoModelError(RuntimeError):
    """An internal inconsistency of the stream model (a kernel's pattern against its cycle model, or a schedule
    that breaks a bound): an fpgagen bug, never a user error."""


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise FifoModelError(what)


def _asap(lower: np.ndarray) -> np.ndarray:
    """Earliest times t_i >= lower_i with t_i >= t_{i-1} + 1 (lower = -inf where unconstrained)."""
    idx = np.arange(len(lower), dtype=float)
    t = np.maximum.accumulate(lower - idx) + idx
    finite = np.isfinite(t)
    first = int(np.argmax(finite))
    t[:first] = t[first] - (first - idx[:first])
    return t


def _alap(upper: np.ndarray) -> np.ndarray:
    """Latest times t_i <= upper_i with t_i <= t_{i+1} - 1 (upper = +inf where unconstrained)."""
    idx = np.arange(len(upper), dtype=float)
    t = np.minimum.accumulate((upper - idx)[::-1])[::-1] + idx
    finite = np.isfinite(t)
    last = len(t) - 1 - int(np.argmax(finite[::-1]))
    t[last + 1:] = t[last] + (idx[last + 1:] - last)
    return t


def _needed_depth(w: np.ndarray, r: np.ndarray, first: int = 0, stop: int | None = None) -> int:
    """Most words held at once: before push k, pops strictly earlier than it have freed their slots. ``first``,
    ``stop``: only at pushes first .. stop - 1."""
    w = w[first:stop]
    k = np.arange(first, first + len(w))
    return int(np.max(k + 1 - np.searchsorted(r, w, side="left"))) if len(w) else 0


def stream_patterns(net: Network, frames: int = FRAMES) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """Per process (the DMA source "input", every layer, the output adapter "output"): per-port (reads, writes)
    over ``frames`` frames."""
    first, fp = net.input_port()
    shape, _, word = in_ports(first)[fp]
    n_in = math.prod(shape) // word
    pats = {"input": ([], [np.ones(n_in, bool)]), "output": (output_adapter_pattern(stream_geometry(net)), [])}
    for layer in net.layers:
        reads, writes = layer.io_pattern()
        _check(all(len(x) == layer.cycles() for x in (*reads, *writes)),
               f"{layer.name}: stream pattern does not match cycles()")
        pats[layer.name] = (list(reads), list(writes))
    return {k: ([np.tile(r, frames) for r in rs], [np.tile(w, frames) for w in ws]) for k, (rs, ws) in pats.items()}


class _Graph:
    """The processes in topological order, their patterns and streams, and the times of a schedule."""

    def __init__(self, net: Network, frames: int):
        self.net, self.frames = net, frames
        self.pats = stream_patterns(net, frames)
        # the iterations that pop / push each port, as indices (gathering by index is far cheaper than by mask;
        # 32 bits hold any iteration of a few frames and halve the memory)
        self.reads_at = {n: [np.flatnonzero(r).astype(np.int32) for r in rs] for n, (rs, _) in self.pats.items()}
        self.writes_at = {n: [np.flatnonzero(w).astype(np.int32) for w in ws] for n, (_, ws) in self.pats.items()}
        self.edges = net.stream_edges()
        self.order = ["input", *(lay.name for lay in net.layers), "output"]
        self.into: dict[str, list[Edge]] = {n: [] for n in self.order}
        self.out_of: dict[str, list[Edge]] = {n: [] for n in self.order}
        for e in self.edges:
            self.into[e.dst].append(e)
            self.out_of[e.src].append(e)
        for e in self.edges:
            _check(self.pats[e.src][1][e.src_port].sum() == self.pats[e.dst][0][e.dst_port].sum(),
                   f"{e.src} -> {e.dst}: words per frame differ")

    def length(self, name: str) -> int:
        reads, writes = self.pats[name]
        return len((reads or writes)[0]) // self.frames

    def pushes(self, e: Edge, times: dict) -> np.ndarray:
        return times[e.src].take(self.writes_at[e.src][e.src_port])

    def pops(self, e: Edge, times: dict) -> np.ndarray:
        return times[e.dst].take(self.reads_at[e.dst][e.dst_port])

    def earliest(self, name: str, times: dict, from_zero: bool = False) -> np.ndarray:
        """As early as every word it pops allows (one iteration per cycle)."""
        reads = self.pats[name][0]
        lower = np.full(len(reads[0]) if reads else len(self.pats[name][1][0]), -np.inf)
        for e in self.into[name]:
            r = self.reads_at[name][e.dst_port]
            lower[r] = np.maximum(lower.take(r), self.pushes(e, times) + 1)
        if from_zero:
            lower[0] = max(lower[0], 0.0)
        return _asap(lower)

    def latest(self, name: str, times: dict) -> np.ndarray:
        """As late as every word it pushes allows (one iteration per cycle)."""
        writes = self.pats[name][1]
        upper = np.full(len(writes[0]) if writes else len(self.pats[name][0][0]), np.inf)
        for e in self.out_of[name]:
            w = self.writes_at[name][e.src_port]
            upper[w] = np.minimum(upper.take(w), self.pops(e, times) - 1)
        return _alap(upper)

    def asap(self) -> dict[str, np.ndarray]:
        times = {"input": np.arange(len(self.pats["input"][1][0]), dtype=float)}
        for name in self.order[1:]:
            times[name] = self.earliest(name, times, from_zero=True)
        return times

    def periodic(self, times: dict, period: int) -> dict[str, np.ndarray]:
        """Every process repeats the times of its middle frame with period T."""
        out = {}
        for name, t in times.items():
            n, mid = len(t) // self.frames, self.frames // 2
            template = t[mid * n:(mid + 1) * n] - mid * period
            out[name] = np.concatenate([template + f * period for f in range(self.frames)])
        return out

    def valid(self, times: dict, depths: dict | None = None) -> bool:
        """One iteration per cycle per kernel, every pop after its push, and (with ``depths``: edge -> depth)
        every push into a free slot of its FIFO."""
        if not all(np.all(np.diff(t) >= 1) for t in times.values()):
            return False
        for e in self.edges:
            w, r = self.pushes(e, times), self.pops(e, times)
            if not np.all(r >= w + 1):
                return False
            d = None if depths is None else depths[id(e)]
            if d is not None and not np.all(w[d:] >= r[:-d] + 1):
                return False
        return True

    def within_frames(self, times: dict) -> bool:
        """No FIFO holds more than a frame's words (with S periodic, ``frames`` frames then cover every frame
        boundary)."""
        return all(_needed_depth(self.pushes(e, times), self.pops(e, times)) <
                   self.pats[e.src][1][e.src_port].sum() // self.frames * (self.frames - 1) for e in self.edges)

    def bits(self, times: dict, edges) -> int:
        """FIFO bits the streams ``edges`` need at the pushes of the middle frame: the frame ``periodic`` repeats."""
        total, mid = 0, self.frames // 2
        for e in edges:
            n = len(self.writes_at[e.src][e.src_port]) // self.frames
            held = _needed_depth(self.pushes(e, times), self.pops(e, times), mid * n, (mid + 1) * n)
            total += held * edge_width(self.net, e)
        return total


def schedule(net: Network, frames: int = FRAMES, improve: bool = True, graph: _Graph | None = None
             ) -> tuple[dict[str, np.ndarray], str, bool]:
    """Schedule S (module docstring): iteration times per process, the bottleneck B, and whether S runs B back to
    back (which proves full throughput; else S is the ASAP-then-ALAP schedule, which proves no deadlock).

    Anchored at B: B runs back to back; B's descendants, in topological order, as early as their inputs allow;
    every other process, in reverse order, as late as its consumers allow (every constraint is a difference of two
    times, so each process's window stays feasible). ``improve``: then each other kernel, in turn, moves within the
    window its neighbours leave it to the blend of its earliest and latest times that needs the fewest FIFO bits
    on its streams. Finally S is made exactly periodic by repeating its middle frame every T cycles. ``graph``: the
    network's ``_Graph`` over ``frames`` frames, if the caller has it."""
    g = graph or _Graph(net, frames)
    bi = max(range(len(g.order)), key=lambda i: (g.length(g.order[i]), -i))
    b, period = g.order[bi], g.length(g.order[bi])
    below: set[str] = set()  # B's descendants
    for name in g.order[bi + 1:]:
        if any(e.src == b or e.src in below for e in g.into[name]):
            below.add(name)
    # the anchor's start: B no earlier than its inputs' earliest words (ASAP; every entry is replaced below, so
    # the fallback recomputes it rather than keeping a frame-sized copy of every process alive)
    times = g.asap()
    steps = np.arange(len(times[b]), dtype=float)
    times[b] = steps + np.max(times[b] - steps)
    for name in g.order[bi + 1:]:
        if name in below:
            times[name] = g.earliest(name, times)
    for name in reversed(g.order):
        if name != b and name not in below:
            times[name] = g.latest(name, times)
    base = g.periodic(times, period)
    anchored = base
    if improve:
        for name in g.order[1:-1]:
            if name == b:
                continue
            early, late = g.earliest(name, times), g.latest(name, times)
            if np.array_equal(early, late):  # no room to move: every blend is this one
                times[name] = early
                continue
            best = None
            for lam in (0.0, 0.5, 1.0):
                times[name] = np.floor(lam * early + (1 - lam) * late)
                bits = g.bits(times, g.into[name] + g.out_of[name])
                if best is None or bits < best[0]:
                    best = (bits, times[name])
            times[name] = best[1]
        improved = g.periodic(times, period)
        anchored = improved if g.valid(improved) else base
    if g.valid(anchored) and g.within_frames(anchored):
        return anchored, b, True
    fallback = g.asap()
    for name in reversed(g.order[:-1]):  # else the ASAP-then-ALAP schedule, the sink kept at its earliest times
        fallback[name] = g.latest(name, fallback)
    return fallback, b, False


def required_depths(net: Network, frames: int = FRAMES) -> list[int]:
    """Per stream (``net.stream_edges()``'s order): the occupancy bound of schedule S."""
    g = _Graph(net, frames)
    times, _, _ = schedule(net, frames, graph=g)
    return [_needed_depth(g.pushes(e, times), g.pops(e, times)) for e in g.edges]


def fifo_memory(net: Network, edge: Edge) -> Memory:
    """The declaration of a stream's FIFO (its producer's ``<layer>_out`` stream in top.cpp)."""
    return Memory(f"{edge.src}_out", 1, edge.depth, net.edge_word(edge), net.edge_dtype(edge).bitwidth(),
                  edge.storage, reads=1, writes=1, fifo=True)


def fifo_resources(depth: int, width: int, style: str) -> dict[str, int]:
    """An HLS stream FIFO of ``depth`` words of ``width`` bits: its storage as declared (``Memory`` with
    ``fifo=True``: ``srl``, SRLC32E shift-register LUTs counted as LUTRAM; ``bram``, FINN-R's BRAM18 formula) plus
    its logic: for srl an output register and the address counter, for bram the read/write counters and flags."""
    bits = max(1, math.ceil(math.log2(depth + 1)))
    storage = Memory("fifo", 1, depth, 1, width, style, reads=1, writes=1, fifo=True).resources()
    if style == "bram":
        return add_resources(storage, resources(LUT=30 + 2 * bits, FF=40 + 2 * bits + width))
    return add_resources(storage, resources(LUT=4 + bits, FF=width + bits + 2))


def fifo_style(depth: int, width: int) -> str:
    """SRL unless a block RAM saves LUTs: one BRAM18 is worth ~170 LUTs at a Zynq-7020's 80%/90% ceilings."""
    srl = width * math.ceil(depth / SRL_DEPTH)
    return "bram" if depth > 2 * SRL_DEPTH and srl > 170 * bram18(depth, width) else "srl"


def size_fifos(net: Network, frames: int = FRAMES, fixed: dict | None = None) -> dict[str, int]:
    """Set every stream's ``depth`` (at least 2) and ``storage`` from schedule S; returns the FIFOs' resources.
    ``fixed``: layer name -> the depth its output streams keep (a folding file's ``fifo_depth``)."""
    fixed = fixed or {}
    for e, depth in zip(net.stream_edges(), required_depths(net, frames), strict=True):
        e.depth = fixed.get(e.src, max(2, depth))
        e.storage = fifo_style(e.depth, edge_width(net, e))
    return fifos_resources(net)


def fifos_resources(net: Network) -> dict[str, int]:
    total = resources()
    for e in net.stream_edges():
        if e.src == "input":  # the DMA input stream is the adapter's register, counted nowhere
            continue
        part = fifo_resources(e.depth, edge_width(net, e), e.storage)
        total = {r: total[r] + part[r] for r in total}
    return total


def check_schedule(net: Network, frames: int = FRAMES) -> int:
    """Verify that schedule S is a valid bounded-FIFO execution with the streams' ``depth``: one iteration per
    cycle per kernel, every pop after its push, every push into a free slot, and where S is anchored at the
    bottleneck, the bottleneck back to back and S periodic. Returns the bottleneck's cycles per frame; raises
    FifoModelError otherwise."""
    g = _Graph(net, frames)
    times, b, anchored = schedule(net, frames, graph=g)
    _check(g.valid(times, {id(e): e.depth for e in g.edges}), "S violates a bound")
    period = g.length(b)
    if anchored:
        _check(np.array_equal(np.diff(times[b]), np.ones(len(times[b]) - 1)), "the bottleneck stalls")
        for name, t in times.items():
            n = len(t) // frames
            _check(np.array_equal(t[n:] - t[:-n], np.full(len(t) - n, period)), f"{name} is not periodic")
    return period


def simulate(net: Network, frames: int = FRAMES, depths: list[int] | None = None) -> dict:
    """Cycle-by-cycle run of the bounded FIFOs (pure Python: small networks only): an iteration fires when every
    port it pops has a word and every port it pushes has room. ``depths``: per stream, in ``net.stream_edges()``'s
    order (default: each stream's ``depth``). Returns the cycle each frame left the sink, the steady-state period,
    and the largest occupancy of each FIFO."""
    g = _Graph(net, 1)
    depths = depths or [e.depth for e in g.edges]
    index = {id(e): k for k, e in enumerate(g.edges)}
    procs = []
    for name in g.order:
        reads, writes = g.pats[name]
        n = len((reads or writes)[0])
        ins = [(index[id(e)], reads[e.dst_port].tolist()) for e in g.into[name]]
        outs = [(index[id(e)], writes[e.src_port].tolist()) for e in g.out_of[name]]
        procs.append((n, ins, outs))
    it, frame = [0] * len(procs), [0] * len(procs)
    count, peak = [0] * len(g.edges), [0] * len(g.edges)
    done: list[int] = []
    cycle = 0
    limit = (frames + 2) * sum(p[0] for p in procs)  # a deadlock shows up as running past this
    while len(done) < frames:
        fire = []
        for j, (_, ins, outs) in enumerate(procs):
            i = it[j]
            if frame[j] >= frames or any(r[i] and count[k] == 0 for k, r in ins) or \
                    any(w[i] and count[k] >= depths[k] for k, w in outs):
                continue
            fire.append(j)
        for j in fire:
            n, ins, outs = procs[j]
            i = it[j]
            for k, r in ins:
                count[k] -= r[i]
            for k, w in outs:
                if w[i]:
                    count[k] += 1
                    peak[k] = max(peak[k], count[k])
            it[j] = i + 1
            if it[j] == n:
                it[j] = 0
                frame[j] += 1
                if j == len(procs) - 1:
                    done.append(cycle)
        cycle += 1
        if cycle > limit:
            raise RuntimeError(f"no progress after {cycle} cycles: deadlock")
    return {"frame_done": done, "period": done[-1] - done[-2] if frames > 1 else done[0], "peak": peak}


def latency_cycles(net: Network) -> int:
    """One frame through an empty pipeline, every kernel as early as its inputs allow (ASAP; the DMA pushing one
    word per cycle): cycles from the first input word to the last output word."""
    return int(_Graph(net, 1).asap()["output"][-1]) + 1


# --- the output adapter -----------------------------------------------------------------------------------


def output_adapter_pattern(io) -> list[np.ndarray]:
    """The output adapter's pops, per output stream, over its iterations of one frame: ``fg::stream_to_axis``'s
    loop (templates/hls/fg_common.h) replayed, segment after segment, one iteration per cycle. An iteration pops
    a stream word while fewer than W bits wait to be sent, and sends an AXI word once W bits are there (or the
    segment's last bits); the DMA takes one AXI word per cycle. Output k+1 is popped only after output k's
    segment is sent, which is what makes its FIFO hold (nearly) the graph's whole frame of it."""
    w = io.out_axi_bits
    per_segment = []
    for k, seg in enumerate(io.segments):
        nb, stream_words, axi_words = seg.word * seg.bits, io.segment_stream_words(k), io.segment_words(k)
        fill = pops = sent = 0
        pops_at = []
        for _ in range(max(axi_words, stream_words) + 1):
            pop = fill < w and pops < stream_words
            if pop:
                fill, pops = fill + nb, pops + 1
            if sent < axi_words and (fill >= w or (pops == stream_words and fill > 0)):
                fill, sent = max(fill - w, 0), sent + 1
            pops_at.append(pop)
        per_segment.append(np.array(pops_at, bool))
    total = sum(len(p) for p in per_segment)
    reads, start = [], 0
    for p in per_segment:
        r = np.zeros(total, bool)
        r[start: start + len(p)] = p
        reads.append(r)
        start += len(p)
    return reads


def edge_width(net: Network, edge) -> int:
    return net.edge_word(edge) * net.edge_dtype(edge).bitwidth()
