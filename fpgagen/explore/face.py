"""The shipped face detector under the explore contract (``fpgagen explore face``).

* ``factory(weight_bits, act_bits)``: LPYOLO with per-layer widths (10 weight layers, the 9 backbone ReLUs; the
  8-bit pixel input and the 8-bit hardtanh output stay), initialised from the shipped float checkpoint: channels
  equalized, each ReLU's clip calibrated at its own width on a batch of synthetic training images;
* ``finetune(model)``: a short QAT run (150 iterations at 160x160 by default) on the synthetic training split;
* ``evaluate(model)``: AP (IoU 0.5, all faces) on the held-out synthetic eval split at 416x416;
* ``calibration()``: synthetic training images at 160x160;
* ``BASELINE``: LPYOLO's hand-picked 4W4A (first layer's weights 8-bit, as the paper's).

The environment variables FPGAGEN_EXPLORE_FACE_ITERS, _EVAL_IMAGES and _TRAIN_IMAGES shrink it (tests, benches);
``settings()`` reports them, and an explore's run folder records them (a resume under other sizes is refused).
For one width pattern and one set of sizes, fine-tune + evaluate is reproducible: the same state and AP in one
process, in another, and from a freshly generated data folder (the data, the batches and the QAT are seeded), and
whatever torch's thread count outside (both run on one thread)."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import numpy as np
import torch
from brevitas.nn import QuantConv2d, QuantHardTanh, QuantIdentity, QuantReLU
from brevitas.quant import Int8ActPerTensorFloatMinMaxInit, Uint8ActPerTensorFloatMaxInit
from torch import nn

from ..models.lpyolo import ACT_MAX, BACKBONE, HEAD_CHANNELS, INPUT_SHAPE, PixelQuant

N_WEIGHT, N_ACT = len(BACKBONE) + 1, len(BACKBONE)
BASELINE = {"name": "4W4A (LPYOLO)", "weight_bits": [8] + [4] * (N_WEIGHT - 1), "act_bits": [4] * N_ACT}
TRAIN_SIZE = 160


DEFAULTS = {"ITERS": 150, "EVAL_IMAGES": 300, "TRAIN_IMAGES": 800}  # QAT iterations, eval images, train images


def _size(name: str) -> int:
    """Read when used (a Ray worker may import this module before the driver's settings change)."""
    return int(os.environ.get(f"FPGAGEN_EXPLORE_FACE_{name}", DEFAULTS[name]))


def settings() -> dict[str, int]:
    """The sizes in force (the explore's run-folder identity: a resume under other sizes is another explore)."""
    return {name: _size(name) for name in DEFAULTS}


def _bits(value, n: int, what: str) -> list[int]:
    out = list(value) if isinstance(value, list | tuple) else [value] * n
    if len(out) != n:
        raise ValueError(f"{what} needs {n} widths, got {len(out)}")
    return [int(v) for v in out]


def lpyolo_mixed(weight_bits, act_bits) -> nn.Sequential:
    """LPYOLO (fpgagen.models.lpyolo's topology and quantizers) with one width per weight layer and per ReLU."""
    wb, ab = _bits(weight_bits, N_WEIGHT, "weight_bits"), _bits(act_bits, N_ACT, "act_bits")
    layers: list[nn.Module] = [QuantIdentity(act_quant=PixelQuant, bit_width=8)]
    cin = 3
    for i, (cout, k, pool) in enumerate(BACKBONE):
        layers += [QuantConv2d(cin, cout, k, padding=k // 2, bias=False, weight_bit_width=wb[i]),
                   nn.BatchNorm2d(cout),
                   QuantReLU(act_quant=Uint8ActPerTensorFloatMaxInit, bit_width=ab[i], max_val=ACT_MAX)]
        if pool:
            layers.append(nn.MaxPool2d(2, 2))
        cin = cout
    layers += [QuantConv2d(cin, HEAD_CHANNELS, 1, bias=True, weight_bit_width=wb[-1]),
               QuantHardTanh(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=8, min_val=-1.0, max_val=1.0)]
    model = nn.Sequential(*layers)
    model.input_shape = INPUT_SHAPE
    return model.eval()


def _data_base() -> str:
    return os.environ.setdefault("FPGAGEN_EXPLORE_FACE_DATA", str(Path("build/data").resolve()))


@cache
def _root() -> Path:
    from ..data import SyntheticConfig, synthetic

    return synthetic.ensure(SyntheticConfig(n_train=_size("TRAIN_IMAGES")), base=_data_base())


@cache
def _float_model():
    from ..train.model import equalize_channels, load_checkpoint, shipped_checkpoint

    model, _ = load_checkpoint(shipped_checkpoint("float"), kind="float")
    return equalize_channels(model)


@cache
def _float_activations() -> dict[int, np.ndarray]:
    """Samples of each float ReLU's output on the calibration batch (module index -> values)."""
    fm, acts = _float_model(), {}
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: acts.__setitem__(k, o.detach().numpy().ravel()))
             for k, m in enumerate(fm) if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        fm(calibration())
    for h in hooks:
        h.remove()
    rng = np.random.default_rng(0)
    return {k: v[rng.integers(0, v.size, min(v.size, 100_000))] for k, v in acts.items()}


def factory(weight_bits=4, act_bits=4) -> nn.Sequential:
    from ..train.model import _best_clip, _scaling_value, freeze_head_scale

    model = lpyolo_mixed(weight_bits, act_bits)
    model.load_state_dict(_float_model().state_dict(), strict=False)
    acts = _float_activations()
    with torch.no_grad():
        for k, m in enumerate(model):
            if isinstance(m, QuantReLU):
                _scaling_value(m).fill_(_best_clip(acts[k], 2 ** int(m.act_quant.bit_width()) - 1))
    freeze_head_scale(model)
    return model.eval()


@cache
def _calibration() -> torch.Tensor:
    from ..data import WiderFace
    from ..train.trainer import Batches, TrainConfig, calibration_batch

    cfg = TrainConfig(size=TRAIN_SIZE, batch=16, calib_images=32)
    return calibration_batch(Batches(WiderFace(_root(), "train"), cfg), cfg)


def calibration() -> torch.Tensor:
    return _calibration().clone()


def finetune(model) -> nn.Sequential:
    from ..data import WiderFace
    from ..train.trainer import Batches, TrainConfig, train_phase

    iters = _size("ITERS")
    cfg = TrainConfig(size=TRAIN_SIZE, batch=16, qat_iters=iters, warmup=min(20, iters), lr_qat=1e-3, seed=0)
    batches = Batches(WiderFace(_root(), "train"), cfg)
    with open(os.devnull, "w") as quiet, _stderr_to(quiet), _one_thread():
        train_phase("qat", model, batches, cfg, log=lambda m: None)
    return model.eval()


class _one_thread:  # noqa: N801 - a context manager
    """Torch on one thread inside: the thread count changes float summation order, and over a QAT run that moves
    the AP (0.748 on one thread, 0.724 on two, for the same point), so a point's figure must not depend on the CPU
    share its task got. The explore gives each fine-tune one CPU anyway."""

    def __enter__(self):
        self.saved = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.saved)


class _stderr_to:  # noqa: N801 - a context manager: the trainer's progress bar stays out of the worker's log
    def __init__(self, stream):
        self.stream = stream

    def __enter__(self):
        import sys

        self.saved, sys.stderr = sys.stderr, self.stream

    def __exit__(self, *exc):
        import sys

        sys.stderr = self.saved


def evaluate(model) -> float:
    from ..data import WiderFace
    from ..detect import Detector, torch_backend
    from ..detect import evaluate as ap_of
    from ..train.evaluation import AP_CONF, NMS_IOU, detect_dataset
    from ..train.trainer import SYNTH_ANCHORS

    ds = WiderFace(_root(), "val", limit=_size("EVAL_IMAGES"))
    det = Detector(torch_backend(model), [list(a) for a in SYNTH_ANCHORS], 416, conf=AP_CONF, nms_iou=NMS_IOU)
    with _one_thread():
        return float(ap_of(*detect_dataset(det, ds))["all"].ap)
