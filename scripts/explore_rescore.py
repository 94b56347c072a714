"""Re-score a finished explore's fine-tunes with the current sensitivity definition (fpgagen.explore.predictor),
without fine-tuning anything again: the sensitivities are measured anew in this process (one forward pass per
variable and width, as the explore's sensitivity tasks do), the predictor is fitted on the run's "fit" points and
judged on the others that have a measured accuracy, as ``pareto.json``'s ``predictor`` is.

    python scripts/explore_rescore.py docs/explore/face_pareto.json            # the shipped face detector
    python scripts/explore_rescore.py RUN/pareto.json --factory my.py:make --calibration my.py:calibration
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    from fpgagen.explore import contract
    from fpgagen.explore.predictor import Sensitivity, fit, quality
    from fpgagen.explore.tasks import sensitivity_task

    ap = argparse.ArgumentParser()
    ap.add_argument("pareto", help="a finished explore's pareto.json")
    ap.add_argument("--factory", default="face")
    ap.add_argument("--calibration", default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    doc = json.loads(Path(args.pareto).read_text())
    c = contract.resolve(args.factory, calibration=args.calibration)
    specs = {"factory": c.factory_spec, "evaluate": c.evaluate_spec, "finetune": c.finetune_spec,
             "calibration": c.calibration_spec}
    grids = {kind: sorted({int(b) for s in doc["sensitivity"][key] for b in s}) for kind, key in
             (("w", "weight"), ("a", "act"))}
    shape = (len(doc["sensitivity"]["weight"]), len(doc["sensitivity"]["act"]))
    widest = (max(grids["w"]), max(grids["a"]))
    found = {}
    for kind, n in (("w", shape[0]), ("a", shape[1])):
        found[kind] = []
        for i in range(n):
            out = sensitivity_task(specs, kind, i, grids[kind], widest, shape, threads=args.threads)
            if "fatal" in out:
                print(f"fpgagen: error: {out['fatal']}", file=sys.stderr)
                return 2
            found[kind].append({int(b): v for b, v in out["sensitivity"].items()})
    sens = Sensitivity(found["w"], found["a"])
    measured = [p for p in doc["points"] if p["accuracy_measured"] is not None]
    fitted = [p for p in measured if "fit" in p["role"].split("+")]
    held = [p for p in measured if p not in fitted]
    pred = fit([sens.score(p["weight_bits"], p["act_bits"]) for p in fitted], [p["accuracy_measured"] for p in fitted])
    q = quality([pred.accuracy(sens.score(p["weight_bits"], p["act_bits"])) for p in held],
                [p["accuracy_measured"] for p in held])
    was = doc["predictor"]
    print(f"fitted on {len(fitted)}, judged on {q['held_out']} held-out fine-tunes")
    print(f"  as recorded: Spearman {was['spearman']}, MAE {was['mae']}")
    print(f"  re-scored:   Spearman {q['spearman']}, MAE {q['mae']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
