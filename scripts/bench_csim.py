"""C-simulation speed against onnxruntime, LPYOLO W4A4 at 416x416 (make bench).

    .venv/bin/python scripts/bench_csim.py [--frames 4] [--repeats 3] [--build DIR]

Prints, measured in this one run on this machine:
1. C-sim seconds per frame on 1 thread (the shared library through ctypes, bytes in and out as the DMA moves them);
2. onnxruntime seconds per frame on the same QONNX file (qonnx execute_onnx, every onnxruntime session
   single-threaded: intra_op_num_threads = inter_op_num_threads = 1);
3. their ratio, goal <= 1.0x, "met" / "NOT met";
4. the batched multi-thread C-sim (all cores, frames split across threads), goal no slower per frame than 1 thread;
5. the g++ build of the library (seconds, peak memory, flags) and this process's peak memory.

Each figure is the best of --repeats rounds (wall clock; CPU seconds beside it), C-sim and onnxruntime interleaved,
so that load from other users of a shared machine hits both alike. Without --build the network is exported and
built here (default folding).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOAL_RATIO = 1.0


def single_threaded_onnxruntime() -> None:
    """qonnx runs each standard node in its own onnxruntime session: make every such session single-threaded."""
    import onnxruntime as rt
    from qonnx.core import onnx_exec

    session = rt.InferenceSession

    def one_thread(model, sess_options=None, **kwargs):
        options = sess_options or rt.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        return session(model, sess_options=options, **kwargs)

    onnx_exec.rt.InferenceSession = one_thread


def compile_cold(hls_dir: Path, cache: Path) -> tuple[float, float]:
    """(seconds, peak MB) of one g++ build of the C-sim library into an empty cache, in a child process."""
    code = ("import resource, sys, time; from fpgagen import csim; t = time.perf_counter(); "
            f"csim.compile_library({str(hls_dir)!r}, log=lambda m: None); "
            "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    env = dict(os.environ, FPGAGEN_CACHE=str(cache), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    seconds, peak = out.split()
    return float(seconds), float(peak)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=4, help="frames per timed round")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds; the best is reported")
    p.add_argument("--build", help="an existing LPYOLO W4A4 build directory (skips export and build)")
    args = p.parse_args(argv)

    import fpgagen
    from fpgagen import csim, packing
    from fpgagen.frontend import load_qonnx
    from fpgagen.geometry import stream_geometry

    work = Path(tempfile.mkdtemp(prefix="fpgagen_bench_csim_"))
    if args.build:
        build = Path(args.build)
        onnx_path = Path(json.loads((build / "build.json").read_text())["model"])  # the QONNX it was built from
    else:
        from fpgagen.models import lpyolo

        onnx_path = fpgagen.export(lpyolo(4, 4), work / "lpyolo_w4a4.onnx")
        build = work / "build"
        fpgagen.build(onnx_path, board="pynq_z2", out_dir=build, verify=False, log=lambda m: None)
    gxx_s, gxx_mb = compile_cold(build / "hls", work / "cache")
    acc = fpgagen.load(build, log=lambda m: None)
    geometry = stream_geometry(acc.net)
    x = (np.random.default_rng(0).integers(0, 256, (args.frames, 3, 416, 416)) / 255).astype(np.float32)
    data = packing.frames_to_bytes(acc.quantize_input(x), geometry)
    lib = acc.lib
    lib.run(data[:1], threads=1)  # load and warm up

    single_threaded_onnxruntime()
    from qonnx.core.onnx_exec import execute_onnx

    model = load_qonnx(onnx_path)
    name = model.graph.input[0].name
    execute_onnx(model, {name: x[:1]})  # warm-up

    threads = os.cpu_count() or 1
    def timed(run) -> tuple[float, float]:
        """(wall, CPU) seconds per frame of one round."""
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        return (time.perf_counter() - wall) / args.frames, (time.process_time() - cpu) / args.frames

    def ort_round() -> None:
        for i in range(args.frames):
            execute_onnx(model, {name: x[i:i + 1]})

    rounds = {"one": [], "ort": [], "many": []}
    for _ in range(args.repeats):
        rounds["one"].append(timed(lambda: lib.run(data, threads=1)))
        rounds["ort"].append(timed(ort_round))
        rounds["many"].append(timed(lambda: lib.run(data, threads=threads)))
    (one, one_cpu), (ort, ort_cpu), (many, _) = (min(rounds[k]) for k in ("one", "ort", "many"))

    ratio = one / ort
    print(f"C-simulation of LPYOLO W4A4 at 416x416 (best of {args.repeats} rounds of {args.frames} frames; "
          f"{threads}-core machine)")
    print(f"  C-sim, 1 thread:               {one:.3f} s/frame ({one_cpu:.3f} s CPU)")
    print(f"  onnxruntime, 1 thread:         {ort:.3f} s/frame ({ort_cpu:.3f} s CPU; same QONNX, qonnx execute_onnx)")
    print(f"  ratio C-sim / onnxruntime:     {ratio:.2f}x (goal <= {GOAL_RATIO:.1f}x): "
          f"{'met' if ratio <= GOAL_RATIO else 'NOT met'}")
    print(f"  C-sim batched, {threads} threads:    {many:.3f} s/frame (goal <= the 1-thread figure): "
          f"{'met' if many <= one else 'NOT met'}")
    print(f"  g++ build of the library:      {gxx_s:.1f} s, peak {gxx_mb:.0f} MB ({' '.join(csim.CXXFLAGS)})")
    print(f"  peak RSS of this process:      {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
