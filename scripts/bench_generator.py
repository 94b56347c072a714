"""Generator benchmarks for LPYOLO W4A4 (416x416), printing figures (no pass/fail):

1. generator wall time, ONNX -> verified HLS project (streamline + fold + codegen + g++ + C-sim of one frame),
   with the C-sim library cache empty and warm;
2. C-simulation time per frame against onnxruntime running the same QONNX model (qonnx execute_onnx);
3. peak memory of the g++ build (largest child process).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def generator_run(onnx_path: Path, out_dir: Path, cache: Path) -> dict:
    """One generator run in a fresh interpreter (so imports and the g++ child are measured honestly)."""
    code = f"""
import json, resource, time, numpy as np
t0 = time.perf_counter()
import fpgagen
acc = fpgagen.build({str(onnx_path)!r}, board="pynq_z2", out_dir={str(out_dir)!r}, verify=False, log=lambda m: None)
acc.lib
codes = acc.random_stream_input(1)
assert np.array_equal(acc.run_stream(codes), acc.reference_stream(codes))
print(json.dumps({{"wall_s": time.perf_counter() - t0,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "child_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
"""
    env = dict(os.environ, FPGAGEN_CACHE=str(cache))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    import json

    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=4, help="frames for the C-sim timing")
    args = p.parse_args()
    import fpgagen
    from fpgagen.models import lpyolo

    work = Path(tempfile.mkdtemp(prefix="fpgagen_bench_"))
    onnx_path = fpgagen.export(lpyolo(4, 4), work / "lpyolo_w4a4.onnx")
    cache = work / "cache"

    print("LPYOLO W4A4, 416x416, pynq_z2, default folding; 2-core machine")
    cold = generator_run(onnx_path, work / "cold", cache)
    warm = generator_run(onnx_path, work / "warm", cache)
    ok = "met" if cold["wall_s"] <= 15 else "NOT met"
    stretch = "met" if cold["wall_s"] <= 10 else "NOT met"
    print(f"[1] generator wall time, ONNX -> verified HLS project + 1 C-sim frame: {cold['wall_s']:.1f} s with an "
          f"empty C-sim cache (goal <= 15 s: {ok}; stretch goal <= 10 s: {stretch}), peak RSS "
          f"{cold['peak_mb']:.0f} MB; {warm['wall_s']:.1f} s cached, peak RSS {warm['peak_mb']:.0f} MB")
    print(f"[3] peak memory of the g++ build: {cold['child_peak_mb']:.0f} MB (largest child process)")

    acc = fpgagen.load(work / "cold", log=lambda m: None)
    x = (np.random.default_rng(0).integers(0, 256, (args.frames, 3, 416, 416)) / 255).astype(np.float32)
    codes = acc.quantize_input(x)
    acc.run_stream(codes[:1])  # load the library
    timings = {}
    for threads in (1, os.cpu_count() or 1):
        from fpgagen import packing
        from fpgagen.geometry import stream_geometry

        g = stream_geometry(acc.net)
        data = packing.frames_to_bytes(codes, g)
        start = time.perf_counter()
        acc.lib.run(data, threads=threads)
        timings[threads] = (time.perf_counter() - start) / args.frames
    start = time.perf_counter()
    acc.run(x)
    end_to_end = (time.perf_counter() - start) / args.frames

    from qonnx.core.onnx_exec import execute_onnx

    from fpgagen.frontend import load_qonnx

    model = load_qonnx(onnx_path)
    name = model.graph.input[0].name
    execute_onnx(model, {name: x[:1]})  # warm-up
    start = time.perf_counter()
    for i in range(args.frames):
        execute_onnx(model, {name: x[i : i + 1]})
    ort = (time.perf_counter() - start) / args.frames
    one, many = timings[1], timings[max(timings)]
    print(f"[2] C-sim per 416x416 frame: {one:.3f} s on 1 thread, {many:.3f} s/frame on {max(timings)} threads; "
          f"acc.run() end to end (quantize, pack, C-sim, unpack): {end_to_end:.3f} s/frame")
    print(f"    onnxruntime (qonnx execute_onnx) on the same QONNX: {ort:.3f} s/frame")
    print(f"    ratio C-sim / onnxruntime: {one / ort:.1f}x on 1 thread, {many / ort:.1f}x batched "
          f"(goal <= 10x, moonshot <= 5x)")
    print(f"    peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
