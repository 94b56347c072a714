"""``fpgagen train`` and ``fpgagen eval``: argument parsers and entry points.

Wire them into a top-level parser with::

    t = sub.add_parser("train", help=..., description=TRAIN_DESCRIPTION); add_train_arguments(t)
    e = sub.add_parser("eval", help=..., description=EVAL_DESCRIPTION); add_eval_arguments(e)
    ...
    return train_command(args)   # or eval_command(args); both return an exit code, FpgagenError propagates
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .trainer import TrainConfig

TRAIN_DESCRIPTION = ("Quantization-aware training of the LPYOLO face detector: a float phase, then Brevitas QAT at "
                     "the chosen bit widths. Without --data it trains on the synthetic composite face set "
                     "(generated once under build/data); with --data it reads WIDER FACE.")
EVAL_DESCRIPTION = ("WIDER-style AP (IoU 0.5, +1-pixel convention, VOC all-point) of the float and quantized "
                    "checkpoints side by side, overall and by face-height band, with a precision-recall PNG. "
                    "Defaults: the shipped checkpoints on the held-out synthetic eval split.")


# Defaults of TrainConfig (fpgagen/train/trainer.py) and SyntheticConfig.n_train, repeated here so that building
# the parser imports neither torch nor brevitas; tests/test_errors.py checks they agree.
TRAIN_DEFAULTS = {"out": "build/train", "weight_bits": 4, "act_bits": 4, "size": 160, "batch": 32,
                  "float_iters": 2000, "qat_iters": 1200, "lr_float": 3e-3, "lr_qat": 1e-3, "seed": 0, "threads": 2,
                  "train_images": 4000}
BIT_RANGE = (2, 8)  # the LPYOLO quantizers fpgagen trains and builds (facts.md: 2W4A ... 8W3A)


def _anchors(text: str) -> tuple:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        values = []
    if len(values) % 2 or not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError("anchors are positive w,h pairs in pixels: e.g. 16,19,40,47,100,118")
    return tuple((values[i], values[i + 1]) for i in range(0, len(values), 2))


def _int_in(lo: int, hi: int | None = None, multiple: int = 1):
    """An argparse type: an integer in [lo, hi] (hi None: no upper bound), a multiple of ``multiple``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
        span = f"from {lo} to {hi}" if hi is not None else f"{lo} or more"
        extra = f", a multiple of {multiple}" if multiple > 1 else ""
        if value % multiple:
            raise argparse.ArgumentTypeError(f"{value} is not a multiple of {multiple}: use an integer {span}{extra}")
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{value} is out of range: use an integer {span}{extra}")
        return value
    return parse


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is out of range: use a finite number > 0")
    return value


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    d = TRAIN_DEFAULTS
    bits = _int_in(*BIT_RANGE)
    p.add_argument("--data", help="WIDER FACE root (wider_face_split/, WIDER_train/, WIDER_val/); "
                   "default: the synthetic face set")
    p.add_argument("-o", "--out", default=d["out"], help=f"output directory (default {d['out']})")
    p.add_argument("--weight-bits", type=bits, default=d["weight_bits"],
                   help=f"{BIT_RANGE[0]}..{BIT_RANGE[1]} (default {d['weight_bits']})")
    p.add_argument("--act-bits", type=bits, default=d["act_bits"],
                   help=f"{BIT_RANGE[0]}..{BIT_RANGE[1]} (default {d['act_bits']})")
    p.add_argument("--size", type=_int_in(32, 4096, multiple=32), default=d["size"],
                   help=f"training input size, a multiple of 32 (default {d['size']})")
    p.add_argument("--batch", type=_int_in(1), default=d["batch"], help=f"images per step (default {d['batch']})")
    p.add_argument("--float-iters", type=_int_in(0), default=d["float_iters"],
                   help=f"iterations of float pre-training (default {d['float_iters']})")
    p.add_argument("--qat-iters", type=_int_in(0), default=d["qat_iters"],
                   help=f"iterations of quantization-aware training (default {d['qat_iters']})")
    p.add_argument("--lr-float", type=positive_float, default=d["lr_float"],
                   help=f"peak learning rate of the float phase (default {d['lr_float']:g})")
    p.add_argument("--lr-qat", type=positive_float, default=d["lr_qat"],
                   help=f"peak learning rate of quantization-aware training (default {d['lr_qat']:g})")
    p.add_argument("--anchors", type=_anchors, help="w,h pairs in pixels at the deployed size (default: "
                   "16,19,40,47,100,118 for the synthetic set, LPYOLO's 10,14,23,27,37,58 for WIDER)")
    p.add_argument("--train-images", type=_int_in(1), default=d["train_images"],
                   help=f"synthetic training images (default {d['train_images']})")
    p.add_argument("--seed", type=_int_in(0), default=d["seed"],
                   help=f"seed of the weights, batches and augmentation (default {d['seed']})")
    p.add_argument("--threads", type=_int_in(1, 1024), default=d["threads"],
                   help=f"torch CPU threads (default {d['threads']})")
    p.add_argument("--init-float", help="skip the float phase: start QAT from this float checkpoint")
    p.add_argument("--resume", action="store_true", help="continue from OUT/state.pt")
    p.add_argument("--no-eval", action="store_true", help="skip the AP evaluation at the end")


def config_from_args(args) -> TrainConfig:
    from ..data import SyntheticConfig
    from ..detect import LPYOLO_ANCHORS
    from .trainer import SYNTH_ANCHORS, TrainConfig

    if args.size % 32:
        from ..errors import FpgagenError

        raise FpgagenError(f"--size {args.size} is not a multiple of 32", "fpgagen train", "use e.g. 160, 192, 256")
    anchors = args.anchors or (LPYOLO_ANCHORS if args.data else SYNTH_ANCHORS)
    return TrainConfig(out=args.out, data=args.data, synthetic=SyntheticConfig(n_train=args.train_images),
                       weight_bits=args.weight_bits, act_bits=args.act_bits, anchors=tuple(anchors), size=args.size,
                       batch=args.batch, float_iters=args.float_iters, qat_iters=args.qat_iters,
                       lr_float=args.lr_float, lr_qat=args.lr_qat, seed=args.seed, threads=args.threads,
                       init_float=args.init_float)


def train_command(args, argv: list[str] | None = None) -> int:
    from ..data import WiderFace
    from .evaluation import ap_table, evaluate_checkpoints, write_pr_plot
    from .trainer import data_root, train

    config = config_from_args(args)
    if argv is None:  # as invoked: 'fpgagen train ...' or 'train.py ...'
        command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    else:
        command = "fpgagen train " + shlex.join(argv)
    start = time.perf_counter()
    record = train(config, resume=args.resume, log=lambda m: print(m, file=sys.stderr), command=command)
    record["train_seconds"] = round(time.perf_counter() - start, 1)
    out = Path(config.out)
    if not args.no_eval:
        split = "val"
        ds = WiderFace(data_root(config), split)
        results = evaluate_checkpoints(record["checkpoints"], ds, config.eval_size,
                                       log=lambda m: print(m, file=sys.stderr))
        table = ap_table(results)
        print(table)
        write_pr_plot(results, out / "pr.png", f"{ds.root.name} [{split}], {len(ds)} images at {config.eval_size}")
        record["eval"] = {"data": str(ds.root), "split": split, "images": len(ds), "size": config.eval_size,
                          "ap": {lab: {b: r.ap for b, r in res.items()} for lab, res in results.items()}}
    (out / "record.json").write_text(json.dumps(record, indent=1))
    print(f"checkpoints: {', '.join(record['checkpoints'].values())}; record: {out / 'record.json'}")
    return 0


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="WIDER FACE root; default: the synthetic face set (its held-out eval split)")
    p.add_argument("--split", default="val", help="WIDER split to read (default val; the synthetic eval split)")
    p.add_argument("--float", dest="float_ckpt", help="float checkpoint (default: the shipped one)")
    p.add_argument("--quant", dest="quant_ckpt", help="quantized checkpoint (default: the shipped W4A4)")
    p.add_argument("--size", type=_int_in(32, 4096, multiple=32), default=416,
                   help="network input size, a multiple of 32 (default 416)")
    p.add_argument("--limit", type=_int_in(1), help="evaluate only the first N images (N >= 1)")
    p.add_argument("-o", "--out", default="build/eval", help="where the PR plot and ap.json go (default build/eval)")


def eval_command(args) -> int:
    from ..data import SyntheticConfig, WiderFace, synthetic
    from .evaluation import ap_table, evaluate_checkpoints, write_pr_plot
    from .model import load_checkpoint, shipped_checkpoint

    quant = Path(args.quant_ckpt) if args.quant_ckpt else shipped_checkpoint("w4a4")
    flt = Path(args.float_ckpt) if args.float_ckpt else shipped_checkpoint("float")
    _, info = load_checkpoint(quant, kind="quant", where="--quant")
    load_checkpoint(flt, kind="float", where="--float")  # a wrong or damaged one is named before the long part
    quant_label = f"W{info['weight_bits']}A{info['act_bits']}"
    root = Path(args.data) if args.data else synthetic.ensure(
        SyntheticConfig(**info["meta"].get("synthetic", {})), splits=("val",),
        log=lambda m: print(m, file=sys.stderr))
    ds = WiderFace(root, args.split, limit=args.limit)
    if not sum(len(rec.boxes) for rec in ds.records):  # AP is undefined (0/0), never a "+nan ... NOT met"
        from ..data.wider import gt_file
        from ..errors import FpgagenError

        raise FpgagenError(f"the ground truth lists {len(ds)} image(s) and no face, so AP is undefined",
                           str(gt_file(root, args.split)), "evaluate on a split whose ground truth holds faces")
    results = evaluate_checkpoints({"float": flt, quant_label: quant}, ds, args.size,
                                   log=lambda m: print(m, file=sys.stderr))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    what = "held-out synthetic eval split" if not args.data else f"WIDER FACE {args.split}"
    print(f"{what}: {len(ds)} images at {args.size}x{args.size} ({root})\n")
    print(ap_table(results))
    diff = 100 * (results[quant_label]["all"].ap - results["float"]["all"].ap)
    print(f"\n{quant_label} - float = {diff:+.2f} AP points overall (goal: {quant_label} within 2 points of float): "
          f"{'met' if diff >= -2 else 'NOT met'}")
    plot = write_pr_plot(results, out / "pr.png", f"{what}, {len(ds)} images at {args.size}")
    (out / "ap.json").write_text(json.dumps(
        {"data": str(root), "split": args.split, "images": len(ds), "size": args.size,
         "checkpoints": {"float": str(flt), quant_label: str(quant)},
         "ap": {lab: {b: r.ap for b, r in res.items()} for lab, res in results.items()},
         "faces": {b: r.n_faces for b, r in results["float"].items()}}, indent=1))
    print(f"precision-recall plot: {plot}; numbers: {out / 'ap.json'}")
    return 0


def _run(command, add, description, argv) -> int:
    from ..errors import FpgagenError

    p = argparse.ArgumentParser(description=description)
    add(p)
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the error (or the help); report its exit status
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return command(args) if command is eval_command else command(args, argv)
    except FpgagenError as exc:
        print(f"fpgagen: error: {exc}", file=sys.stderr)
        return 2


def main_train(argv: list[str] | None = None) -> int:
    return _run(train_command, add_train_arguments, TRAIN_DESCRIPTION, argv)


def main_eval(argv: list[str] | None = None) -> int:
    return _run(eval_command, add_eval_arguments, EVAL_DESCRIPTION, argv)
