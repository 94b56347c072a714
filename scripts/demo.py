"""`make demo`: build LPYOLO (W4A4, 416x416, random weights) for a board and run frames through the
C-simulated accelerator, checked against the numpy reference and Brevitas' own forward pass.

The face-detector demo (trained checkpoint, annotated photos) replaces this once that work lands.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import fpgagen
from fpgagen.brevitas_export import export
from fpgagen.errors import FpgagenError
from fpgagen.models import lpyolo
from fpgagen.models.lpyolo import output_codes


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", default="pynq_z2")
    p.add_argument("--out", default="build/demo", help="output directory (default build/demo)")
    p.add_argument("--frames", type=int, default=2, help="random 416x416 frames to C-simulate")
    args = p.parse_args()
    out = Path(args.out)
    torch.manual_seed(0)
    model = lpyolo(weight_bits=4, act_bits=4).eval()
    onnx_path = export(model, out / "lpyolo_w4a4.onnx")
    acc = fpgagen.build(onnx_path, board=args.board, out_dir=out / "lpyolo_w4a4")

    pixels = np.random.default_rng(1).integers(0, 256, size=(args.frames, 3, 416, 416))
    x = (pixels / 255).astype(np.float32)
    start = time.perf_counter()
    codes = acc.run(x, codes=True)
    sim_s = time.perf_counter() - start
    ref = acc.reference(x, codes=True)
    with torch.no_grad():
        brevitas = output_codes(model, torch.from_numpy(x)).numpy().astype(np.int64)
    report = (out / "lpyolo_w4a4" / "report.md").read_text()
    print(report)
    print(f"C-simulated {args.frames} frame(s) of 416x416 in {sim_s:.2f} s; output {list(codes.shape)} int codes")
    print(f"C-sim == numpy reference: {np.array_equal(codes, ref)}")
    same = int((codes == brevitas).sum())
    print(f"C-sim == Brevitas float32 forward: {same}/{codes.size} codes"
          + ("" if same == codes.size else " (differences are float32 rounding boundaries, see README)"))
    print(f"\nbuild directory: {out / 'lpyolo_w4a4'} (hls/ project, report.md, report.json)")
    return 0 if np.array_equal(codes, ref) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except FpgagenError as exc:
        print(f"fpgagen: error: {exc}", file=sys.stderr)
        sys.exit(2)
