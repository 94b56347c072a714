"""Small Brevitas networks with branches (residual add, concat at two scales, nearest upsample, a padded
stride-1 maxpool), random weights and BatchNorm (some gamma negative), and their exact integer output codes.

Each net writes its forward once as ``body(x, f)``, where every module call goes through ``f(module, x)``: torch's
own forward uses ``f = module(x)``; ``exact_codes`` re-runs the same body in float64 with Brevitas' float32
scales, zero points and integer weights (as tests/nets.py ``exact_codes`` does for Sequentials), which is what
integer thresholds implement.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant import Uint8ActPerTensorFloatMaxInit
from nets import PIXEL_SCALE, net_input, randomize_batchnorm, record_act_params, to_codes
from torch import nn
from torch.nn import functional as F

from fpgagen.models.lpyolo import PixelQuant


def _conv(cin, cout, wbits, k=3):
    return QuantConv2d(cin, cout, k, padding=k // 2, bias=False, weight_bit_width=wbits)


def _relu(bits, max_val=2.0):
    return QuantReLU(act_quant=Uint8ActPerTensorFloatMaxInit, bit_width=bits, max_val=max_val)


def _ident(bits, max_val=4.0):
    return QuantIdentity(act_quant=Uint8ActPerTensorFloatMaxInit, bit_width=bits, max_val=max_val)


class GraphNet(nn.Module):
    input_scale, input_signed, input_bits = PIXEL_SCALE, False, 8

    def body(self, x, f):
        raise NotImplementedError

    def forward(self, x):
        return self.body(x, lambda m, v: m(v))

    def calibrate(self, seed: int):
        """Random BatchNorm: running stats from the data it sees (perturbed), gamma +-U(0.5, 1.5) with at least
        one negative per layer, beta U(-0.5, 0.5); keeps every quantizer's code range in use."""
        g = torch.Generator().manual_seed(seed + 1000)
        x = torch.from_numpy(net_input(self, seed + 2000, (16, *self.input_shape[1:])))

        def f(m, v):
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                randomize_batchnorm(m, v, g)
            return m(v)

        with torch.no_grad():
            self.eval()
            self.body(x, f)
        return self.eval()


class ResidualNet(GraphNet):
    """conv -> fork -> conv -> add(skip) -> QuantIdentity -> conv 1x1 -> QuantReLU."""

    input_shape = (1, 3, 12, 12)

    def __init__(self, wbits=4, abits=4):
        super().__init__()
        self.inp = QuantIdentity(act_quant=PixelQuant)
        self.c1, self.b1, self.r1 = _conv(3, 8, wbits), nn.BatchNorm2d(8), _relu(abits, 2.0)
        self.c2, self.b2, self.r2 = _conv(8, 8, wbits), nn.BatchNorm2d(8), _relu(abits, 3.0)
        self.sum = _ident(abits, 4.3)  # a scale no branch grid shares: no exact ties
        self.c3, self.b3, self.r3 = _conv(8, 6, wbits, k=1), nn.BatchNorm2d(6), _relu(abits, 2.0)

    def body(self, x, f):
        x = f(self.inp, x)
        a = f(self.r1, f(self.b1, f(self.c1, x)))
        b = f(self.r2, f(self.b2, f(self.c2, a)))
        s = f(self.sum, a + b)
        return f(self.r3, f(self.b3, f(self.c3, s)))


class ConcatNet(GraphNet):
    """conv -> fork -> (conv at act scale A, conv at act scale B) -> concat -> QuantIdentity -> conv -> QuantReLU."""

    input_shape = (1, 3, 10, 10)

    def __init__(self, wbits=4, abits=4):
        super().__init__()
        self.inp = QuantIdentity(act_quant=PixelQuant)
        self.c1, self.b1, self.r1 = _conv(3, 8, wbits), nn.BatchNorm2d(8), _relu(abits, 2.0)
        self.ca, self.ba, self.ra = _conv(8, 4, wbits), nn.BatchNorm2d(4), _relu(abits, 1.0)
        self.cb, self.bb, self.rb = _conv(8, 6, wbits, k=1), nn.BatchNorm2d(6), _relu(abits + 1, 3.0)
        self.cat = _ident(abits, 2.1)
        self.c3, self.b3, self.r3 = _conv(10, 6, wbits, k=1), nn.BatchNorm2d(6), _relu(abits, 2.0)

    def body(self, x, f):
        x = f(self.r1, f(self.b1, f(self.c1, f(self.inp, x))))
        a = f(self.ra, f(self.ba, f(self.ca, x)))
        b = f(self.rb, f(self.bb, f(self.cb, x)))
        s = f(self.cat, torch.cat([a, b], 1))
        return f(self.r3, f(self.b3, f(self.c3, s)))


class UpsampleNet(GraphNet):
    """conv -> QuantReLU -> nearest upsample x2 -> conv -> QuantReLU."""

    input_shape = (1, 3, 6, 6)

    def __init__(self, wbits=4, abits=4):
        super().__init__()
        self.inp = QuantIdentity(act_quant=PixelQuant)
        self.c1, self.b1, self.r1 = _conv(3, 8, wbits), nn.BatchNorm2d(8), _relu(abits, 2.0)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.c2, self.b2, self.r2 = _conv(8, 6, wbits), nn.BatchNorm2d(6), _relu(abits, 2.0)

    def body(self, x, f):
        x = f(self.r1, f(self.b1, f(self.c1, f(self.inp, x))))
        return f(self.r2, f(self.b2, f(self.c2, f(self.up, x))))


class PadPoolNet(GraphNet):
    """conv -> QuantReLU -> zero pad (0, 1, 0, 1) -> maxpool 2x2 stride 1 -> conv -> QuantReLU (TinyYOLOv3's)."""

    input_shape = (1, 3, 8, 8)

    def __init__(self, wbits=4, abits=4):
        super().__init__()
        self.inp = QuantIdentity(act_quant=PixelQuant)
        self.c1, self.b1, self.r1 = _conv(3, 8, wbits), nn.BatchNorm2d(8), _relu(abits, 2.0)
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.pool = nn.MaxPool2d(2, stride=1)
        self.c2, self.b2, self.r2 = _conv(8, 6, wbits), nn.BatchNorm2d(6), _relu(abits, 2.0)

    def body(self, x, f):
        x = f(self.r1, f(self.b1, f(self.c1, f(self.inp, x))))
        return f(self.r2, f(self.b2, f(self.c2, f(self.pool, f(self.pad, x)))))


class ConcatConvNet(GraphNet):
    """conv -> fork -> (conv -> QuantReLU at scale A; maxpool -> conv -> QuantReLU at scale B, 5 bits -> nearest
    upsample x2) -> concat -> straight into a conv (``kernel``) + BN + QuantReLU, as darknet's TinyYOLOv3 head: the
    conv's input channels sit on two grids (no quantizer after the Concat)."""

    input_shape = (1, 3, 8, 8)
    kernel = 3

    def __init__(self, wbits=4, abits=4):
        super().__init__()
        self.inp = QuantIdentity(act_quant=PixelQuant)
        self.c1, self.b1, self.r1 = _conv(3, 8, wbits), nn.BatchNorm2d(8), _relu(abits, 2.0)
        self.ca, self.ba, self.ra = _conv(8, 4, wbits), nn.BatchNorm2d(4), _relu(abits, 1.0)
        self.pool = nn.MaxPool2d(2)
        self.cb, self.bb, self.rb = _conv(8, 6, wbits, k=1), nn.BatchNorm2d(6), _relu(abits + 1, 3.0)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.c3, self.b3, self.r3 = _conv(10, 6, wbits, k=self.kernel), nn.BatchNorm2d(6), _relu(abits, 2.0)

    def branches(self, x, f):
        x = f(self.r1, f(self.b1, f(self.c1, f(self.inp, x))))
        a = f(self.ra, f(self.ba, f(self.ca, x)))
        b = f(self.up, f(self.rb, f(self.bb, f(self.cb, f(self.pool, x)))))
        return torch.cat([a, b], 1)

    def body(self, x, f):
        return f(self.r3, f(self.b3, f(self.c3, self.branches(x, f))))


class ConcatConv1x1Net(ConcatConvNet):
    """ConcatConvNet with a 1x1 conv after the concat (no sliding window: the MVAU reads the concat directly)."""

    kernel = 1


class ConcatLinearNet(ConcatConvNet):
    """ConcatConvNet's concat, max-pooled to 4x4, flattened into a QuantLinear + BN + QuantReLU: the fully connected
    layer's inputs sit on two grids in torch's (C, H, W) order."""

    input_shape = (1, 3, 8, 8)

    def __init__(self, wbits=4, abits=4):
        super().__init__(wbits, abits)
        del self.c3, self.b3, self.r3
        self.fc = QuantLinear(10 * 4 * 4, 8, bias=False, weight_bit_width=wbits)
        self.bfc, self.rfc = nn.BatchNorm1d(8), _relu(abits, 2.0)

    def body(self, x, f):
        x = f(self.pool, self.branches(x, f))
        return f(self.rfc, f(self.bfc, f(self.fc, torch.flatten(x, 1))))


class PerChannelActNet(GraphNet):
    """conv -> BN -> QuantReLU with one scale per output channel (each drawn apart) -> conv + BN + QuantReLU: the
    second conv's input channels sit on 8 grids (a chain, not a graph; the same integer multipliers as a Concat)."""

    input_shape = (1, 3, 8, 8)

    def __init__(self, wbits=4, abits=4):
        super().__init__()
        self.inp = QuantIdentity(act_quant=PixelQuant)
        self.c1, self.b1 = _conv(3, 8, wbits), nn.BatchNorm2d(8)
        self.r1 = QuantReLU(act_quant=Uint8ActPerTensorFloatMaxInit, bit_width=abits, max_val=2.0,
                            scaling_per_output_channel=True, per_channel_broadcastable_shape=(1, 8, 1, 1),
                            scaling_stats_permute_dims=(1, 0, 2, 3))
        with torch.no_grad():
            for name, p in self.r1.named_parameters():
                if name.endswith("scaling_impl.value"):
                    p.mul_(0.6 + 0.8 * torch.rand(p.shape))
        self.c2, self.b2, self.r2 = _conv(8, 6, wbits), nn.BatchNorm2d(6), _relu(abits, 2.0)

    def body(self, x, f):
        x = f(self.r1, f(self.b1, f(self.c1, f(self.inp, x))))
        return f(self.r2, f(self.b2, f(self.c2, x)))


CHAIN_NETS = {"perchannel_act": PerChannelActNet}  # built by graph_net too; test_graph_nets checks them apart
GRAPH_NETS = {"residual": ResidualNet, "concat": ConcatNet, "upsample": UpsampleNet, "padpool": PadPoolNet,
              "concat_conv": ConcatConvNet, "concat_conv1x1": ConcatConv1x1Net, "concat_linear": ConcatLinearNet}


def graph_net(name: str, seed: int = 0, wbits: int = 4, abits: int = 4) -> GraphNet:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = {**GRAPH_NETS, **CHAIN_NETS}[name](wbits, abits)
    return model.calibrate(seed)


def _act_params(model, x):
    """Each activation quantizer's (scale, zero point, lo, hi) as Brevitas' float32 forward uses them."""
    quant, hooks = record_act_params(model)
    try:
        with torch.no_grad():
            y = model.eval()(torch.as_tensor(np.asarray(x, np.float32)))
    finally:
        for h in hooks:
            h.remove()
    return quant, y


def exact_codes(model: GraphNet, x) -> np.ndarray:
    """The output codes of ``model`` in float64 with Brevitas' float32 quantizer parameters (see module doc)."""
    quant, _ = _act_params(model, x)
    codes = []

    def f(m, v):
        if m in quant:
            s, z, lo, hi = quant[m]
            t = (torch.relu(v) if isinstance(m, QuantReLU) else v) / s + z
            q = torch.clamp(torch.round(t), lo, hi)  # half to even, as Quant
            codes.append(q)
            return (q - z) * s
        if isinstance(m, QuantConv2d):
            qw = m.quant_weight()
            w = qw.int().double() * qw.scale.double()
            return F.conv2d(v, w, None, m.stride, m.padding, m.dilation, m.groups)
        if isinstance(m, QuantLinear):
            qw = m.quant_weight()
            return F.linear(v, qw.int().double() * qw.scale.double())
        return copy.deepcopy(m).double()(v)

    with torch.no_grad():
        model.body(torch.as_tensor(np.asarray(x, np.float32)).double(), f)
    return codes[-1].numpy().astype(np.int64)


def brevitas_codes(model: GraphNet, x) -> np.ndarray:
    """The output codes of Brevitas' own float32 forward."""
    quant, y = _act_params(model, x)
    last = next(m for m in reversed(list(model.modules())) if m in quant)
    s, z, _, _ = quant[last]
    return to_codes(y.numpy(), s.numpy(), z.numpy())
