"""Stream-graph benchmark (issue 9): TinyYOLOv3 with both heads at 416x416 (W4A4, 8-bit first layer, as LPYOLO) at
width 0.25 and at LPYOLO's width 0.2, folded for a board by the default optimizer at the default ceilings:
estimated FPS, LUT, BRAM18 (counted from the emitted C++), DSP, the bottleneck, and how long lowering,
folding and code generation took.

    .venv/bin/python scripts/bench_graph.py [--board pynq_z2] [--widths 0.25 0.2] [--json out.json]

Everything is *estimated (model)*: cycles from the kernels' loop trip counts, resources from the cost models (FIFOs
and the board's platform shell included); never measured on hardware. BRAM18 from code: every generated array and
FIFO priced from its emitted dimensions and pragmas (fpgagen.lint.project_memory_figures), plus the shell.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fpgagen import codegen, export, fold, frontend, lint, streamline  # noqa: E402
from fpgagen.board import load_board  # noqa: E402
from fpgagen.errors import FpgagenError  # noqa: E402
from fpgagen.models import tinyyolov3  # noqa: E402


def measure(name: str, model, board: dict, workdir: Path) -> dict:
    start = time.perf_counter()
    path = export(model, workdir / f"{name}.onnx")
    net = streamline.lower(frontend.load_qonnx(path), name=name)
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    info = fold.fold_network(net, board)
    fold_s = time.perf_counter() - start
    start = time.perf_counter()
    hls = codegen.generate(net, workdir / f"hls_{name}", board)
    codegen_s = time.perf_counter() - start
    from_code = lint.project_memory_figures(hls)
    shell = board.get("shell", {})
    used = info["resources"]
    kinds: dict[str, int] = {}
    for lay in net.layers:
        kinds[lay.kind] = kinds.get(lay.kind, 0) + 1
    return {"name": name, "fps": board["clock_mhz"] * 1e6 / net.bottleneck().cycles(),
            "bottleneck": net.bottleneck().name, "LUT": used["LUT"], "DSP": used["DSP"],
            "BRAM18_model": used["BRAM18"],
            "BRAM18_code": sum(v["BRAM18"] for v in from_code.values()) + shell.get("BRAM18", 0),
            "layers": len(net.layers), "edges": len(net.stream_edges()), "kinds": kinds,
            "optimizer": info.get("optimizer"), "lower_s": lower_s, "fold_s": fold_s, "codegen_s": codegen_s}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--board", default="pynq_z2")
    p.add_argument("--widths", nargs="+", type=float, default=[0.25, 0.2])
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    board = load_board(args.board)
    dev = board["resources"]
    print(f"TinyYOLOv3 (two heads, 416x416, W4A4) on {board['name']} at {board['clock_mhz']} MHz, default optimizer "
          f"and ceilings; all figures estimated (model), none measured on hardware. Device: {dev['LUT']:,} LUT, "
          f"{dev['BRAM18']} BRAM18, {dev['DSP']} DSP.")
    print(f"{'network':22} {'FPS':>8} {'LUT':>7} {'BRAM18':>7} {'DSP':>5}  {'bottleneck':18} layers  "
          f"lower/fold/codegen s")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for width in args.widths:
            name = f"tinyyolov3_w{width:g}_w4a4"
            try:
                row = measure(name, tinyyolov3(width=width, weight_bits=4, act_bits=4), board, Path(tmp))
            except FpgagenError as exc:
                print(f"{name:22} does not build: {exc}")
                rows.append({"name": name, "error": str(exc)})
                continue
            rows.append(row)
            print(f"{name:22} {row['fps']:8.1f} {row['LUT']:7,} {row['BRAM18_code']:7} {row['DSP']:5}  "
                  f"{row['bottleneck']:18} {row['layers']:6}  {row['lower_s']:.0f}/{row['fold_s']:.0f}/"
                  f"{row['codegen_s']:.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
