"""FIFO depths between layers, sized from each kernel's stream pattern, and a stream-level check.

Model. Every kernel is one flat pipelined loop at II=1, entered once per frame (the stream kernels are written
that way: counters, no per-row or per-chunk re-entry). ``Layer.io_pattern()`` says, for each of the ``cycles()``
cycles of one frame, whether it pops its input and whether it pushes its output: a loop iteration issues every
cycle, pops in its first pipeline stage and pushes in its last, ``PIPELINE_DEPTH - 1`` cycles later (a blocked
stream stalls the whole pipeline, so the offset holds in steps), and the frame ends when the pipeline has
drained, iterations + ``PIPELINE_DEPTH`` cycles after it started (``fpgagen.ir.layers.pipelined_pattern``).
The same pattern is the cycle model: ``cycles()`` is its length. A FIFO of depth d holds d words; a word pushed
in cycle t can be popped from t+1 on; a slot freed by a pop in cycle t can be refilled from t+1 on. The DMA
source can push one word per cycle whenever there is room; the DMA sink pops one per cycle whenever there is a
word.

Why these depths cannot deadlock. The processes form a chain. A process blocked on a pop waits for its producer,
which (its output FIFO being empty) can only itself be blocked on a pop, and so on up to the source, which never
blocks; a process blocked on a push waits for its consumer, which (its input FIFO being full) can only be blocked
on a push, and so on down to the sink, which never blocks. Every kernel pops and pushes a fixed number of words
per frame, equal to what its neighbours push and pop. So no cycle of waits exists: any depth >= 1 is
deadlock-free on a straight-line network.

Why they do not stall. Let B be the bottleneck (most cycles per frame, T). Build a schedule S in which B runs its
iterations back to back (period T), every layer downstream of B runs each iteration as soon as its input word is
there (ASAP), and every layer upstream of B runs each iteration as late as its consumer allows (ALAP: a word is
pushed the cycle before it is popped, subject to one step per cycle). S respects every data dependence and every
kernel's II=1 (a pattern's fill and drain cycles are steps like any other, so a frame's loop never starts before
the previous one drained). Size each FIFO to the largest number of words S ever holds in it (counting a pop in
the cycle of a push as too late to free the slot). Then S also respects every FIFO bound, so S is a feasible
execution. The hardware runs each step at the earliest cycle its dependences and FIFO bounds allow; these
constraints are monotone (max-plus), so the hardware's times are the least feasible ones and never later than
S's: every frame leaves at least as early as in S, whose period is T. A latency that a pattern does not show
(e.g. the DMA's) only shifts each downstream process by a constant, which changes no FIFO's occupancy.
``check_schedule`` re-verifies S against the chosen depths, and ``simulate`` (small networks) runs the bounded
FIFOs cycle by cycle.

Memories. Each layer's output FIFO is declared by ``fifo_memory`` (a ``fpgagen.ir.memory.Memory`` with
``fifo=True``: depth, word, storage srl | bram) and priced from that declaration by ``fifo_resources``; top.cpp
emits it as the stream ``<layer>_out`` with ``#pragma HLS STREAM depth=`` and ``BIND_STORAGE type=fifo impl=``,
and report.json lists it per layer under ``fifo``. FIFOs are not in ``Layer.memories()`` (those are the kernel's
own arrays, ``Layer.resources()``), so nothing is counted twice.

Graphs. FIFO depths on a stream graph (forks, joins), sized from the same per-kernel patterns.

Model. As for chains, plus: a layer with several ports has, per iteration, a pop flag per input port and a push
flag per output port (``GraphLayer.io_pattern()``); an iteration fires only when every port it pops has a word
and every port it pushes has room (the kernel stalls whole iterations).

Why a reconvergent path needs depth. A fork pushes each word to both branches in the same iteration; a join
(Concat, AddStreams) pops both branches in its iterations. If one branch has a longer latency (a conv with a line
buffer) the join waits on it while the fork keeps pushing into the short branch; once that FIFO is full the fork
stalls, so the long branch starves, so the join never fires: a cycle of waits, a deadlock. The chain argument
(no cycle of waits) fails exactly here, so the depths must be chosen, not just >= 1.

The sizing and why it cannot deadlock. Over ``FRAMES`` frames build a schedule S with unbounded FIFOs:
1. ASAP, in topological order: the DMA source pushes one word per cycle; every other process runs iteration i at
   the earliest cycle after iteration i-1 at which every word it pops was pushed (at least one cycle earlier).
   This respects every data dependence and II=1 by construction.
2. ALAP, in reverse topological order, keeping the sink's times from 1: every other process runs iteration i at
   the latest cycle before iteration i+1 at which every word it pushes is still pushed at least one cycle before
   its consumer pops it. Each process only moves later (its consumers' times are at least their ASAP times),
   and every constraint (push before pop, II=1) is re-established for each of its streams, so S stays a valid
   execution; moving producers late is what keeps the FIFOs small, and at a fork it makes the short branch hold
   exactly the words the long branch's consumer is behind.
3. Each FIFO's depth is the most words S ever holds in it (a pop in the cycle of a push frees no slot for it).
Then S respects every FIFO bound as well, so S is an execution of the bounded system that completes every frame.
The hardware fires each iteration at the earliest cycle its dependences, its II and its FIFO bounds allow; these
constraints are monotone in the times (max-plus), so the hardware's times are the least solution, which is no
later than S's, iteration by iteration: it completes every frame too, no later than S. No cycle of waits can
form, since a deadlock would leave some iteration without a finite time. ``simulate_graph`` re-runs the bounded
FIFOs cycle by cycle (small networks), and the bounded-FIFO C-simulation runs the generated processes on
streams bounded to these depths (tests/test_graph_nets.py: at the sized depths it completes; with the short
branch's FIFO too small it reports the deadlock).

Several outputs. The DMA sink of a graph is the output adapter, one process that writes the output frame's
segments in output order (fpgagen/packing.py): its pattern (``output_adapter_pattern``) pops output stream 0
through segment 0, then stream 1 through segment 1, and so on, exactly as ``fg::stream_to_axis`` does. It is a
process with several input ports like a join, so the schedule and the sizing above apply unchanged: output k's
stream is popped only after every earlier segment was sent, while the graph keeps producing it (a fork feeds
all heads from the same iterations), so S holds on output k's path (its stream to the adapter, or, where ALAP
moved the layers of that path late, the fork's edge into it) what the graph produced meanwhile, in general its
whole frame, and those are the depths. The argument above then says the bounded system completes every frame;
too little room on a later output's path is the reconvergent deadlock again (the fork stalls on the full FIFO,
the earlier output starves, the adapter never reaches the later segment), which the bounded-FIFO C-simulation
reports (tests/test_multi_output.py). Those FIFOs are declared, priced and stored like every other edge
(``fifo_style`` puts a large one in BRAM).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .geometry import stream_geometry
from .ir import Layer, Network, in_ports
from .ir.memory import SRL_DEPTH, Memory, add_resources, bram18, resources

FRAMES = 3


class FifoModelError(RuntimeError):
    """An internal inconsistency of the stream model (a kernel's pattern against its cycle model, or a schedule
    that breaks a bound): an fpgagen bug, never a user error."""


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise FifoModelError(what)


@dataclass
class Process:
    name: str
    reads: np.ndarray  # per iteration of one frame: pops its input
    writes: np.ndarray  # per iteration of one frame: pushes its output
    width: int = 0  # bits per word of its output stream


def processes(net: Network) -> list[Process]:
    """The DMA source, every layer, the DMA sink, with their per-frame stream patterns."""
    first, last = net.layers[0], net.layers[-1]
    n_in = math.prod(first.in_shape) // first.in_word
    n_out = math.prod(last.out_shape) // last.out_word
    out = [Process("input", np.zeros(n_in, bool), np.ones(n_in, bool), first.in_word * first.in_bits)]
    for layer in net.layers:
        (reads,), (writes,) = layer.io_pattern()
        _check(len(reads) == len(writes) == layer.cycles(), f"{layer.name}: stream pattern does not match cycles()")
        out.append(Process(layer.name, reads, writes, layer.out_word * layer.out_bits))
    out.append(Process("output", np.ones(n_out, bool), np.zeros(n_out, bool)))
    for prod, cons in zip(out, out[1:], strict=False):
        _check(prod.writes.sum() == cons.reads.sum(), f"{prod.name} -> {cons.name}: words per frame differ")
    return out


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


def _edges(procs: list[Process], times: list[np.ndarray], frames: int, j: int) -> tuple[np.ndarray, np.ndarray]:
    """(push times, pop times) of the FIFO between process j and j + 1."""
    return times[j][np.tile(procs[j].writes, frames)], times[j + 1][np.tile(procs[j + 1].reads, frames)]


def schedule(procs: list[Process], frames: int = FRAMES, improve: bool = True) -> tuple[list[np.ndarray], int]:
    """The schedule S (module docstring) over ``frames`` frames: iteration times per process, and B's index.

    B runs back to back; upstream ALAP, downstream ASAP. ``improve``: then each other kernel, in turn, moves
    within the window its neighbours leave it (between its earliest and its latest feasible times) to the blend
    that needs the fewest FIFO bits on its two streams; any such move keeps S feasible, as the constraints are
    differences of times (their feasible set is convex and closed under rounding down). Finally S is made exactly
    periodic by repeating its middle frame every T cycles."""
    reads = [np.tile(p.reads, frames) for p in procs]
    writes = [np.tile(p.writes, frames) for p in procs]
    b = max(range(len(procs)), key=lambda i: (len(procs[i].reads), -i))
    period = len(procs[b].reads)
    times: list[np.ndarray] = [np.empty(0)] * len(procs)
    times[b] = np.arange(len(reads[b]), dtype=float)
    for j in range(b + 1, len(procs)):  # downstream: as soon as the word is there
        lower = np.full(len(reads[j]), -np.inf)
        lower[reads[j]] = times[j - 1][writes[j - 1]] + 1
        times[j] = _asap(lower)
    for j in range(b - 1, -1, -1):  # upstream: as late as the consumer allows
        upper = np.full(len(writes[j]), np.inf)
        upper[writes[j]] = times[j + 1][reads[j + 1]] - 1
        times[j] = _alap(upper)
    base = _periodic(procs, times, frames, period)
    if not improve:
        return base, b
    for j in range(1, len(procs) - 1):
        if j == b:
            continue
        lower = np.full(len(reads[j]), -np.inf)
        lower[reads[j]] = times[j - 1][writes[j - 1]] + 1
        upper = np.full(len(writes[j]), np.inf)
        upper[writes[j]] = times[j + 1][reads[j + 1]] - 1
        early, late = _asap(lower), _alap(upper)
        best = None
        for lam in (0.0, 0.5, 1.0):
            times[j] = np.floor(lam * early + (1 - lam) * late)
            bits = (_needed_depth(*_edges(procs, times, frames, j - 1)) * procs[j - 1].width +
                    _needed_depth(*_edges(procs, times, frames, j)) * procs[j].width)
            if best is None or bits < best[0]:
                best = (bits, times[j])
        times[j] = best[1]
    improved = _periodic(procs, times, frames, period)
    return (improved if _valid(procs, improved, frames) else base), b


def _periodic(procs: list[Process], times: list[np.ndarray], frames: int, period: int) -> list[np.ndarray]:
    """Every process repeats the times of its middle frame with period T."""
    out = []
    for p, t in zip(procs, times, strict=True):
        n, mid = len(p.reads), frames // 2
        template = t[mid * n:(mid + 1) * n] - mid * period
        out.append(np.concatenate([template + f * period for f in range(frames)]))
    return out


def _valid(procs: list[Process], times: list[np.ndarray], frames: int, depths: list[int] | None = None) -> bool:
    """One iteration per cycle per kernel, every pop after its push, and (with ``depths``) every push into a free
    slot of its FIFO."""
    if not all(np.all(np.diff(t) >= 1) for t in times):
        return False
    for j in range(len(procs) - 1):
        w, r = _edges(procs, times, frames, j)
        if not np.all(r >= w + 1):
            return False
        if depths is not None and not np.all(w[depths[j]:] >= r[:-depths[j]] + 1):
            return False
    return True


def _needed_depth(w: np.ndarray, r: np.ndarray) -> int:
    """Most words held at once: before push k, pops strictly earlier than it have freed their slots."""
    k = np.arange(len(w))
    return int(np.max(k + 1 - np.searchsorted(r, w, side="left"))) if len(w) else 0


def required_depths(net: Network, frames: int = FRAMES) -> list[int]:
    """Per stream (the network input, then each layer's output): the occupancy bound of schedule S. With S
    periodic, three frames cover every frame boundary as long as no FIFO holds more than a frame's words."""
    procs = processes(net)
    times, _ = schedule(procs, frames)
    out = []
    for j in range(len(procs) - 1):
        depth = _needed_depth(*_edges(procs, times, frames, j))
        _check(depth < procs[j].writes.sum() * (frames - 1), f"{procs[j].name}: a FIFO would hold more than a frame")
        out.append(depth)
    return out


def fifo_memory(layer: Layer) -> Memory:
    """The declaration of ``layer``'s output FIFO (the stream ``<layer>_out`` in top.cpp)."""
    return Memory(f"{layer.name}_out", 1, layer.fifo_depth, layer.out_word, layer.out_bits, layer.fifo_style,
                  reads=1, writes=1, fifo=True)


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


def size_fifos(net: Network, frames: int = FRAMES) -> dict[str, int]:
    """Set every layer's output ``fifo_depth`` (at least 2) and ``fifo_style``; returns the FIFOs' resources."""
    depths = required_depths(net, frames)
    total = resources()
    _check(depths[0] <= 2, "the DMA input stream needs more than the default depth of 2")
    for layer, depth in zip(net.layers, depths[1:], strict=True):
        layer.fifo_depth = max(2, depth)
        width = layer.out_word * layer.out_bits
        layer.fifo_style = fifo_style(layer.fifo_depth, width)
        part = fifo_resources(layer.fifo_depth, width, layer.fifo_style)
        total = {r: total[r] + part[r] for r in total}
    return total


def fifos_resources(net: Network) -> dict[str, int]:
    if not net.is_chain:
        return graph_fifos_resources(net)
    total = resources()
    for layer in net.layers:
        part = fifo_resources(layer.fifo_depth, layer.out_word * layer.out_bits, layer.fifo_style)
        total = {r: total[r] + part[r] for r in total}
    return total


def check_schedule(net: Network, frames: int = FRAMES) -> int:
    """Verify that schedule S is a valid bounded-FIFO execution with the layers' ``fifo_depth`` (input: 2): one
    iteration per cycle per kernel, every pop after its push, every push into a free slot, the bottleneck back to
    back, S periodic. Returns S's frame period (the bottleneck's cycles); raises FifoModelError otherwise."""
    procs = processes(net)
    times, b = schedule(procs, frames)
    _check(_valid(procs, times, frames, [2] + [layer.fifo_depth for layer in net.layers]), "S violates a bound")
    period = len(procs[b].reads)
    _check(np.array_equal(np.diff(times[b]), np.ones(len(times[b]) - 1)), "the bottleneck stalls")
    for p, t in zip(procs, times, strict=True):
        n = len(p.reads)
        _check(np.array_equal(t[n:] - t[:-n], np.full(len(t) - n, period)), f"{p.name} is not periodic")
    return period


def simulate(net: Network, frames: int = FRAMES, depths: list[int] | None = None) -> dict:
    """Cycle-by-cycle run of the bounded FIFOs (pure Python: small networks only). ``depths``: per stream (input
    first); default: 2 for the input and each layer's ``fifo_depth``. Returns the cycle each frame left the sink,
    the steady-state period, and the largest occupancy of each FIFO."""
    procs = processes(net)
    depths = depths or [2] + [layer.fifo_depth for layer in net.layers]
    n = len(procs)
    pats = [(p.reads.tolist(), p.writes.tolist(), len(p.reads)) for p in procs]
    it = [0] * n  # iteration within the frame
    frame = [0] * n
    count = [0] * (n - 1)  # words in FIFO j (between process j and j + 1)
    peak = [0] * (n - 1)
    done: list[int] = []
    cycle = 0
    limit = (frames + 2) * sum(len(p.reads) for p in procs)  # a deadlock shows up as running past this
    while len(done) < frames:
        fire = []
        for j in range(n):
            if frame[j] >= frames:
                continue
            r, w, _ = pats[j]
            i = it[j]
            if r[i] and count[j - 1] == 0:
                continue
            if w[i] and count[j] >= depths[j]:
                continue
            fire.append(j)
        for j in fire:
            r, w, length = pats[j]
            i = it[j]
            if r[i]:
                count[j - 1] -= 1
            if w[i]:
                count[j] += 1
                peak[j] = max(peak[j], count[j])
            it[j] = i + 1
            if it[j] == length:
                it[j] = 0
                frame[j] += 1
                if j == n - 1:
                    done.append(cycle)
        cycle += 1
        if cycle > limit:
            raise RuntimeError(f"no progress after {cycle} cycles: deadlock")
    return {"frame_done": done, "period": done[-1] - done[-2] if frames > 1 else done[0], "peak": peak}


def latency_cycles(net: Network) -> int:
    """One frame through an empty pipeline: cycles from the first input word to the last output word, every
    kernel as early as its input allows (the DMA pushing one word per cycle)."""
    if not net.is_chain:
        return graph_latency_cycles(net)
    procs = processes(net)
    t = np.arange(len(procs[0].writes), dtype=float)
    for prod, cons in zip(procs, procs[1:], strict=False):
        lower = np.full(len(cons.reads), -np.inf)
        lower[cons.reads] = t[prod.writes] + 1
        lower[0] = max(lower[0], 0.0)
        t = _asap(lower)
    return int(t[-1]) + 1


# --- graphs ---------------------------------------------------------------------------------------------------


def graph_patterns(net: Network, frames: int = FRAMES) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """Per process (the DMA source "input", every layer, the DMA sink "output"): per-port (reads, writes) over
    ``frames`` frames."""
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


def graph_schedule(net: Network, frames: int = FRAMES) -> tuple[dict[str, np.ndarray], list]:
    """Schedule S of the module docstring's graph part (ASAP, then ALAP with the sink fixed): iteration times
    per process, and per edge its (push times, pop times)."""
    pats = graph_patterns(net, frames)
    edges = net.stream_edges()
    order = ["input", *(lay.name for lay in net.layers), "output"]
    into = {(e.dst, e.dst_port): e for e in edges}
    out_of = {(e.src, e.src_port): e for e in edges}
    times: dict[str, np.ndarray] = {}
    for name in order:  # ASAP
        reads, _ = pats[name]
        if name == "input":
            times[name] = np.arange(len(pats[name][1][0]), dtype=float)
            continue
        lower = np.full(len(reads[0]), -np.inf)
        for p, r in enumerate(reads):
            e = into[(name, p)]
            pushed = times[e.src][pats[e.src][1][e.src_port]]
            _check(len(pushed) == r.sum(), f"{e.src} -> {name}: words per frame differ")
            lower[r] = np.maximum(lower[r], pushed + 1)
        lower[0] = max(lower[0], 0.0)
        times[name] = _asap(lower)
    for name in reversed(order[:-1]):  # ALAP
        _, writes = pats[name]
        upper = np.full(len(writes[0]), np.inf)
        for q, w in enumerate(writes):
            e = out_of[(name, q)]
            popped = times[e.dst][pats[e.dst][0][e.dst_port]]
            upper[w] = np.minimum(upper[w], popped - 1)
        times[name] = _alap(upper)
    pairs = [(e, times[e.src][pats[e.src][1][e.src_port]], times[e.dst][pats[e.dst][0][e.dst_port]])
             for e in edges]
    for e, w, r in pairs:
        _check(bool(np.all(r >= w + 1)), f"S pops {e.src} -> {e.dst} before the push")
    return times, pairs


def edge_width(net: Network, edge) -> int:
    return net.edge_word(edge) * net.edge_dtype(edge).bitwidth()


def size_graph_fifos(net: Network, frames: int = FRAMES) -> dict[str, int]:
    """Set every edge's ``depth`` (at least 2) and ``storage`` from schedule S; returns the FIFOs' resources."""
    _, pairs = graph_schedule(net, frames)
    for e, w, r in pairs:
        e.depth = max(2, _needed_depth(w, r))
        e.storage = fifo_style(e.depth, edge_width(net, e))
    return graph_fifos_resources(net)


def graph_fifos_resources(net: Network) -> dict[str, int]:
    total = resources()
    for e in net.stream_edges():
        if e.src == "input":  # the chain counts the DMA input stream nowhere (the adapter's register): same here
            continue
        part = fifo_resources(e.depth, edge_width(net, e), e.storage)
        total = {r: total[r] + part[r] for r in total}
    return total


def graph_latency_cycles(net: Network) -> int:
    """One frame through an empty pipeline, every kernel as early as its inputs allow (ASAP)."""
    pats = graph_patterns(net, 1)
    into = {(e.dst, e.dst_port): e for e in net.stream_edges()}
    times = {"input": np.arange(len(pats["input"][1][0]), dtype=float)}
    for name in [*(lay.name for lay in net.layers), "output"]:
        reads = pats[name][0]
        lower = np.full(len(reads[0]), -np.inf)
        for p, r in enumerate(reads):
            e = into[(name, p)]
            lower[r] = np.maximum(lower[r], times[e.src][pats[e.src][1][e.src_port]] + 1)
        lower[0] = max(lower[0], 0.0)
        times[name] = _asap(lower)
    return int(times["output"][-1]) + 1
