"""``fpgagen explore``: its arguments (torch-free: ``fpgagen --help`` builds them) and the command."""

from __future__ import annotations

import argparse
import sys

from ..errors import FpgagenError

HELP = "Pareto front of per-layer bit widths x foldings (accuracy vs FPS), fine-tunes and builds on Ray"
DESCRIPTION = """Find which per-layer bit widths and foldings give the most accuracy at each frame rate on a board.

FACTORY is module:function (a .py file path or an importable module) taking weight_bits and act_bits keywords
(each an int or a list: one weight width per QuantConv/QuantLinear in forward order, one activation width per
activation quantizer between the first and the last weight layer) and returning a Brevitas model. 'face' is the
shipped face detector (its factory, evaluate, finetune, calibration and the 4W4A baseline).

Steps: per-layer sensitivity on calibration data; the IR's cost tables; fine-tunes that fit the accuracy
predictor; one integer program (bits x folding, max FPS under the board budget and a predicted-loss budget) swept
over the budget; the best --verify points of the front and the baseline fine-tuned, evaluated, built and checked
bit-exact in C-sim. Work runs as Ray tasks (local with --workers CPUs, or --address to join a cluster), checkpointed
in -o: run the same command again to resume. Writes pareto.json, pareto.md and pareto.png."""


def _widths(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of widths, e.g. 2,3,4,8") from None


def _baseline(text: str) -> dict:
    """W1,W2,..:A1,A2,.. or NwMa (uniform)."""
    try:
        wb, ab = text.split(":")
        return {"name": "baseline", "weight_bits": _widths(wb), "act_bits": _widths(ab)}
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not W1,W2,..:A1,A2,..") from None


def add_explore_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("factory", help="module:function building the Brevitas model, or 'face'")
    p.add_argument("--evaluate", help="module:function(model) -> float, higher is better (default: the factory "
                   "module's evaluate)")
    p.add_argument("--finetune", help="module:function(model) -> model (optional: without it no fine-tune)")
    p.add_argument("--calibration", help="module:function() -> a batch of inputs for the predictor (default: the "
                   "factory module's calibration)")
    p.add_argument("--weight-bits", type=_widths, default=None, help="weight widths to explore (default 2,3,4,8)")
    p.add_argument("--act-bits", type=_widths, default=None, help="activation widths to explore (default 2,3,4)")
    p.add_argument("--baseline", type=_baseline, help="the uniform (or any) point to verify beside the front, "
                   "W1,W2,..:A1,A2,.. (default: the factory module's BASELINE)")
    p.add_argument("--board", default="pynq_z2")
    p.add_argument("--verify", type=int, default=3, help="points of the front to fine-tune, build and C-sim "
                   "(default 3)")
    p.add_argument("--fit-points", type=int, default=4, help="fine-tunes that fit the predictor (default 4)")
    p.add_argument("--holdout-points", type=int, default=0, help="extra random fine-tunes the predictor is not "
                   "fitted on, only to measure its quality (default 0: the verified points only)")
    p.add_argument("--budgets", type=int, default=8, help="predicted-loss budgets the program is swept over")
    p.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray (default 2)")
    p.add_argument("--address", help="join this Ray cluster (HOST:PORT or ray://HOST:PORT) instead")
    p.add_argument("-o", "--out", required=True, help="run folder (checkpoints and pareto.*)")


def explore_command(args) -> int:
    from .run import ExploreConfig, explore

    cfg = ExploreConfig(factory=args.factory, out=args.out, evaluate=args.evaluate, finetune=args.finetune,
                        calibration=args.calibration, board=args.board, verify=args.verify,
                        fit_points=args.fit_points, holdout_points=args.holdout_points,
                        budgets=args.budgets, workers=args.workers,
                        address=args.address, baseline=args.baseline)
    if args.weight_bits is not None:
        cfg.weight_bits = args.weight_bits
    if args.act_bits is not None:
        cfg.act_bits = args.act_bits
    if args.verify < 0 or args.fit_points < 0 or args.holdout_points < 0 or args.budgets < 1:
        raise FpgagenError("--verify and --fit-points must be >= 0 and --budgets >= 1", "fpgagen explore",
                           "e.g. --verify 3 --fit-points 4 --budgets 8")
    doc = explore(cfg)
    print(f"wrote {args.out}/pareto.json, pareto.md, pareto.png ({len(doc['points'])} points, "
          f"{sum(p['pareto'] for p in doc['points'])} on the front)", file=sys.stderr)
    return 0
