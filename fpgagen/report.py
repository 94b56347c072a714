"""Build reports: report.json and report.md with per-layer folding and estimated cycles/FPS."""

from __future__ import annotations

import json
from pathlib import Path

from .ir import Network


def summary(net: Network, board: dict) -> dict:
    clock_hz = board["clock_mhz"] * 1e6
    layers = [{"name": lay.name, "kind": lay.kind, "in_shape": list(lay.in_shape), "out_shape": list(lay.out_shape),
               "in_dtype": lay.in_dtype, "out_dtype": lay.out_dtype, "folding": lay.folding(),
               "cycles": lay.cycles()} for lay in net.layers]
    bottleneck = net.bottleneck()
    return {
        "network": net.name,
        "board": board["name"],
        "clock_mhz": board["clock_mhz"],
        "note": "estimated (model): FINN-R style cycle model of the generated kernels, not a hardware measurement",
        "bottleneck": bottleneck.name,
        "bottleneck_cycles": bottleneck.cycles(),
        "fps_estimated": clock_hz / bottleneck.cycles(),
        "layers": layers,
    }


def write_reports(net: Network, board: dict, out_dir: Path) -> dict:
    doc = summary(net, board)
    out_dir = Path(out_dir)
    (out_dir / "report.json").write_text(json.dumps(doc, indent=1))
    rows = [f"| {lay['name']} | {lay['kind']} | {'x'.join(map(str, lay['in_shape']))} | "
            f"{'x'.join(map(str, lay['out_shape']))} | {lay['out_dtype']} | "
            f"{' '.join(f'{k}={v}' for k, v in lay['folding'].items()) or '-'} | {lay['cycles']:,} |"
            for lay in doc["layers"]]
    md = [f"# {doc['network']} on {doc['board']} ({doc['clock_mhz']} MHz)", "",
          f"*{doc['note']}*", "",
          f"**Estimated throughput: {doc['fps_estimated']:.1f} FPS** (bottleneck `{doc['bottleneck']}`, "
          f"{doc['bottleneck_cycles']:,} cycles/frame)", "",
          "| layer | kind | in (HxWxC) | out (HxWxC) | out type | folding | cycles/frame (est.) |",
          "|---|---|---|---|---|---|---|", *rows, ""]
    (out_dir / "report.md").write_text("\n".join(md))
    return doc
