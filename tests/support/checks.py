"""Checks the test modules share: a built network's memories against its report (priced from the emitted C++),
and bit-exactness of a build against Brevitas."""

import json

import nets
import numpy as np

import fpgagen
from fpgagen import lint
from fpgagen.ir.layers import Layer


def converted(layer) -> bool:
    """Whether the layer's kind declares its memories (every kind does once issue 8 is done)."""
    return type(layer).memories is not Layer.memories


def check_memories_against_report(acc, kinds=None):
    doc = json.loads((acc.build_dir / "report.json").read_text())
    hls = acc.build_dir / "hls"
    checked = 0
    for lay, entry in zip(acc.net.layers, doc["layers"], strict=True):
        if kinds is not None and lay.kind not in kinds:
            continue
        arrays = lint.parse_arrays((hls / "layers" / f"{lay.name}.h").read_text())
        from_code = {"BRAM18": 0, "LUTRAM": 0}
        for a in arrays:
            for r, v in lint.price_array(a).items():
                from_code[r] += v
        reported = entry["memories"]
        assert {r: reported[r] for r in from_code} == from_code, (lay.name, [vars(a) for a in arrays])
        # and every BRAM18 / LUTRAM the layer is charged is one of these memories
        assert {r: entry["resources"][r] for r in from_code} == from_code, lay.name
        assert sorted(a.name for a in arrays) == sorted(m["name"] for m in reported["arrays"]), lay.name
        checked += 1
    return doc, checked


def build_net(model, tmp_path_factory, quiet, name, dynamo=False, **kwargs):
    d = tmp_path_factory.mktemp(name)
    onnx_path = fpgagen.export(model, d / f"{name}.onnx", dynamo=dynamo)
    return fpgagen.build(onnx_path, board="pynq_z2", out_dir=d / "build", log=quiet, **kwargs)


def assert_bitexact(model, acc, frames=3, seed=1):
    """C-sim codes == numpy reference == Brevitas in exact arithmetic, all with np.array_equal; and == Brevitas'
    float32 forward unless that forward itself lands within float32 rounding of a k - 1/2 boundary, which
    ``float32_boundary_flips`` then proves (first differing layer: +-1 codes, only at boundaries)."""
    shape = (frames, *model.input_shape[1:])
    x = nets.net_input(model, seed, shape=shape)
    got = acc.run(x, codes=True)
    ref = acc.reference(x, codes=True)
    exact = nets.exact_codes(model, x)
    assert got.dtype.kind == "i" and exact.dtype.kind == "i"
    assert got.shape == exact.shape
    assert np.array_equal(ref, exact), f"reference differs in {(ref != exact).sum()} of {exact.size} codes"
    assert np.array_equal(got, exact), f"C-sim differs in {(got != exact).sum()} of {exact.size} codes"
    if nets.float32_boundary_flips(model, x) == 0:
        assert np.array_equal(got, nets.brevitas_codes(model, x))
    # the output varies: an all-constant output would make the comparison vacuous
    assert len(np.unique(exact)) > 2
    return x, got
