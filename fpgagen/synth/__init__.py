"""From a verified HLS project to a PYNQ bitstream: Vitis HLS and Vivado Tcl (templates/hls/run_hls.tcl.j2,
templates/vivado/block_design.tcl.j2), the driver that runs them on a local install or in Docker
(``fpgagen bitstream``), and the parsers that put the tools' reports beside fpgagen's estimates.

Nothing here imports torch, qonnx or the compiler at module level: the CLI stays fast."""
