"""Hardware benchmark (issue 8): LPYOLO 2W4A, 4W4A and 8W3A on a board with the default optimizer at the default
ceilings: estimated FPS, LUT, BRAM18 (counted from the emitted C++, beside the model's figure), DSP; before (the
figures recorded at main 640aa7c) and now, beside FINN's figures measured on the same machines (shared/facts.md).

    .venv/bin/python scripts/bench_hw.py [--board pynq_z2] [--bits 2W4A 4W4A 8W3A] [--json out.json]

Everything is *estimated (model)*: cycles from the kernels' loop trip counts, resources from the cost models (FIFOs
and the board's platform shell included); never measured on hardware. BRAM18 from code: every generated array and
FIFO priced from its emitted dimensions and pragmas (fpgagen.lint.project_memory_figures), plus the shell.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fpgagen import codegen, export, fold, frontend, lint, streamline  # noqa: E402
from fpgagen.board import load_board  # noqa: E402
from fpgagen.models import lpyolo  # noqa: E402

# Recorded once by running main at commit 640aa7c (the optimizer at the default ceilings on pynq_z2), before the
# issue-8 kernels: the model's figures (its BRAM18 priced one wide ROM per threshold table; issue 8 counted ~348
# BRAM18 from that code for 4W4A).
BEFORE_COMMIT = "640aa7c"
BEFORE = {
    "2W4A": {"fps": 575.1, "LUT": 42479, "BRAM18": 82, "DSP": 189, "bottleneck": "conv_0_window"},
    "4W4A": {"fps": 385.2, "LUT": 42507, "BRAM18": 245, "DSP": 197, "bottleneck": "conv_1"},
    "8W3A": {"fps": 288.9, "LUT": 42496, "BRAM18": 205, "DSP": 108, "bottleneck": "conv_0"},
}
# FINN (finn-plus 1.6.1, estimate-only flow, Pynq-Z2, 100 MHz), LPYOLO 4W4A, measured here (shared/facts.md).
FINN = {"defaults": {"fps": 64, "LUT": 19_000, "BRAM18": 107, "DSP": 0},
        "best within 80% LUT": {"fps": 281, "LUT": 41_000, "BRAM18": None, "DSP": 0}}


def lowered(bits: str, workdir: Path):
    w, a = map(int, re.fullmatch(r"(\d+)W(\d+)A", bits).groups())
    path = workdir / f"lpyolo_{bits.lower()}.onnx"
    export(lpyolo(w, a), path)
    return streamline.lower(frontend.load_qonnx(path), name=f"lpyolo_{bits.lower()}")


def measure(bits: str, board: dict, workdir: Path) -> dict:
    net = lowered(bits, workdir)
    start = time.perf_counter()
    info = fold.fold_network(net, board)
    fold_s = time.perf_counter() - start
    hls = codegen.generate(net, workdir / f"hls_{bits}", board)
    from_code = lint.project_memory_figures(hls)
    shell = board.get("shell", {})
    used = info["resources"]
    return {"bits": bits, "fps": board["clock_mhz"] * 1e6 / net.bottleneck().cycles(),
            "bottleneck": net.bottleneck().name, "LUT": used["LUT"], "DSP": used["DSP"],
            "BRAM18_model": used["BRAM18"],
            "BRAM18_code": sum(v["BRAM18"] for v in from_code.values()) + shell.get("BRAM18", 0),
            "LUTRAM_code": sum(v["LUTRAM"] for v in from_code.values()) + shell.get("LUTRAM", 0),
            "fold_s": fold_s}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--board", default="pynq_z2")
    p.add_argument("--bits", nargs="+", default=["2W4A", "4W4A", "8W3A"])
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    board = load_board(args.board)
    dev = board["resources"]
    print(f"LPYOLO on {board['name']} at {board['clock_mhz']} MHz, default optimizer and ceilings; all figures "
          f"estimated (model), none measured on hardware. Device: {dev['LUT']:,} LUT, {dev['BRAM18']} BRAM18, "
          f"{dev['DSP']} DSP.")
    print(f"{'':6} {'':8} {'FPS':>7} {'LUT':>7} {'BRAM18':>14} {'DSP':>5}  bottleneck")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for bits in args.bits:
            now = measure(bits, board, Path(tmp))
            rows.append(now)
            if bits in BEFORE:
                b = BEFORE[bits]
                print(f"{bits:6} {'before':8} {b['fps']:7.1f} {b['LUT']:7,} {b['BRAM18']:>7} model  {b['DSP']:5}  "
                      f"{b['bottleneck']}   (main {BEFORE_COMMIT})")
            print(f"{'':6} {'after':8} {now['fps']:7.1f} {now['LUT']:7,} {now['BRAM18_code']:>7} code   "
                  f"{now['DSP']:5}  {now['bottleneck']}   (model says {now['BRAM18_model']} BRAM18; "
                  f"fold {now['fold_s']:.0f} s)")
            if bits == "4W4A":
                for name, f in FINN.items():
                    bram = "?" if f["BRAM18"] is None else f["BRAM18"]
                    print(f"{'':6} {'FINN':8} {f['fps']:7.1f} {f['LUT']:7,} {bram:>7}        {f['DSP']:5}  "
                          f"{name} (finn-plus 1.6.1 estimate, shared/facts.md)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
