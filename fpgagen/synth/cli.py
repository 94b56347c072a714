"""``fpgagen bitstream``: argument definitions and the handler (imports nothing heavy until it runs)."""

from __future__ import annotations

import argparse

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
