"""A tiny network and data set for ``fpgagen explore`` tests: a 3-conv net on 8x8 pixels whose task is to match a
fixed float teacher (accuracy = -MSE x 100 against the teacher on a held-out set), fine-tuned by a few Adam steps.

It follows the explore contract: ``factory(weight_bits, act_bits)`` (int or list), ``evaluate(model)``,
``finetune(model)``, ``calibration()``, and ``BASELINE``."""

from __future__ import annotations

import os

import torch
from brevitas.nn import QuantConv2d, QuantHardTanh, QuantIdentity, QuantReLU
from brevitas.quant import Int8ActPerTensorFloatMinMaxInit, Uint8ActPerTensorFloatMaxInit
from torch import nn

from fpgagen.models.lpyolo import PixelQuant

CHANNELS = [(3, 4, 3), (4, 4, 3), (4, 2, 1)]  # (in, out, kernel) per conv
BASELINE = {"name": "4W4A", "weight_bits": [4, 4, 4], "act_bits": [4, 4]}


def _bits(value, n):
    return list(value) if isinstance(value, list | tuple) else [value] * n


def _net(weight_bits, act_bits) -> nn.Sequential:
    wb, ab = _bits(weight_bits, 3), _bits(act_bits, 2)
    layers: list[nn.Module] = [QuantIdentity(act_quant=PixelQuant)]
    for i, (cin, cout, k) in enumerate(CHANNELS):
        layers.append(QuantConv2d(cin, cout, k, padding=k // 2, bias=i == 2, weight_bit_width=wb[i]))
        if i < 2:
            layers += [nn.BatchNorm2d(cout), QuantReLU(act_quant=Uint8ActPerTensorFloatMaxInit, bit_width=ab[i],
                                                       max_val=2.0)]
    layers.append(QuantHardTanh(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=8, min_val=-1.0, max_val=1.0))
    model = nn.Sequential(*layers)
    model.input_shape = (1, 3, 8, 8)
    return model


def _teacher() -> nn.Sequential:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        layers: list[nn.Module] = []
        for i, (cin, cout, k) in enumerate(CHANNELS):
            layers.append(nn.Conv2d(cin, cout, k, padding=k // 2, bias=i == 2))
            if i < 2:
                layers += [nn.BatchNorm2d(cout), nn.ReLU()]
        return nn.Sequential(*layers, nn.Hardtanh()).eval()


def _data(seed: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 8, 8), generator=g).float() / 255


def factory(weight_bits=4, act_bits=4) -> nn.Sequential:
    if os.environ.get("FPGAGEN_TINY_FACTORY_RAISES"):
        raise RuntimeError("the tiny factory was told to fail")
    model = _net(weight_bits, act_bits)
    teacher = _teacher()
    state = {k: v for k, v in teacher.state_dict().items()}
    # the quantized net's module indices are the teacher's shifted by the input quantizer
    mapped = {}
    for key, value in state.items():
        idx, rest = key.split(".", 1)
        mapped[f"{int(idx) + 1}.{rest}"] = value
    model.load_state_dict(mapped, strict=False)
    return model.eval()


def calibration() -> torch.Tensor:
    return _data(1, 16)


def evaluate(model) -> float:
    if os.environ.get("FPGAGEN_TINY_EVALUATE_NAN"):
        return float("nan")
    x = _data(2, 32)
    with torch.no_grad():
        y = model(x)
        want = _teacher()(x)
    y = y.value if hasattr(y, "value") else y
    return float(-100 * ((y - want) ** 2).mean())


def finetune(model) -> nn.Sequential:
    x, teacher = _data(3, 64), _teacher()
    with torch.no_grad():
        want = teacher(x)
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(3):
        opt.zero_grad()
        y = model(x)
        loss = (((y.value if hasattr(y, "value") else y) - want) ** 2).mean()
        loss.backward()
        opt.step()
    return model.eval()
