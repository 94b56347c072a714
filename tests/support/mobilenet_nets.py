"""Brevitas test networks with depthwise convolutions and global average pooling (fpgagen/ir/kinds/vvu.py and
global_pool.py): a small MobileNet (3x3 stem, depthwise 3x3 + pointwise 1x1 blocks with BatchNorm and QuantReLU,
stride-2 blocks, global average pooling, QuantLinear) on 32x32 inputs, and two smaller nets that put the two kinds'
corner cases (5x5 and 1x1 depthwise kernels, odd sizes, a float-scaled signed input, a 3x3 = 9-pixel average,
ReduceMean) through the exporters. ``graph_nets.random_init`` draws their BatchNorms and activation scales, and
``graph_nets.graph_exact_codes`` evaluates them exactly (float64) for the bit-exactness checks."""

from __future__ import annotations

import graph_nets as G
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
from brevitas.quant import Uint8ActPerTensorFloatMaxInit
from nets import _relu
from torch import nn

from fpgagen.models.lpyolo import PixelQuant


def depthwise(channels, k=3, stride=1, wbits=4, abits=4, max_val=2.0):
    """Depthwise k x k conv (groups = channels), BatchNorm, QuantReLU."""
    return nn.Sequential(QuantConv2d(channels, channels, k, stride=stride, padding=k // 2, groups=channels,
                                     bias=False, weight_bit_width=wbits),
                         nn.BatchNorm2d(channels), _relu(abits, max_val))


def separable(cin, cout, stride=1):
    """MobileNet's block: depthwise 3x3 (stride 1 or 2) + pointwise 1x1, each with BatchNorm and QuantReLU."""
    return nn.Sequential(depthwise(cin, 3, stride), G._block(cin, cout, k=1))


class MobileNetTiny(nn.Module):
    """3x32x32 -> stem 3x3/2 (8) -> separable 8->16 -> /2 16->16 -> 16->32 -> /2 32->32 (4x4) -> global average
    pool -> 4-bit QuantIdentity -> QuantLinear 32->10 -> int8 QuantIdentity."""

    input_shape = (1, 3, 32, 32)

    def __init__(self):
        super().__init__()
        self.input_quant = QuantIdentity(act_quant=PixelQuant)
        self.stem = nn.Sequential(QuantConv2d(3, 8, 3, stride=2, padding=1, bias=False, weight_bit_width=4),
                                  nn.BatchNorm2d(8), _relu(4))
        self.blocks = nn.Sequential(separable(8, 16), separable(16, 16, 2), separable(16, 32),
                                    separable(32, 32, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.pool_quant = QuantIdentity(act_quant=Uint8ActPerTensorFloatMaxInit, bit_width=4, max_val=2.0)
        self.fc = QuantLinear(32, 10, bias=True, weight_bit_width=4)
        self.out = G._sqint8(4.0)

    def forward(self, x):
        x = self.pool_quant(self.pool(self.blocks(self.stem(self.input_quant(x)))))
        return self.out(self.fc(x.flatten(1)))


class DepthwiseCornersNet(nn.Module):
    """Signed float-scaled 8-bit input (7x9, odd) -> depthwise 5x5 stride 2 on it (no BN: the raw codes' view)
    -> QuantReLU -> depthwise 1x1 stride 1 (no window) + BN + QuantReLU -> pointwise 1x1 -> global average pool over
    3x4 = 12 pixels (not a power of two) -> int8 QuantIdentity."""

    input_shape = (1, 4, 7, 9)

    def __init__(self):
        super().__init__()
        self.input_quant = G._sqint8(1.5)
        self.dw5 = nn.Sequential(QuantConv2d(4, 4, 5, stride=2, padding=2, groups=4, bias=True, weight_bit_width=3),
                                 _relu(4, 3.0))
        self.dw1 = depthwise(4, k=1, wbits=5, abits=5)
        self.pw = G._block(4, 6, k=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out = G._sqint8(2.0)

    def forward(self, x):
        return self.out(self.pool(self.pw(self.dw1(self.dw5(self.input_quant(x))))))


class MeanNet(nn.Module):
    """3x8x8 pixels -> conv -> depthwise 3x3 -> x.mean((2, 3)) (ReduceMean) -> 4-bit QuantIdentity."""

    input_shape = (1, 3, 8, 8)

    def __init__(self):
        super().__init__()
        self.input_quant = QuantIdentity(act_quant=PixelQuant)
        self.body = nn.Sequential(G._block(3, 8), depthwise(8))
        self.out = QuantIdentity(bit_width=4)

    def forward(self, x):
        return self.out(self.body(self.input_quant(x)).mean((2, 3), keepdim=True))


NETS = {"mobilenet": MobileNetTiny, "depthwise_corners": DepthwiseCornersNet, "mean": MeanNet}


def mobilenet_net(name: str = "mobilenet", seed: int = 0) -> nn.Module:
    """The test network ``name`` (a key of NETS) with its BatchNorms and scales drawn from ``seed``."""
    return G.build_net(NETS[name], seed)
