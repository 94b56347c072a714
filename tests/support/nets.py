"""Small Brevitas test networks with random weights and random BatchNorm, plus helpers that give the
integer codes Brevitas itself computes (the ground truth for bit-exactness tests).

Every builder is deterministic in its seed and returns an eval-mode ``nn.Sequential`` carrying
``input_shape`` and the input quantizer's ``input_scale`` / ``input_signed`` / ``input_bits``, so
``net_input(model, seed)`` yields inputs that lie exactly on the input quantizer's grid.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from brevitas.inject.enum import ScalingImplType
from brevitas.nn import QuantConv2d, QuantHardTanh, QuantIdentity, QuantLinear, QuantReLU
from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer
from brevitas.proxy.runtime_quant import ActQuantProxyFromInjector
from brevitas.quant import (
    Int8ActPerTensorFloat,
    Int8ActPerTensorFloatMinMaxInit,
    Int8WeightPerChannelFloat,
    Int8WeightPerTensorFixedPoint,
    Uint8ActPerTensorFixedPoint,
    Uint8ActPerTensorFixedPointMaxInit,
    Uint8ActPerTensorFloatMaxInit,
)
from brevitas.quant.fixed_point import Int8ActPerTensorFixedPointMinMaxInit
from brevitas.quant_tensor import QuantTensor
from torch import nn
from torch.nn import functional as F

from fpgagen.models.lpyolo import PixelQuant, lpyolo

PIXEL_SCALE = 1 / 255


class SignedInputQuant(Int8ActPerTensorFloat):
    """Signed 8-bit input, constant scale 1/128: the float k/128 quantizes to code k in [-128, 127]."""

    scaling_impl_type = ScalingImplType.CONST
    min_val, max_val = -1.0, 1.0  # scale = 1 / 2**7


class Pow2InputQuant(Uint8ActPerTensorFixedPoint):
    """Unsigned 8-bit input, constant power-of-two scale 2**-8 (fixed-point pixels k/256)."""

    scaling_impl_type = ScalingImplType.CONST
    max_val = 1.0  # power-of-two scale = 2**ceil(log2(max_val)) / 2**8


# ----------------------------------------------------------------------------------------- inputs

def random_input(shape, seed=0, scale=PIXEL_SCALE, signed=False, bits=8) -> np.ndarray:
    """float32 array of exact grid values code*scale, codes uniform over the ``bits``-bit range."""
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    codes = np.random.default_rng(seed).integers(lo, hi + 1, size=tuple(shape))
    return (codes * scale).astype(np.float32)


def net_input(model, seed=0, shape=None) -> np.ndarray:
    """``random_input`` on ``model``'s input grid (defaults: uint8 pixels k/255, as in LPYOLO)."""
    return random_input(shape or model.input_shape, seed, getattr(model, "input_scale", PIXEL_SCALE),
                        getattr(model, "input_signed", False), getattr(model, "input_bits", 8))


def _finish(model, shape, scale=PIXEL_SCALE, signed=False, bits=8):
    model.input_shape, model.input_scale, model.input_signed, model.input_bits = shape, scale, signed, bits
    return model.eval()


# ---------------------------------------------------------------------------- random parameters

def randomize_batchnorm(norm, pre: torch.Tensor, g: torch.Generator, dims=None) -> None:
    """One BatchNorm, in place, from the batch ``pre`` it normalizes: running stats = the measured per-channel
    statistics perturbed at random, gamma = +-U(0.5, 1.5) with at least one negative, beta = U(-0.5, 0.5).
    ``dims``: the axes the statistics run over (default: all but the channel axis 1)."""
    dims = [0, *range(2, pre.ndim)] if dims is None else dims
    mean, std = pre.mean(dims), pre.std(dims).clamp_min(1e-3)
    c = mean.numel()
    norm.running_mean.copy_(mean + 0.3 * std * torch.randn(c, generator=g))
    norm.running_var.copy_((std * (0.7 + 0.7 * torch.rand(c, generator=g))) ** 2)
    sign = torch.where(torch.rand(c, generator=g) < 0.35, -1.0, 1.0)
    sign[torch.randint(c, (1,), generator=g)] = -1.0  # at least one negative gamma
    norm.weight.copy_(sign * (0.5 + torch.rand(c, generator=g)))
    norm.bias.copy_(torch.rand(c, generator=g) - 0.5)


def code_range(bits, signed, narrow) -> tuple[int, int]:
    """(lo, hi) of a quantizer's integer codes: ``bits`` wide, signed or not, narrow dropping the extreme code."""
    if signed:
        return -(2 ** (bits - 1)) + narrow, 2 ** (bits - 1) - 1
    return 0, 2**bits - 1 - narrow


def record_act_params(model) -> tuple[dict, list]:
    """Forward hooks that fill ``params[module]`` with each enabled activation quantizer's (scale, zero point, lo,
    hi) as Brevitas' float32 forward uses them; returns (params, hooks) - remove the hooks after the forward."""
    params, hooks = {}, []
    for m in model.modules():
        p = getattr(m, "act_quant", None)
        if isinstance(p, ActQuantProxyFromInjector) and p.is_quant_enabled:
            def hook(p, i, o, m=m):
                bits, narrow = int(o.bit_width), int(p.is_narrow_range)
                lo, hi = code_range(bits, o.signed, narrow)
                params[m] = (o.scale.double(), o.zero_point.double(), lo, hi)
            hooks.append(p.register_forward_hook(hook))
    return params, hooks


def randomize_bn(model, seed, out_std=None, shape=None):
    """Random BatchNorm on a Sequential (LPYOLO too), in place.

    gamma = +-U(0.5, 1.5) with some negative, beta = U(-0.5, 0.5), running stats = the measured
    pre-BN statistics perturbed at random. Anchoring the stats to the data keeps every activation
    quantizer's code range in use instead of saturated or all zero. ``out_std`` rescales the last
    weight layer (and draws its bias) so the output quantizer sees roughly that spread. ``shape``
    overrides ``model.input_shape`` for the calibration batch.
    """
    g = torch.Generator().manual_seed(seed + 1000)
    x = torch.from_numpy(net_input(model, seed + 2000, (16, *(shape or model.input_shape)[1:])))
    last = max(i for i, m in enumerate(model) if isinstance(m, QuantWeightBiasInputOutputLayer))
    with torch.no_grad():
        for i, m in enumerate(model):
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                randomize_batchnorm(m, x, g)
            elif i == last and out_std is not None:
                m.weight.mul_(out_std / m(x).std())
                if m.bias is not None:
                    m.bias.copy_(out_std * 0.2 * (torch.rand(m.bias.shape, generator=g) - 0.5))
            x = m(x)
    return model.eval()


def _pow2_weights(layer, bits, g):
    """Random integer weight codes times 2**-(bits-1), with the maximum code present, so that the
    fixed-point weight quantizer's scale is exactly 2**-(bits-1) and the codes come back unchanged."""
    m = 2 ** (bits - 1) - 1
    codes = torch.randint(-m, m + 1, layer.weight.shape, generator=g).float()
    codes.view(-1)[0] = m
    with torch.no_grad():
        layer.weight.copy_(codes * 2.0 ** -(bits - 1))


def _conv(cin, cout, wbits, k=3, stride=1, bias=False, wq=None):
    kw = {} if wq is None else {"weight_quant": wq}
    return QuantConv2d(cin, cout, k, stride=stride, padding=k // 2, bias=bias, weight_bit_width=wbits, **kw)


def _relu(bits, max_val=2.0):
    return QuantReLU(act_quant=Uint8ActPerTensorFloatMaxInit, bit_width=bits, max_val=max_val)


def _pow2_relu(bits, scale):
    # power-of-two act scale = 2**ceil(log2(max_val)) / 2**bits
    return QuantReLU(act_quant=Uint8ActPerTensorFixedPointMaxInit, bit_width=bits, max_val=scale * 2**bits)


# ------------------------------------------------------------------------------------- builders

def conv_net(weight_bits, act_bits, seed=0) -> nn.Module:
    """3x32x32 pixels -> 3 x (conv3x3, BN, QuantReLU[, maxpool]) -> conv3x3+bias -> 8-bit hardtanh."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(
            QuantIdentity(act_quant=PixelQuant),
            _conv(3, 8, weight_bits), nn.BatchNorm2d(8), _relu(act_bits), nn.MaxPool2d(2, 2),
            _conv(8, 16, weight_bits), nn.BatchNorm2d(16), _relu(act_bits), nn.MaxPool2d(2, 2),
            _conv(16, 16, weight_bits), nn.BatchNorm2d(16), _relu(act_bits),
            _conv(16, 6, weight_bits, bias=True),
            QuantHardTanh(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=8, min_val=-1.0, max_val=1.0),
        )
    return randomize_bn(_finish(model, (1, 3, 32, 32)), seed, out_std=0.5)


def pow2_net(seed=0) -> nn.Module:
    """Fixed-point (power-of-two) scales everywhere and no BatchNorm or bias, so y/s_out often lands
    exactly on k - 1/2: a rounding-tie stress test. Scale ratios s_in*s_w/s_out per layer: 2**-8,
    2**-1, 2**-5."""
    g = torch.Generator().manual_seed(seed)
    c1, c2, c3 = (_conv(ci, co, 4, wq=Int8WeightPerTensorFixedPoint) for ci, co in ((3, 8), (8, 8), (8, 4)))
    for c in (c1, c2, c3):
        _pow2_weights(c, 4, g)
    # s_in = 2**-8, s_w = 2**-3 everywhere
    model = nn.Sequential(
        QuantIdentity(act_quant=Pow2InputQuant),
        c1, _pow2_relu(4, 2.0**-3), nn.MaxPool2d(2, 2),  # 2**-11 -> 2**-3
        c2, _pow2_relu(8, 2.0**-5),  # 2**-6 -> 2**-5
        c3, QuantIdentity(act_quant=Int8ActPerTensorFixedPointMinMaxInit, bit_width=8,
                          min_val=-(2.0**-3) * 128, max_val=2.0**-3 * 128),  # 2**-8 -> 2**-3
    )
    return _finish(model, (1, 3, 32, 32), scale=2.0**-8)


def fc_net(seed=0) -> nn.Module:
    """(1, 64) signed input -> Linear 64-32-16 with BN1d + QuantReLU -> Linear 10 -> int8 QuantIdentity."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(
            QuantIdentity(act_quant=SignedInputQuant),
            QuantLinear(64, 32, bias=False, weight_bit_width=4), nn.BatchNorm1d(32), _relu(4),
            QuantLinear(32, 16, bias=False, weight_bit_width=4), nn.BatchNorm1d(16), _relu(4),
            QuantLinear(16, 10, bias=True, weight_bit_width=4),
            QuantIdentity(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=8, min_val=-2.0, max_val=2.0),
        )
    return randomize_bn(_finish(model, (1, 64), scale=1 / 128, signed=True), seed, out_std=0.7)


def conv1x1_stride2_net(seed=0) -> nn.Module:
    """Non-square 3x24x40 input, per-channel weight scales, a 1x1 conv and 3x3 stride-2 convs,
    ending in an 8-bit QuantReLU."""
    def conv(cin, cout, k=3, stride=1):
        return _conv(cin, cout, 4, k, stride, wq=Int8WeightPerChannelFloat)

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(
            QuantIdentity(act_quant=PixelQuant),
            conv(3, 8), nn.BatchNorm2d(8), _relu(4),
            conv(8, 16, stride=2), nn.BatchNorm2d(16), _relu(4),  # 24x40 -> 12x20
            conv(16, 8, k=1), nn.BatchNorm2d(8), _relu(4),
            conv(8, 4, stride=2), nn.BatchNorm2d(4), _relu(8, max_val=4.0),  # -> 6x10
        )
    return randomize_bn(_finish(model, (1, 3, 24, 40)), seed)


def acc_output_net(seed=0) -> nn.Module:
    """Ends in a QuantConv2d with no output quantizer: the network emits the raw accumulator times
    s_in*s_w (power-of-two scales, no bias, so the float output is exactly scale * integer)."""
    g = torch.Generator().manual_seed(seed)
    c1 = _conv(3, 8, 4, wq=Int8WeightPerTensorFixedPoint)
    c2 = _conv(8, 5, 4, wq=Int8WeightPerTensorFixedPoint)
    for c in (c1, c2):
        _pow2_weights(c, 4, g)
    model = nn.Sequential(QuantIdentity(act_quant=Pow2InputQuant), c1, _pow2_relu(4, 2.0**-3),
                          nn.MaxPool2d(2, 2), c2)
    return _finish(model, (1, 3, 16, 16), scale=2.0**-8)


def float_layer_net() -> nn.Module:
    """An unquantized nn.Conv2d (float weights) after the input quantizer: fpgagen must refuse it."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(QuantIdentity(act_quant=PixelQuant), nn.Conv2d(3, 4, 3, padding=1), _relu(4))
    return _finish(model, (1, 3, 16, 16))


def unsupported_op_net() -> nn.Module:
    """A Sigmoid (ONNX ``Sigmoid``) between a quantized conv and the output quantizer."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(QuantIdentity(act_quant=PixelQuant), _conv(3, 4, 4), nn.Sigmoid(),
                              QuantIdentity(act_quant=Uint8ActPerTensorFloatMaxInit, max_val=1.0))
    return _finish(model, (1, 3, 16, 16))


# ----------------------------------------------------------- what users write (issue 9, frontend)

def readme_net(seed=0) -> nn.Module:
    """The README's shape: 2 x (conv3x3, BN, QuantReLU, maxpool) on 3x16x16, Flatten of the still spatial
    4x4x10 map, QuantLinear 160 -> 10, int8 QuantIdentity."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(
            QuantIdentity(act_quant=PixelQuant),
            _conv(3, 8, 4), nn.BatchNorm2d(8), _relu(4), nn.MaxPool2d(2, 2),
            _conv(8, 10, 4), nn.BatchNorm2d(10), _relu(4), nn.MaxPool2d(2, 2),
            nn.Flatten(), QuantLinear(160, 10, bias=True, weight_bit_width=4),
            QuantIdentity(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=8, min_val=-2.0, max_val=2.0),
        )
    return randomize_bn(_finish(model, (1, 3, 16, 16)), seed, out_std=0.7)


def quant_tensor_net(seed=0) -> nn.Module:
    """Ends in a QuantIdentity with ``return_quant_tensor=True``: the legacy exporter writes 6 graph outputs."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(
            QuantIdentity(act_quant=PixelQuant),
            _conv(3, 8, 4), nn.BatchNorm2d(8), _relu(4), nn.MaxPool2d(2, 2),
            _conv(8, 6, 4, bias=True),
            QuantIdentity(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=8, min_val=-1.0, max_val=1.0,
                          return_quant_tensor=True),
        )
    return randomize_bn(_finish(model, (1, 3, 16, 16)), seed, out_std=0.5)


class NormInputQuant(Int8ActPerTensorFloat):
    """Signed 8-bit input quantizer with a constant scale 3/128, for normalized images in about [-3, 3]."""

    scaling_impl_type = ScalingImplType.CONST
    min_val, max_val = -3.0, 3.0


class Normalized(nn.Module):
    """A float pre-processing step before the input quantizer, as users write it: per-channel
    ``(x - mean) / std``, then ``* scale``. ``body`` is the quantized Sequential (its first module is the input
    quantizer), so ``exact_codes(body, pre(x))`` is the ground truth."""

    def __init__(self, body, mean, std, scale=1.0):
        super().__init__()
        self.body = body
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.scale = scale

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std * self.scale

    def forward(self, x):
        return self.body(self.pre(x))


def normalized_net(seed=0) -> nn.Module:
    """ImageNet-style normalization in float before the input QuantIdentity, then a small conv net."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        body = nn.Sequential(
            QuantIdentity(act_quant=NormInputQuant),
            _conv(3, 8, 4), nn.BatchNorm2d(8), _relu(4), nn.MaxPool2d(2, 2),
            _conv(8, 6, 4, bias=True),
            QuantIdentity(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=8, min_val=-1.0, max_val=1.0),
        )
    body = randomize_bn(_finish(body, (1, 3, 16, 16), scale=3 / 128, signed=True), seed, out_std=0.5)
    model = Normalized(body, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], scale=1.5)
    model.input_shape = (1, 3, 16, 16)
    return model.eval()


class ChannelAffine(nn.Module):
    """A float per-channel ``x * weight + bias`` after the last layer (like CNV's TensorNorm, per channel)."""

    def __init__(self, channels, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        sign = torch.where(torch.rand(channels, generator=g) < 0.5, -1.0, 1.0)
        self.weight = nn.Parameter((sign * (0.5 + torch.rand(channels, generator=g))).reshape(1, -1, 1, 1))
        self.bias = nn.Parameter((torch.rand(channels, generator=g) - 0.5).reshape(1, -1, 1, 1))

    def forward(self, x):
        return x * self.weight + self.bias


def float_affine_out_net(seed=0) -> nn.Module:
    """``acc_output_net`` (raw accumulator output, power-of-two scales: torch's float32 conv is exact) followed
    by a float per-channel affine that the host must apply in float32."""
    model = acc_output_net(seed)
    model.append(ChannelAffine(5, seed))
    return model.eval()


class NonNarrowFixedPointWeight(Int8WeightPerTensorFixedPoint):
    """Signed, non-narrow weights: codes reach the type's minimum (-8 at 4 bits)."""

    narrow_range = False


def _nonnarrow_weights(layer, bits, g):
    """Codes uniform over [-2**(bits-1), 2**(bits-1) - 1], both ends present, times 2**-(bits-1), so the
    fixed-point quantizer keeps them as they are."""
    m = 2 ** (bits - 1)
    codes = torch.randint(-m, m, layer.weight.shape, generator=g).float()
    codes.view(-1)[:2] = torch.tensor([-m, m - 1])
    with torch.no_grad():
        layer.weight.copy_(codes * 2.0 ** -(bits - 1))


def nonnarrow_negative_scale_net(seed=0) -> nn.Module:
    """Signed non-narrow 4-bit weights ([-8, 7]) under BatchNorms with negative gammas: the lowering negates
    those rows, and -(-8) = +8 does not fit INT4."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        c1 = _conv(3, 8, 4, wq=NonNarrowFixedPointWeight)
        c2 = _conv(8, 6, 4, wq=NonNarrowFixedPointWeight)
        for c in (c1, c2):
            _nonnarrow_weights(c, 4, g)
        model = nn.Sequential(
            QuantIdentity(act_quant=PixelQuant),
            c1, nn.BatchNorm2d(8), _relu(4), nn.MaxPool2d(2, 2),
            c2, nn.BatchNorm2d(6),
            QuantIdentity(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=8, min_val=-2.0, max_val=2.0),
        )
    return randomize_bn(_finish(model, (1, 3, 16, 16)), seed)


def standalone_threshold_net(seed=0) -> nn.Module:
    """Quantizers no MVAU can absorb: after a MaxPool, a QuantIdentity with another scale and bit width, and a
    BatchNorm (negative gammas) followed by a QuantReLU; both become standalone Threshold layers."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(
            QuantIdentity(act_quant=PixelQuant),
            _conv(3, 8, 4), nn.BatchNorm2d(8), _relu(6, max_val=3.0), nn.MaxPool2d(2, 2),
            QuantIdentity(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=4, min_val=-1.0, max_val=1.0),
            _conv(8, 8, 4), nn.BatchNorm2d(8), _relu(4), nn.MaxPool2d(2, 2),
            nn.BatchNorm2d(8), _relu(3),
            _conv(8, 6, 4, bias=True),
            QuantIdentity(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=8, min_val=-2.0, max_val=2.0),
        )
    return randomize_bn(_finish(model, (1, 3, 16, 16)), seed, out_std=0.7)


# ------------------------------------------------- FINN's example networks (brevitas_examples.bnn_pynq)

BNN_PYNQ = tuple(f"{arch}_{bits}" for arch in ("tfc", "sfc", "cnv") for bits in ("1w1a", "1w2a", "2w2a"))


def bnn_pynq_net(name: str, seed=0) -> nn.Module:
    """``brevitas_examples.bnn_pynq`` CNV / TFC / SFC at random init (no download), with random BatchNorm and
    TensorNorm statistics (negative gammas included) anchored to the data, so the binary activations are not
    all one sign. Sets ``input_shape``; inputs are float images in [0, 1) (the nets compute 2x - 1)."""
    from brevitas_examples.bnn_pynq.models import model_with_cfg
    from brevitas_examples.bnn_pynq.models.tensor_norm import TensorNorm

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model, _ = model_with_cfg(name, pretrained=False)
    model.input_shape = (1, 3, 32, 32) if name.startswith("cnv") else (1, 1, 28, 28)
    model.eval()
    g = torch.Generator().manual_seed(seed + 1000)
    x = torch.rand((16, *model.input_shape[1:]), generator=g)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d | TensorNorm)]
    with torch.no_grad():
        for norm in norms:  # in forward order: each one calibrated on the output of the ones before
            seen = []
            hook = norm.register_forward_hook(lambda m, i, o, seen=seen: seen.append(i[0]))
            model(x)
            hook.remove()
            pre = seen[0]
            # TensorNorm has one scale for the whole tensor: its statistics run over every axis
            randomize_batchnorm(norm, pre, g, list(range(pre.ndim)) if isinstance(norm, TensorNorm) else None)
    return model


def bnn_pynq_input(model, frames=2, seed=0) -> np.ndarray:
    """Float images in [0, 1), off any quantization grid."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand((frames, *model.input_shape[1:]), generator=g).numpy()


def bnn_pynq_exact(model, x) -> tuple[np.ndarray, np.ndarray]:
    """(exact, brevitas): the last QuantLinear's output (before TensorNorm) as integers, (1) replayed in float64
    with Brevitas' own float32 quantizer parameters and integer weights, after the same float32 ``2x - 1``
    pre-processing as the model, and (2) from Brevitas' float32 forward. Both are integer-valued because these
    nets' last layer has unit input and weight scales; asserted."""
    from brevitas.nn import QuantConv2d as _QConv

    quant, hooks, last_out = {}, [], []
    for m in model.modules():
        p = getattr(m, "act_quant", None)
        if isinstance(p, ActQuantProxyFromInjector) and p.is_quant_enabled:
            def hook(p, i, o, m=m):
                bits, narrow = int(o.bit_width), int(p.is_narrow_range)
                lo, hi = code_range(bits, o.signed, narrow)
                quant[m] = (o.scale.double(), o.zero_point.double(), lo, hi, bits == 1 and bool(o.signed))
            hooks.append(p.register_forward_hook(hook))
    linears = [m for m in model.modules() if isinstance(m, QuantLinear)]
    hooks.append(linears[-1].register_forward_hook(lambda m, i, o: last_out.append(o)))
    x = torch.as_tensor(np.asarray(x, np.float32))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        if hasattr(model, "conv_features"):
            v = 2.0 * x - torch.tensor([1.0])
            mods = [*model.conv_features, nn.Flatten(), *list(model.linear_features)[:-1]]
        else:
            v = 2.0 * x.view(x.shape[0], -1) - torch.tensor([1.0])
            mods = list(model.features)[:-1]
        v = v.double()
        for m in mods:
            if m in quant:
                s, z, lo, hi, binary = quant[m]
                if binary:  # BinaryQuant: sign with sign(0) = +1
                    v = torch.where(v >= 0, 1.0, -1.0).double() * s
                else:
                    v = (torch.clamp(torch.round(v / s + z), lo, hi) - z) * s
            elif isinstance(m, QuantWeightBiasInputOutputLayer):
                qw = m.quant_weight()
                w = qw.int().double() * qw.scale.double()
                v = F.linear(v, w) if isinstance(m, QuantLinear) else F.conv2d(v, w, None, m.stride, m.padding)
                assert isinstance(m, QuantLinear | _QConv) and m.bias is None
            else:  # BatchNorm, MaxPool, Dropout, Flatten: float64 copies
                v = copy.deepcopy(m).double()(v)
    out = []
    for y in (v.numpy(), np.asarray(last_out[0].value if hasattr(last_out[0], "value") else last_out[0],
                                     np.float64)):
        assert np.array_equal(y, np.round(y)), "the last layer's output is not integer-valued"
        out.append(np.round(y).astype(np.int64))
    return out[0], out[1]


# ----------------------------------------------------------------------------- brevitas codes

def _trace(model, x):
    """Run the torch forward; return the output and, in call order, ("act", IntQuantTensor) for every
    activation quantizer and ("layer", module) for every quantized conv/linear."""
    events, hooks = [], []
    for m in model.modules():
        if isinstance(m, ActQuantProxyFromInjector):
            hooks.append(m.register_forward_hook(
                lambda m, i, o: events.append(("act", o)) if isinstance(o, QuantTensor) else None))
        elif isinstance(m, QuantWeightBiasInputOutputLayer):
            hooks.append(m.register_forward_hook(lambda m, i, o: events.append(("layer", m))))
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    try:
        with torch.no_grad():
            y = model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return (y.value if isinstance(y, QuantTensor) else y), events


def output_quant(model, x) -> tuple[np.ndarray, np.ndarray]:
    """(scale, zero_point) that turn the model's float output into integer codes, broadcastable to
    the output. For an accumulator output (last layer has no output quantizer): (s_in*s_w, 0)."""
    y, events = _trace(model, x)
    kind, last = events[-1]
    if kind == "act":
        assert torch.equal(last.value, y), "model output is not its last activation quantizer's"
        return last.scale.detach().numpy(), last.zero_point.detach().numpy()
    assert last.bias is None, "accumulator outputs are only exact without a bias"
    s_in = next(e for k, e in reversed(events) if k == "act").scale
    s_w = last.quant_weight().scale
    if s_w.numel() > 1:  # per-channel: channels are dim 1 of the output
        s_w = s_w.reshape(1, -1, *[1] * (y.ndim - 2))
    return (s_in * s_w).detach().numpy(), np.zeros((), np.float32)


def to_codes(y, scale, zero_point) -> np.ndarray:
    """round(y/scale + zero_point) as int64, asserting y really sits on the quantization grid."""
    t = np.asarray(y, np.float64) / np.asarray(scale, np.float64) + np.asarray(zero_point, np.float64)
    codes = np.round(t)
    assert np.abs(t - codes).max(initial=0) < 1e-3, "output is not on the quantizer grid"
    return codes.astype(np.int64)


def brevitas_codes(model, x) -> np.ndarray:
    """Integer output codes of Brevitas' torch forward on float32 ``x`` (output layout: NCHW or NC).
    For an accumulator-output net, the integer accumulator."""
    y, _ = _trace(model, x)
    return to_codes(y.numpy(), *output_quant(model, x))


def exact_codes(model: nn.Sequential, x, all_layers=False):
    """``brevitas_codes`` in (near-)exact arithmetic: the Sequential is re-run in float64 with
    Brevitas' own float32 scales, zero points, integer weights, biases and BatchNorm parameters.
    This is what integer thresholds implement, so a compiler must match it bit for bit; it differs
    from ``brevitas_codes`` only where Brevitas' float32 forward lands within rounding error of a
    boundary k - 1/2 (see ``near_boundary``). ``all_layers=True`` returns (codes, t = y/s + z) of
    every activation quantizer in call order instead (compare with ``act_trace``)."""
    quant, hooks = record_act_params(model)  # act module -> (scale, zero point, lo, hi)
    try:
        y32, _ = _trace(model, x)
    finally:
        for h in hooks:
            h.remove()
    v = torch.as_tensor(np.asarray(x, dtype=np.float32)).double()
    codes = acc_scale = None
    layers = []
    with torch.no_grad():
        for m in model:
            if m in quant:
                s, z, lo, hi = quant[m]
                t = (torch.relu(v) if isinstance(m, QuantReLU) else v) / s + z  # hardtanh: the clip below
                codes = torch.clamp(torch.round(t), lo, hi)  # torch.round is half-to-even, as Quant
                v, acc_scale = (codes - z) * s, s
                layers.append((codes.numpy().astype(np.int64), t.numpy()))
            elif isinstance(m, QuantWeightBiasInputOutputLayer):
                assert not m.bias_quant.is_quant_enabled, "quantized biases are not modelled"
                qw = m.quant_weight()
                w = qw.int().double() * qw.scale.double()
                b = None if m.bias is None else m.bias.double()
                v = F.linear(v, w, b) if isinstance(m, QuantLinear) else F.conv2d(
                    v, w, b, m.stride, m.padding, m.dilation, m.groups)
                acc_scale, codes = acc_scale * qw.scale.double().reshape(1, -1, *[1] * (v.ndim - 2)), None
            else:  # BatchNorm, MaxPool, float layers: float64 copies of the float32 module
                v, codes = copy.deepcopy(m).double()(v), None
    if all_layers:
        return layers
    if codes is not None:
        out = layers[-1][0]
    else:
        assert isinstance(model[-1], QuantWeightBiasInputOutputLayer), "the output is not quantized"
        out = to_codes(v.numpy(), acc_scale.numpy(), 0)  # accumulator output
    assert out.shape == tuple(y32.shape)
    return out


def act_trace(model, x) -> list[tuple[np.ndarray, np.ndarray, int, int]]:
    """Per activation quantizer, in call order: (codes int64, t, lo, hi) where t = y/s + z is the
    float32 pre-rounding value exactly as Brevitas computes it and [lo, hi] the code range."""
    events = []
    hooks = [m.register_forward_hook(lambda m, i, o: events.append((i[0], o)))
             for m in model.modules() if isinstance(m, ActQuantProxyFromInjector)]
    try:
        with torch.no_grad():
            model.eval()(torch.as_tensor(np.asarray(x, dtype=np.float32)))
    finally:
        for h in hooks:
            h.remove()
    out = []
    for pre, q in events:
        if isinstance(q, QuantTensor):
            t = (pre / q.scale + q.zero_point).numpy()
            lo = -(2 ** (int(q.bit_width) - 1)) if q.signed else 0
            codes = np.round(q.value.numpy() / q.scale.numpy() + q.zero_point.numpy()).astype(np.int64)
            out.append((codes, t, lo, lo + 2 ** int(q.bit_width) - 1))
    return out


def near_boundary(t, lo, hi, tol=1e-3) -> np.ndarray:
    """Mask of values within ``tol`` code units of a rounding boundary k - 1/2 inside (lo, hi), exact
    ties included. Only there can a float32 forward (Brevitas, onnxruntime) and exact integer
    arithmetic legitimately disagree: float32 error moves y/s by up to a few 1e-5 code units (more
    where a long dot product cancels), so the default tolerance keeps a wide margin."""
    d = np.abs(t.astype(np.float64) - np.floor(t) - 0.5)
    return (d <= tol) & (t > lo) & (t < hi)


def float32_boundary_flips(model, x, tol=1e-3) -> int:
    """0 when ``exact_codes`` and Brevitas agree in every layer. Otherwise asserts that the first
    differing layer differs only by one code, only where Brevitas' float32 y/s lies within ``tol`` of
    k - 1/2 and the exact y/s is on the other side of it, and returns how many codes flip there
    (everything downstream then legitimately differs too)."""
    for (ce, te), (cb, tb, lo, hi) in zip(exact_codes(model, x, all_layers=True), act_trace(model, x),
                                          strict=True):
        differ = ce != cb
        if differ.any():
            assert np.all(np.abs(ce - cb)[differ] == 1), "codes differ by more than one step"
            assert np.all(near_boundary(tb, lo, hi, tol)[differ]), "a flip away from any boundary"
            k = np.maximum(ce, cb)[differ] - 0.5  # the boundary between the two codes
            assert np.all((te[differ] - k) * (tb[differ] - k) <= 0), "exact and float32 on one side"
            return int(differ.sum())
    return 0


def count_ties(model, x) -> int:
    """How many pre-rounding values y/s + z land exactly on k - 1/2 inside the code range (where
    round-half-to-even decides), summed over all activation quantizers."""
    return sum(int(near_boundary(t, lo, hi, tol=0).sum()) for _, t, lo, hi in act_trace(model, x))


def tiny_net(weight_bits=4, act_bits=4, seed=0) -> nn.Module:
    """3x8x8 pixels -> conv3x3 (4 channels), BN, QuantReLU: builds and C-simulates in about a second, for the
    fuzz, race and interrupt tests."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(QuantIdentity(act_quant=PixelQuant), _conv(3, 4, weight_bits), nn.BatchNorm2d(4),
                              _relu(act_bits))
    return randomize_bn(_finish(model, (1, 3, 8, 8)), seed)


def valid_padding_net(seed=12):
    """Valid (zero) padding, a rectangular kernel, stride 2 leaving trailing rows/columns that no window uses,
    and floor-mode pooling over odd sizes, on a non-square 3x23x30 image."""
    from brevitas.nn import QuantConv2d, QuantHardTanh, QuantIdentity
    from brevitas.quant import Int8ActPerTensorFloatMinMaxInit

    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        QuantIdentity(act_quant=PixelQuant),
        QuantConv2d(3, 8, (3, 5), padding=0, bias=False, weight_bit_width=4),
        torch.nn.BatchNorm2d(8), _relu(4),
        torch.nn.MaxPool2d(2, 2),  # 21x26 -> 10x13, the last row is dropped
        QuantConv2d(8, 6, 3, stride=2, padding=0, bias=True, weight_bit_width=4),  # 10x13 -> 4x6
        QuantHardTanh(act_quant=Int8ActPerTensorFloatMinMaxInit, min_val=-1.0, max_val=1.0, bit_width=8))
    _finish(model, (1, 3, 23, 30))
    return randomize_bn(model, seed, out_std=0.5)


def random_lpyolo(wbits, abits, seed):
    torch.manual_seed(seed)
    model = lpyolo(weight_bits=wbits, act_bits=abits)
    # BatchNorm statistics from the data, perturbed, with negative gammas; a head spread that uses the codes
    return randomize_bn(model, seed, out_std=0.5, shape=(1, 3, 64, 64))
