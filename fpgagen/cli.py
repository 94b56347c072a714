"""The ``fpgagen`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import FpgagenError

# Only cheap modules at the top: building the parser must not import numpy, qonnx, torch or brevitas (the
# 'fpgagen --help' start-up test checks it). Each command imports what it needs in main().

EPILOG = """examples:
  fpgagen build my_net.onnx --board pynq_z2 -o build/my_net     # the fastest design that fits
  fpgagen build my_net.onnx --target-fps 60                    # the cheapest design reaching 60 FPS
  fpgagen build my_net.onnx --folding folding.json             # your own folding, validated
  fpgagen build face.onnx --camera 640x480                     # the camera's letterbox in the fabric
  fpgagen csim build/my_net --input x.npy --output y.npy
  fpgagen report build/my_net
  fpgagen bitstream build/my_net --board pynq_z2   # Vitis HLS + Vivado -> build/my_net/deploy/
  fpgagen explore face -o explore/face  # bit widths x folding: the accuracy/FPS Pareto front (Ray)
  fpgagen eval                      # AP of the shipped float and W4A4 face detectors
  fpgagen detect photo.jpg -o out/  # faces in your photos (the shipped detector, C-sim)
  fpgagen debug build/face --image photo.jpg -o debug/   # which layer / pre-processing step goes wrong
  fpgagen serve --video clip.mp4    # stream detections (TCP :9000, browser :8080); fpgagen view 127.0.0.1:9000
"""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in fpgagen's format: ``fpgagen: error: <what>, <where>, <what to do>``."""

    def error(self, message: str):
        self.exit(2, f"fpgagen: error: {message}, {self.prog}, see '{self.prog} --help'\n")


def _parser() -> argparse.ArgumentParser:
    # torch-free: the train/eval argument definitions and the shared number parsers (fpgagen.train.cli)
    from .train.cli import EVAL_DESCRIPTION, TRAIN_DESCRIPTION, add_eval_arguments, add_train_arguments, positive_float

    p = _Parser(prog="fpgagen", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Build bit-exact FPGA dataflow accelerators from Brevitas QONNX models.")
    from . import __version__

    p.add_argument("--version", action="version", version=f"fpgagen {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="QONNX model -> verified HLS project + C-sim library + reports",
                       description="Streamline the QONNX model to integer layers, fold it, generate Vitis-HLS "
                       "C++, compile the C-simulation and check it equals the numpy reference bit for bit.")
    b.add_argument("model", help="QONNX file exported by brevitas export_qonnx or fpgagen.export")
    b.add_argument("--board", default="pynq_z2", help="target board (boards/<name>/board.yaml; default pynq_z2)")
    b.add_argument("-o", "--out", help="build directory (default build/<model name>)")
    b.add_argument("--folding", help="JSON file {layer: {pe: .., simd: .., mem_style: .., ...}} (a build's "
                   "folding.json is one); validated against each kernel and the board budget")
    b.add_argument("--target-fps", type=positive_float, help="the cheapest design that reaches this throughput "
                   "(default: the fastest design that fits the board)")
    b.add_argument("--optimizer", choices=("ilp", "greedy"), default="ilp",
                   help="ilp: integer program over every layer's folding and memory/DSP styles (default); greedy: "
                   "the FINN-style baseline at --target-fps (default 30), no resource model")
    b.add_argument("--ceiling", type=_ceilings, help="utilization ceilings as fractions, e.g. LUT=0.7,DSP=1.0 "
                   "(default LUT=0.8,FF=0.8,BRAM18=0.9,DSP=0.9,LUTRAM=0.8)")
    b.add_argument("--camera", metavar="WxH[:rgb|bgr]", help="put the camera frame's letterbox in the fabric: "
                   "the accelerator takes uint8 WxH camera frames and resizes them (bit-exact with OpenCV's "
                   "INTER_LINEAR_EXACT) into the network's square input; :bgr swaps the channels for an RGB-trained "
                   "net. Needs an input quantizer whose code is the uint8 pixel")
    b.add_argument("--no-verify", action="store_true", help="skip the C-sim vs reference check")
    b.add_argument("--debug-outputs", metavar="LAYER[,LAYER]", help="a debug build: these layers' output streams "
                   "also go to the host as extra outputs (compare the board's inner streams, 'fpgagen debug')")
    c = sub.add_parser("csim", help="run inputs through a built accelerator's C-simulation",
                       description="Run a float input (.npy, as the torch model takes it) through the C-simulated "
                       "accelerator and save what the torch model would return.")
    c.add_argument("build_dir", help="a directory written by 'fpgagen build'")
    c.add_argument("--input", required=True, help=".npy float input, NCHW (or NC), what the torch model takes; "
                   "integer arrays are refused (convert pixels to the model's float input, e.g. / 255); for a "
                   "--camera build uint8 camera frames (N, H, W, 3)")
    c.add_argument("--output", required=True,
                   help=".npy file to write (.npy is appended if missing; several outputs: an .npz of output0, "
                   "output1, ...)")
    c.add_argument("--codes", action="store_true", help="save integer output codes instead of dequantized floats")
    c.add_argument("--reference", action="store_true", help="use the numpy reference instead of C-sim")
    r = sub.add_parser("report", help="print a build's report; writes report.md and PNG plots",
                       description="Print the build's estimated per-layer folding, cycles and resources against "
                       "the board budget, and write report.md with cycles.png and resources.png beside it.")
    r.add_argument("build_dir", help="a directory written by 'fpgagen build'")
    t = sub.add_parser("train", help="quantization-aware training of the LPYOLO face detector",
                       description=TRAIN_DESCRIPTION)
    add_train_arguments(t)
    e = sub.add_parser("eval", help="face-detection AP of the float and W4A4 models",
                       description=EVAL_DESCRIPTION)
    add_eval_arguments(e)
    from .synth.cli import DESCRIPTION as BITSTREAM_DESCRIPTION
    from .synth.cli import add_bitstream_arguments

    bs = sub.add_parser("bitstream", help="verified HLS project -> Vitis HLS IP -> Vivado bitstream (deploy/)",
                        description=BITSTREAM_DESCRIPTION)
    add_bitstream_arguments(bs)
    from .debug.cli import DESCRIPTION as DEBUG_DESCRIPTION
    from .debug.cli import HELP as DEBUG_HELP
    from .debug.cli import add_debug_arguments

    add_debug_arguments(sub.add_parser("debug", help=DEBUG_HELP, description=DEBUG_DESCRIPTION))
    from .runtime import cli as runtime_cli  # the host runtime: detect, serve, view (imports nothing heavy)

    for name, help_, description in (("detect", runtime_cli.DETECT_HELP, runtime_cli.DETECT_DESCRIPTION),
                                     ("serve", runtime_cli.SERVE_HELP, runtime_cli.SERVE_DESCRIPTION),
                                     ("view", runtime_cli.VIEW_HELP, runtime_cli.VIEW_DESCRIPTION)):
        getattr(runtime_cli, f"add_{name}_arguments")(sub.add_parser(name, help=help_, description=description))
    from .explore.cli import DESCRIPTION as EXPLORE_DESCRIPTION
    from .explore.cli import HELP as EXPLORE_HELP
    from .explore.cli import add_explore_arguments

    add_explore_arguments(sub.add_parser("explore", help=EXPLORE_HELP, description=EXPLORE_DESCRIPTION,
                                         formatter_class=argparse.RawDescriptionHelpFormatter))
    return p


def _ceilings(text: str) -> dict[str, float]:
    """RESOURCE=FRACTION[,...]; the names and the ranges are checked by fpgagen.validate.check_ceilings."""
    try:
        return {k.strip(): float(v) for k, v in (item.split("=") for item in text.split(",") if item.strip())}
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not RESOURCE=FRACTION[,...], e.g. LUT=0.7,DSP=1.0") from None


_MAGIC = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image", b"BM": "a BMP image",
          b"PK\x03\x04": "a zip archive", b"\x80": "a Python pickle"}


def _load_input(path: str, camera_frames: bool = False):
    """The .npy input of 'fpgagen csim' (an .npz holding exactly one array is taken too). What else it is (an image,
    a pickle, an .npz of several arrays, text) is named, and an integer array is refused: the input is the float
    the torch model takes, and guessing what integers mean (pixels? codes?) would be silent. A --camera build
    (``camera_frames``) takes uint8 camera frames instead; the accelerator checks their shape and type."""
    import numpy as np

    where, fix = path, "pass a .npy file written by numpy.save (the float32 array the torch model takes)"
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise FpgagenError(f"cannot read input array ({exc.strerror or exc})", where, fix) from None
    if head.startswith(b"PK\x03\x04"):  # .npz
        try:
            with np.load(path, allow_pickle=False) as npz:
                names = list(npz.files)
                if len(names) != 1:
                    raise FpgagenError(f"an .npz archive of {len(names)} arrays ({', '.join(names[:6]) or 'none'})",
                                       where, "pass one array: numpy.save('x.npy', archive['NAME'])")
                arr = npz[names[0]]
        except FpgagenError:
            raise
        except Exception as exc:  # BadZipFile, ValueError (pickled member), zlib.error
            raise FpgagenError(f"cannot read the .npz archive ({type(exc).__name__})", where, fix) from None
    elif not head.startswith(b"\x93NUMPY"):
        kind = next((name for magic, name in _MAGIC.items() if head.startswith(magic)), "not a .npy file")
        hint = ("; for photos use 'fpgagen detect', or save the float array: numpy.save('x.npy', "
                "img.transpose(2, 0, 1)[None] / 255)" if "image" in kind else "")
        raise FpgagenError(f"the input is {kind}" if kind != "not a .npy file" else "the input is not a .npy file",
                           where, fix + hint)
    else:
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise FpgagenError(f"cannot read input array ({' '.join(str(exc).split())[:160]})", where, fix) \
                from None
    if camera_frames:
        return arr
    if arr.dtype.kind in "iub":
        raise FpgagenError(f"an integer array ({arr.dtype}) as input", where,
                           "'fpgagen csim' takes the float input the torch model takes: convert it, e.g. "
                           "x.astype(numpy.float32), or pixels / 255 for a model whose input quantizer reads [0, 1]")
    if arr.dtype.kind != "f":
        raise FpgagenError(f"an array of dtype {arr.dtype} as input", where, fix)
    return arr


def _save_output(path: str, y) -> Path:
    import numpy as np

    out = Path(path)
    try:
        if out.is_dir():
            raise IsADirectoryError("it is a directory")
        out.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(y, tuple):  # several outputs: one .npz, output0, output1, ... in the model's order
            out = out.with_suffix(".npz")
            np.savez(out, **{f"output{k}": v for k, v in enumerate(y)})
        else:
            out = out if out.suffix == ".npy" else out.with_name(out.name + ".npy")  # what numpy.save writes
            np.save(out, y)
    except OSError as exc:
        raise FpgagenError(f"cannot write the output array ({exc.strerror or exc})", str(path),
                           "pass a writable .npy file path") from None
    return out


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed the help or a usage error
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.command == "build":
            from .accelerator import build

            build(args.model, board=args.board, out_dir=args.out, folding=args.folding,
                  target_fps=args.target_fps, verify=not args.no_verify, optimizer=args.optimizer,
                  ceilings=args.ceiling, camera=args.camera, debug_outputs=args.debug_outputs)
        elif args.command == "csim":
            from .accelerator import load

            acc = load(args.build_dir)
            x = _load_input(args.input, camera_frames=acc.camera is not None)
            y = (acc.reference if args.reference else acc.run)(x, codes=args.codes)
            out = _save_output(args.output, y)
            for k, v in enumerate(y if isinstance(y, tuple) else (y,)):
                print(f"wrote {out}{f' output{k}' if isinstance(y, tuple) else ''} {list(v.shape)} {v.dtype}")
        elif args.command == "train":
            from .train.cli import train_command

            return train_command(args)
        elif args.command == "bitstream":
            from .synth.cli import bitstream_command

            return bitstream_command(args)
        elif args.command == "explore":
            from .explore.cli import explore_command

            return explore_command(args)
        elif args.command == "eval":
            from .train.cli import eval_command

            return eval_command(args)
        elif args.command == "debug":
            from .debug.cli import run_debug

            return run_debug(args)
        elif args.command in ("detect", "serve", "view"):
            from .runtime import cli as runtime_cli

            return getattr(runtime_cli, f"run_{args.command}")(args)
        elif args.command == "report":
            from .report import report

            path = Path(args.build_dir) / "report.json"
            if not path.is_file():
                raise FpgagenError("no report.json", args.build_dir, "build it first with 'fpgagen build'")
            try:
                print(report(args.build_dir))
            except OSError as exc:  # report.md or a plot is a directory, or the build is read-only
                target = exc.filename if isinstance(exc.filename, str) else str(Path(args.build_dir) / "report.md")
                if Path(target).name.startswith("."):  # the hidden temporary beside the file write_atomic replaces
                    target = str(Path(target).with_name(Path(target).name[1:].split(".tmp-")[0]))
                raise FpgagenError(f"cannot write the report ({exc.strerror or exc})", target,
                                   "make the build directory writable and remove what blocks the file (a directory "
                                   "of that name), or copy the build somewhere writable") from None
            except (KeyError, ValueError, TypeError, AttributeError, IndexError, ZeroDivisionError):
                raise FpgagenError("the build directory is damaged (report.json is from an older fpgagen or "
                                   "corrupt)", str(path), "rebuild with 'fpgagen build'") from None
            print(f"wrote {Path(args.build_dir) / 'report.md'} and the plots beside it", file=sys.stderr)
    except FpgagenError as exc:
        print(f"fpgagen: error: {' '.join(str(exc).splitlines())}", file=sys.stderr)  # one line, whatever it quotes
        return 2
    except KeyboardInterrupt:
        print("fpgagen: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
