"""A tiny network and data set for ``fpgagen explore`` tests: a 3-conv net on 8x8 pixels whose task is to match a
fixed float teacher (accuracy = -MSE x 100 against the teacher on a held-out set), fine-tuned by a few Adam steps.

It follows the explore contract: ``factory(weight_bits, act_bits)`` (int or list), ``evaluate(model)``,
``finetune(model)``, ``calibration()``, and ``BASELINE``."""

from __future__ import annotations

import os
import warnings

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


# --- a branched one: fork, Concat, Upsample, a residual Add on one shared quantizer ----------------------------
class BranchedNet(nn.Module):
    """conv0 -> r0 forks three ways: conv1 -> r1; maxpool -> conv2 (1x1) -> r2 -> nearest upsample x2; and the
    skip. Concat(r1, r2) straight into conv3 (1x1; its input channels on two grids) -> r3, which shares r0's
    act_quant (one scale: an integer Add with the skip) -> Add -> q4 (signed) -> conv4 (1x1, bias) -> hardtanh.
    Five weight layers, four explored quantizers (r0 and r3 are one)."""

    def __init__(self, weight_bits=4, act_bits=4):
        super().__init__()
        wb, ab = _bits(weight_bits, 5), _bits(act_bits, 4)

        def relu(bits):
            return QuantReLU(act_quant=Uint8ActPerTensorFloatMaxInit, bit_width=bits, max_val=2.0)

        self.input_quant = QuantIdentity(act_quant=PixelQuant)
        self.c0, self.b0, self.r0 = QuantConv2d(3, 4, 3, padding=1, bias=False, weight_bit_width=wb[0]), \
            nn.BatchNorm2d(4), relu(ab[0])
        self.c1, self.b1, self.r1 = QuantConv2d(4, 4, 3, padding=1, bias=False, weight_bit_width=wb[1]), \
            nn.BatchNorm2d(4), relu(ab[1])
        self.pool = nn.MaxPool2d(2)
        self.c2, self.b2, self.r2 = QuantConv2d(4, 4, 1, bias=False, weight_bit_width=wb[2]), nn.BatchNorm2d(4), \
            relu(ab[2])
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.c3, self.b3 = QuantConv2d(8, 4, 1, bias=False, weight_bit_width=wb[3]), nn.BatchNorm2d(4)
        with warnings.catch_warnings():  # brevitas warns about its own defaults when handed a proxy
            warnings.simplefilter("ignore", UserWarning)
            self.r3 = QuantReLU(act_quant=self.r0.act_quant)
        self.q4 = QuantIdentity(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=ab[3], min_val=-2.0,
                                max_val=2.0)
        self.c4 = QuantConv2d(4, 2, 1, bias=True, weight_bit_width=wb[4])
        self.out = QuantHardTanh(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=8, min_val=-1.0, max_val=1.0)
        self.input_shape = (1, 3, 8, 8)

    def forward(self, x):
        s = self.r0(self.b0(self.c0(self.input_quant(x))))
        a = self.r1(self.b1(self.c1(s)))
        b = self.up(self.r2(self.b2(self.c2(self.pool(s)))))
        y = self.r3(self.b3(self.c3(torch.cat([a, b], 1))))
        return self.out(self.c4(self.q4(y + s)))


def branched_factory(weight_bits=4, act_bits=4) -> BranchedNet:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = BranchedNet(weight_bits, act_bits)
    return model.eval()


# --- helpers for the program's tests ----------------------------------------------------------------------------
def price(specs: dict, w_grid, a_grid, n_weight: int, n_act: int, input_shape, folder):
    """What the explore's lowering phase does, in this process: the IR at the base and probe patterns, each unit's
    dependence, the covering patterns and their unit tables. Returns (units, depends, tables)."""
    from pathlib import Path

    from fpgagen.explore import program, tasks
    from fpgagen.explore.run import point_id
    from fpgagen.ir import Network

    def lower(kind, wb, ab):
        out = tasks.lower_task(specs, wb, ab, input_shape, str(Path(folder) / point_id(kind, wb, ab)),
                               tables=kind == "ir")
        assert "fatal" not in out, out
        return out

    base, probes = program.probe_configs(list(w_grid), list(a_grid), n_weight, n_act)
    lowered = {("ir", tuple(base[0]), tuple(base[1])): lower("ir", *base)}
    units = program.units_of(Network.load(lowered[("ir", tuple(base[0]), tuple(base[1]))]["ir"]))
    depends = program.dependence(units, lowered[("ir", tuple(base[0]), tuple(base[1]))]["signature"],
                                 {v: lower("probe", wb, ab)["signature"] for v, (wb, ab) in probes.items()}, "test")
    tables = {}
    for wb, ab in program.covering_configs(depends, list(w_grid), list(a_grid), n_weight, n_act):
        key = ("ir", tuple(wb), tuple(ab))
        res = lowered.get(key) or lower("ir", wb, ab)
        tables[key[1:]] = program.options_from_json(res["options"])
    return units, depends, tables


def layers_own_figures(net, attrs: dict[str, dict]) -> tuple[dict[str, int], int]:
    """``attrs`` (a program choice) applied to ``net``: every layer's resources (plus its 2-deep output FIFOs) and
    the width converter between a sliding window and the MVAU it feeds where their words differ, as their own
    models price them, summed; and the slowest of their cycles."""
    from fpgagen.ir.layers import add_resources
    from fpgagen.optimize import base_fifo, converter

    for lay in net.layers:
        for key, value in attrs[lay.name].items():
            setattr(lay, key, value)
        lay.validate()
    parts = [add_resources(lay.resources(), base_fifo(lay)) for lay in net.layers]
    cycles = [lay.cycles() for lay in net.layers]
    for e in net.stream_edges():  # a window feeding its MVAU
        if e.src in ("input",) or e.dst == "output":
            continue
        window, mvau = net.layer(e.src), net.layer(e.dst)
        if window.TAKES_CONSUMER_SIMD and mvau.MATRIX_UNIT and window.simd != mvau.simd:
            dwc = converter(window, window.simd, mvau.simd)
            parts.append(add_resources(dwc.resources(), base_fifo(dwc)))
            cycles.append(dwc.cycles())
    return add_resources(*parts), max(cycles)


def check_marking(points) -> None:
    """``pareto`` is true exactly for the usable points no other usable point beats on accuracy and FPS."""
    def fig(p):
        return (p["accuracy_measured"] if p["accuracy_measured"] is not None else p["accuracy_predicted"]), p["fps"]

    usable = [p for p in points if p["status"] in ("verified", "predicted") and None not in fig(p)]
    for p in points:
        beaten = any(fig(q)[0] >= fig(p)[0] and fig(q)[1] >= fig(p)[1] and fig(q) != fig(p) for q in usable)
        assert p["pareto"] == (p in usable and not beaten), p
