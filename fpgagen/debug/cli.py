"""``fpgagen debug``: the argument definitions (imported by fpgagen.cli's parser: nothing heavy at import) and the
command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

MAX_FRAMES = 16
HELP = "where does a deployment go wrong? every layer's stream from C-sim, reference, QONNX, Brevitas compared"
DESCRIPTION = """Tap every stream of a built accelerator's C-simulation (the hls/ sources as they are now, hand
edits included) and compare it, layer by layer, with the numpy reference, the QONNX model executed node by node and,
with --model, the Brevitas forward. Names the first divergent layer, flags quantization problems (clipping, unused
codes, dead channels, SQNR) and, with --image and --deployed-input, checks what the accelerator received against
fpgagen's own pre-processing (channel order, scale, resize method, letterbox). Writes debug.json, debug.md and PNGs.
Exit status: 0 every source agrees and every check passes, 1 a divergence or a failed check, 2 bad input."""

EXAMPLES = """examples:
  fpgagen debug build/face --image photo.jpg -o debug/
  fpgagen debug build/face --image photo.jpg --deployed-input got.npy   # what the board actually received
  fpgagen debug build/my_net --input x.npy --model my_model.py:make -o debug/
"""


def add_debug_arguments(p: argparse.ArgumentParser) -> None:
    from ..runtime.cli import _anchors, _fraction

    p.epilog, p.formatter_class = EXAMPLES, argparse.RawDescriptionHelpFormatter
    p.add_argument("build_dir", help="a directory written by 'fpgagen build'")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help=".npy: the float input the torch model takes (NCHW or NC), or uint8 frames "
                     "(N, H, W, C) as the runtime hands them to the backend")
    src.add_argument("--image", help="a photo: fpgagen's reference pre-processing (letterbox, INTER_LINEAR_EXACT) "
                     "makes the frame")
    p.add_argument("--deployed-input", help=".npy of the frames the accelerator received ((N, S, S, 3) uint8, as "
                   "'fpgagen detect --save-input' writes them): checked against --image's reference frame")
    p.add_argument("--model", help="FILE.py:FUNCTION returning the Brevitas model the build was exported from: adds "
                   "its codes per layer and each quantizer's SQNR")
    p.add_argument("--float-model", help="FILE.py:FUNCTION returning the float twin of --model: adds each layer's "
                   "SQNR against the float model")
    p.add_argument("--onnx", help="the QONNX model (default: the one build.json names)")
    p.add_argument("--no-qonnx", action="store_true", help="skip the QONNX execution")
    p.add_argument("--board-outputs", metavar="OUTS.npz", help="what the board returned for --input's frames from "
                   "a --debug-outputs build (numpy.savez(OUTS, *backend.infer(frames))): its inner streams are "
                   "compared with the reference")
    p.add_argument("--conf", type=_fraction(upper_closed=False), help="the objectness threshold the deployment "
                   "uses (checked against the detector's)")
    p.add_argument("--nms-iou", type=_fraction(upper_closed=True), help="the NMS IoU the deployment uses")
    p.add_argument("--anchors", type=_anchors, help="the anchors the deployment decodes with (w,h pairs)")
    p.add_argument("--no-plots", action="store_true", help="debug.json and debug.md only")
    p.add_argument("-o", "--out", default="debug", help="report folder (default debug/)")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _read_image(path: str):
    from ..errors import FpgagenError
    from ..runtime.sources import read_image

    if not Path(path).is_file():
        raise FpgagenError("no such image file", path, "pass a photo (JPEG, PNG, ...)")
    return read_image(path)


def _read_array(path: str, what: str):
    import numpy as np

    from ..errors import FpgagenError

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise FpgagenError(f"cannot read the {what} ({' '.join(str(exc).split())[:120]})", path,
                           "pass a .npy file written by numpy.save") from None


def _board_outputs(acc, path: str) -> dict:
    """--board-outputs: an .npz of every output the backend returned, in order (arr_0, arr_1, ... or output0, ...)."""
    import numpy as np

    from ..errors import FpgagenError
    from .board import board_taps

    try:
        with np.load(path, allow_pickle=False) as npz:
            names = sorted(npz.files, key=lambda n: int("".join(c for c in n if c.isdigit()) or 0))
            outs = tuple(npz[n] for n in names)
    except (OSError, ValueError, EOFError) as exc:
        raise FpgagenError(f"cannot read the board's outputs ({' '.join(str(exc).split())[:120]})", path,
                           "pass numpy.savez(PATH, *backend.infer(frames))") from None
    return board_taps(acc.net, outs)


def input_frames(acc, x):
    """--input's array as the accelerator's float input (torch layout) or stream codes: uint8 (N, H, W, C) frames
    go in as the runtime hands them (the pixel as the code, or quantized from pixel/255)."""
    import numpy as np

    from ..errors import FpgagenError

    if x.dtype == np.uint8:
        shape = tuple(acc.camera[::-1]) + (3,) if acc.camera else tuple(acc.net.in_stream_shape)
        if x.ndim == 3:
            x = x[None]
        if x.shape[1:] != shape:
            raise FpgagenError(f"uint8 frames of shape {list(x.shape)}", "--input",
                               f"pass frames of shape (N, {', '.join(map(str, shape))}), or the float input")
        if acc.pixels_are_codes or acc.camera:
            return None, x.astype(np.int64)
        return x.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255), None
    if x.dtype.kind != "f":
        raise FpgagenError(f"an array of dtype {x.dtype}", "--input",
                           "pass the float input the torch model takes, or uint8 frames")
    return x, None


def run_debug(args) -> int:
    from ..accelerator import load
    from ..errors import FpgagenError
    from .preprocess import reference_frame, run_checks
    from .session import trace

    if args.deployed_input and not args.image:
        raise FpgagenError("--deployed-input without --image", "fpgagen debug",
                           "pass the original photo with --image so the reference pre-processing can be made")
    acc = load(args.build_dir, log=lambda m: None)
    image = deployed = None
    if args.image:
        image = _read_image(args.image)
        frame, _ = reference_frame(image, acc)
        x, codes = input_frames(acc, frame[None])
        if args.deployed_input:
            deployed = _read_array(args.deployed_input, "deployed input")
    else:
        x, codes = input_frames(acc, _read_array(args.input, "input"))
    frames = len(codes if codes is not None else x)
    if frames > MAX_FRAMES:  # every stream of every frame is kept in memory (LPYOLO: about 100 MB a frame)
        _log(f"fpgagen debug: tapping the first {MAX_FRAMES} of {frames} frames")
        x, codes = (x[:MAX_FRAMES] if x is not None else None), (codes[:MAX_FRAMES] if codes is not None else None)
    with trace(acc, log=_log) as t:
        if codes is not None:
            acc.run_stream(codes)
        else:
            acc.run(x)
    # the tap build runs the same sources: the effect runs below reuse it (one g++ run for edited sources, not two)
    acc._lib = t.tap_library
    t.compare("reference")
    if not args.no_qonnx:
        try:
            t.compare("qonnx", model=args.onnx)
        except FpgagenError as exc:
            if args.onnx:
                raise
            t.warnings.append(f"QONNX not compared: {exc.what}")
    if args.float_model and not args.model:
        raise FpgagenError("--float-model without --model", "fpgagen debug",
                           "pass the quantized Brevitas model with --model too")
    if args.model:
        t.compare("brevitas", model=args.model, float_model=args.float_model)
    if args.board_outputs:
        t.compare("board", model=_board_outputs(acc, args.board_outputs))
    if image is not None:
        t.preprocess_checks, t.postprocess_checks, effect, _ = run_checks(
            image, deployed, acc, conf=args.conf, nms_iou=args.nms_iou, anchors=args.anchors)
        if effect is not None:
            t.deployed_effect = effect
            if not args.no_plots:
                from .report import write_frames_plot

                t.images["preprocess"] = write_frames_plot(Path(args.out), frame, deployed)
    doc = t.report(args.out, plots=not args.no_plots)
    first = doc["first_divergence"]
    if first:
        print(f"first divergence: layer {first['layer']} ({first['a']} vs {first['b']}: {first['differing']} codes, "
              f"first at n,c,h,w {first['index']})")
    else:
        print(f"every source agrees ({', '.join(doc['sources'])}) on every tapped stream")
    for c in doc["preprocess_checks"] + doc["postprocess_checks"]:
        if not c["ok"]:
            print(f"check {c['check']} failed: {c['detail']}")
    for w in doc["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    print(f"wrote {Path(args.out) / 'debug.json'}, debug.md and plots")
    return 0 if doc["ok"] else 1
