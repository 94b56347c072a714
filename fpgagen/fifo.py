"""FIFO depths between layers, sized from each kernel's stream pattern, and a stream-level check.

Every kernel is one flat pipelined loop at II=1, entered once per frame; ``io_pattern()`` says, per iteration and
per port, whether it pops and pushes (``fpgagen.ir.layers.pipelined_pattern``). A chain's depths come from a
schedule S in which the bottleneck runs back to back, upstream layers as late and downstream ones as early as
their neighbours allow (``schedule``); a graph's from an ASAP-then-ALAP schedule over its edges
(``graph_schedule``), which gives a reconvergent branch the depth it needs; the output adapter of several outputs
is one more process (``output_adapter_pattern``). Each FIFO is sized to the most words S holds in it, so S is an
execution of the bounded system, and the hardware's (least) times are no later than S's: no deadlock, no stall.
The model, the proofs and the several-outputs case are in docs/fifo_sizing.md. ``check_schedule`` re-verifies S
against the chosen depths, ``simulate`` runs a chain's bounded FIFOs cycle by cycle (small networks), and the
bounded-FIFO C-simulation runs the generated processes on streams bounded to these depths.

Memories. Each layer's output FIFO is declared by ``fifo_memory`` (a ``fpgagen.ir.memory.Memory`` with
``fifo=True``) and priced from that declaration by ``fifo_resources``; top.cpp emits it with ``#pragma HLS STREAM
depth=`` and ``BIND_STORAGE type=fifo impl=``, and report.json lists it per layer under ``fifo``. FIFOs are not in
a layer's ``memories()``, so nothing is counted twice.
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
