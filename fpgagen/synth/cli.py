"""``fpgagen bitstream``: argument definitions and the handler (imports nothing heavy until it runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """Turn a built accelerator (fpgagen build) into a PYNQ bitstream: verify the HLS project in
C-simulation (bit-exact against the numpy reference, plus the HLS testbench under g++), write the Vitis HLS and
Vivado Tcl, then run Vitis HLS (csim, csynth, cosim, IP export) and Vivado (block design, implementation,
bitstream) on a local install or in the docker/ image. Writes BUILD_DIR/deploy/ (fpgagen.bit, fpgagen.hwh,
report.md). Without the Xilinx tools it stops after the verified project and the Tcl, with exit status 2."""


def add_bitstream_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("build_dir", help="a build directory written by 'fpgagen build'")
    p.add_argument("--board", default=None, help="target board (default: the build's)")
    p.add_argument("--docker", action="store_true", help="run the Xilinx tools in the fpgagen-xilinx Docker image "
                   "(make docker-image XILINX_INSTALLER=...)")
    cosim = p.add_mutually_exclusive_group()
    cosim.add_argument("--no-cosim", dest="cosim", action="store_const", const=False, default=None,
                       help="skip RTL co-simulation (default: on only for networks that simulate in minutes)")
    cosim.add_argument("--cosim", dest="cosim", action="store_const", const=True,
                       help="run RTL co-simulation even for a large network (hours)")


def bitstream_command(args: argparse.Namespace) -> int:
    from ..csim import log_stderr
    from .flow import bitstream

    deploy = bitstream(args.build_dir, board=args.board, use_docker=args.docker, cosim=args.cosim, log=log_stderr)
    print(f"wrote {deploy}")
    return 0


def make_main(argv: list[str] | None = None) -> int:
    """`make bitstream`: build the shipped W4A4 face detector (or --model X.onnx) if its build is missing or
    older than the model, then run the bitstream flow on it. Exit 2 with the message when the tools are missing."""
    import sys

    from ..errors import FpgagenError

    p = argparse.ArgumentParser(prog="make bitstream", description=make_main.__doc__)
    p.add_argument("--board", default="pynq_z2")
    p.add_argument("--model", help="a QONNX file (default: the shipped W4A4 face detector, exported at 416x416)")
    p.add_argument("--out", default="build", help="parent of the build directory (default build/)")
    p.add_argument("--docker", action="store_true")
    p.add_argument("--no-cosim", dest="cosim", action="store_const", const=False, default=None)
    args = p.parse_args(argv)
    try:
        model, anchors = (Path(args.model), None) if args.model else _export_face_detector(Path(args.out))
        build_dir = Path(args.out) / model.stem
        if (build_dir / "network.json").is_file() and (build_dir / "network.json").stat().st_mtime >= \
                model.stat().st_mtime:
            print(f"[make bitstream] reusing the build in {build_dir} (newer than {model})", file=sys.stderr)
        else:
            import fpgagen

            if not model.is_file():
                raise FpgagenError("model file not found", str(model), "pass MODEL=path/to/model.onnx")
            fpgagen.build(model, board=args.board, out_dir=build_dir)
        if anchors is not None:  # a detector's build carries the anchors its head was trained with, into deploy/
            from ..runtime.model import write_detector_json

            write_detector_json(build_dir, anchors, FACE_SIZE, source="the shipped W4A4 checkpoint")
        ns = argparse.Namespace(build_dir=str(build_dir), board=args.board, docker=args.docker, cosim=args.cosim)
        return bitstream_command(ns)
    except FpgagenError as exc:
        print(f"fpgagen: error: {exc}", file=sys.stderr)
        return 2


FACE_SIZE = 416


def _export_face_detector(out: Path):
    """The shipped W4A4 LPYOLO face detector as QONNX at 416x416 (as `make demo` builds it; kept if present) and
    the anchors its head was trained with."""
    from ..train.model import load_checkpoint, shipped_checkpoint

    ckpt = shipped_checkpoint("w4a4")
    model, info = load_checkpoint(ckpt)
    name = f"lpyolo_w{info['weight_bits']}a{info['act_bits']}_face"
    onnx = out / f"{name}.onnx"
    if onnx.is_file() and onnx.stat().st_mtime >= ckpt.stat().st_mtime:
        return onnx, info["anchors"]
    import fpgagen

    out.mkdir(parents=True, exist_ok=True)
    return Path(fpgagen.export(model, onnx, input_shape=(1, 3, FACE_SIZE, FACE_SIZE))), info["anchors"]


if __name__ == "__main__":
    raise SystemExit(make_main())
