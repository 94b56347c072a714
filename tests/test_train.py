"""Training: the loss and its targets, one optimisation step reducing the loss, float -> quantized transfer,
checkpoints, resumable training, and the shipped checkpoint."""

import copy
import json

import numpy as np
import pytest
import torch
from brevitas.nn import QuantReLU

import fpgagen.train.trainer as trainer
from fpgagen.data import SyntheticConfig, synthetic
from fpgagen.detect import decode_float, nms
from fpgagen.train import (
    SYNTH_ANCHORS,
    TrainConfig,
    build_targets,
    float_lpyolo,
    load_checkpoint,
    quantize_from_float,
    save_checkpoint,
    shipped_checkpoint,
    train,
    yolo_loss,
)
from fpgagen.train.model import _scaling_value, equalize_channels
from fpgagen.train.trainer import lr_at

ANCHORS = np.array(SYNTH_ANCHORS, np.float64)


def test_targets_invert_the_decode():
    boxes = [np.array([[40.0, 50.0, 80.0, 98.0], [150.0, 10.0, 250.0, 128.0]]), np.zeros((0, 4))]
    t = build_targets(boxes, (5, 8), ANCHORS, 32, (160, 256))
    pos = t["pos"].numpy()
    assert pos.sum() == 2 and pos[1].sum() == 0
    # a head emitting exactly the targets decodes back to the boxes
    y = np.full((18, 5, 8), -1.0)
    for a, gy, gx in zip(*np.nonzero(pos[0]), strict=True):
        y[a * 6:a * 6 + 4, gy, gx] = t["box"].numpy()[0, a, :, gy, gx]
        y[a * 6 + 4, gy, gx] = 1.0
    det = decode_float(y, 0.5, ANCHORS)
    order = np.argsort(det.boxes[:, 0])
    assert np.allclose(det.boxes[order], boxes[0], atol=1e-4)
    assert np.array_equal(np.sort(np.nonzero(pos[0])[0]), [1, 2])  # the 40x48 face -> anchor 1, 100x118 -> 2


def test_loss_gradient_reaches_a_saturated_positive():
    z = torch.full((1, 18, 5, 5), -3.0, requires_grad=True)  # every objectness far below the hardtanh range
    loss, parts = yolo_loss(z, [np.array([[60.0, 60.0, 100.0, 108.0]])], ANCHORS)
    loss.backward()
    assert parts["faces"] == 1 and parts["obj"] > 0 and parts["noobj"] == 0  # negatives at -1 cost nothing
    g = z.grad.view(1, 3, 6, 5, 5)
    assert (g[0, :, 4] != 0).sum() == 1 and g[0, 1, 4, 2, 2] < 0  # only the positive is pushed up


def test_one_training_step_reduces_the_loss():
    torch.manual_seed(0)
    model = float_lpyolo().train()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, (4, 3, 64, 64)).astype(np.float32) / 255)
    boxes = [np.array([[8.0, 8.0, 40.0, 44.0]]), np.zeros((0, 4)), np.array([[20.0, 10.0, 36.0, 30.0]]),
             np.array([[0.0, 30.0, 60.0, 63.0]])]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss, _ = yolo_loss(model[:-1](x), boxes, ANCHORS)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def _float_with_spread_channels(seed):
    torch.manual_seed(seed)
    flt = float_lpyolo()
    with torch.no_grad():
        for m in flt:
            if isinstance(m, torch.nn.Conv2d):  # channels of very different weight ranges, as training leaves them
                m.weight.mul_(torch.logspace(-1.5, 0, m.out_channels).view(-1, 1, 1, 1))
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.05, 0.05)
                m.running_var.uniform_(0.01, 0.1)
    return flt.eval()


def test_channel_equalization_keeps_the_function():
    flt = _float_with_spread_channels(3)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        before = flt[:-1](x)
        equalize_channels(flt, max_gain=1000.0)
        after = flt[:-1](x)
    assert torch.allclose(before, after, rtol=1e-3, atol=1e-4)
    for m in flt:
        if isinstance(m, torch.nn.Conv2d) and m.out_channels != 18:  # the head has no BatchNorm: untouched
            peak = m.weight.abs().amax(dim=(1, 2, 3))
            assert torch.allclose(peak, peak.max().expand_as(peak), rtol=1e-5)


def test_quantized_transfer_keeps_weights_and_calibrates_clips():
    flt = _float_with_spread_channels(1)
    images = torch.rand(2, 3, 64, 64)
    quant = quantize_from_float(flt, images, 4, 4)
    eq = equalize_channels(copy.deepcopy(flt))
    assert torch.equal(quant[1].weight, eq[1].weight) and torch.equal(quant[2].running_var, eq[2].running_var)
    assert torch.equal(quant[-2].weight, flt[-2].weight)  # the head conv has no BatchNorm to compensate
    assert not torch.equal(eq[5].weight, flt[5].weight)  # quantize_from_float left the float model alone
    q = quant[5].quant_weight()
    codes = torch.round(q.value / q.scale)
    assert (codes.abs().amax(dim=(1, 2, 3)) >= 6).all()  # every channel uses the 4-bit range (max code 7)
    clips = [_scaling_value(m).item() for m in quant if isinstance(m, QuantReLU)]
    assert len(clips) == 9 and all(0 < c for c in clips) and len(set(clips)) > 1  # calibrated, not the init 6.0
    assert not _scaling_value(quant[-1]).requires_grad  # the head keeps scale 2**-7
    assert float(quant[-1].act_quant.scale()) == 2.0 ** -7


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(2)
    flt = float_lpyolo()
    quant = quantize_from_float(flt, torch.rand(1, 3, 64, 64))
    path = save_checkpoint(tmp_path / "q.pt", quant, "quant", 4, 4, SYNTH_ANCHORS, {"note": "x"})
    loaded, info = load_checkpoint(path)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), quant.eval()(x))
    assert info["kind"] == "quant" and info["anchors"] == [list(map(float, a)) for a in SYNTH_ANCHORS]
    from fpgagen.errors import FpgagenError

    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(FpgagenError):
        load_checkpoint(tmp_path / "bad.pt")


def test_lr_schedule():
    assert lr_at(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert lr_at(10, 100, 1.0, 10) == pytest.approx(1.0)
    assert lr_at(99, 100, 1.0, 10) == pytest.approx(0.05, abs=0.01)


def _tiny_config(tmp_path, out):
    cfg = TrainConfig(out=str(tmp_path / out), synthetic=SyntheticConfig(n_train=8, n_eval=2, train_size=96,
                      eval_size=96, max_face=60, seed=5), size=64, batch=2, float_iters=3, qat_iters=2,
                      ckpt_every=1, calib_images=2, warmup=1)
    cfg.data = str(synthetic.ensure(cfg.synthetic, base=tmp_path / "data"))  # keep the data inside tmp_path
    return cfg


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    record = train(_tiny_config(tmp_path, "a"), log=lambda m: None, command="test")
    assert set(record["phases"]) == {"float", "qat"} and record["phases"]["qat"]["iterations"] == 2
    assert record["phases"]["float"]["images_seen"] == 6
    _, info = load_checkpoint(record["checkpoints"]["w4a4"])
    assert info["kind"] == "quant" and info["weight_bits"] == 4 and info["meta"]["float_iters"] == 3
    assert not (tmp_path / "a" / "state.pt").exists()
    assert json.loads((tmp_path / "a" / "record.json").read_text())["command"] == "test"

    # the same run, interrupted in QAT iteration 1 (the 5th loss evaluation), then resumed
    real, calls = trainer.yolo_loss, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "yolo_loss", flaky)
    with pytest.raises(KeyboardInterrupt):
        train(_tiny_config(tmp_path, "b"), log=lambda m: None)
    state = torch.load(tmp_path / "b" / "state.pt", weights_only=True)
    assert (state["phase"], state["iter"]) == ("qat", 1)
    monkeypatch.setattr(trainer, "yolo_loss", real)
    resumed = train(_tiny_config(tmp_path, "b"), resume=True, log=lambda m: None)
    a = torch.load(record["checkpoints"]["w4a4"], weights_only=True)["state_dict"]
    b = torch.load(resumed["checkpoints"]["w4a4"], weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_shipped_checkpoint_loads_and_detects():
    path = shipped_checkpoint("w4a4")
    if not path.is_file():
        pytest.skip("no shipped checkpoint yet")
    model, info = load_checkpoint(path)
    assert info["kind"] == "quant" and (info["weight_bits"], info["act_bits"]) == (4, 4)
    assert sum(p.numel() for n, p in model.named_parameters() if "scaling_impl" not in n) < 400_000
    flt, finfo = load_checkpoint(shipped_checkpoint("float"))
    assert finfo["kind"] == "float" and finfo["anchors"] == info["anchors"]
    with torch.no_grad():
        y = model(torch.zeros(1, 3, 64, 64)).numpy()[0]
    assert y.shape == (18, 2, 2)
    assert len(nms(decode_float(y, 0.99, info["anchors"]))) == 0  # a blank grey frame holds no face


def test_eval_command_on_a_wider_fixture(tmp_path, capsys):
    import cv2

    from fpgagen.data import WiderRecord, write_wider_gt
    from fpgagen.train.cli import main_eval, main_train

    if not shipped_checkpoint("w4a4").is_file():
        pytest.skip("no shipped checkpoint yet")
    faces = [WiderRecord("0--x/a.jpg", np.array([[10, 12, 30, 34]]), np.zeros((1, 6), np.int64)),
             WiderRecord("0--x/b.jpg")]
    write_wider_gt(faces, tmp_path / "wider_face_split" / "wider_face_val_bbx_gt.txt")
    for rec in faces:
        path = tmp_path / "WIDER_val" / "images" / rec.path
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.full((80, 120, 3), 90, np.uint8))
    assert main_eval(["--data", str(tmp_path), "--size", "96", "-o", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "WIDER FACE val: 2 images at 96x96" in text and "| W4A4 |" in text and "| float |" in text
    doc = json.loads((tmp_path / "out" / "ap.json").read_text())
    assert doc["faces"]["all"] == 1 and set(doc["ap"]) == {"float", "W4A4"}
    assert (tmp_path / "out" / "pr.png").read_bytes()[:4] == b"\x89PNG"
    # user errors come back as 'fpgagen: error: ...' with exit code 2
    assert main_eval(["--data", str(tmp_path / "nowhere")]) == 2
    assert main_train(["--size", "100", "-o", str(tmp_path / "t")]) == 2
    assert "not a multiple of 32" in capsys.readouterr().err


def test_train_and_eval_name_bad_checkpoints_states_and_data(tmp_path, capsys):
    """Each of these was a traceback: a checkpoint of the other kind or garbage, --init-float missing or equal to
    the output, a damaged resume state, an empty training split, and eval on a ground truth with no face."""
    from fpgagen.data import WiderRecord, write_wider_gt
    from fpgagen.train.cli import main_eval, main_train

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    quant, flt = shipped_checkpoint("w4a4"), shipped_checkpoint("float")
    out = tmp_path / "t"
    cases = [
        (main_eval, ["--quant", str(flt)], "a float checkpoint where a quant one is needed, --quant"),
        (main_eval, ["--float", str(garbage)], "cannot read the checkpoint"),
        (main_train, ["--init-float", str(quant), "-o", str(out)],
         "a quant checkpoint where a float one is needed, --init-float"),
        (main_train, ["--init-float", str(tmp_path / "missing.pt"), "-o", str(out)], "cannot read the checkpoint"),
        (main_train, ["--init-float", str(out / "float.pt"), "-o", str(out)], "--init-float is this run's own output"),
    ]
    for main, args, fragment in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("fpgagen: error: ") and fragment in err, err
    out.mkdir(exist_ok=True)
    (out / "state.pt").write_bytes(b"garbage")
    assert main_train(["--resume", "-o", str(out)]) == 2
    assert "cannot resume: the training state is damaged" in capsys.readouterr().err
    torch.save({"config": {"nope": 1}, "phase": "qat"}, out / "state.pt")
    assert main_train(["--resume", "-o", str(out)]) == 2
    assert "delete it to start over" in capsys.readouterr().err

    root = tmp_path / "wider"  # ground truths with images but no face, and none at all
    write_wider_gt([], root / "wider_face_split" / "wider_face_train_bbx_gt.txt")
    write_wider_gt([WiderRecord("0--x/a.jpg")], root / "wider_face_split" / "wider_face_val_bbx_gt.txt")
    assert main_train(["--data", str(root), "-o", str(tmp_path / "t2"), "--no-eval"]) == 2
    assert "the train split holds no images" in capsys.readouterr().err
    assert main_eval(["--data", str(root), "-o", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "lists 1 image(s) and no face, so AP is undefined" in err and "nan" not in err


def test_train_and_eval_help_is_wrapped_and_every_option_explained():
    import os
    import subprocess
    import sys

    from fpgagen.cli import _parser

    sub = next(a for a in _parser()._actions if a.dest == "command").choices
    for name in ("train", "eval", "csim", "report"):
        bare = [a.option_strings or a.dest for a in sub[name]._actions if not a.help]
        assert not bare, (name, bare)
    for name in ("train", "eval"):
        text = subprocess.run([sys.executable, "-m", "fpgagen.cli", name, "--help"], capture_output=True, text=True,
                              env={**os.environ, "COLUMNS": "80"}).stdout
        assert text and max(len(line) for line in text.splitlines()) <= 80, text


def test_demo_runs_the_csimulation_in_chunks_with_progress():
    from fpgagen.train.demo import run_in_chunks

    batch = np.arange(70 * 3).reshape(70, 3)
    lines = []
    out = run_in_chunks(lambda b: b * 2, batch, lines.append, chunk=32)
    assert np.array_equal(out, batch * 2)
    assert [line.split(",")[0] for line in lines] == ["32/70 frames", "64/70 frames", "70/70 frames"]
