"""`fpgagen debug` on the shipped W4A4 face detector (416x416, the host letterboxes) and a real photo (matplotlib's
Grace Hopper): the wall time of the whole command (goal: under 60 s on these machines), and fpgagen's own
train/deploy letterbox difference (training: fpgagen.data.transforms.letterbox, INTER_AREA when shrinking;
deployment: fast_letterbox = letterbox_exact, INTER_LINEAR_EXACT) as `fpgagen debug` reports it.

The build (export, fold, generate, verify) is made once into build/bench_debug/ and is not timed; the first debug
run also compiles the tap build of the C-sim (g++, cached by content), so both a cold and a warm run are printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import matplotlib.cbook
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 60.0
MODEL_PY = '''from fpgagen.train.model import shipped_checkpoint
from fpgagen.train.model import load_checkpoint


def make():
    return load_checkpoint(shipped_checkpoint("w4a4"))[0]


def make_float():
    return load_checkpoint(shipped_checkpoint("float"))[0]
'''


def letterbox_cost(acc, hopper: np.ndarray, composites: int = 10) -> dict:
    """fpgagen's train letterbox against its deploy letterbox, summed over real and synthetic photos: what the
    resize check of `fpgagen debug` measures, per image (fpgagen.debug.preprocess.run_checks)."""
    from fpgagen.data import synthetic
    from fpgagen.data.sources import demo_photos
    from fpgagen.data.transforms import letterbox
    from fpgagen.debug.preprocess import run_checks

    images = [p.image for p in demo_photos()]
    rng = np.random.default_rng(0)
    split = synthetic.face_split()
    for _ in range(composites):  # square composites of 640, cropped to a 640x480 camera frame
        img, _, _ = synthetic.compose(rng, 640, split["eval"], split["eval_nonfaces"])
        images.append(np.ascontiguousarray(img[80:560]))
    total = {"images": len(images), "differing": 0, "of": 0, "max_abs_diff": 0, "detections": 0, "gained": 0,
             "lost": 0}
    for img in images:
        trained, _ = letterbox(img, 416)
        _, _, effect, _ = run_checks(img, trained[None], acc)
        total["differing"] += effect["differing_codes"]
        total["of"] += effect["of"]
        total["max_abs_diff"] = max(total["max_abs_diff"], effect["max_abs_diff"])
        total["detections"] += effect.get("detections_reference", 0)
        total["gained"] += effect.get("detections_gained", 0)
        total["lost"] += effect.get("detections_lost", 0)
    return total


def main() -> int:
    import fpgagen
    from fpgagen.data.transforms import letterbox
    from fpgagen.runtime.model import write_detector_json
    from fpgagen.train.model import load_checkpoint, shipped_checkpoint

    work = ROOT / "build" / "bench_debug"
    work.mkdir(parents=True, exist_ok=True)
    build = work / "face"
    if not (build / "build.json").is_file():
        model, info = load_checkpoint(shipped_checkpoint("w4a4"))
        onnx = fpgagen.export(model, work / "face.onnx", input_shape=(1, 3, 416, 416))
        fpgagen.build(onnx, out_dir=build, log=lambda m: None)
        write_detector_json(build, info["anchors"], 416, source="shipped w4a4")
    photo = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    image = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    trained, _ = letterbox(image, 416)  # what the detector saw in training
    np.save(work / "train_letterbox.npy", trained[None])
    (work / "model.py").write_text(MODEL_PY)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    base = [sys.executable, "-m", "fpgagen.cli", "debug", str(build), "--image", str(photo)]
    runs = [("cold or warm (first)", base + ["-o", str(work / "debug_first")]),
            ("warm", base + ["-o", str(work / "debug")]),
            ("warm, + Brevitas hooks", base + ["--model", f"{work / 'model.py'}:make", "--float-model",
                                               f"{work / 'model.py'}:make_float", "-o",
                                               str(work / "debug_brevitas")]),
            ("train vs deploy letterbox", base + ["--deployed-input", str(work / "train_letterbox.npy"), "-o",
                                                  str(work / "debug_letterbox")])]
    times = {}
    for label, cmd in runs:
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        times[label] = time.perf_counter() - start
        print(f"fpgagen debug ({label}): {times[label]:.1f} s, exit {proc.returncode}")
        if proc.returncode == 2:
            print(proc.stderr[-2000:])
            return 1
    doc = json.loads((work / "debug_brevitas" / "debug.json").read_text())
    print(f"sources: {doc['sources']}; first divergence: {doc['first_divergence']}; "
          f"float32 boundary cases: {len(doc['float32_boundary_cases'])}")
    lb = json.loads((work / "debug_letterbox" / "debug.json").read_text())
    print("train (letterbox, INTER_AREA) vs deploy (fast_letterbox, INTER_LINEAR_EXACT) on grace_hopper.jpg:")
    for c in lb["preprocess_checks"]:
        print(f"  {c['check']}: {'ok' if c['ok'] else 'DIFFERS'}: {c['detail']}"
              + (f" -> effect {c['effect']}" if c.get("effect") else ""))
    print(f"  deployed frame's effect on the output: {lb['deployed_effect']}")
    print(f"  report: {work / 'debug_letterbox' / 'debug.md'}")
    cost = letterbox_cost(fpgagen.load(build, log=lambda m: None), image)
    print(f"  over {cost['images']} photos (the 2 held-out demo photos + {cost['images'] - 2} synthetic 640x480 "
          f"composites): {cost['differing']:,} of {cost['of']:,} output codes differ "
          f"({cost['differing'] / cost['of']:.1%}), max |Δ| {cost['max_abs_diff']}; detections at the deploy "
          f"letterbox {cost['detections']}, with the train letterbox +{cost['gained']} / -{cost['lost']} "
          "(IoU >= 0.5)")
    warm = times["warm"]
    brevitas = times["warm, + Brevitas hooks"]
    print(f"fpgagen debug on the face detector + a real photo: {warm:.1f} s warm (goal < {GOAL_S:.0f} s): "
          f"{'met' if warm < GOAL_S else 'NOT met'}; with Brevitas hooks {brevitas:.1f} s: "
          f"{'met' if brevitas < GOAL_S else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
