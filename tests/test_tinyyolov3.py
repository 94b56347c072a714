"""fpgagen.models.tinyyolov3, the two-head TinyYOLOv3 of the design card (issue 9): built with ``fpgagen build``,
C-simulated, and bit-exact on the integer codes of BOTH heads (np.array_equal) against Brevitas evaluated exactly;
Brevitas' float32 forward agrees except where a float32 rounding-boundary flip is proven (graph_nets).

Random weights and BatchNorm statistics (negative gammas included, graph_nets.random_init), random activation
scales, so the head-26 Concat joins two branches on different grids and its conv runs with per-run multipliers.
The full 416x416 network at width 0.25 is in the default suite; LPYOLO's width 0.2 with the default optimizer
is under ``-m slow``."""

from __future__ import annotations

import json

import graph_nets as GN
import nets
import numpy as np
import pytest
from checks import check_memories_against_report

import fpgagen
from fpgagen import lint


def check_heads(model, acc, x):
    """C-sim == numpy reference == exact replay on both heads; Brevitas float32 equal or only proven flips."""
    got = acc.run(x, codes=True)
    ref = acc.reference(x, codes=True)
    exact = GN.graph_exact_codes(model, x)
    assert isinstance(got, tuple) and len(got) == len(exact) == 2
    for k, (g, r, e) in enumerate(zip(got, ref, exact, strict=True)):
        assert g.shape == e.shape, f"head {k}: {g.shape} != {e.shape}"
        assert np.array_equal(r, e), f"head {k}: reference differs in {(r != e).sum()} of {e.size} codes"
        assert np.array_equal(g, e), f"head {k}: C-sim differs in {(g != e).sum()} of {e.size} codes"
        assert len(np.unique(e)) > 8, f"head {k} is degenerate"
    brevitas = GN.graph_brevitas_codes(model, x)
    if not all(np.array_equal(b, e) for b, e in zip(brevitas, exact, strict=True)):
        assert GN.graph_boundary_flips(model, x) > 0
    # the float outputs are the torch tuple's shapes, (N, A*(5+C), H/32, W/32) and (..., H/16, W/16)
    y = acc.run(x)
    n, _, h, w = x.shape
    assert [a.shape for a in y] == [(n, model.head_channels, h // 32, w // 32),
                                    (n, model.head_channels, h // 16, w // 16)]
    return got


# the legacy exporter's graph is also built at full size below (fpgagen.export), so its small copy runs under -m slow
@pytest.mark.parametrize("dynamo", [pytest.param(False, marks=pytest.mark.slow), True], ids=["legacy", "dynamo"])
def test_small_tinyyolov3_both_heads_bitexact(dynamo, tmp_path, quiet):
    """Width 0.125 at 64x64 (both exporters): every kind TinyYOLOv3 needs, fast."""
    model = GN.small_tinyyolov3(seed=1, size=64, width=0.125)
    path = fpgagen.export(model, tmp_path / "tiny.onnx", dynamo=dynamo)
    acc = fpgagen.build(path, board="pynq_z2", out_dir=tmp_path / "build", log=quiet)
    kinds = {lay.kind for lay in acc.net.layers}
    assert {"StreamFork", "Concat", "Upsample", "MaxPool"} <= kinds
    assert {lay.plain for lay in acc.net.layers if lay.kind == "MaxPool"} == {True, False}  # the padded pool: general
    scaled = [lay for lay in acc.net.layers if getattr(lay, "in_scale", None) is not None]
    assert len(scaled) == 1  # the head-26 conv reads the concat of two grids
    check_heads(model, acc, nets.net_input(model, 4, shape=(2, *model.input_shape[1:])))
    assert lint.lint_project(acc.build_dir / "hls", acc.net) == []
    doc, checked = check_memories_against_report(acc)
    assert checked == len(acc.net.layers) and len(doc["outputs"]) == 2


def test_tinyyolov3_416_w4a4_bitexact(tmp_path, quiet):
    """The full-size network of the design card: 416x416, width 0.25, W4A4 (8-bit first layer), both heads."""
    model = GN.small_tinyyolov3(seed=0, size=416, width=0.25)
    path = fpgagen.export(model, tmp_path / "tinyyolov3.onnx")
    acc = fpgagen.build(path, board="pynq_z2", out_dir=tmp_path / "build", log=quiet, target_fps=30)
    got = check_heads(model, acc, nets.net_input(model, 0, shape=(1, 3, 416, 416)))
    assert [g.shape for g in got] == [(1, 18, 13, 13), (1, 18, 26, 26)]  # the torch model's NCHW
    assert [o.shape for o in acc.net.outputs] == [(1, 18, 13, 13), (1, 18, 26, 26)]
    assert [tuple(s) for s in acc.net.out_stream_shapes] == [(13, 13, 18), (26, 26, 18)]


@pytest.mark.slow
@pytest.mark.parametrize("width", [0.25, 0.2])
def test_tinyyolov3_416_default_optimizer_fits_and_is_bitexact(width, tmp_path, quiet):
    """What `make bench` (scripts/bench_graph.py) reports: the default optimizer's design fits pynq_z2 and is
    bit-exact."""
    model = GN.small_tinyyolov3(seed=2, size=416, width=width)
    acc = fpgagen.build(fpgagen.export(model, tmp_path / "t.onnx"), board="pynq_z2", out_dir=tmp_path / "build",
                        log=quiet)
    doc = json.loads((acc.build_dir / "report.json").read_text())
    assert doc["fits"]
    assert doc["fps_estimated"] == 100e6 / max(lay.cycles() for lay in acc.net.layers)
    check_heads(model, acc, nets.net_input(model, 0, shape=(1, 3, 416, 416)))
