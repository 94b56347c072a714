"""LPYOLO (arXiv 2207.10482): TinyYOLOv3 at width x0.2 in Brevitas, 416x416x3 uint8 in, 13x13x18 out.

Released bit-width combinations (weights W, activations A; input and output are always 8-bit and the
first layer's weights 8-bit): 2W4A, 3W5A, 4W2A, 4W4A (the paper's main one), 6W4A, 8W3A.
"""

from __future__ import annotations

import torch
from brevitas.inject.enum import ScalingImplType
from brevitas.nn import QuantConv2d, QuantHardTanh, QuantIdentity, QuantReLU
from brevitas.quant import (
    Int8ActPerTensorFloatMinMaxInit,
    Uint8ActPerTensorFloat,
    Uint8ActPerTensorFloatMaxInit,
)
from torch import nn

INPUT_SHAPE = (1, 3, 416, 416)
# (out_channels, kernel, maxpool after) per conv layer, the detection head excluded.
BACKBONE = [(8, 3, True), (8, 3, True), (16, 3, True), (32, 3, True), (56, 3, True),
            (104, 3, False), (208, 3, False), (56, 1, False), (104, 3, False)]
HEAD_CHANNELS = 18  # 3 anchors x (4 box + 1 objectness + 1 class)
ACT_MAX = 6.0  # initial ReLU clip: the activation scale starts at ACT_MAX / (2**act_bits - 1)


class PixelQuant(Uint8ActPerTensorFloat):
    """Unsigned 8-bit input with the constant scale 1/255 and zero point 0: code == uint8 pixel.

    A float pixel k/255 in [0, 1] quantizes to code k exactly. The scale is a constant, not learned.
    """

    scaling_impl_type = ScalingImplType.CONST
    max_val = 1.0  # scale = max_val / (2**8 - 1)


def _relu(bits):
    return QuantReLU(act_quant=Uint8ActPerTensorFloatMaxInit, bit_width=bits, max_val=ACT_MAX)


def lpyolo(weight_bits=4, act_bits=4, in_bits=8, first_weight_bits=8, out_bits=8) -> nn.Module:
    """Build LPYOLO; ``model.input_shape`` is (1, 3, 416, 416) but any multiple of 32 works.

    forward() returns the dequantized hardtanh output as a plain tensor (what ``export_qonnx``
    needs); the integer codes are ``output_codes(model, x)``.
    """
    layers = [QuantIdentity(act_quant=PixelQuant, bit_width=in_bits)]
    cin = 3
    for i, (cout, k, pool) in enumerate(BACKBONE):
        wb = first_weight_bits if i == 0 else weight_bits
        layers += [QuantConv2d(cin, cout, k, padding=k // 2, bias=False, weight_bit_width=wb),
                   nn.BatchNorm2d(cout), _relu(act_bits)]
        if pool:
            layers.append(nn.MaxPool2d(2, 2))
        cin = cout
    # TinyYOLOv3's detection head: 1x1 conv with bias, no BN/ReLU, hardtanh in [-1, 1].
    layers += [QuantConv2d(cin, HEAD_CHANNELS, 1, bias=True, weight_bit_width=weight_bits),
               QuantHardTanh(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=out_bits,
                             min_val=-1.0, max_val=1.0)]
    model = nn.Sequential(*layers)
    model.input_shape = INPUT_SHAPE
    return model.eval()


def output_codes(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Integer output codes (int64, NCHW) of the final QuantHardTanh for the float input ``x``."""
    out = model[-1]
    seen = []
    handle = out.act_quant.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    qt = seen[-1]
    return torch.round(qt.value / qt.scale + qt.zero_point).to(torch.int64)
