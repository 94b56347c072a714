"""``make demo``: the shipped W4A4 face detector, built for a board and run through the C-simulated accelerator.

1. load the shipped checkpoint, export it to QONNX at 416x416 and ``fpgagen.build`` it (verified bit-exact);
2. detect faces through the C-simulation on held-out synthetic eval images and on the two real photos kept out
   of training (scikit-image's astronaut, matplotlib's Grace Hopper), on the integer-code path;
3. check the accelerator's output codes equal the Brevitas model's on those frames;
4. write annotated images, a precision-recall plot and ``report.md`` (AP, estimated FPS, resources), and
   print where they are.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..data import SyntheticConfig, WiderFace, sources, synthetic
from ..detect import BAND_NOTE, Detections, Detector, GroundTruth, accelerator_backend, evaluate, torch_backend
from ..detect.draw import annotate, mosaic, save_rgb
from ..detect.nms import iou_matrix
from .evaluation import AP_CONF, NMS_IOU, ap_table, detect_dataset, write_pr_plot
from .model import load_checkpoint, shipped_checkpoint

SIZE = 416
DRAW_CONF = 0.5  # fixed a priori (objectness above one half); not tuned on any image


def run_in_chunks(run, batch: np.ndarray, log, chunk: int = 32) -> np.ndarray:
    """``run(batch)`` a chunk at a time, logging frames done and seconds so far (the demo's C-simulation of 302
    frames takes minutes); the result equals one call's."""
    t0, parts = time.perf_counter(), []
    for start in range(0, len(batch), chunk):
        parts.append(run(batch[start:start + chunk]))
        log(f"{start + len(parts[-1])}/{len(batch)} frames, {time.perf_counter() - t0:.0f} s")
    return np.concatenate(parts)


def _filter(det: Detections, conf: float) -> Detections:
    keep = det.scores > conf
    return Detections(det.boxes[keep], det.scores[keep])


def run_demo(board: str = "pynq_z2", out: str | Path = "build/demo", eval_images: int | None = None,
             checkpoint: str | Path | None = None, float_checkpoint: str | Path | None = None,
             full_eval: bool = True, log=print) -> dict:
    """Run the demo; returns a summary dict (also ``OUT/summary.json``). Paths are printed through ``log``."""
    import fpgagen

    out = Path(out)
    t_start = time.perf_counter()
    ckpt = Path(checkpoint) if checkpoint else shipped_checkpoint("w4a4")
    fckpt = Path(float_checkpoint) if float_checkpoint else shipped_checkpoint("float")
    model, info = load_checkpoint(ckpt)
    anchors = info["anchors"]
    label = f"W{info['weight_bits']}A{info['act_bits']}"
    name = f"lpyolo_{label.lower()}_face"
    log(f"[demo] checkpoint {ckpt} ({label}, trained on {info['meta'].get('data', '?')})")
    from ..runtime.model import copy_verified_build, shipped_face_build, write_detector_json

    if checkpoint is None:  # the shipped detector: the one verified build 'fpgagen detect' caches, copied here
        build_dir = copy_verified_build(shipped_face_build(board=board, log=log), out / name,
                                        lambda m: log(f"[demo] {m}"))
        acc = fpgagen.load(build_dir, log=lambda m: None)
    else:
        onnx = fpgagen.export(model, out / f"{name}.onnx", input_shape=(1, 3, SIZE, SIZE))
        acc = fpgagen.build(onnx, board=board, out_dir=out / name)
        write_detector_json(acc.build_dir, anchors, SIZE, source=str(ckpt))  # `fpgagen detect --accelerator` reads it
    backend = accelerator_backend(acc, "C-sim")
    detector = Detector(backend, anchors, SIZE, conf=AP_CONF, nms_iou=NMS_IOU)

    syn_cfg = SyntheticConfig(**info["meta"].get("synthetic", {}))
    root = synthetic.ensure(syn_cfg, splits=("val",), log=lambda m: log(f"[demo] {m}"))
    ds = WiderFace(root, "val", limit=eval_images)
    samples = list(ds)
    photos = sources.demo_photos()
    images = [s.image for s in samples] + [p.image for p in photos]

    # one batch through the C-simulated accelerator
    log(f"[demo] running {len(images)} frames ({len(samples)} held-out synthetic + {len(photos)} photos) "
        f"through the C-simulation")
    batch, letterboxes = detector.preprocess(images)
    t0 = time.perf_counter()
    codes = run_in_chunks(backend.run, batch, lambda m: log(f"[demo]   C-simulation: {m}"))
    csim_s = time.perf_counter() - t0
    brevitas = torch_backend(model).run(batch)
    dets = detector.detections(images, letterboxes, codes)
    brevitas_dets = detector.detections(images, letterboxes, brevitas)
    differ = [i for i in range(len(images)) if not np.array_equal(codes[i], brevitas[i])]
    same_dets = sum(np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
                    for a, b in zip(dets, brevitas_dets, strict=True))
    syn_dets, photo_dets = dets[:len(samples)], dets[len(samples):]
    truths = [GroundTruth(s.boxes, s.ignore) for s in samples]
    acc_ap = evaluate(syn_dets, truths)

    # annotated images
    pics = out / "detections"
    sheet = []
    for i, (s, d) in enumerate(zip(samples, syn_dets, strict=True)):
        img = annotate(s.image, _filter(d, DRAW_CONF), s.boxes)
        if i < 8:
            save_rgb(pics / f"synthetic_{i:02d}.png", img)
        sheet.append(img)
    if sheet:
        save_rgb(pics / "synthetic_sheet.png", mosaic(sheet[:16]))
    photo_lines = []
    for p, d in zip(photos, photo_dets, strict=True):
        shown = _filter(d, DRAW_CONF)
        save_rgb(pics / f"{p.name}.png", annotate(p.image, shown, p.faces))
        ious = iou_matrix(shown.boxes, p.faces, plus_one=True).max(axis=1) if len(shown) else np.zeros(0)
        hit = ious >= 0.5
        top = f"{shown.scores[hit].max():.2f}" if hit.any() else "-"
        photo_lines.append(f"| {p.name} | {'yes' if hit.any() else 'no'} | {top} | "
                           f"{float(ious.max()) if len(ious) else 0:.2f} | {int((~hit).sum())} |")

    # the full held-out split in torch (float and quantized), for the side-by-side AP
    full = None
    if full_eval:
        full_ds = WiderFace(root, "val")
        full = {}
        for lab, path in (("float", fckpt), (label, ckpt)):
            if not Path(path).is_file():
                continue
            m, inf = load_checkpoint(path)
            det = Detector(torch_backend(m), inf["anchors"], SIZE, conf=AP_CONF, nms_iou=NMS_IOU)
            full[lab] = evaluate(*detect_dataset(det, full_ds))
        write_pr_plot({**full, f"{label} C-sim ({len(samples)} images)": acc_ap}, out / "pr.png",
                      f"held-out synthetic eval split ({len(full_ds)} images at {SIZE})")

    report = json.loads((acc.build_dir / "report.json").read_text())
    summary = {
        "checkpoint": str(ckpt), "board": board, "build_dir": str(acc.build_dir),
        "fps_estimated": report.get("fps_estimated"), "bottleneck": report.get("bottleneck"),
        "resources": {k: report[k] for k in ("budget", "resources", "totals", "utilization") if k in report},
        "csim_frames": len(images), "csim_seconds": round(csim_s, 2),
        "frames_codes_equal_brevitas_float32": f"{len(images) - len(differ)}/{len(images)}",
        "frames_detections_equal_brevitas_float32": f"{same_dets}/{len(images)}",
        "ap_csim": {b: r.ap for b, r in acc_ap.items()}, "eval_images_csim": len(samples),
        "ap_full": {lab: {b: r.ap for b, r in res.items()} for lab, res in (full or {}).items()},
        "photos": {p.name: {"boxes": d.boxes[d.scores > DRAW_CONF].round(1).tolist(),
                            "scores": d.scores[d.scores > DRAW_CONF].round(3).tolist()}
                   for p, d in zip(photos, photo_dets, strict=True)},
        "seconds": None,
    }
    lines = [f"# Face detection demo: {name} on {board}", "",
             f"Checkpoint `{ckpt}` ({label}). Accelerator built in `{acc.build_dir}` "
             f"(report: `{acc.build_dir / 'report.md'}`).", "",
             f"**Estimated throughput: {_fmt(report.get('fps_estimated'))} FPS** at {report.get('clock_mhz')} MHz "
             f"(bottleneck `{report.get('bottleneck')}`; estimated from the cycle model, not measured on hardware).",
             ""]
    lines += _resource_lines(report)
    lines += ["", f"C-simulation: {len(images)} frames of {SIZE}x{SIZE} in {csim_s:.1f} s "
              f"({csim_s / len(images):.2f} s per frame on this host). Output codes identical to Brevitas' float32 "
              f"forward in {len(images) - len(differ)}/{len(images)} frames; detections identical in "
              f"{same_dets}/{len(images)}."]
    if differ:
        lines.append(f"Frames {differ} differ in {int((codes[differ] != brevitas[differ]).sum())} codes: where "
                     "Brevitas' float32 arithmetic lands within rounding error of a k - 1/2 boundary it rounds the "
                     "other way than the exact integer thresholds, and the flipped code propagates (see README, "
                     "'What bit-exact means').")
    lines.append("")
    if full:
        lines += [f"## AP on the held-out synthetic eval split ({len(WiderFace(root, 'val'))} images, torch)", "",
                  ap_table(full), ""]
    lines += [f"## AP of the C-simulated accelerator on {len(samples)} held-out eval images", "",
              ap_table({f"{label} (C-sim)": acc_ap}), "",
              "## Real photos held out of training", "",
              f"Detections with objectness > {DRAW_CONF} (green); hand-set face box (yellow).", "",
              "| photo | face found (IoU >= 0.5) | its score | best IoU | other boxes |", "|---|---|---:|---:|---:|",
              *photo_lines, "",
              f"Annotated images: `{pics}/` (astronaut.png, grace_hopper.png, synthetic_*.png, synthetic_sheet.png)."]
    if full:
        lines.append(f"Precision-recall plot: `{out / 'pr.png'}`.")
    summary["seconds"] = round(time.perf_counter() - t_start, 1)
    lines += ["", f"Demo wall time: {summary['seconds']:.0f} s.", "", f"*{BAND_NOTE}.*"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    log("\n".join(lines))
    log(f"\n[demo] report: {out / 'report.md'}\n[demo] annotated images: {pics}\n[demo] accelerator: {acc.build_dir}")
    return summary


def _fmt(v) -> str:
    return f"{v:.1f}" if isinstance(v, int | float) else str(v)


def _resource_lines(report: dict) -> list[str]:
    budget = report.get("budget")
    if isinstance(budget, dict) and budget:
        items = [f"{k} {v['used']:,} / {v['device']:,} ({100 * v['used'] / v['device']:.0f}%)"
                 for k, v in budget.items() if isinstance(v, dict) and {"used", "device"} <= set(v)]
        if items:
            return [f"Estimated resources (cost models, not synthesis): {', '.join(items)}."]
    for key in ("resources", "totals", "utilization"):
        res = report.get(key)
        if isinstance(res, dict) and res:
            items = ", ".join(f"{k} {_fmt(v)}" for k, v in res.items() if not isinstance(v, dict | list))
            return [f"Estimated resources: {items}."]
    return ["Estimated resources: see the build report."]


def main(argv: list[str] | None = None) -> int:
    from ..errors import FpgagenError

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", default="pynq_z2")
    p.add_argument("--out", default="build/demo", help="output directory (default build/demo)")
    p.add_argument("--eval-images", type=int, help="held-out synthetic images through the C-sim (default: all)")
    p.add_argument("--checkpoint", help="quantized checkpoint (default: the shipped W4A4)")
    p.add_argument("--float-checkpoint", help="float checkpoint for the side-by-side AP (default: shipped)")
    p.add_argument("--no-full-eval", action="store_true", help="skip the torch AP on the whole eval split")
    args = p.parse_args(argv)
    try:
        run_demo(args.board, args.out, args.eval_images, args.checkpoint, args.float_checkpoint,
                 not args.no_full_eval)
    except FpgagenError as exc:
        print(f"fpgagen: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
