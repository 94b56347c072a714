"""`fpgagen debug` / fpgagen.trace (issue 19): each injected fault is named by the report.

- a changed constant in one layer's generated header: that layer is the first divergence (the C-sim taps of the
  edited sources against the numpy reference, QONNX and Brevitas), upstream layers agree, the edit is warned about;
- a layer whose activation range clips most codes is flagged;
- swapped channels, pixels scaled to 0-1, a different resize method and a shifted letterbox: each is named in
  preprocess_checks, with its effect measured on the tiny detector's C-sim.
"""

from __future__ import annotations

import json
import re

import cv2
import matplotlib.cbook
import nets
import numpy as np
import pytest
import torch
from brevitas.nn import QuantIdentity
from torch import nn

import fpgagen
from fpgagen.cli import main
from fpgagen.debug import preprocess as P
from fpgagen.debug.compare import compare_codes, health
from fpgagen.models import PixelQuant


def clipping_net(seed=0, size=16):
    """conv -> BN -> 4-bit ReLU -> conv -> BN -> 4-bit ReLU whose range (max 0.05) clips most codes."""
    torch.manual_seed(seed)
    model = nn.Sequential(QuantIdentity(act_quant=PixelQuant), nets._conv(3, 4, 4), nn.BatchNorm2d(4),
                          nets._relu(4), nets._conv(4, 4, 4), nn.BatchNorm2d(4), nets._relu(4, max_val=0.05))
    return nets.randomize_bn(nets._finish(model, (1, 3, size, size)), seed)


def float_twin(model):
    """The clipping net in float: the same weights and BatchNorm, plain activations (its SQNR reference)."""
    import copy

    layers = [nn.Identity()]
    for m in list(model)[1:]:
        if isinstance(m, nn.Conv2d):  # QuantConv2d is one: its float weights
            conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, bias=False)
            conv.weight.data = m.weight.data.clone()
            layers.append(conv)
        elif isinstance(m, nn.BatchNorm2d):
            layers.append(copy.deepcopy(m))
        else:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


def change_first_weight(header) -> None:
    """Change one constant of a layer's generated header: the first weight of its ROM."""
    text = header.read_text()
    match = re.search(r"weights\[[^=]*= \{+(-?\d+)", text)
    old = int(match.group(1))
    new = 7 if old <= 0 else -7
    header.write_text(text[:match.start(1)] + str(new) + text[match.end(1):])


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """The clipping net's build with conv_1's header edited by hand, traced against every source."""
    d = tmp_path_factory.mktemp("debug_net")
    model = clipping_net()
    acc = fpgagen.build(fpgagen.export(model, d / "net.onnx"), out_dir=d / "build", log=lambda m: None,
                        verify=False)
    change_first_weight(acc.hls_dir / "layers" / "conv_1.h")
    x = nets.net_input(model, 1, shape=(2, 3, 16, 16))
    with fpgagen.trace(acc) as t:
        acc.run(x)
    t.compare("reference").compare("qonnx").compare("brevitas", model=model, float_model=float_twin(model))
    return acc, model, x, t, t.report(d / "debug", plots=False)


def test_an_edited_header_is_the_first_divergence(faulty):
    acc, _, _, t, doc = faulty
    first = doc["first_divergence"]
    assert first is not None and first["layer"] == "conv_1" and first["b"] == "csim", first
    assert first["differing"] > 0 and len(first["index"]) == 4
    by_name = {e["name"]: e for e in doc["layers"]}
    for name in ("input", "conv_0", "conv_1_window"):  # upstream of the edit every source agrees, bit for bit
        assert by_name[name]["differing"] == 0, name
    assert {c["b"] for c in by_name["conv_0"]["comparisons"]} == {"csim", "qonnx", "brevitas"}
    # only the C-sim runs the edited header: QONNX and Brevitas still agree with the reference there
    assert {c["b"]: c["differing"] for c in by_name["conv_1"]["comparisons"]}["qonnx"] == 0
    assert any("conv_1.h" in w for w in doc["warnings"]) and doc["hls_edited"] == ["layers/conv_1.h"]
    # the sliding window's im2col stream has no ONNX tensor: said so, not guessed
    assert "qonnx" in by_name["conv_0_window"]["no_counterpart"]
    assert not doc["ok"]
    # the taps are a compile option of the C-sim only: nothing of them is in the project that gets synthesized
    assert not any("debug_taps" in f.read_text() or "FG_DEBUG" in f.read_text() for f in acc.hls_dir.rglob("*")
                   if f.suffix in (".h", ".cpp", ".tcl"))
    on_disk = json.loads((acc.build_dir.parent / "debug" / "debug.json").read_text())
    assert on_disk["first_divergence"]["layer"] == "conv_1"
    assert "First divergence: layer `conv_1`" in (acc.build_dir.parent / "debug" / "debug.md").read_text()


def test_a_clipping_layer_is_flagged(faulty):
    doc = faulty[4]
    flagged = {f["layer"]: f["flags"] for f in doc["quant_flags"]}
    assert "conv_1" in flagged and "clips" in flagged["conv_1"][0]
    assert "conv_0" not in flagged
    by_name = {e["name"]: e for e in doc["layers"]}
    assert by_name["conv_1"]["clip_high"] > 0.25 > by_name["conv_0"]["clip_high"]
    assert by_name["conv_1"]["sqnr_db"] < by_name["conv_0"]["sqnr_db"]  # against Brevitas' float activation
    assert by_name["conv_1"]["sqnr_float_db"] < 10 < by_name["conv_0"]["sqnr_float_db"]  # and the float twin's
    assert any("SQNR" in f for f in flagged["conv_1"])


def test_a_float32_boundary_flip_is_not_a_divergence(faulty):
    """A float source one code off at k - 1/2 (as Brevitas' float32 forward may be) is named as a boundary case;
    what it changes downstream is not reported as the first divergence."""
    from fpgagen.debug.session import Trace

    acc, _, _, t, _ = faulty
    fake = Trace(acc).use_input(t.codes).compare("reference")
    qonnx = {k: v.copy() for k, v in fake.sources["reference"].items()}
    pre = {"conv_0:0": qonnx["conv_0:0"].astype(np.float32) + 0.1}
    flip = tuple(np.argwhere(qonnx["conv_0:0"] < 15)[0])
    qonnx["conv_0:0"][flip] += 1
    pre["conv_0:0"][flip] = qonnx["conv_0:0"][flip] - 0.5004  # float32 t just past the boundary
    qonnx["conv_1:0"][0, 0, 0, 0] += 3  # downstream of the flip
    fake.sources["qonnx"], fake.pre["qonnx"] = qonnx, pre
    doc = fake.summary()
    assert doc["first_divergence"] is None and doc["ok"]
    assert [(b["layer"], b["b"]) for b in doc["float32_boundary_cases"]] == [("conv_0", "qonnx")]
    conv_1 = next(e for e in doc["layers"] if e["name"] == "conv_1")
    assert next(c for c in conv_1["comparisons"] if c["b"] == "qonnx")["after_boundary_case"]


def test_compare_and_health_rules():
    a = np.zeros((1, 2, 3, 4), np.int64)
    b = a.copy()
    b[0, 1, 2, 3] = 1
    t = np.full(a.shape, 0.2, np.float32)
    doc = compare_codes(a, b, 0, 15, t)
    assert (doc["differing"], doc["max_abs_diff"], doc["first_index"]) == (1, 1, [0, 3, 1, 2])
    assert doc["boundary"] == 0
    t[0, 1, 2, 3] = 0.5004  # within 1e-3 of the 0/1 boundary: a float32 rounding case, not a divergence
    assert compare_codes(a, b, 0, 15, t)["all_boundary"]
    h = health(np.array([[0, 15, 15, 15]]).reshape(1, 1, 4, 1), 0, 15)
    assert h["clip_high"] == 0.75 and h["unused_codes"] == 14 and h["flags"]


# --- pre-processing (the tiny detector shared with the runtime tests: no extra build) ------------------------
@pytest.fixture(scope="module")
def photo():
    img = cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    return cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), (120, 90), interpolation=cv2.INTER_AREA)


def _faults(photo, acc):
    ref, g = P.reference_frame(photo, acc)
    return ref, {"channel_order": ref[..., ::-1], "scale": ref.astype(np.float32) / 255,
                 "resize": P.make_frame(photo, g, "INTER_AREA"), "letterbox": P.make_frame(photo, g, dy=g["dy"] + 4)}


def test_each_preprocessing_fault_is_named(tiny_detector, photo):
    ref, faults = _faults(photo, tiny_detector)
    checks, _ = P.diagnose(photo, ref[None], tiny_detector)
    assert all(c["ok"] for c in checks) and len(checks) == 4
    for name, frame in faults.items():
        checks, _ = P.diagnose(photo, frame[None], tiny_detector)
        failed = [c["check"] for c in checks if not c["ok"]]
        assert failed == [name], (name, [c["detail"] for c in checks])
    checks, _ = P.diagnose(photo, faults["scale"][None], tiny_detector)
    assert "0-1" in next(c["detail"] for c in checks if c["check"] == "scale")
    checks, _ = P.diagnose(photo, faults["resize"][None], tiny_detector)
    assert "INTER_AREA" in next(c["detail"] for c in checks if c["check"] == "resize")


def test_debug_command_names_the_divergence_and_a_channel_swap(faulty, photo, tmp_path, capsys):
    """The command on the edited build (its tap library is already compiled): exit 1, the first divergence, and
    a deployed frame with reversed channels named with its effect on the output codes."""
    acc = faulty[0]
    ref, faults = _faults(photo, acc)
    cv2.imwrite(str(tmp_path / "photo.png"), photo[..., ::-1])
    np.save(tmp_path / "got.npy", faults["channel_order"][None])
    rc = main(["debug", str(acc.build_dir), "--image", str(tmp_path / "photo.png"), "--deployed-input",
               str(tmp_path / "got.npy"), "-o", str(tmp_path / "d"), "--no-plots"])
    assert rc == 1
    doc = json.loads((tmp_path / "d" / "debug.json").read_text())
    assert doc["first_divergence"]["layer"] == "conv_1" and doc["sources"] == ["csim", "reference", "qonnx"]
    assert doc["hls_edited"] == ["layers/conv_1.h"]  # compiled as edited, and said so
    check = next(c for c in doc["preprocess_checks"] if c["check"] == "channel_order")
    assert not check["ok"] and check["effect"]["differing_codes"] > 0
    assert [c["check"] for c in doc["preprocess_checks"] if not c["ok"]] == ["channel_order"]
    out = capsys.readouterr().out
    assert "first divergence: layer conv_1" in out and "check channel_order failed" in out


def test_effects_in_detections_and_postprocessing_settings(tiny_detector, photo):
    ref, faults = _faults(photo, tiny_detector)
    pre, post, deployed, _ = P.run_checks(photo, faults["scale"][None], tiny_detector, nms_iou=0.9)
    check = next(c for c in pre if c["check"] == "scale")
    assert not check["ok"] and check["effect"]["differing_codes"] > 0
    assert check["effect"]["detections_reference"] > 0  # the tiny detector finds boxes on the photo
    assert check["effect"]["detections_gained"] + check["effect"]["detections_lost"] > 0
    assert deployed["differing_codes"] == check["effect"]["differing_codes"]
    by_check = {c["check"]: c for c in post}
    assert not by_check["nms_iou"]["ok"] and by_check["conf"]["ok"] and by_check["anchors"]["ok"]
    assert {"detections_gained", "detections_lost"} <= set(by_check["nms_iou"]["effect"])


def test_bad_input_exits_2(tiny_detector, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((1, 5, 5, 3), np.uint8))
    assert main(["debug", str(tiny_detector.build_dir), "--input", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "d")]) == 2
    assert capsys.readouterr().err.startswith("fpgagen: error: uint8 frames of shape")


# --- on the board: a --debug-outputs build through the stand-in DMA -----------------------------------------
def test_board_streams_name_an_edited_header(tmp_path, monkeypatch):
    """A debug build sends conv_0 and conv_1's streams as extra outputs (one DMA transfer, the multi-output
    framing); with conv_1's header edited, the board's (stand-in DMA over the edited C-sim) conv_1 stream is the
    first divergence from the reference, conv_0's agrees."""
    import sys

    from runtime_nets import fake_pynq

    from fpgagen.debug.board import board_taps, tapped_outputs
    from fpgagen.debug.session import Trace
    from fpgagen.runtime.backends import PynqBackend

    model = clipping_net(seed=1, size=8)
    acc = fpgagen.build(fpgagen.export(model, tmp_path / "net.onnx"), out_dir=tmp_path / "build",
                        log=lambda m: None, verify=False, debug_outputs="conv_0,conv_1")
    assert len(acc.net.outputs) == 3 and set(tapped_outputs(acc.net).values()) == {"conv_0:0", "conv_1:0"}
    change_first_weight(acc.hls_dir / "layers" / "conv_1.h")
    monkeypatch.setitem(sys.modules, "pynq", fake_pynq(acc.lib))
    board = PynqBackend(acc, bitstream=tmp_path / "design.bit")
    codes = acc.random_stream_input(2, seed=3).astype(np.uint8)
    outs = board.infer(codes)
    assert isinstance(outs, tuple) and len(outs) == 3
    t = Trace(acc).use_input(codes).compare("reference").compare("board", model=board_taps(acc.net, outs))
    doc = t.summary()
    first = doc["first_divergence"]
    assert first is not None and (first["layer"], first["a"], first["b"]) == ("conv_1", "reference", "board")
    conv_0 = next(e for e in doc["layers"] if e["name"] == "conv_0")
    assert [(c["b"], c["differing"]) for c in conv_0["comparisons"]] == [("board", 0)]
    # the command, from the saved frames and board outputs: both the C-sim (edited) and the board diverge at conv_1
    np.save(tmp_path / "frames.npy", codes)
    np.savez(tmp_path / "outs.npz", *outs)
    rc = main(["debug", str(acc.build_dir), "--input", str(tmp_path / "frames.npy"), "--board-outputs",
               str(tmp_path / "outs.npz"), "--no-qonnx", "--no-plots", "-o", str(tmp_path / "d")])
    doc = json.loads((tmp_path / "d" / "debug.json").read_text())
    assert rc == 1 and doc["first_divergence"]["layer"] == "conv_1"
    conv_1 = next(e for e in doc["layers"] if e["name"] == "conv_1")
    assert {c["b"] for c in conv_1["comparisons"] if c["differing"]} == {"csim", "board"}


def test_the_runtime_saves_what_the_backend_received(tiny_detector, tmp_path):
    from fpgagen.runtime.backends import ReferenceBackend, save_inputs

    backend = save_inputs(ReferenceBackend(tiny_detector), tmp_path / "got.npy")
    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    backend.infer(frames[:1])
    backend.infer(frames[1:])
    assert np.array_equal(np.load(tmp_path / "got.npy"), frames)


@pytest.mark.slow
def test_a_camera_build_taps_every_source(tmp_path):
    """With the letterbox in the fabric the camera frame has no ONNX counterpart, the letterbox's output is the
    ONNX graph's input codes, and C-sim, reference, QONNX and Brevitas agree on every stream."""
    from runtime_nets import tiny_detector_net

    model = tiny_detector_net(0)
    acc = fpgagen.build(fpgagen.export(model, tmp_path / "net.onnx"), out_dir=tmp_path / "build",
                        log=lambda m: None, verify=False, camera="96x72")
    frames = np.random.default_rng(0).integers(0, 256, (2, 72, 96, 3), dtype=np.uint8)
    with fpgagen.trace(acc) as t:
        acc.run_stream(frames)
    doc = t.compare("reference").compare("qonnx").compare("brevitas", model=model).summary()
    assert doc["first_divergence"] is None and not doc["problems"]
    by_name = {e["name"]: e for e in doc["layers"]}
    assert "qonnx" in by_name["input"]["no_counterpart"]
    assert {c["b"] for c in by_name["letterbox"]["comparisons"]} == {"csim", "qonnx", "brevitas"}
    assert all(c["differing"] == 0 for e in doc["layers"] for c in e["comparisons"])
