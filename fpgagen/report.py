"""Build reports: report.json and report.md (per-layer folding, cycles, resources, memory styles, FIFOs, totals
against the board budget, FPS and latency), and PNG plots (``fpgagen report``). Every figure is an estimate of the
cost model, labelled so."""

from __future__ import annotations

import json
from pathlib import Path

from . import fifo
from .budget import ceilings_of
from .builddir import write_atomic
from .geometry import stream_geometry
from .ir import Network, in_ports, out_ports
from .ir.layers import RESOURCES, add_resources

NOTE = ("estimated (model): cycles are the trip counts of the generated kernels' loops; LUT/FF/BRAM18/DSP come from "
        "FINN-R-based cost models (each kind in fpgagen/ir/kinds/); nothing here was measured on hardware")
PLOTS = ("cycles.png", "resources.png")


def memory_figures(memories: list) -> dict:
    """A layer's on-chip memories as declared (and emitted: templates/hls/memory.j2), each priced by the model,
    and their BRAM18/LUTRAM totals: what tests/test_memories_from_code.py recomputes from the emitted C++."""
    rows = [{"name": m.name, "banks": m.banks, "depth": m.depth, "elems": m.elems, "elem_bits": m.elem_bits,
             "storage": m.storage, "bind_type": m.bind_type, "reads": m.reads, "writes": m.writes,
             "BRAM18": m.resources()["BRAM18"], "LUTRAM": m.resources()["LUTRAM"]} for m in memories]
    return {"arrays": rows, "BRAM18": sum(r["BRAM18"] for r in rows), "LUTRAM": sum(r["LUTRAM"] for r in rows)}


def _fraction(used: float, device: float) -> float | None:
    """Share of the device; a board without any of a resource (e.g. no DSP) has none to share: None."""
    return used / device if device else None


def summary(net: Network, board: dict, fold_info: dict | None = None, ceilings: dict | None = None) -> dict:
    clock_hz = board["clock_mhz"] * 1e6
    ceil = ceilings_of(board, ceilings)
    layers = []
    edges = net.stream_edges()
    for lay in net.layers:
        # its output FIFO(s): one per output stream (a fork has several); the first is listed, all are priced
        outs = [e for e in edges if e.src == lay.name]
        widths = [fifo.edge_width(net, e) for e in outs]
        (in_shape, in_dt, _), (out_shape, out_dt, _) = in_ports(lay)[0], out_ports(lay)[0]
        layers.append({
            "name": lay.name, "kind": lay.kind, "in_shape": list(in_shape), "out_shape": list(out_shape),
            "in_dtype": in_dt.name, "out_dtype": out_dt.name, "folding": lay.folding(), "styles": lay.styles(),
            "cycles": lay.cycles(), "resources": lay.resources(), "memories": memory_figures(lay.memories()),
            "fifo": {"depth": outs[0].depth, "style": outs[0].storage, "width_bits": widths[0],
                     "resources": add_resources(*(fifo.fifo_resources(e.depth, w, e.storage)
                                                  for e, w in zip(outs, widths, strict=True)))}})
    shell = {r: board.get("shell", {}).get(r, 0) for r in RESOURCES}
    used = {r: sum(lay["resources"][r] + lay["fifo"]["resources"][r] for lay in layers) + shell[r] for r in RESOURCES}
    budget = {r: {"device": board["resources"][r], "ceiling": ceil[r], "cap": int(ceil[r] * board["resources"][r]),
                  "used": used[r], "shell": shell[r], "fraction_of_device": _fraction(used[r], board["resources"][r])}
              for r in RESOURCES}
    bottleneck = net.bottleneck()
    latency = fifo.latency_cycles(net)
    io = stream_geometry(net)
    feeds = {e.dst_port: e for e in edges if e.dst == "output"}
    outputs = [{"index": k, "layer": feeds[k].src, "shape": list(spec.shape), "kind": spec.kind,
                "dtype": out_ports(net.layer(feeds[k].src))[feeds[k].src_port][1].name,
                "segment_offset_bytes": io.segment_offset(k),
                "segment_bytes": io.segment_words(k) * io.out_axi_bits // 8,
                "fifo": {"depth": feeds[k].depth, "style": feeds[k].storage}}
               for k, spec in enumerate(net.outputs)]
    doc = {
        "network": net.name,
        "board": board["name"],
        "clock_mhz": board["clock_mhz"],
        "note": NOTE,
        "folding": {k: v for k, v in (fold_info or {}).items() if k != "resources"},
        "bottleneck": bottleneck.name,
        "bottleneck_cycles": bottleneck.cycles(),
        "fps_estimated": clock_hz / bottleneck.cycles(),
        "latency_cycles_estimated": latency,
        "latency_ms_estimated": latency / clock_hz * 1e3,
        "budget": budget,
        "fits": all(used[r] <= budget[r]["cap"] for r in RESOURCES),
        "layers": layers,
        "output_frame_bytes": io.out_frame_bytes,
        "outputs": outputs,
    }
    doc["system"] = system_section(doc)
    return doc


def system_section(doc: dict, camera: tuple[int, int] = (640, 480)) -> dict:
    """The board as a system, ESTIMATED: the accelerator's pipelined FPS and one frame's latency (cycle model),
    the ARM's work per frame and the end-to-end FPS bracket (fpgagen/runtime/host_model.py). A build whose first
    layer letterboxes camera frames (``--camera``) runs at its camera size with no resize on the ARM; any other
    build is assumed fed by a ``camera``-sized webcam that the ARM letterboxes."""
    from .runtime import host_model

    first = doc["layers"][0] if doc.get("layers") else None
    in_fabric = first is not None and "letterbox" in first["kind"].lower()
    if in_fabric:
        h, w = first["in_shape"][:2]
        plan = host_model.HostPlan((int(w), int(h)), int(first["out_shape"][0]), True,
                                   out_frame_bytes=int(doc["output_frame_bytes"]))
    else:
        size = int(first["in_shape"][0]) if first is not None else 416
        plan = host_model.HostPlan(camera, size, False, out_frame_bytes=int(doc["output_frame_bytes"]))
    est = host_model.estimate(float(doc["fps_estimated"]), float(doc["latency_ms_estimated"]), plan)
    return est.to_dict()


STYLE_ARRAYS = {"mem_style": ("weights",), "thr_style": ("thresholds", "thr_stage")}  # the arrays a style sets


def _styles(lay: dict) -> str:
    """The styles as the code holds them: a style that names arrays shows their declared storage (a threshold
    ROM asked for in BRAM but too shallow for it is LUTRAM or registers in the C++, and says so)."""
    st = lay["styles"]
    arrays = lay.get("memories", {}).get("arrays", [])

    def shown(key, value):
        held = sorted({a["storage"] for a in arrays if a["name"].startswith(STYLE_ARRAYS.get(key, ("\0",)))})
        return "+".join(held) if held else value

    parts = [f"{k.replace('_style', '')}={shown(k, v)}" for k, v in st.items() if k != "dsp_pe"]
    if st.get("dsp_pe"):
        parts.append(f"dsp_pe={st['dsp_pe']}")
    return " ".join(parts) or "-"


def proof_text(work: dict) -> str:
    """What fpgagen.optimize.work_done's proof says, in words, for the log, the report and the benchmark."""
    if not work["optimal"]:
        return f"NOT proven optimal (gap {work['gap']})"
    if not work["gap"]:
        return "proven optimal (gap 0)"
    return f"proven optimal: resources within {work['gap']:.2%} of the least"


def markdown(doc: dict, plots: bool = False) -> str:
    b = doc["budget"]
    fold = doc.get("folding", {})
    how = fold.get("optimizer", "?")
    if how == "ilp":
        goal = f"cheapest at {fold['target_fps']:g} FPS" if fold.get("target_fps") else "maximum FPS"
        how = f"integer program (HiGHS), {goal}, solved in {fold.get('solve_s', 0):.1f} s"
        work = fold.get("milp")
        if work:
            proof = proof_text(work)
            how += (f" ({proof}; {work['variables']:,} variables, {work['solves']} solves, {work['nodes']} "
                    f"branch-and-bound nodes; HiGHS log in logs/fold_milp.log)")
    elif how == "greedy":
        how = f"greedy FINN-style baseline at a {fold.get('target_fps', 0):g} FPS target"
    md = [f"# {doc['network']} on {doc['board']} ({doc['clock_mhz']} MHz)", "", f"*{doc['note']}*", "",
          f"**Estimated throughput: {doc['fps_estimated']:.1f} FPS** (bottleneck `{doc['bottleneck']}`, "
          f"{doc['bottleneck_cycles']:,} cycles/frame); estimated latency {doc['latency_ms_estimated']:.2f} ms "
          f"({doc['latency_cycles_estimated']:,} cycles, one frame through an empty pipeline). Folding: {how}.", "",
          "## Resources against the budget (estimated)", "",
          "| resource | used | of which shell | cap (ceiling) | device | used / device |", "|---|---|---|---|---|---|"]
    for r in RESOURCES:
        x = b[r]
        md.append(f"| {r} | {x['used']:,} | {x['shell']:,} | {x['cap']:,} ({x['ceiling']:.0%}) | {x['device']:,} | "
                  + (f"{x['fraction_of_device']:.1%} |" if x["fraction_of_device"] is not None
                     else "none on the device |"))
    md += ["", "Shell: the platform around the accelerator (DMA, interconnect), from board.yaml. LUTRAM is part of "
           "LUT. FIFO: depth x width bits of the layer's output stream.", "",
           "## Layers (estimated)", "",
           "| layer | kind | in (HxWxC) | out (HxWxC) | out type | folding | styles | cycles/frame | LUT | FF | "
           "BRAM18 | DSP | FIFO |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for lay in doc["layers"]:
        r, f = lay["resources"], lay["fifo"]
        mark = " **(bottleneck)**" if lay["name"] == doc["bottleneck"] else ""
        md.append(f"| {lay['name']}{mark} | {lay['kind']} | {'x'.join(map(str, lay['in_shape']))} | "
                  f"{'x'.join(map(str, lay['out_shape']))} | {lay['out_dtype']} | "
                  f"{' '.join(f'{k}={v}' for k, v in lay['folding'].items()) or '-'} | {_styles(lay)} | "
                  f"{lay['cycles']:,} | {r['LUT']:,} | {r['FF']:,} | {r['BRAM18']} | {r['DSP']} | "
                  f"{f['depth']}x{f['width_bits']} {f['style']} |")
    fifos = {k: sum(lay["fifo"]["resources"][k] for lay in doc["layers"]) for k in RESOURCES}
    outputs = doc.get("outputs", [])
    md.append(f"| FIFOs (all) | | | | | | | | {fifos['LUT']:,} | {fifos['FF']:,} | {fifos['BRAM18']} | "
              f"{fifos['DSP']} | |")
    md.append(f"| **total** (with shell) | | | | | | | | {b['LUT']['used']:,} | {b['FF']['used']:,} | "
              f"{b['BRAM18']['used']} | {b['DSP']['used']} | |")
    if outputs:
        md += ["", f"## Outputs ({doc['output_frame_bytes']:,} bytes per frame, one DMA transfer)", "",
               "| output | from layer | shape | kind | type | bytes at | bytes | FIFO |",
               "|---|---|---|---|---|---|---|---|"]
        md += [f"| {o['index']} | {o['layer']} | {'x'.join(map(str, o['shape']))} | {o['kind']} | {o['dtype']} | "
               f"{o['segment_offset_bytes']:,} | {o['segment_bytes']:,} | {o['fifo']['depth']} {o['fifo']['style']} |"
               for o in outputs]
    system = doc.get("system") or (system_section(doc) if doc.get("layers") else None)
    if system:
        from .runtime.host_model import format_system

        md += ["", "## The board as a system (estimated)", "", "```", format_system(system), "```", "",
               "Accelerator: the cycle model. Host: counted work per stage priced with Cortex-A9 figures, low and "
               "high (fpgagen/runtime/host_model.py names each figure's source; docs/system_estimate.md)."]
    if plots:
        md += ["", "## Plots (estimated)", "", "![cycles per layer](cycles.png)", "",
               "![resources against the budget](resources.png)"]
    return "\n".join(md + [""])


def write_reports(net: Network, board: dict, out_dir: Path, fold_info: dict | None = None,
                  ceilings: dict | None = None) -> dict:
    doc = summary(net, board, fold_info, ceilings)
    out_dir = Path(out_dir)
    write_atomic(out_dir / "report.json", json.dumps(doc, indent=1))
    write_atomic(out_dir / "report.md", markdown(doc))
    return doc


def plot(doc: dict, out_dir: Path) -> list[Path]:
    """cycles.png: cycles per layer, the bottleneck marked; resources.png: each resource's use as a share of the
    device, stacked by layer (plus FIFOs and shell), with the ceiling marked. Both labelled *estimated (model)*."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    layers = doc["layers"]
    names = [lay["name"] for lay in layers]
    cycles = [lay["cycles"] for lay in layers]
    fig, ax = plt.subplots(figsize=(max(8, 0.38 * len(names)), 4.8))
    colors = ["tab:red" if n == doc["bottleneck"] else "tab:blue" for n in names]
    ax.bar(range(len(names)), cycles, color=colors)
    ax.axhline(doc["bottleneck_cycles"], color="tab:red", ls="--", lw=1,
               label=f"bottleneck {doc['bottleneck']}: {doc['bottleneck_cycles']:,} cycles = "
                     f"{doc['fps_estimated']:.0f} FPS at {doc['clock_mhz']} MHz")
    ax.set_xticks(range(len(names)), names, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("cycles per frame")
    ax.set_title(f"{doc['network']} on {doc['board']}: cycles per layer, estimated (model)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    paths = [out_dir / PLOTS[0]]
    write_atomic(paths[0], writer=lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 5.5))
    b = doc["budget"]
    cmap = plt.get_cmap("tab20")
    parts = [(lay["name"], lay["resources"]) for lay in layers]
    parts.append(("FIFOs", {r: sum(lay["fifo"]["resources"][r] for lay in layers) for r in RESOURCES}))
    parts.append(("shell", {r: b[r]["shell"] for r in RESOURCES}))
    bottom = [0.0] * len(RESOURCES)
    for i, (name, res) in enumerate(parts):
        share = [100 * res[r] / b[r]["device"] if b[r]["device"] else 0.0 for r in RESOURCES]
        color = "0.6" if name == "shell" else ("0.3" if name == "FIFOs" else cmap(i % 20))
        ax.bar(range(len(RESOURCES)), share, bottom=bottom, color=color, edgecolor="white", lw=0.3,
               label=name if any(share) else None)
        bottom = [x + y for x, y in zip(bottom, share, strict=True)]
    for i, r in enumerate(RESOURCES):
        ax.plot([i - 0.4, i + 0.4], [100 * b[r]["ceiling"]] * 2, color="black", lw=2)
        ax.text(i, 100 * b[r]["ceiling"] + 1.5, f"ceiling {b[r]['ceiling']:.0%}", ha="center", fontsize=7)
    ax.set_xticks(range(len(RESOURCES)), [f"{r}\n{b[r]['used']:,} / {b[r]['device']:,}" for r in RESOURCES],
                  fontsize=8)
    ax.set_ylim(0, 110)
    ax.set_ylabel("% of the device")
    ax.set_title(f"{doc['network']} on {doc['board']}: resources against the budget, estimated (model)")
    ax.legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    paths.append(out_dir / PLOTS[1])
    write_atomic(paths[1], writer=lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return paths


def report(build_dir: Path) -> str:
    """``fpgagen report``: re-render report.md from report.json with the PNG plots; returns the markdown."""
    build_dir = Path(build_dir)
    doc = json.loads((build_dir / "report.json").read_text())
    plot(doc, build_dir)
    md = markdown(doc, plots=True)
    write_atomic(build_dir / "report.md", md)
    return md
