"""``fpgagen bitstream``: argument definitions and the handler (imports nothing heavy until it runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """Turn a built accelerator (fpgagen build) into a PYNQ bitstream: verify the HLS project in
C-simulation (bit-exact against the numpy reference, plus the HLS testbench under g++), write the Vitis HLS and
Vivado Tcl, then run Vitis HLS (csim, csynth, RTL co-simulation, by default of a reduced-resolution copy of a
large network, IP export) and Vivado (block design, implementation,
bitstream) on a local install or in the docker/ image. Writes BUILD_DIR/deploy/ (fpgagen.bit, fpgagen.hwh,
report.md). Without the Xilinx tools it stops after the verified project and the Tcl, with exit status 2."""


def add_bitstream_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("build_dir", help="a build directory written by 'fpgagen build'")
    p.add_argument("--board", default=None, help="target board (default: the build's)")
    p.add_argument("--docker", action="store_true", help="run the Xilinx tools in the fpgagen-xilinx Docker image "
                   "(make docker-image XILINX_INSTALLER=...)")
    cosim = p.add_mutually_exclusive_group()
    cosim.add_argument("--no-cosim", dest="cosim", action="store_const", const=False, default=None,
                       help="skip RTL co-simulation (default: on, on the design itself when it simulates in minutes, "
                       "else on a reduced-resolution copy: same layers, weights and folding at a smaller H x W)")
    cosim.add_argument("--cosim", dest="cosim", action="store_const", const=True,
                       help="co-simulate the full-size design even when it is large (hours)")


def bitstream_command(args: argparse.Namespace) -> int:
    from ..csim import log_stderr
    from .flow import bitstream

    deploy = bitstream(args.build_dir, board=args.board, use_docker=args.docker, cosim=args.cosim, log=log_stderr)
    print(f"wrote {deploy}")
    return 0


def make_main(argv: list[str] | None = None) -> int:
    """`make bitstream`: build the shipped W4A4 face detector (with a 640x480 camera's letterbox in the fabric
    unless --camera none; or --model X.onnx, built plain) if its build is missing or older than the model, then
    run the bitstream flow on it. Exit 2 with the message when the tools are missing."""
    import sys

    from ..errors import FpgagenError

    p = argparse.ArgumentParser(prog="make bitstream", description=make_main.__doc__)
    p.add_argument("--board", default="pynq_z2")
    p.add_argument("--model", help="a QONNX file (default: the shipped W4A4 face detector, exported at 416x416)")
    p.add_argument("--out", default="build", help="parent of the build directory (default build/)")
    p.add_argument("--docker", action="store_true")
    p.add_argument("--no-cosim", dest="cosim", action="store_const", const=False, default=None)
    p.add_argument("--camera", default="640x480", help="the shipped detector's camera, whose letterbox runs in the "
                   "fabric (WxH[:rgb|bgr], default 640x480); 'none': the plain 416x416-input build")
    args = p.parse_args(argv)
    camera = None if args.camera.lower() in ("", "none", "plain") or args.model else args.camera
    try:
        if args.model:
            model = Path(args.model)
            build_dir = Path(args.out) / model.stem
            if (build_dir / "network.json").is_file() and model.is_file() and \
                    (build_dir / "network.json").stat().st_mtime >= model.stat().st_mtime:
                print(f"[make bitstream] reusing the build in {build_dir} (newer than {model})", file=sys.stderr)
            else:
                import fpgagen

                if not model.is_file():
                    raise FpgagenError("model file not found", str(model), "pass MODEL=path/to/model.onnx")
                fpgagen.build(model, board=args.board, out_dir=build_dir)
        else:  # the shipped face detector: one verified build (the one 'fpgagen detect' caches), copied here
            from ..runtime.model import copy_verified_build, shipped_face_build

            log = lambda m: print(f"[make bitstream] {m}", file=sys.stderr)  # noqa: E731
            name = FACE_NAME + (f"_{camera.replace(':', '_')}" if camera else "")
            build_dir = copy_verified_build(shipped_face_build(board=args.board, log=log, camera=camera),
                                            Path(args.out) / name, log)
        ns = argparse.Namespace(build_dir=str(build_dir), board=args.board, docker=args.docker, cosim=args.cosim)
        return bitstream_command(ns)
    except FpgagenError as exc:
        print(f"fpgagen: error: {exc}", file=sys.stderr)
        return 2


FACE_NAME = "lpyolo_w4a4_face"  # build/<this>: the shipped detector's build, with detector.json (its anchors)


if __name__ == "__main__":
    raise SystemExit(make_main())
