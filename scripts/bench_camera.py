"""Camera benchmark (issue 18): LPYOLO W4A4 (random weights) with a camera's letterbox in the fabric
(``fpgagen build --camera``), folded by the default optimizer on a board: estimated accelerator FPS, its bottleneck,
and the Letterbox layer's folding, cycles and resources, for a 640x480 and a 1280x720 camera beside the plain
416x416-input build. The goal: a 640x480 camera keeps the accelerator above 300 FPS.

    .venv/bin/python scripts/bench_camera.py [--board pynq_z2] [--camera 640x480 1280x720] [--json out.json]

Everything is *estimated (model)*: cycles from the kernels' loop trip counts (the letterbox's from its schedule,
fpgagen/ir/kinds/letterbox.py), resources from the cost models; BRAM18 of the letterbox also counted from its
emitted C++ (fpgagen.lint); never measured on hardware.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fpgagen import codegen, export, fold, frontend, lint, streamline, validate  # noqa: E402
from fpgagen.accelerator import add_camera  # noqa: E402
from fpgagen.board import load_board  # noqa: E402
from fpgagen.models import lpyolo  # noqa: E402

GOAL_FPS = 300.0  # with a 640x480 camera (issue 18)


def measure(onnx: Path, camera: str | None, board: dict, workdir: Path) -> dict:
    net = streamline.lower(frontend.load_qonnx(onnx), name="lpyolo_w4a4")
    if camera:
        add_camera(net, validate.check_camera(camera), str(onnx))
    info = fold.fold_network(net, board)
    row = {"camera": camera or "none (416x416 input)", "fps": board["clock_mhz"] * 1e6 / net.bottleneck().cycles(),
           "bottleneck": net.bottleneck().name, "LUT": info["resources"]["LUT"],
           "BRAM18": info["resources"]["BRAM18"], "DSP": info["resources"]["DSP"]}
    if camera:
        lb = net.layers[0]
        hls = codegen.generate(net, workdir / f"hls_{camera}", board)
        code = lint.project_memory_figures(hls).get(lb.name, {})
        row["letterbox"] = {"folding": lb.folding(), "cycles": lb.cycles(),
                            "fps_alone": board["clock_mhz"] * 1e6 / lb.cycles(), "resources": lb.resources(),
                            "BRAM18_from_code": code.get("BRAM18"), "LUTRAM_from_code": code.get("LUTRAM")}
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--board", default="pynq_z2")
    p.add_argument("--camera", nargs="+", default=["640x480", "1280x720"])
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    board = load_board(args.board)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        onnx = Path(tmp) / "lpyolo_w4a4.onnx"
        export(lpyolo(4, 4), onnx)
        for camera in [None, *args.camera]:
            rows.append(measure(onnx, camera, board, Path(tmp)))
            print(f"  measured camera {camera or 'none'}: {rows[-1]['fps']:.1f} FPS", file=sys.stderr, flush=True)
    print(f"LPYOLO W4A4 (random weights) on {args.board} at {board['clock_mhz']} MHz, estimated (model), "
          "never measured on hardware")
    print(f"{'camera':<22} {'FPS':>7} {'bottleneck':<14} {'LUT':>7} {'BRAM18':>6} {'DSP':>4}   letterbox: folding, "
          "cycles/frame, FPS alone, LUT/FF/BRAM18 (BRAM18 counted from the code)")
    for r in rows:
        lb = r.get("letterbox")
        extra = "" if lb is None else (f"   ppc={lb['folding']['ppc']}, {lb['cycles']:,}, {lb['fps_alone']:.1f}, "
                                       f"{lb['resources']['LUT']}/{lb['resources']['FF']}/{lb['resources']['BRAM18']}"
                                       f" ({lb['BRAM18_from_code']})")
        print(f"{r['camera']:<22} {r['fps']:7.1f} {r['bottleneck']:<14} {r['LUT']:7,} {r['BRAM18']:6} {r['DSP']:4}"
              + extra)
    vga = next((r for r in rows if r["camera"] == "640x480"), None)
    if vga is not None:
        print(f"goal: a 640x480 camera keeps the accelerator above {GOAL_FPS:.0f} FPS: "
              + ("met" if vga["fps"] > GOAL_FPS else "NOT met") + f" ({vga['fps']:.1f} FPS estimated)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
