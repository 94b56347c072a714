"""Folding: PE/SIMD (and memory/multiplier styles) per layer, validated against each kernel's constraints and the
board budget; stream-width plumbing; FIFO sizing.

``fold_network`` is the build step: the integer-program optimizer (fpgagen.optimize) by default, a user's folding
JSON, or ``greedy_fold``, FINN's SetFolding idea (grow SIMD, then PE, until a layer meets a cycle target; no
resource model), kept as the baseline the optimizer is compared with.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from . import fifo, optimize
from .budget import caps_of, check_budget
from .errors import FpgagenError
from .ir import Edge, Layer, Network, WidthConverter, divisors, in_ports, out_ports
from .ir.layers import RESOURCES, add_resources
from .report import proof_text
from .validate import check_folding

DEFAULT_TARGET_FPS = 30.0


def strip_converters(net: Network) -> None:
    """Drop the width converters of an earlier fold (on a graph, joining each one's input stream to its output)."""
    net.layers = [layer for layer in net.layers if not layer.INSERTED_BY_FOLD]
    kept = {lay.name for lay in net.layers}
    for e in list(net.edges):
        if e.dst not in kept and e.dst != "output":
            out = next(o for o in net.edges if o.src == e.dst)
            e.dst, e.dst_port = out.dst, out.dst_port
            net.edges.remove(out)


def link_streams(net: Network) -> None:
    """Match each consumer's input word to its producer, inserting a WidthConverter on every stream whose words
    differ (a sliding window takes its producer's word when that divides its channels, whole pixels from the
    host)."""
    strip_converters(net)
    feeds = {(e.dst, e.dst_port): e for e in net.edges}
    for layer in net.layers:  # a window takes its producer's word when that divides its channels
        src = feeds[(layer.name, 0)]
        layer.follow_producer(net.edge_word(src) if src.src != "input" else None)
        layer.validate()
    for e in list(net.edges):
        if e.src == "input" or e.dst == "output":
            continue
        shape, dt, u = out_ports(net.layer(e.src))[e.src_port]
        consumer = net.layer(e.dst)
        v = in_ports(consumer)[e.dst_port][2]
        if u != v:
            name = f"{e.dst}_dwc" if len(in_ports(consumer)) == 1 else f"{e.dst}_dwc{e.dst_port}"
            dwc = WidthConverter(name, shape, shape, dt, dt, in_elems=u, out_elems=v)
            dwc.validate()
            net.layers.insert([lay.name for lay in net.layers].index(e.dst), dwc)
            net.edges.insert(net.edges.index(e) + 1, Edge(dwc.name, 0, e.dst, e.dst_port))
            e.dst, e.dst_port = dwc.name, 0
    net.check_graph()


def greedy_fold(net: Network, target_cycles: float) -> None:
    """Per layer, the least parallelism that meets ``target_cycles``: an MVAU with the sliding window that feeds it
    (SIMD first, then PE), any other kind its own ``greedy_fold``; then a width converter on every stream whose
    producer and consumer words differ."""
    strip_converters(net)
    feeds = {(e.dst, e.dst_port): e for e in net.edges}
    for layer in net.layers:
        if layer.TAKES_CONSUMER_SIMD:  # its consumer sets its SIMD
            continue
        src = feeds[(layer.name, 0)].src
        producer = net.layer(src) if src != "input" else None
        if layer.MATRIX_UNIT:
            window = producer if producer is not None and producer.TAKES_CONSUMER_SIMD else None
            mh, mw, pixels = layer.mh, layer.mw, layer.pixels
            simd_options = [s for s in (window.simd_options() if window is not None else divisors(mw))
                            if s in layer.simd_options()]  # the MVAU's own (channel runs of one input scale)
            simd = next((s for s in simd_options if mh * (mw // s) * pixels <= target_cycles), simd_options[-1])
            layer.simd = simd
            layer.pe = next((p for p in divisors(mh) if (mh // p) * (mw // simd) * pixels <= target_cycles), mh)
            if window is not None:
                window.simd = layer.simd
        else:
            prev_word = net.edge_word(feeds[(layer.name, 0)]) if producer is not None else layer.in_shapes[0][2]
            layer.greedy_fold(target_cycles, prev_word)
    link_streams(net)


def apply_folding(net: Network, folding: dict) -> None:
    """Apply a user folding ``{layer_name: {"pe": .., "simd": .., "mem_style": .., ...}}`` and validate it."""
    strip_converters(net)
    check_folding(folding)
    entries = folding.get("layers", folding)
    if not isinstance(entries, dict):
        raise FpgagenError("folding must map layer names to {attribute: value}", "folding JSON",
                           'write {"conv_0": {"pe": 2, "simd": 3}, ...}')
    names = {layer.name for layer in net.layers}
    for name, attrs in entries.items():
        if name not in names:
            raise FpgagenError(f"folding names an unknown layer '{name}'", "folding JSON",
                               f"layers are: {', '.join(sorted(names))}")
        if not isinstance(attrs, dict):
            raise FpgagenError(f"folding entry for '{name}' is not an object", "folding JSON",
                               'write {"pe": 2, "simd": 3}')
        fifo_depths({name: attrs})  # a layer's output FIFO depth is its streams', checked here, set by fold_network
        net.layer(name).set_folding(**{key: value for key, value in attrs.items() if key != "fifo_depth"})
    link_streams(net)


def fifo_depths(entries: dict) -> dict[str, int]:
    """Layer name -> the ``fifo_depth`` its folding entry gives its output streams (a whole number >= 1)."""
    out = {}
    for name, attrs in entries.items():
        depth = attrs.get("fifo_depth") if isinstance(attrs, dict) else None
        if depth is None:
            continue
        if isinstance(depth, bool) or not isinstance(depth, int | float) or not math.isfinite(depth) or \
                int(depth) != depth or depth < 1:
            raise FpgagenError(f"fifo_depth={depth!r} is not a valid count", f"layer {name}",
                               'write fifo_depth as a whole number, e.g. "fifo_depth": 2')
        out[name] = int(depth)
    return out


def load_folding(path: str | Path) -> dict:
    try:
        folding = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise FpgagenError(f"cannot read folding file ({str(exc)[:200] or type(exc).__name__})", str(path),
                           "pass a JSON folding file") from None
    return check_folding(folding, str(path))


def folding_of(net: Network) -> dict:
    """Everything settable per layer (folding, styles), as ``apply_folding`` reads it back, and every stream's
    FIFO depth (for the record: the build sizes them again unless a layer's entry sets ``fifo_depth``)."""
    return {"layers": {lay.name: {**lay.folding(), **lay.styles()} for lay in net.layers
                       if not lay.INSERTED_BY_FOLD},
            "edges": [{"src": e.src, "dst": e.dst, "depth": e.depth} for e in net.edges]}


def target_cycles_for(fps: float, clock_mhz: float) -> float:
    return clock_mhz * 1e6 / fps


# --- the build step -------------------------------------------------------------------------------------------
def apply_plan(net: Network, plan: optimize.Plan) -> None:
    """Set every layer's choice; ``link_streams`` then inserts the converters the plan paid for."""
    strip_converters(net)
    for layer in net.layers:
        follows = {key for option in layer.input_word_options(False) for key in option}  # link_streams sets it
        for key, value in plan.attrs[layer.name].items():
            if key not in follows:
                setattr(layer, key, value)
    link_streams(net)


# --- the FINN-style baseline within a budget ------------------------------------------------------------------
def greedy_styles(layer: Layer) -> None:
    """FINN's defaults: LUT multipliers (no DSPs), parallel thresholds, memories left to the tools (modelled:
    LUTRAM up to 64 deep, BRAM beyond, as Vivado infers distributed ROM for shallow arrays); each kind's
    ``greedy_styles``."""
    layer.greedy_styles()


def network_resources(net: Network) -> dict[str, int]:
    return add_resources(*(lay.resources() for lay in net.layers))


def greedy_within(net: Network, board: dict, ceilings: dict | None = None) -> tuple[int, dict[str, int]]:
    """The best the FINN-style greedy folding does within the same budget: it has no resource model, so (as a
    FINN user would) try cycle targets from the fastest down and keep the first whose folding fits, FIFOs sized as
    for the optimizer's designs. Leaves ``net`` folded that way; returns (bottleneck cycles, resources without the
    shell)."""
    caps = caps_of(board, ceilings)
    layers = [lay for lay in net.layers if not lay.INSERTED_BY_FOLD]
    targets = sorted({c.cycles for i, lay in enumerate(layers) for c in optimize.layer_cores(lay, i == 0, dsp=False)})
    for target in targets:
        greedy_fold(net, target)
        for layer in net.layers:
            greedy_styles(layer)
        total = add_resources(network_resources(net), *(optimize.base_fifo(lay) for lay in net.layers))
        if all(total[r] <= caps[r] for r in RESOURCES):
            total = add_resources(network_resources(net), fifo.size_fifos(net))
            if all(total[r] <= caps[r] for r in RESOURCES):
                return net.bottleneck().cycles(), total
    raise FpgagenError("the greedy folding fits no cycle target", "greedy baseline", "raise --ceiling")


def fold_network(net: Network, board: dict, folding: dict | None = None, target_fps: float | None = None,
                 optimizer: str = "ilp", ceilings: dict | None = None, log=lambda msg: None,
                 solver_log: str | Path | None = None) -> dict:
    """Fold ``net`` for ``board`` and size its FIFOs; never returns a design over the budget.

    ``folding``: a user's folding (validated; the FIFOs of the layers whose entry sets no ``fifo_depth`` are
    sized). Otherwise ``optimizer="ilp"``: the fastest design within the budget, or the cheapest reaching
    ``target_fps``; ``"greedy"``: the FINN-style baseline at ``target_fps`` (default 30). The FIFOs are sized after
    the folding (reconvergent branches need depth); if they push the design over the budget, the optimizer runs
    again with their resources reserved. Returns what was done, for the report; for the optimizer, the reported
    resources are ``model_resources`` (the plan) + ``fifo_excess`` (sized FIFOs beyond 2 deep) + the shell, and
    ``milp`` says what the solver did (``optimize.work_done``); HiGHS' log is appended to ``solver_log``."""
    info: dict = {"optimizer": "user folding" if folding is not None else optimizer}
    if folding is not None:
        apply_folding(net, folding)
        entries = folding.get("layers", folding)
        fifo.size_fifos(net, fixed=fifo_depths(entries))  # what the file does not set is sized
    elif optimizer == "greedy":
        fps = target_fps or DEFAULT_TARGET_FPS
        greedy_fold(net, target_cycles_for(fps, board["clock_mhz"]))
        for layer in net.layers:
            greedy_styles(layer)
        fifo.size_fifos(net)
        info["target_fps"] = fps
        try:
            info["resources"] = check_budget(net, board, ceilings)
        except FpgagenError as exc:  # greedy has no resource model: the target decided the size, so name it
            reached = board["clock_mhz"] * 1e6 / net.bottleneck().cycles()
            why = f"unreachable: fully unfolded this network reaches {reached:,.1f} FPS, and " if reached < fps else ""
            raise FpgagenError(f"the greedy folding for --target-fps {fps:g} ({why}{exc.what})",
                               "--optimizer greedy", "lower --target-fps (the greedy baseline folds to the target "
                               "with no resource model), or use --optimizer ilp for the fastest design that fits") \
                from None
        return info
    elif optimizer == "ilp":
        reserve: dict[str, int] = {}
        caps, cache, records = caps_of(board, ceilings), {}, []
        for _ in range(5):
            plan = optimize.optimize(net, board, ceilings, target_fps, reserve, cache=cache,
                                     log_file=None if solver_log is None else str(solver_log))
            records += plan.records
            apply_plan(net, plan)
            kernels = add_resources(*(lay.resources() for lay in net.layers), *map(optimize.base_fifo, net.layers))
            if kernels != plan.totals:  # an internal inconsistency, not a user error; fails the same under -O
                raise FpgagenError("the optimizer's accounting differs from the layers' cost models", "folding",
                                   "this is an fpgagen bug; please report it with the model")
            fifos = fifo.size_fifos(net)
            beyond = {r: fifos[r] - sum(optimize.base_fifo(lay)[r] for lay in net.layers) for r in RESOURCES}
            proof = proof_text({"optimal": plan.optimal, "gap": plan.gap})
            log(f"  optimizer: {board['clock_mhz'] * 1e6 / plan.cycles:.1f} FPS in {plan.solve_s:.1f} s "
                f"({plan.solves} MILP solves, {proof}); "
                f"sized FIFOs: {fifos['LUT']:,} LUT, {fifos['BRAM18']} BRAM18")
            info["solve_s"] = info.get("solve_s", 0.0) + plan.solve_s
            if all(plan.totals[r] + beyond[r] <= caps[r] for r in RESOURCES):
                break
            over = [f"{r} {plan.totals[r] + beyond[r]:,.0f} > {caps[r]:,.0f}" for r in RESOURCES
                    if plan.totals[r] + beyond[r] > caps[r]]
            log(f"  optimizer: that design does not fit once its FIFOs are sized ({'; '.join(over)}: the FIFOs need "
                f"{', '.join(f'{beyond[r]:,} {r}' for r in RESOURCES if beyond[r] > 0)} beyond the plan's 2-deep "
                "ones), so it plans again with that reserved; the next design is slower")
            reserve = {r: max(reserve.get(r, 0), beyond[r]) for r in RESOURCES}
        # report = model_resources (the plan: kernels, converters, 2-deep FIFOs) + fifo_excess + the shell
        info.update(target_fps=target_fps, milp_variables=plan.variables, fifo_reserve=reserve,
                    model_resources=plan.totals, fifo_excess=beyond, milp=optimize.work_done(records, plan))
    else:
        raise FpgagenError(f"unknown optimizer '{optimizer}'", "--optimizer", "use ilp or greedy")
    info["resources"] = check_budget(net, board, ceilings)
    return info
