"""Snapshot the generated HLS C++ of every test network, to check that a refactor leaves it byte-identical.

    python scripts/snapshot_hls.py OUT_DIR [--onnx-cache DIR] [--only NAME,...]
    python scripts/snapshot_hls.py --compare A B

Each network (tests/support/nets.py, graph_nets.py and mobilenet_nets.py, test_bitexact's valid-padding net,
LPYOLO W4A4 at 64x64 and the small TinyYOLOv3) is exported once to ONNX (cached: the export is Brevitas', not
ours), lowered, folded three times (the default integer program, the greedy baseline at 30 FPS, and "fixed": a
recorded ilp folding applied again with its FIFOs sized anew) and generated into OUT_DIR/<net>/<optimizer>/hls,
with network.json/npz and folding.json beside it. ``--compare`` lists every file that differs between two
snapshots and exits 1 if any does.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))


def networks() -> dict:
    """name -> (builder, export kwargs): every network the test suite builds (the error-case nets left out)."""
    import graph_nets
    import mobilenet_nets
    import nets

    out = {f"conv_w{w}a{a}": (lambda w=w, a=a: nets.conv_net(w, a, seed=w), {}) for w, a in ((2, 2), (4, 4), (8, 3))}
    out["conv_w4a4_dynamo"] = (lambda: nets.conv_net(4, 4, seed=11), {"dynamo": True})
    for name in ("pow2_net", "fc_net", "conv1x1_stride2_net", "acc_output_net", "readme_net", "quant_tensor_net",
                 "normalized_net", "float_affine_out_net", "nonnarrow_negative_scale_net",
                 "standalone_threshold_net", "tiny_net"):
        out[name] = (getattr(nets, name), {})
    out["fc_net_dynamo"] = (nets.fc_net, {"dynamo": True})
    for name in nets.BNN_PYNQ:
        out[f"bnn_{name}"] = (lambda name=name: nets.bnn_pynq_net(name), {})
    for name in graph_nets.GRAPH_NETS:
        out[f"graph_{name}"] = (lambda name=name: graph_nets.graph_net(name), {})
    out["graph_residual_dynamo"] = (lambda: graph_nets.graph_net("residual"), {"dynamo": True})
    for name in mobilenet_nets.NETS:
        out[f"mobilenet_{name}"] = (lambda name=name: mobilenet_nets.mobilenet_net(name), {})
    out["valid_padding"] = (nets.valid_padding_net, {})
    out["lpyolo_w4a4_64"] = (_small_lpyolo, {})
    return out


def _small_lpyolo():
    import nets

    model = nets.random_lpyolo(4, 4, seed=44)
    model.input_shape = (1, 3, 64, 64)
    return model


def _without_fifos(folding: dict) -> dict:
    """A folding file's per-layer choices, its FIFO depths left out (they are sized again)."""
    drop = {"fifo_depth", "fifo_style"}
    return {"layers": {name: {k: v for k, v in attrs.items() if k not in drop}
                       for name, attrs in folding["layers"].items()}}


def snapshot(out_dir: Path, cache: Path, only: list[str] | None, optimizers: list[str],
             fixed_from: Path | None) -> None:
    """``optimizers``: "ilp", "greedy" and "fixed" (the ilp folding of ``fixed_from``, or of this run, applied as a
    user folding with its FIFOs sized again: deterministic, unlike a time-limited solve under load)."""
    import fpgagen
    from fpgagen import codegen, fold, frontend, streamline
    from fpgagen.board import load_board

    board = load_board("pynq_z2")
    cache.mkdir(parents=True, exist_ok=True)
    for name, (builder, export_kw) in networks().items():
        if only and name not in only:
            continue
        onnx_path = cache / f"{name}.onnx"
        t0 = time.perf_counter()
        if not onnx_path.is_file():
            fpgagen.export(builder(), onnx_path, **export_kw)
        for optimizer in optimizers:
            net = streamline.lower(frontend.load_qonnx(onnx_path), name=codegen.c_identifier(name))
            dest = out_dir / name / optimizer
            try:
                if optimizer == "fixed":
                    source = (fixed_from or out_dir) / name / "ilp" / "folding.json"
                    if not source.is_file():
                        continue
                    fold.fold_network(net, board, folding=_without_fifos(json.loads(source.read_text())))
                else:
                    fold.fold_network(net, board, optimizer=optimizer)
            except Exception as exc:  # a failure is part of the behaviour to keep (or to fix knowingly)
                dest.mkdir(parents=True, exist_ok=True)
                (dest / "error.txt").write_text(f"{type(exc).__name__}: {exc}\n")
                continue
            codegen.generate(net, dest / "hls", board, source=onnx_path.name)
            net.save(dest)
            (dest / "folding.json").write_text(json.dumps(fold.folding_of(net), indent=1))
        print(f"{name}: {time.perf_counter() - t0:.1f} s", flush=True)


def compare(a: Path, b: Path) -> int:
    names_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    names_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    differ = sorted(n for n in names_a & names_b if not filecmp.cmp(a / n, b / n, shallow=False))
    only = sorted(names_a ^ names_b)
    for n in differ:
        print(f"differs: {n}")
    for n in only:
        print(f"only in {'A' if n in names_a else 'B'}: {n}")
    print(f"{len(names_a & names_b)} files compared, {len(differ)} differ, {len(only)} in one snapshot only")
    return 1 if differ or only else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path)
    parser.add_argument("--onnx-cache", type=Path, default=ROOT / "build" / "snapshot_onnx")
    parser.add_argument("--only", default="")
    parser.add_argument("--optimizers", default="ilp,greedy,fixed")
    parser.add_argument("--fixed-from", type=Path, help="a snapshot whose ilp foldings the 'fixed' runs apply")
    parser.add_argument("--compare", nargs=2, type=Path)
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    if args.out is None:
        parser.error("OUT_DIR is required")
    snapshot(args.out, args.onnx_cache, [n for n in args.only.split(",") if n], args.optimizers.split(","),
             args.fixed_from)
    return 0


if __name__ == "__main__":
    sys.exit(main())
