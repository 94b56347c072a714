"""Small Brevitas test networks that are graphs, not chains (issue 9): a residual add (own scales or one shared
quantizer), a concat of branches at different scales requantized by a QuantIdentity, nearest upsampling, a zero pad
before a stride-1 2x2 maxpool, two outputs, Concats read directly by a conv / 1x1 conv / fully connected layer (its
input channels on two grids), a per-channel QuantReLU before a conv, and a small TinyYOLOv3. Each builds in well
under a second on inputs of 8x8 to 16x16 (TinyYOLOv3: 3x64x64); ``graph_net(name, seed)`` builds one by name.

``random_init(model, seed)`` draws random BatchNorm statistics (negative gammas included) anchored to the data, and
random activation scales, so that branches that meet carry different scales, as they do after training.
``graph_exact_codes(model, x)`` replays the network in float64 with Brevitas' own quantizer parameters and integer
weights (``nets.exact_codes`` for graphs: what integer thresholds implement) and returns the integer codes of every
output as a tuple; ``graph_brevitas_codes`` gives the codes of Brevitas' float32 forward and
``graph_boundary_flips`` proves any disagreement between the two is a float32 rounding boundary, layer by layer, as
``nets.float32_boundary_flips`` does for chains (``onnx_boundary_flips`` the same for an executed QONNX graph).
A single-output caller unpacks the tuple: ``(codes,) = graph_exact_codes(model, x)``.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from brevitas.nn import QuantConv2d, QuantHardTanh, QuantIdentity, QuantLinear, QuantReLU
from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer
from brevitas.proxy.runtime_quant import ActQuantProxyFromInjector
from brevitas.quant import Int8ActPerTensorFloatMinMaxInit, Uint8ActPerTensorFloatMaxInit
from brevitas.quant_tensor import QuantTensor
from nets import _conv, _relu, code_range, near_boundary, net_input, randomize_batchnorm
from torch import nn

from fpgagen.models.lpyolo import PixelQuant
from fpgagen.models.tinyyolov3 import tinyyolov3


def _hardtanh(bits=8):
    return QuantHardTanh(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=bits, min_val=-1.0, max_val=1.0)


def _sqint8(max_val=2.0):
    return QuantIdentity(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=8, min_val=-max_val, max_val=max_val)


def _block(cin, cout, k=3, wbits=4, abits=4, max_val=2.0):
    return nn.Sequential(_conv(cin, cout, wbits, k=k), nn.BatchNorm2d(cout), _relu(abits, max_val))


# ------------------------------------------------------------------------------------------ networks

class ResidualNet(nn.Module):
    """stem conv (the skip) -> conv -> conv -> quantized branch; Add(branch, skip) -> int8 QuantIdentity ->
    1x1 conv + hardtanh. ``shared=True``: the branch's last quantizer is the skip's own act_quant proxy (one
    scale: an integer add); otherwise each has its own scale (the add must requantize)."""

    def __init__(self, shared=False):
        super().__init__()
        self.input_quant = QuantIdentity(act_quant=PixelQuant)
        self.stem = _block(3, 8)
        self.conv1 = _block(8, 8)
        self.conv2 = nn.Sequential(_conv(8, 8, 4), nn.BatchNorm2d(8))
        skip_relu = self.stem[-1]
        with warnings.catch_warnings():  # brevitas warns about its own defaults when handed a proxy
            warnings.simplefilter("ignore", UserWarning)
            self.branch_quant = QuantReLU(act_quant=skip_relu.act_quant) if shared else _relu(4, max_val=3.0)
        self.add_quant = _sqint8(3.0)
        self.out = nn.Sequential(_conv(8, 6, 4, k=1, bias=True), _hardtanh())

    def forward(self, x):
        skip = self.stem(self.input_quant(x))
        branch = self.branch_quant(self.conv2(self.conv1(skip)))
        return self.out(self.add_quant(branch + skip))


class ConcatNet(nn.Module):
    """Two branches from one stem meet in a channel Concat at 8x8: conv3x3 -> maxpool (4-bit, its own scale)
    and maxpool -> conv1x1 (6-bit, another scale); a 4-bit QuantIdentity requantizes the Concat onto one grid;
    then conv -> hardtanh."""

    def __init__(self):
        super().__init__()
        self.input_quant = QuantIdentity(act_quant=PixelQuant)
        self.stem = _block(3, 8)
        self.left = nn.Sequential(_block(8, 8), nn.MaxPool2d(2, 2))
        self.right = nn.Sequential(nn.MaxPool2d(2, 2), _block(8, 6, k=1, abits=6))
        self.cat_quant = QuantIdentity(act_quant=Uint8ActPerTensorFloatMaxInit, bit_width=4, max_val=2.1)
        self.out = nn.Sequential(_conv(14, 6, 4, bias=True), _hardtanh())

    def forward(self, x):
        s = self.stem(self.input_quant(x))
        return self.out(self.cat_quant(torch.cat([self.left(s), self.right(s)], dim=1)))


class UpsampleNet(nn.Module):
    """conv -> maxpool -> conv -> nearest Upsample x2 (8x8 -> 16x16) -> conv -> hardtanh."""

    def __init__(self):
        super().__init__()
        self.input_quant = QuantIdentity(act_quant=PixelQuant)
        self.body = nn.Sequential(_block(3, 8), nn.MaxPool2d(2, 2), _block(8, 8, k=1),
                                  nn.Upsample(scale_factor=2, mode="nearest"),
                                  _conv(8, 6, 4, bias=True), _hardtanh())

    def forward(self, x):
        return self.body(self.input_quant(x))


class PadPoolNet(nn.Module):
    """TinyYOLOv3's 13x13 trick: conv -> maxpool 2/2 -> conv -> ZeroPad2d((0,1,0,1)) -> MaxPool2d(2, 1) (8x8
    stays 8x8) -> conv -> hardtanh."""

    def __init__(self):
        super().__init__()
        self.input_quant = QuantIdentity(act_quant=PixelQuant)
        self.body = nn.Sequential(_block(3, 8), nn.MaxPool2d(2, 2), _block(8, 8),
                                  nn.ZeroPad2d((0, 1, 0, 1)), nn.MaxPool2d(2, 1),
                                  _conv(8, 6, 4, bias=True), _hardtanh())

    def forward(self, x):
        return self.body(self.input_quant(x))


class TwoHeadNet(nn.Module):
    """One stem, two outputs: a 16x16 hardtanh head and an 8x8 int8 head behind a maxpool and a conv."""

    def __init__(self):
        super().__init__()
        self.input_quant = QuantIdentity(act_quant=PixelQuant)
        self.stem = _block(3, 8)
        self.head_a = nn.Sequential(_conv(8, 4, 4, k=1, bias=True), _hardtanh())
        self.head_b = nn.Sequential(nn.MaxPool2d(2, 2), _block(8, 8), _conv(8, 5, 4, bias=True), _sqint8(2.0))

    def forward(self, x):
        s = self.stem(self.input_quant(x))
        return self.head_a(s), self.head_b(s)


class ConcatConvNet(nn.Module):
    """conv -> fork -> (conv -> QuantReLU ``ra``, 4-bit; maxpool -> conv 1x1 -> QuantReLU ``rb``, 5-bit, another
    scale -> nearest upsample x2) -> Concat straight into a conv (``kernel``) + BN + QuantReLU, as darknet's
    TinyYOLOv3 head: the conv's input channels sit on two grids (no quantizer after the Concat)."""

    input_shape = (1, 3, 8, 8)
    kernel = 3

    def __init__(self):
        super().__init__()
        self.input_quant = QuantIdentity(act_quant=PixelQuant)
        self.stem = _block(3, 8)
        self.ca, self.ba, self.ra = _conv(8, 4, 4), nn.BatchNorm2d(4), _relu(4, 1.0)
        self.pool = nn.MaxPool2d(2)
        self.cb, self.bb, self.rb = _conv(8, 6, 4, k=1), nn.BatchNorm2d(6), _relu(5, 3.0)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.out = _block(10, 6, k=self.kernel)

    def branches(self, x):
        s = self.stem(self.input_quant(x))
        a = self.ra(self.ba(self.ca(s)))
        b = self.up(self.rb(self.bb(self.cb(self.pool(s)))))
        return torch.cat([a, b], 1)

    def forward(self, x):
        return self.out(self.branches(x))


class ConcatConv1x1Net(ConcatConvNet):
    """ConcatConvNet with a 1x1 conv after the concat (no sliding window: the MVAU reads the concat directly)."""

    kernel = 1


class ConcatLinearNet(ConcatConvNet):
    """ConcatConvNet's concat, max-pooled to 4x4, flattened into a QuantLinear + BN + QuantReLU: the fully connected
    layer's inputs sit on two grids in torch's (C, H, W) order."""

    def __init__(self):
        super().__init__()
        del self.out
        self.fc = QuantLinear(10 * 4 * 4, 8, bias=False, weight_bit_width=4)
        self.bfc, self.rfc = nn.BatchNorm1d(8), _relu(4, 2.0)

    def forward(self, x):
        return self.rfc(self.bfc(self.fc(torch.flatten(self.pool(self.branches(x)), 1))))


class PerChannelActNet(nn.Module):
    """conv -> BN -> QuantReLU with one scale per output channel (random_init draws each apart) -> conv + BN +
    QuantReLU: the second conv's input channels sit on 8 grids (a chain, not a graph; the same integer multipliers
    as a Concat)."""

    input_shape = (1, 3, 8, 8)

    def __init__(self):
        super().__init__()
        relu = QuantReLU(act_quant=Uint8ActPerTensorFloatMaxInit, bit_width=4, max_val=2.0,
                         scaling_per_output_channel=True, per_channel_broadcastable_shape=(1, 8, 1, 1),
                         scaling_stats_permute_dims=(1, 0, 2, 3))
        self.body = nn.Sequential(QuantIdentity(act_quant=PixelQuant), _conv(3, 8, 4), nn.BatchNorm2d(8), relu,
                                  *_block(8, 6))

    def forward(self, x):
        return self.body(x)


def build_net(cls, seed, shape=None, **kw):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = cls(**kw).eval()
    model.input_shape = shape or getattr(cls, "input_shape", (1, 3, 16, 16))
    return random_init(model, seed)


def small_tinyyolov3(seed=0, size=64, width=0.125, weight_bits=4, act_bits=4):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = tinyyolov3(width=width, weight_bits=weight_bits, act_bits=act_bits)
    model.input_shape = (1, 3, size, size)
    return random_init(model, seed, frames=4 if size <= 128 else 1)


def _builder(cls, **kw):
    return lambda seed=0: build_net(cls, seed, **kw)


GRAPH_NETS = {
    "residual": _builder(ResidualNet),
    "residual_shared": _builder(ResidualNet, shared=True),
    "concat": _builder(ConcatNet),
    "upsample": _builder(UpsampleNet),
    "pad_pool": _builder(PadPoolNet),
    "two_head": _builder(TwoHeadNet),
    "concat_conv": _builder(ConcatConvNet),
    "concat_conv1x1": _builder(ConcatConv1x1Net),
    "concat_linear": _builder(ConcatLinearNet),
    "perchannel_act": _builder(PerChannelActNet),  # a chain, with per-channel activation scales
    "tinyyolov3": small_tinyyolov3,
}


def graph_net(name: str, seed: int = 0) -> nn.Module:
    """The test network ``name`` (a key of GRAPH_NETS), its weights, BatchNorms and scales drawn from ``seed``."""
    return GRAPH_NETS[name](seed=seed)


# ------------------------------------------------------------------------------------ random init

def _outputs(y):
    return tuple(y) if isinstance(y, tuple | list) else (y,)


def random_init(model, seed, frames=4, out_std=0.5):
    """In place: every activation scale times U(0.6, 1.4) (so meeting branches differ); every BatchNorm, in forward
    order, gets running statistics measured on its own input and perturbed, gamma = +-U(0.5, 1.5) with at least
    one negative per layer, beta = U(-0.5, 0.5); the conv before each output quantizer is rescaled so that the
    output spreads about ``out_std`` (no all-saturated heads). Deterministic in ``seed``."""
    g = torch.Generator().manual_seed(seed + 1000)
    x = torch.from_numpy(net_input(model, seed + 2000, (frames, *model.input_shape[1:])))
    model.eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("scaling_impl.value"):
                p.mul_(0.6 + 0.8 * torch.rand(p.shape, generator=g))
        # One forward pass: each BatchNorm draws its statistics from the input it sees (after the ones before
        # it were set), each output conv rescales itself from its own output and recomputes it.
        def set_norm(norm, inputs):
            randomize_batchnorm(norm, inputs[0], g)

        busy = set()

        def set_head(head, inputs, out):
            if head in busy:
                return None
            head.weight.mul_(out_std / out.std())
            if head.bias is not None:
                head.bias.copy_(out_std * 0.2 * (torch.rand(head.bias.shape, generator=g) - 0.5))
            busy.add(head)
            try:
                return head(*inputs)
            finally:
                busy.discard(head)

        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
        hooks = [m.register_forward_pre_hook(set_norm) for m in norms]
        hooks += [h.register_forward_hook(set_head) for h in _head_convs(model)]
        try:
            model(x)
        finally:
            for h in hooks:
                h.remove()
    return model.eval()


def _head_convs(model):
    """QuantConv2d modules immediately followed (in their Sequential) by a QuantHardTanh / QuantIdentity."""
    heads = []
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            mods = list(seq)
            for a, b in zip(mods, mods[1:], strict=False):
                if isinstance(a, QuantConv2d) and isinstance(b, QuantHardTanh | QuantIdentity):
                    heads.append(a)
    return heads


# --------------------------------------------------------------------------------- integer codes

def _act_params(model, x):
    """Run Brevitas' float32 forward; return (outputs, params, trace): params maps each activation proxy (shared
    proxies once) to the (scale, zero point, lo, hi) it used (float32 values as float64); trace lists per proxy
    call (proxy, float32 y/s + z, codes, lo, hi, value, scale, zero point) in call order."""
    params, trace, hooks = {}, [], []
    proxies = {id(p): p for m in model.modules()
               if isinstance(p := getattr(m, "act_quant", None), ActQuantProxyFromInjector) and p.is_quant_enabled}
    for p in proxies.values():
        def hook(mod, i, o):
            if not isinstance(o, QuantTensor):
                return
            bits, narrow = int(o.bit_width), int(mod.is_narrow_range)
            lo, hi = code_range(bits, o.signed, narrow)
            params[mod] = (o.scale.double(), o.zero_point.double(), lo, hi)
            t = (i[0] / o.scale + o.zero_point).numpy()
            codes = np.round(o.value.numpy() / o.scale.numpy() + o.zero_point.numpy()).astype(np.int64)
            trace.append((mod, t, codes, lo, hi, o.value, o.scale.numpy(), o.zero_point.numpy()))
        hooks.append(p.register_forward_hook(hook))
    try:
        with torch.no_grad():
            y = model.eval()(torch.as_tensor(np.asarray(x, np.float32)))
    finally:
        for h in hooks:
            h.remove()
    return _outputs(y), params, trace


def output_quants(model, x, run=None):
    """Per output: (scale, zero point) of the activation quantizer whose value it is (float32 numpy). ``run`` is
    ``_act_params(model, x)`` when the caller already has it."""
    outs, _, trace = run or _act_params(model, x)
    found = []
    for y in outs:
        y = y.value if isinstance(y, QuantTensor) else y
        src = [e for e in trace if e[5].shape == y.shape and torch.equal(e[5], y)]
        if not src:
            raise AssertionError("an output is not the value of an activation quantizer")
        found.append((src[-1][6], src[-1][7]))
    return found


def codes_of(y, scale, zero_point) -> np.ndarray:
    """round(y/scale + z) as int64, checking the division is exact: the codes times the scale, in float32 as the
    quantizer computes them, give back ``y`` bit for bit."""
    y = np.asarray(y, np.float32)
    scale, zero_point = np.asarray(scale, np.float32), np.asarray(zero_point, np.float32)
    codes = np.round(y.astype(np.float64) / scale.astype(np.float64) + zero_point.astype(np.float64))
    back = ((codes.astype(np.float32) - zero_point) * scale).astype(np.float32)
    assert np.array_equal(back, y), "output values are not codes times the scale"
    return codes.astype(np.int64)


def graph_brevitas_codes(model, x) -> tuple[np.ndarray, ...]:
    """Integer codes of every output of Brevitas' float32 forward."""
    run = _act_params(model, x)
    return tuple(codes_of((y.value if isinstance(y, QuantTensor) else y).numpy(), s, z)
                 for y, (s, z) in zip(run[0], output_quants(model, x, run), strict=True))


class _ExactAct(nn.Module):
    """A Brevitas activation quantizer in float64: clamp(round(v/s + z)) with ReLU first for QuantReLU (hardtanh
    and identity clip through the code range). Records (codes, t, scale) of each call (scale: per tensor or per
    channel, as a float64 array)."""

    def __init__(self, s, z, lo, hi, relu, log):
        super().__init__()
        self.s, self.z, self.lo, self.hi, self.relu, self.log = s, z, lo, hi, relu, log

    def forward(self, v):
        t = (torch.relu(v) if self.relu else v) / self.s + self.z
        codes = torch.clamp(torch.round(t), self.lo, self.hi)  # half to even, as QONNX Quant
        self.log.append((codes.numpy().astype(np.int64), t.numpy(), self.s.numpy()))
        return (codes - self.z) * self.s


def _exact_layer(m: QuantWeightBiasInputOutputLayer) -> nn.Module:
    """A float64 Conv2d / Linear with Brevitas' integer weights times their scale."""
    if m.bias_quant.is_quant_enabled:
        raise NotImplementedError("quantized biases are not modelled")
    qw = m.quant_weight()
    if isinstance(m, QuantLinear):
        layer = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    else:
        layer = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                          bias=m.bias is not None)
    layer = layer.double()
    with torch.no_grad():
        layer.weight.copy_(qw.int().double() * qw.scale.double())
        if m.bias is not None:
            layer.bias.copy_(m.bias.double())
    return layer


def _exact_model(model, params, log):
    """A float64 copy of ``model`` whose quantized modules are replaced by exact ones; the model's own forward
    (torch.cat, +, Upsample, ZeroPad2d, MaxPool2d in float64) wires them."""
    exact = copy.deepcopy(model)
    originals = dict(model.named_modules())
    replaced = []
    for name, _ in list(exact.named_modules()):
        if not name or any(name.startswith(r + ".") for r in replaced):
            continue
        orig = originals[name]
        parent_name, _, attr = name.rpartition(".")
        parent = exact.get_submodule(parent_name) if parent_name else exact
        proxy = getattr(orig, "act_quant", None)
        if proxy in params:
            s, z, lo, hi = params[proxy]
            setattr(parent, attr, _ExactAct(s, z, lo, hi, isinstance(orig, QuantReLU), log))
            replaced.append(name)
        elif isinstance(orig, QuantWeightBiasInputOutputLayer):
            setattr(parent, attr, _exact_layer(orig))
            replaced.append(name)
        elif isinstance(orig, QuantIdentity | QuantReLU | QuantHardTanh):
            raise NotImplementedError(f"{name}: an activation module whose quantizer never ran")
    return exact.double()


def graph_exact_codes(model, x, all_layers=False):
    """Integer codes of every output (a tuple), from the exact float64 replay. ``all_layers=True`` returns the
    (codes, t, scale) of every activation call in call order instead."""
    run = _act_params(model, x)
    params, log = run[1], []
    exact = _exact_model(model, params, log)
    with torch.no_grad():
        outs = _outputs(exact(torch.as_tensor(np.asarray(x, np.float32)).double()))
    if all_layers:
        return log
    quants = output_quants(model, x, run)
    codes = []
    for y, (s, z) in zip(outs, quants, strict=True):
        t = y.numpy() / np.float64(s) + np.float64(z)  # y = (code - z) * s in float64: off by ~1e-16 at most
        c = np.round(t)
        assert np.abs(t - c).max() < 1e-9
        codes.append(c.astype(np.int64))
    return tuple(codes)


def graph_boundary_flips(model, x, tol=1e-3) -> int:
    """0 when the exact replay and Brevitas agree at every activation quantizer. Otherwise asserts that the first
    differing one differs only by one code, only where Brevitas' float32 y/s lies within ``tol`` of k - 1/2 and the
    exact value is on the other side, and returns how many codes flip there."""
    exact = graph_exact_codes(model, x, all_layers=True)
    _, _, trace = _act_params(model, x)
    if len(exact) != len(trace):
        raise AssertionError("the exact replay and Brevitas ran different numbers of quantizers")
    for (ce, te, _), (_, tb, cb, lo, hi, *_) in zip(exact, trace, strict=True):
        if not np.array_equal(ce, cb):
            return _check_flips(ce, te, cb, tb, lo, hi, tol)
    return 0


def _check_flips(ce, te, cf, tf, lo, hi, tol):
    differ = ce != cf
    assert np.all(np.abs(ce - cf)[differ] == 1), "codes differ by more than one step"
    assert np.all(near_boundary(tf, lo, hi, tol)[differ]), "a flip away from any boundary"
    k = np.maximum(ce, cf)[differ] - 0.5
    assert np.all((te[differ] - k) * (tf[differ] - k) <= 0), "exact and float32 on one side"
    return int(differ.sum())


def onnx_boundary_flips(model, mw, x, tol=1e-3) -> int:
    """``graph_boundary_flips`` for the executed QONNX graph (onnxruntime's float32): every activation Quant node,
    in topological order, is matched to the exact replay's call with the same scale and shape; a node whose
    upstream Quant nodes all agree with the exact replay may differ from it only by one-code flips where the
    float32 y/s lies within ``tol`` of k - 1/2 with the exact value on the other side. Returns how many codes
    flip at such first-differing nodes (0: the graph agrees with the exact replay everywhere)."""
    from qonnx.core.onnx_exec import execute_onnx

    ctx = execute_onnx(mw, {mw.graph.input[0].name: np.asarray(x, np.float32)}, return_full_exec_context=True)
    exact = graph_exact_codes(model, x, all_layers=True)
    differs, flips = {}, 0  # tensor name -> whether it (or anything upstream) differs from the exact replay
    for node in mw.graph.node:
        upstream = any(differs.get(i, False) for i in node.input)
        if node.op_type == "Quant" and mw.get_initializer(node.input[0]) is None:
            s, z = float(mw.get_initializer(node.input[1])), float(mw.get_initializer(node.input[2]))
            bits = int(mw.get_initializer(node.input[3]))
            att = {a.name: a.i for a in node.attribute}
            signed, narrow = int(att.get("signed", 1)), int(att.get("narrow", 0))
            lo, hi = code_range(bits, signed, narrow)
            tf = ctx[node.input[0]].astype(np.float32) / np.float32(s) + np.float32(z)
            cf = np.round(ctx[node.output[0]].astype(np.float64) / s + z).astype(np.int64)
            match = [e for e in exact if np.array_equal(np.float32(e[2]), np.float32(s)) and e[0].shape == cf.shape]
            if len(match) != 1:
                raise AssertionError(f"{node.name}: {len(match)} exact quantizer calls with scale {s}")
            ce, te, _ = match[0]
            here = not np.array_equal(ce, cf)
            if here and not upstream:
                flips += _check_flips(ce, te, cf, tf, lo, hi, tol)
            upstream = upstream or here
        for o in node.output:
            differs[o] = upstream
    return flips


__all__ = ["GRAPH_NETS", "graph_boundary_flips", "graph_brevitas_codes", "graph_exact_codes", "graph_net",
           "build_net", "onnx_boundary_flips", "random_init"]
