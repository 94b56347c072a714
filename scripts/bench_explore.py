"""``make bench``: the face-detector explore (fpgagen explore face) on this machine's CPUs, with the issue's two
goals checked: a verified point on the front dominates LPYOLO's 4W4A (AP at least as high, FPS no lower, fewer
LUTs, all from fine-tune + build; the LUTs from a build of the point at the baseline's verified FPS, since a
max-FPS build fills the LUT budget whatever the point) and the predictor's Spearman >= 0.8 on held-out fine-tunes.

Sizes: the README's, 30 QAT iterations per fine-tune and 100 eval images, set here as the defaults of
FPGAGEN_EXPLORE_FACE_ITERS and FPGAGEN_EXPLORE_FACE_EVAL_IMAGES (before the explore starts, so the Ray workers
inherit them; set either in the environment to override it), and the arguments below. Prints the front, the wall
time and the per-point costs; says "met" / "NOT met" for each goal."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SIZES = {"FPGAGEN_EXPLORE_FACE_ITERS": "30", "FPGAGEN_EXPLORE_FACE_EVAL_IMAGES": "100"}  # the README's run


def main() -> int:
    from fpgagen.explore.run import ExploreConfig, explore

    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--out", default="build/bench/explore_face")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--verify", type=int, default=2)
    ap.add_argument("--fit-points", type=int, default=3)
    ap.add_argument("--budgets", type=int, default=6)
    ap.add_argument("--holdout-points", type=int, default=3)
    ap.add_argument("--weight-bits", default="2,3,4,8")
    ap.add_argument("--act-bits", default="2,3,4")
    ap.add_argument("--time-limit", type=float, default=20.0)
    args = ap.parse_args()
    for name, value in SIZES.items():
        os.environ.setdefault(name, value)
    cfg = ExploreConfig(factory="face", out=args.out, workers=args.workers, verify=args.verify,
                        fit_points=args.fit_points, holdout_points=args.holdout_points,
                        budgets=args.budgets, time_limit=args.time_limit,
                        weight_bits=[int(v) for v in args.weight_bits.split(",")],
                        act_bits=[int(v) for v in args.act_bits.split(",")])
    doc = explore(cfg)
    print((Path(args.out) / "pareto.md").read_text())
    winners = doc["dominates_baseline"]
    print(f"sizes: {', '.join(f'{k}={os.environ[k]}' for k in SIZES)}")
    print(f"wall time {doc['wall_s']:.0f} s on {doc['engine']['workers']} workers; "
          f"phases {json.dumps(doc['timing_s'])}")
    print(f"goal: a verified point dominates 4W4A: {'met' if winners else 'NOT met'}"
          + (f" ({', '.join(str(p['weight_bits']) + '/' + str(p['act_bits']) for p in winners)})" if winners else ""))
    rho = doc["predictor"]["spearman"]
    print(f"goal: predictor Spearman >= 0.8 on {doc['predictor']['held_out']} held-out fine-tunes: "
          f"{'met' if rho is not None and rho >= 0.8 else 'NOT met'} (Spearman {rho}, MAE {doc['predictor']['mae']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
