"""Folding benchmark: the integer-program optimizer against the FINN-style greedy baseline at equal resource
ceilings, on LPYOLO (4W4A, 8W3A, 2W4A) for a board. Prints estimated FPS, resources, the ratio and solve times,
and for each fold (in a fresh process) its time and peak memory beside the goals: LPYOLO's fold <= 5 s, and an
estimated FPS no lower than the optimizer reached before (issue 17), each "met" or "NOT met"; and the work the
solver did (program size, solves, branch-and-bound nodes: these do not depend on the machine's load).

    .venv/bin/python scripts/bench_fold.py [--board pynq_z2] [--bits 4W4A 8W3A 2W4A] [--json out.json]

Everything is *estimated (model)*: cycles from the kernels' loop trip counts, resources from the cost models in
fpgagen/ir/layers.py (FIFOs and the board's platform shell included), never measured on hardware.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fpgagen import budget, export, fold, frontend, report, streamline  # noqa: E402
from fpgagen.board import load_board  # noqa: E402
from fpgagen.ir.layers import RESOURCES, add_resources  # noqa: E402
from fpgagen.models import lpyolo  # noqa: E402


def lowered(bits: str, workdir: Path):
    w, a = map(int, re.fullmatch(r"(\d+)W(\d+)A", bits).groups())
    path = workdir / f"lpyolo_{bits.lower()}.onnx"
    if not path.is_file():
        export(lpyolo(w, a), path)
    return streamline.lower(frontend.load_qonnx(path), name=f"lpyolo_{bits.lower()}")


FOLD_GOAL_S = 5.0  # LPYOLO's fold (integer program and FIFO sizing), issue 17
FPS_BEFORE = {"2W4A": 575.1, "4W4A": 355.6, "8W3A": 288.9}  # what the optimizer reached before issue 17


def fold_in_child(onnx_path: Path, bits: str, board: str) -> dict:
    """One optimizer fold in a fresh interpreter: its wall and CPU time, the process's peak RSS, what the solver
    did (``info["milp"]``) and the estimated FPS."""
    code = f"""
import json, resource, time
from fpgagen import fold, frontend, streamline
from fpgagen.board import load_board
board = load_board({board!r})
net = streamline.lower(frontend.load_qonnx({str(onnx_path)!r}), name="lpyolo_{bits.lower()}")
start, cpu = time.perf_counter(), time.process_time()
info = fold.fold_network(net, board)
print(json.dumps({{"fold_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "milp": info["milp"],
                  "fps": board["clock_mhz"] * 1e6 / net.bottleneck().cycles()}}))
"""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=dict(os.environ, PYTHONPATH=path))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def usage_line(total: dict, board: dict) -> str:
    return ", ".join(f"{r} {total[r]:,}/{board['resources'][r]:,} ({total[r] / board['resources'][r]:.0%})"
                     for r in ("LUT", "BRAM18", "DSP"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--board", default="pynq_z2")
    p.add_argument("--bits", nargs="+", default=["4W4A", "8W3A", "2W4A"])
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    board = load_board(args.board)
    clock = board["clock_mhz"] * 1e6
    ceil = budget.ceilings_of(board)
    print(f"fold benchmark on {board['name']} at {board['clock_mhz']} MHz, ceilings "
          f"{', '.join(f'{r} {ceil[r]:.0%}' for r in ('LUT', 'BRAM18', 'DSP'))} (estimated, model)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for bits in args.bits:
            net = lowered(bits, Path(tmp))
            start = time.perf_counter()
            info = fold.fold_network(net, board)
            ilp_s = time.perf_counter() - start
            ilp_fps = clock / net.bottleneck().cycles()
            ilp_total = info["resources"]
            greedy_net = lowered(bits, Path(tmp))
            start = time.perf_counter()
            cycles, total = fold.greedy_within(greedy_net, board)
            greedy_s = time.perf_counter() - start
            greedy_total = add_resources(total, board.get("shell", {}))
            row = {"bits": bits, "ilp_fps": ilp_fps, "greedy_fps": clock / cycles, "ratio": ilp_fps / (clock / cycles),
                   "ilp_solve_s": info["solve_s"], "ilp_fold_s": ilp_s, "greedy_s": greedy_s,
                   "ilp_resources": ilp_total, "greedy_resources": greedy_total}
            rows.append(row)
            print(f"LPYOLO {bits}: optimizer {ilp_fps:6.1f} FPS vs greedy {row['greedy_fps']:6.1f} FPS -> "
                  f"{row['ratio']:.2f}x; MILP solve {info['solve_s']:.1f} s (fold step with FIFO sizing "
                  f"{ilp_s:.1f} s)")
            child = fold_in_child(Path(tmp) / f"lpyolo_{bits.lower()}.onnx", bits, args.board)
            m = child["milp"]
            row.update(fold_child=child)
            goal_s = (f"goal <= {FOLD_GOAL_S:g} s: {met(child['fold_s'] <= FOLD_GOAL_S)}" if bits == "4W4A"
                      else "no time goal")
            before = FPS_BEFORE.get(bits)
            print(f"    fold in a fresh process: {child['fold_s']:.1f} s wall, {child['cpu_s']:.1f} s CPU ({goal_s}); "
                  f"peak RSS {child['peak_mb']:.0f} MB; {child['fps']:.1f} FPS"
                  + (f" (goal >= {before} FPS as before: {met(child['fps'] >= before - 0.05)})" if before else ""))
            print(f"    MILP work: {m['variables']:,} variables, {m['rows']:,} rows, {m['nonzeros']:,} nonzeros; "
                  f"{m['solves']} solves ({m['mip_solves']} integer, {m['lp_solves']} LP relaxations), "
                  f"{m['nodes']} branch-and-bound nodes, HiGHS {m['seconds']:.1f} s; "
                  + report.proof_text(m))
            print(f"    optimizer: {usage_line(ilp_total, board)}")
            print(f"    greedy:    {usage_line(greedy_total, board)}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    for row in rows:
        for key in ("ilp_resources", "greedy_resources"):
            assert all(row[key][r] <= ceil[r] * board["resources"][r] for r in RESOURCES), (row["bits"], key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
