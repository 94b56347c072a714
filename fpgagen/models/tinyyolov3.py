"""TinyYOLOv3 with both detection heads in Brevitas: 416x416x3 uint8 in, a 13x13 and a 26x26 head out.

The layers follow darknet's yolov3-tiny.cfg, every conv 3x3 stride 1 same padding with BatchNorm and QuantReLU
unless noted (channel counts at width 1.0):

    conv 16 -> mp 2/2 -> conv 32 -> mp -> conv 64 -> mp -> conv 128 -> mp -> conv 256 (26x26: the route)
    -> mp -> conv 512 -> ZeroPad2d((0,1,0,1)) -> mp 2/1 (13x13 stays 13x13) -> conv 1024 -> conv 1x1 256 (route)
    head 13: conv 512 -> conv 1x1 + bias -> QuantHardTanh
    head 26: route -> conv 1x1 128 -> nearest Upsample x2 -> Concat(., the 26x26 route) -> conv 256
             -> conv 1x1 + bias -> QuantHardTanh

Channel rule: ``width * c`` rounded UP to a multiple of 8 (at least 8), the rule that gives LPYOLO's widths at
0.2 (16 -> 8, 128 -> 32, 256 -> 56, 512 -> 104, 1024 -> 208). The head has A * (5 + C) channels for
``num_anchors_classes = (A, C)``. The two Concat branches come from two different QuantReLUs, so once trained
they carry different scales (Brevitas does not unify them); the head convs see the float concat.

The input quantizer is LPYOLO's ``PixelQuant``: the integer code is the uint8 pixel. The first conv has
``first_weight_bits`` (8, as LPYOLO) weights; every head ends in an ``output_bits`` QuantHardTanh in [-1, 1]
with no BatchNorm and no ReLU.
"""

from __future__ import annotations

import math

import torch
from brevitas.nn import QuantConv2d, QuantHardTanh, QuantIdentity, QuantReLU
from brevitas.quant import Int8ActPerTensorFloatMinMaxInit, Uint8ActPerTensorFloatMaxInit
from torch import nn

from fpgagen.models.lpyolo import ACT_MAX, PixelQuant

INPUT_SHAPE = (1, 3, 416, 416)


def scaled_channels(channels: int, width: float) -> int:
    """``channels * width`` rounded up to a multiple of 8, at least 8."""
    return max(8, 8 * math.ceil(channels * width / 8 - 1e-9))


def _conv_bn_relu(cin, cout, k, weight_bits, act_bits):
    return nn.Sequential(
        QuantConv2d(cin, cout, k, padding=k // 2, bias=False, weight_bit_width=weight_bits),
        nn.BatchNorm2d(cout),
        QuantReLU(act_quant=Uint8ActPerTensorFloatMaxInit, bit_width=act_bits, max_val=ACT_MAX),
    )


def _head(cin, cout, weight_bits, output_bits):
    return nn.Sequential(
        QuantConv2d(cin, cout, 1, bias=True, weight_bit_width=weight_bits),
        QuantHardTanh(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=output_bits, min_val=-1.0, max_val=1.0),
    )


class TinyYOLOv3(nn.Module):
    """forward(x) returns ``(head13, head26)``, the dequantized hardtanh outputs as plain tensors (what
    ``export_qonnx`` needs); ``output_codes(model, x)`` gives their integer codes."""

    def __init__(self, width=1.0, weight_bits=4, act_bits=4, num_anchors_classes=(3, 1), input_bits=8,
                 output_bits=8, first_weight_bits=8):
        super().__init__()
        anchors, classes = num_anchors_classes
        head_channels = anchors * (5 + classes)
        c = {n: scaled_channels(n, width) for n in (16, 32, 64, 128, 256, 512, 1024)}

        def block(cin, cout, k=3, wb=weight_bits):
            return _conv_bn_relu(cin, cout, k, wb, act_bits)

        self.input_quant = QuantIdentity(act_quant=PixelQuant, bit_width=input_bits)
        self.stem = nn.Sequential(  # 416 -> 26
            block(3, c[16], wb=first_weight_bits), nn.MaxPool2d(2, 2),
            block(c[16], c[32]), nn.MaxPool2d(2, 2),
            block(c[32], c[64]), nn.MaxPool2d(2, 2),
            block(c[64], c[128]), nn.MaxPool2d(2, 2),
            block(c[128], c[256]),  # the 26x26 route
        )
        self.trunk = nn.Sequential(  # 26 -> 13
            nn.MaxPool2d(2, 2),
            block(c[256], c[512]),
            nn.ZeroPad2d((0, 1, 0, 1)), nn.MaxPool2d(2, 1),  # stride-1 pool keeps 13x13
            block(c[512], c[1024]),
            block(c[1024], c[256], k=1),  # the 13x13 route
        )
        self.head13 = nn.Sequential(block(c[256], c[512]), _head(c[512], head_channels, weight_bits, output_bits))
        self.lateral = nn.Sequential(block(c[256], c[128], k=1), nn.Upsample(scale_factor=2, mode="nearest"))
        self.head26 = nn.Sequential(block(c[128] + c[256], c[256]),
                                    _head(c[256], head_channels, weight_bits, output_bits))
        self.input_shape = INPUT_SHAPE
        self.head_channels = head_channels

    def forward(self, x):
        x = self.input_quant(x)
        route26 = self.stem(x)
        route13 = self.trunk(route26)
        out13 = self.head13(route13)
        out26 = self.head26(torch.cat([self.lateral(route13), route26], dim=1))
        return out13, out26

    def output_quants(self):
        """The QuantHardTanh of each output, in output order."""
        return self.head13[-1][-1], self.head26[-1][-1]


def tinyyolov3(width=1.0, weight_bits=4, act_bits=4, num_anchors_classes=(3, 1), input_bits=8, output_bits=8,
               first_weight_bits=8) -> TinyYOLOv3:
    """Build the two-head TinyYOLOv3 in eval mode; ``model.input_shape`` is (1, 3, 416, 416), but any multiple
    of 32 works (the heads are input/32 and input/16)."""
    return TinyYOLOv3(width, weight_bits, act_bits, num_anchors_classes, input_bits, output_bits,
                      first_weight_bits).eval()


def output_codes(model: TinyYOLOv3, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer codes (int64, NCHW) of (head13, head26) for the float input ``x``."""
    seen = {}
    quants = model.output_quants()
    handles = [q.act_quant.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, o))
               for k, q in enumerate(quants)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return tuple(torch.round(seen[k].value / seen[k].scale + seen[k].zero_point).to(torch.int64)
                 for k in range(len(quants)))
