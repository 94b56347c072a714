"""Parsers for the Xilinx tools' reports, and the synthesis report that sets them beside fpgagen's estimates.

- Vitis HLS: ``solution1/syn/report/csynth.xml`` (the top) and ``<module>_csynth.xml`` (one per function):
  latency, interval, II per loop, LUT/FF/BRAM_18K/DSP.
- Vivado: ``report_utilization`` and ``report_timing_summary`` text reports (the tables Vivado prints).

The tests run these on hand-written fixtures in the documented layouts (tests/data/synth_fixtures/); no Xilinx
tool exists where fpgagen is developed, so a layout change in a future release shows up as a parse error here.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from ..errors import FpgagenError

HLS_RESOURCES = {"LUT": "LUT", "FF": "FF", "BRAM_18K": "BRAM18", "DSP": "DSP", "URAM": "URAM"}
LOOP_FIELDS = ("TripCount", "Latency", "PipelineII", "PipelineDepth")


def _number(text: str | None):
    """'1025' -> 1025, '7.26' -> 7.26, '512 ~ 532' -> [512, 532], 'undef'/'-'/None -> None."""
    if text is None:
        return None
    text = text.strip()
    if "~" in text:
        return [_number(part) for part in text.split("~")]
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return None


def _first(root: ET.Element, path: str):
    node = root.find(path)
    return _number(node.text) if node is not None else None


def _loops(parent: ET.Element, prefix: str = "") -> list[dict]:
    """Loops under SummaryOfLoopLatency: each child element that carries loop fields, nested loops flattened with
    their parents' names (Vitis HLS names the element after the loop label; some releases add a Name child)."""
    loops = []
    for child in parent:
        if not any(child.find(f) is not None for f in LOOP_FIELDS):
            continue
        name_node = child.find("Name")
        name = name_node.text.strip() if name_node is not None and name_node.text else child.tag
        full = f"{prefix}{name}"
        trip = child.find("TripCount")
        if trip is not None and trip.find("range") is not None:
            trip_value = [_first(trip, "range/min"), _first(trip, "range/max")]
        else:
            trip_value = _number(trip.text) if trip is not None else None
        loops.append({"name": full, "trip_count": trip_value, "latency": _first(child, "Latency"),
                      "ii": _first(child, "PipelineII"), "depth": _first(child, "PipelineDepth")})
        loops.extend(_loops(child, full + "/"))
    return loops


def parse_csynth_xml(path: str | Path) -> dict:
    """One csynth.xml -> {name, part, target_ns, estimated_ns, latency: [best, worst], interval: [min, max],
    resources: {LUT, FF, BRAM18, DSP, URAM}, available: {...}, loops: [...]}."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise FpgagenError(f"cannot read the HLS report ({exc})", str(path), "rerun the HLS step") from None
    name = root.findtext("UserAssignments/TopModelName")
    resources = {ours: _first(root, f"AreaEstimates/Resources/{theirs}") for theirs, ours in HLS_RESOURCES.items()}
    available = {ours: _first(root, f"AreaEstimates/AvailableResources/{theirs}")
                 for theirs, ours in HLS_RESOURCES.items()}
    loops_node = root.find("PerformanceEstimates/SummaryOfLoopLatency")
    return {
        "name": name.strip() if name else path.name.removesuffix("_csynth.xml"),
        "part": root.findtext("UserAssignments/Part"),
        "target_ns": _first(root, "UserAssignments/TargetClockPeriod"),
        "estimated_ns": _first(root, "PerformanceEstimates/SummaryOfTimingAnalysis/EstimatedClockPeriod"),
        "latency": [_first(root, "PerformanceEstimates/SummaryOfOverallLatency/Best-caseLatency"),
                    _first(root, "PerformanceEstimates/SummaryOfOverallLatency/Worst-caseLatency")],
        "interval": [_first(root, "PerformanceEstimates/SummaryOfOverallLatency/Interval-min"),
                     _first(root, "PerformanceEstimates/SummaryOfOverallLatency/Interval-max")],
        "resources": resources,
        "available": {k: v for k, v in available.items() if v is not None},
        "loops": _loops(loops_node) if loops_node is not None else [],
    }


def parse_csynth_dir(report_dir: str | Path) -> dict:
    """``solution1/syn/report`` -> {"top": <csynth.xml>, "modules": {name: <module>_csynth.xml}}."""
    report_dir = Path(report_dir)
    top = report_dir / "csynth.xml"
    if not top.is_file():
        raise FpgagenError("no csynth.xml", str(report_dir), "run the HLS synthesis (csynth_design) first")
    modules = {}
    for path in sorted(report_dir.glob("*_csynth.xml")):
        module = parse_csynth_xml(path)
        modules[module["name"]] = module
    return {"top": parse_csynth_xml(top), "modules": modules}


# The cycle model (fpgagen/ir/kinds/base.py) counts every kernel, and the AXI adapters, as pipelined loops at II = 1:
# each iteration one cycle. A loop Vitis HLS schedules slower makes the estimated FPS and the FIFO depths wrong.
ASSUMED_II = 1


def _worst(value):
    return max(v for v in value if v is not None) if isinstance(value, list) and any(
        v is not None for v in value) else value


def slow_loops(csynth: dict) -> list[str]:
    """Every loop in the csynth reports (the top's and each module's) whose initiation interval is above the one
    the cycle model assumed, as 'module/loop (II n)'; a range of IIs counts by its worst."""
    found = []
    for module in [csynth["top"], *csynth["modules"].values()]:
        for loop in module["loops"]:
            ii = _worst(loop["ii"])
            if isinstance(ii, int | float) and ii > ASSUMED_II:
                entry = f"{module['name']}/{loop['name']} (II {ii:g})"
                if entry not in found:
                    found.append(entry)
    return found


def check_initiation_intervals(csynth: dict, report_dir: str | Path) -> None:
    """Refuse a synthesis whose loops miss the II the cycle model assumed (before hours of Vivado are spent on it):
    the estimated frame rate and the FIFO depths, which are sized from the same model, would not hold."""
    slow = slow_loops(csynth)
    if slow:
        raise FpgagenError(f"Vitis HLS scheduled {len(slow)} loop(s) above the II = {ASSUMED_II} the cycle model and "
                           f"the FIFO sizing assume: {', '.join(slow)}", str(report_dir),
                           "the estimates do not hold for this design; send the csynth reports with an fpgagen bug "
                           "report (synth_report.md sets them beside the estimates)")


def _table_rows(text: str) -> dict[str, list[str]]:
    """Rows of Vivado's ASCII tables: '| Site Type | Used | ...' -> {'Site Type': [cells...]} (first one wins)."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] and cells[0] not in rows:
            rows[cells[0]] = cells[1:]
    return rows


UTILIZATION_ROWS = {"LUT": "Slice LUTs", "LUTRAM": "LUT as Memory", "FF": "Slice Registers",
                    "BRAM36": "Block RAM Tile", "DSP": "DSPs"}


def parse_utilization(text: str) -> dict:
    """Vivado report_utilization -> {resource: {"used": n, "available": n}} for LUT, LUTRAM, FF, BRAM36 (tiles),
    BRAM18 (= 2 x tiles) and DSP. Post-synthesis reports mark estimated rows with '*'; those count too."""
    rows = {k.rstrip("*").strip(): v for k, v in _table_rows(text).items()}
    header = next((cells for name, cells in _table_rows(text).items() if name == "Site Type"), None)
    if header is None:
        raise FpgagenError("not a Vivado utilization report (no 'Site Type' table)", "report_utilization",
                           "pass the file written by report_utilization -file")
    used_at, avail_at = header.index("Used"), header.index("Available")
    out = {}
    for ours, theirs in UTILIZATION_ROWS.items():
        if theirs in rows:
            cells = rows[theirs]
            out[ours] = {"used": _number(cells[used_at]), "available": _number(cells[avail_at])}
    if "BRAM36" in out:
        out["BRAM18"] = {"used": out["BRAM36"]["used"] * 2, "available": (out["BRAM36"]["available"] or 0) * 2}
    missing = {"LUT", "FF", "BRAM36", "DSP"} - set(out)
    if missing:
        raise FpgagenError(f"utilization report lacks rows for {', '.join(sorted(missing))}", "report_utilization",
                           "pass a full report_utilization of the implemented design")
    return out


def parse_timing_summary(text: str) -> dict:
    """Vivado report_timing_summary -> {"wns", "tns", "whs", "ths", "met"} (ns) from the Design Timing Summary."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("WNS(ns)"):
            names = re.split(r"\s{2,}", line.strip())
            values = lines[i + 2].split() if i + 2 < len(lines) else []
            if len(values) < len(names):
                break
            table = dict(zip(names, values, strict=False))
            result = {key: _number(table.get(f"{key.upper()}(ns)")) for key in ("wns", "tns", "whs", "ths")}
            if None in result.values():
                break
            result["met"] = result["wns"] >= 0 and result["whs"] >= 0 and "are not met" not in text
            return result
    raise FpgagenError("not a Vivado timing summary (no Design Timing Summary table)", "report_timing_summary",
                       "pass the file written by report_timing_summary -file")


def implementation_problems(utilization: dict, timing: dict, board: dict) -> list[str]:
    """What makes a bitstream unusable: setup or hold slack < 0, or any resource over the part's capacity."""
    problems = []
    if timing["wns"] < 0:
        problems.append(f"timing not met: WNS {timing['wns']} ns at {board['clock_mhz']} MHz")
    if timing["whs"] < 0:
        problems.append(f"hold timing not met: WHS {timing['whs']} ns")
    for res, figures in utilization.items():
        limit = board["resources"].get(res, figures.get("available"))
        if limit and figures["used"] is not None and figures["used"] > limit:
            problems.append(f"{res} {figures['used']} exceeds the part's {limit}")
    return problems


def check_implementation(vivado_output: Path, board: dict) -> dict:
    """Parse output/utilization.rpt and output/timing_summary.rpt; raise when timing or the part's size is
    violated (the Tcl refuses the same, this is the second check); return both parsed."""
    util = parse_utilization((vivado_output / "utilization.rpt").read_text())
    timing = parse_timing_summary((vivado_output / "timing_summary.rpt").read_text())
    problems = implementation_problems(util, timing, board)
    if problems:
        raise FpgagenError("; ".join(problems), str(vivado_output), "lower the clock in board.yaml or rebuild with "
                           "lower --ceiling values, then rerun fpgagen bitstream")
    return {"utilization": util, "timing": timing}


def _module_for(layer: str, modules: dict) -> dict | None:
    """HLS names a function's module after it, sometimes with a numeric suffix (conv_0_1) for a second instance."""
    if layer in modules:
        return modules[layer]
    for name, module in modules.items():
        if re.fullmatch(rf"{re.escape(layer)}(_\d+)?", name):
            return module
    return None


def _error(measured, estimated):
    if measured is None or estimated is None:
        return None
    if estimated == 0:
        return None if measured == 0 else float("inf")
    return (measured - estimated) / estimated


def synthesis_report(estimates: dict, csynth: dict | None = None, implementation: dict | None = None) -> dict:
    """The tools' figures beside fpgagen's (``estimates`` is the build's report.json): per layer, the HLS
    LUT/FF/BRAM18/DSP and interval against the estimate, with the relative error (tool - estimate) / estimate."""
    layers = []
    modules = csynth["modules"] if csynth else {}
    for lay in estimates["layers"]:
        module = _module_for(lay["name"], modules)
        row = {"name": lay["name"], "kind": lay["kind"], "estimated": {**lay["resources"], "cycles": lay["cycles"]},
               "hls": None, "error": None, "loops": []}
        if module:
            interval = module["interval"][1] if module["interval"][1] is not None else module["latency"][1]
            hls = {**{k: module["resources"].get(k) for k in ("LUT", "FF", "BRAM18", "DSP")}, "cycles": interval}
            row["hls"] = hls
            row["error"] = {k: _error(hls[k], row["estimated"].get(k)) for k in hls}
            row["loops"] = module["loops"]
        layers.append(row)
    doc = {"network": estimates.get("network"), "board": estimates.get("board"),
           "note": "HLS figures are Vitis HLS estimates after csynth_design; Vivado figures are post-route. fpgagen's "
                   "figures are its cost models (estimated).", "layers": layers,
           "estimated_total": {k: v["used"] for k, v in estimates.get("budget", {}).items()},
           "fps_estimated": estimates.get("fps_estimated")}
    if csynth:
        top = csynth["top"]
        doc["hls_total"] = {**top["resources"], "interval": top["interval"], "latency": top["latency"],
                            "estimated_clock_ns": top["estimated_ns"], "target_clock_ns": top["target_ns"]}
    if implementation:
        doc["vivado"] = implementation
    return doc


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "inf" if value == float("inf") else f"{value:+.0%}" if abs(value) < 100 else f"{value:.3g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def synthesis_markdown(doc: dict) -> str:
    lines = [f"## Synthesis results beside the estimates ({doc.get('network')}, {doc.get('board')})", "",
             doc["note"], ""]
    if "hls_total" in doc:
        t = doc["hls_total"]
        lines += [f"Vitis HLS: interval {t['interval']} cycles, latency {t['latency']} cycles, estimated clock "
                  f"{t['estimated_clock_ns']} ns (target {t['target_clock_ns']} ns); "
                  f"LUT {_fmt(t.get('LUT'))}, FF {_fmt(t.get('FF'))}, BRAM18 {_fmt(t.get('BRAM18'))}, "
                  f"DSP {_fmt(t.get('DSP'))}.", ""]
    if "vivado" in doc:
        v = doc["vivado"]
        util = ", ".join(f"{k} {_fmt(x['used'])}/{_fmt(x['available'])}" for k, x in v["utilization"].items())
        lines += [f"Vivado (post-route): WNS {v['timing']['wns']} ns, WHS {v['timing']['whs']} ns; {util}.", ""]
    lines += ["| layer | kind | LUT est / HLS (err) | FF est / HLS (err) | BRAM18 est / HLS (err) | "
              "DSP est / HLS (err) | cycles est / HLS interval (err) |", "|---|---|---|---|---|---|---|"]
    for lay in doc["layers"]:
        cells = []
        for key in ("LUT", "FF", "BRAM18", "DSP", "cycles"):
            est = lay["estimated"].get(key)
            if lay["hls"] is None:
                cells.append(f"{_fmt(est)} / -")
            else:
                cells.append(f"{_fmt(est)} / {_fmt(lay['hls'][key])} ({_fmt(lay['error'][key])})")
        lines.append(f"| {lay['name']} | {lay['kind']} | " + " | ".join(cells) + " |")
    slow = [(lay["name"], loop) for lay in doc["layers"] for loop in lay["loops"]
            if isinstance(loop["ii"], int) and loop["ii"] > 1]
    if slow:
        lines += ["", "Loops that missed II = 1: " + ", ".join(f"{n}/{lp['name']} (II {lp['ii']})" for n, lp in slow)]
    return "\n".join(lines) + "\n"


def write_synthesis_report(build_dir: Path, csynth: dict | None, implementation: dict | None) -> dict:
    """build_dir/synth_report.json and synth_report.md from the build's report.json and the tools' reports."""
    build_dir = Path(build_dir)
    estimates = json.loads((build_dir / "report.json").read_text())
    doc = synthesis_report(estimates, csynth, implementation)
    (build_dir / "synth_report.json").write_text(json.dumps(doc, indent=1) + "\n")
    (build_dir / "synth_report.md").write_text(synthesis_markdown(doc))
    return doc
