"""The IR holds datatypes as qonnx DataType objects, every one of them, and network.json names them: a lowered chain
net and a lowered graph net (TinyYOLOv3's forks, concat, upsampling and padded pooling) save and load back
with the same types, stored as names so that older build directories still load."""

import dataclasses
import json

import nets
import numpy as np
import pytest
import torch
from qonnx.core.datatype import BaseDataType, DataType

import fpgagen
from fpgagen import fold
from fpgagen.board import load_board
from fpgagen.errors import FpgagenError
from fpgagen.frontend import load_qonnx
from fpgagen.ir import MVAU, Network
from fpgagen.ir.kinds import GraphLayer
from fpgagen.models import tinyyolov3
from fpgagen.streamline import lower


def dtype_attributes(obj) -> dict[str, object]:
    """Every field of a layer or spec that holds a datatype (its name says so: ``*dtype*``), and the dtype-valued
    properties the templates and cost models read."""
    out = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if "dtype" in f.name}
    for name in ("sum_dtype", "thr_dtype", "popcount_dtype", "factor_dtype", "compare_dtype", "weight_dtype"):
        if name not in out and hasattr(type(obj), name):
            try:
                out[name] = getattr(obj, name)
            except (TypeError, ValueError, AttributeError):  # a property that needs what this layer lacks
                continue
    if hasattr(obj, "memory_dtypes"):
        out |= {f"memory_dtypes[{k}]": v for k, v in obj.memory_dtypes().items()}
    return out


def flat(value) -> tuple:
    return tuple(value) if isinstance(value, tuple) else (value,)


def check_all_datatypes(net: Network) -> int:
    """Assert every dtype attribute of ``net`` is a DataType; return how many were checked."""
    checked = 0
    for obj in (net.input, *net.outputs, *net.layers):
        attrs = dtype_attributes(obj)
        assert attrs, f"{type(obj).__name__} has no dtype attribute"
        for name, value in attrs.items():
            for v in flat(value):
                assert isinstance(v, BaseDataType), f"{getattr(obj, 'name', type(obj).__name__)}.{name} = {v!r}"
                checked += 1
    return checked


def same_datatypes(a: Network, b: Network) -> None:
    for x, y in zip((a.input, *a.outputs, *a.layers), (b.input, *b.outputs, *b.layers), strict=True):
        ax, by = dtype_attributes(x), dtype_attributes(y)
        assert ax.keys() == by.keys()
        for name in ax:
            assert [v.name for v in flat(ax[name])] == [v.name for v in flat(by[name])], name
            assert all(isinstance(v, BaseDataType) for v in flat(by[name]))


@pytest.fixture(scope="module")
def lowered(tmp_path_factory):
    d = tmp_path_factory.mktemp("netio")
    chain = lower(load_qonnx(fpgagen.export(nets.standalone_threshold_net(seed=9), d / "chain.onnx")), "chain")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yolo = tinyyolov3(width=0.125)
    graph = lower(load_qonnx(fpgagen.export(yolo, d / "graph.onnx", input_shape=(1, 3, 64, 64))), "graph")
    return {"chain": chain, "graph": graph}


@pytest.mark.parametrize("which", ["chain", "graph"])
def test_every_ir_dtype_is_a_datatype_and_round_trips(lowered, which, tmp_path):
    net = lowered[which]
    assert (len(net.edges) == len(net.layers) + 1) == (which == "chain")  # a single path, or branches
    kinds = {lay.kind for lay in net.layers}
    assert {"chain": {"Threshold", "MVAU", "SlidingWindow", "MaxPool"},
            "graph": {"StreamFork", "Concat", "Upsample", "MaxPool", "MVAU"}}[which] <= kinds, kinds
    # TinyYOLOv3's padded stride-1 pool runs MaxPool's general kernel, the others its non-overlapping one
    assert {lay.plain for lay in net.layers if lay.kind == "MaxPool"} == {True, False} or which == "chain"
    # the chain at maximum FPS: its words differ and width converters join them (the optimizer takes seconds on
    # the chain, half a minute on the graph, so the graph takes the greedy fold)
    fold.fold_network(net, load_board("pynq_z2"), optimizer="ilp" if which == "chain" else "greedy")
    assert "WidthConverter" in {lay.kind for lay in net.layers} or which == "graph"
    assert check_all_datatypes(net) > 3 * len(net.layers)

    net.save(tmp_path)
    doc = json.loads((tmp_path / "network.json").read_text())
    entries = [doc["input"], *(doc.get("outputs") or [doc["output"]]), *doc["layers"]]
    for obj, entry in zip((net.input, *net.outputs, *net.layers), entries, strict=True):
        for f in dataclasses.fields(obj):
            if "dtype" in f.name:  # the file keeps the names it always held, so older builds still load
                stored = entry[f.name]
                assert stored == (getattr(obj, f.name).name if isinstance(stored, str) else
                                  [v.name for v in getattr(obj, f.name)]), f.name
    again = Network.load(tmp_path)
    check_all_datatypes(again)
    same_datatypes(net, again)
    assert any(isinstance(lay, GraphLayer) for lay in again.layers) == (which == "graph")


def test_a_layer_given_type_names_stores_datatypes():
    """Hand-written layers and specs may name their types; the IR holds DataType objects all the same."""
    m = MVAU("m", (1, 1, 4), (1, 1, 2), "UINT2", "INT9", weights=np.ones((2, 4), np.int64), weight_dtype="INT2",
             acc_dtype="INT9")
    assert all(isinstance(v, BaseDataType) for v in dtype_attributes(m).values())
    assert m.in_dtype == DataType["UINT2"] and m.acc_dtype.bitwidth() == 9 and m.sum_dtype.name == "INT4"


@pytest.mark.parametrize("bad", [7, "INTEGER9", None])
def test_a_bad_datatype_name_in_network_json_is_a_damaged_build(lowered, bad, tmp_path):
    lowered["chain"].save(tmp_path)
    doc = json.loads((tmp_path / "network.json").read_text())
    doc["layers"][0]["in_dtype"] = bad
    (tmp_path / "network.json").write_text(json.dumps(doc))
    with pytest.raises(FpgagenError, match="damaged"):
        Network.load(tmp_path)
