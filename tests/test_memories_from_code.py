"""What the report says is what the code is: parse the emitted C++ of every test network (its arrays, their element
types and dimensions, the ARRAY_PARTITION / ARRAY_RESHAPE / BIND_STORAGE pragmas, and the FIFOs' STREAM depth and
fifo impl), price each memory from what the code says, and require the report's per-layer figures to be equal.

The pricing here starts from the parsed code only (banks = product of the partitioned dimensions, word = element
bits x product of the reshaped ones, depth = the rest; BRAM18 by FINN-R's formula, LUTRAM by the LUT6/SRL
capacities); it never looks at a layer's Memory objects.
"""

import json

import nets
import pytest
from checks import check_memories_against_report, converted

import fpgagen
from fpgagen import lint

SMALL_NETS = {
    "conv_w4a4": lambda: nets.conv_net(4, 4, seed=4),
    "conv_w2a2": lambda: nets.conv_net(2, 2, seed=2),
    "pow2": lambda: nets.pow2_net(seed=0),
    "fc": lambda: nets.fc_net(seed=0),
    "conv1x1_stride2": lambda: nets.conv1x1_stride2_net(seed=0),
    "acc_output": lambda: nets.acc_output_net(seed=0),
}
# folded by hand so that every memory kind appears: binary-search stages in BRAM shared by two PEs, LUTRAM
# stages, BRAM and LUTRAM weights, input buffers in LUTRAM and registers
SEARCH_FOLDING = {"conv_0": {"pe": 2, "simd": 3, "thr_mode": "search", "thr_style": "bram", "mem_style": "bram"},
                  "conv_0_window": {"simd": 3},
                  "conv_1": {"pe": 1, "simd": 2, "thr_mode": "search", "thr_style": "lutram", "mem_style": "lutram"},
                  "conv_1_window": {"simd": 2},
                  "conv_2": {"pe": 4, "simd": 8, "thr_mode": "parallel", "thr_style": "bram"},
                  "conv_2_window": {"simd": 8},
                  "conv_3": {"pe": 2, "simd": 16, "thr_mode": "search", "thr_style": "bram"},
                  "conv_3_window": {"simd": 16}}


def _build(model, tmp_path_factory, name, **kwargs):
    d = tmp_path_factory.mktemp(name)
    path = fpgagen.export(model, d / "m.onnx")
    return fpgagen.build(path, out_dir=d / "b", verify=False, log=lambda msg: None, **kwargs)


@pytest.fixture(scope="module", params=[*SMALL_NETS, "search_bram", "camera"])
def built(request, tmp_path_factory):
    if request.param == "camera":  # the letterbox in the fabric (--camera) in front of a pixel-input net
        from runtime_nets import tiny_detector_net

        return _build(tiny_detector_net(0), tmp_path_factory, "camera", camera="48x36")
    if request.param == "search_bram":
        probe = _build(nets.conv_net(4, 4, seed=3), tmp_path_factory, "probe")
        folding = {lay.name: {k: 1 for k in lay.folding() if k != "ifm_word"} for lay in probe.net.layers
                   if lay.folding()}
        for name, attrs in SEARCH_FOLDING.items():
            folding[name].update(attrs)
        return _build(nets.conv_net(4, 4, seed=3), tmp_path_factory, "search_bram", folding=folding)
    return _build(SMALL_NETS[request.param](), tmp_path_factory, request.param)



def test_mvau_and_threshold_memories_equal_the_report(built):
    _, checked = check_memories_against_report(built, kinds=("MVAU", "Threshold"))
    assert checked >= 1


def test_every_layer_memories_equal_the_report(built):
    assert all(converted(lay) for lay in built.net.layers)
    _, checked = check_memories_against_report(built)
    assert checked == len(built.net.layers)


def test_fifos_equal_the_report(built):
    doc = json.loads((built.build_dir / "report.json").read_text())
    streams = {s.name: s for s in lint.parse_streams((built.build_dir / "hls" / "top.cpp").read_text())}
    for entry in doc["layers"]:
        s = streams[f"{entry['name']}_out"]
        assert s.depth == entry["fifo"]["depth"] and s.width == entry["fifo"]["width_bits"], entry["name"]
        assert {r: entry["fifo"]["resources"][r] for r in ("BRAM18", "LUTRAM")} == lint.price_stream(s), entry["name"]


def test_search_bram_case_really_has_shared_stage_banks(tmp_path_factory):
    """The hand-folded case above must contain what it is there for (else the comparison proves less)."""
    probe = _build(nets.conv_net(4, 4, seed=3), tmp_path_factory, "probe2")
    folding = {lay.name: {k: 1 for k in lay.folding() if k != "ifm_word"} for lay in probe.net.layers
               if lay.folding()}
    for name, attrs in SEARCH_FOLDING.items():
        folding[name].update(attrs)
    acc = _build(nets.conv_net(4, 4, seed=3), tmp_path_factory, "search_bram2", folding=folding)
    arrays = {a.name: a for a in lint.parse_arrays((acc.build_dir / "hls" / "layers" / "conv_3.h").read_text())}
    stages = [a for name, a in arrays.items() if name.startswith("thr_stage")]
    assert len(stages) == 8 and any(a.impl == "bram" and a.bind_type == "rom_2p" and a.banks == 1 for a in stages)
    assert any(a.impl == "lutram" for a in stages) and arrays["inbuf"].impl == "lutram"
    conv_0 = {a.name: a for a in lint.parse_arrays((acc.build_dir / "hls" / "layers" / "conv_0.h").read_text())}
    assert conv_0["weights"].impl == "bram" and conv_0["thr_stage3"].impl == "lutram"


@pytest.mark.slow
def test_lpyolo_w4a4_memories_equal_the_report(tmp_path_factory):
    """LPYOLO W4A4 at the default folding (the optimizer at the default ceilings)."""
    from fpgagen.models import lpyolo

    acc = _build(lpyolo(4, 4), tmp_path_factory, "lpyolo_w4a4")
    doc, checked = check_memories_against_report(acc, kinds=("MVAU", "Threshold"))
    assert checked == 10  # conv_0 .. conv_9
    if all(converted(lay) for lay in acc.net.layers):
        check_memories_against_report(acc)
