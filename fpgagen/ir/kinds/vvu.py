"""VVU: the vector-vector unit of a depthwise convolution (ONNX Conv with ``group`` == channels, torch
``Conv2d(C, C, k, groups=C)``): each output channel is the dot product of its own input channel's k x k window with
its own k x k weights. FINN calls this unit the VVAU; here it leaves out the activation: a Quant after it becomes
the Threshold kind (fpgagen.ir.kinds.threshold), exactly as after a MaxPool.

Input: the window stream of the existing sliding window (fpgagen.ir.kinds.sliding_window) in front of it, per
output pixel the K = KH*KW taps in (ky, kx, c) order; a 1x1 stride-1 unpadded depthwise conv reads its input as it
is (K = 1). Output: the raw integer accumulators, acc[c] = sum_t w[c][t] * x[t][c], per pixel in channel order.

Folding: PE channels and SIMD taps per cycle; a word holds PE*SIMD elements, element s*PE + p being tap s of the
word's SIMD, lane p. The window streams its taps tap-major, so a word is either PE channels of one tap (PE divides
C, SIMD = 1) or SIMD whole taps (PE = C, SIMD divides K): the folds the window can feed without reordering.

Kernel ``fg::vvu`` (templates/hls/fg_vvu.h): one flat loop, II=1, of PIXELS * TG * CF iterations (TG = K/SIMD tap
groups, CF = C/PE channel folds, cf counting fastest as the window streams them). Each pops one word, adds lane p's
SIMD products to the accumulator of its channel fold, and in the last tap group pushes the PE finished sums.
Memories: the weight ROM (TG*CF words of PE*SIMD weights, one per iteration: a wrapping counter addresses it) and
the accumulators, CF words of PE sums in registers (read and written every cycle at the fold the counter names: a
register file keeps the one-cycle read-add-write of a fold apart from the next fold's, with no dependence pragma).
Products in LUTs (FINN-R's multiplier and adder-tree terms); no DSP option.

Exactness: the input view is real = a_c * q + o_c with a pad code p (a_c * p + o_c = 0, an integer shared by all
channels); then the output's real value is alpha_c * acc_c + beta_c with alpha_c = w_scale_c * a_c and beta_c =
w_scale_c * o_c * sum_t w[c][t] + bias_c (a padded tap holds p, whose real value is 0), computed in float64: exact
when the input's zero point is 0 (o_c = 0, Brevitas' default), else exact up to float64's rounding of beta_c.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from qonnx.core.datatype import DataType

from ...errors import FpgagenError
from ...quant import smallest_dtype
from ..memory import Memory
from .affine import AffineView
from .base import CONTROL_FF, CONTROL_LUT, MEM_STYLES, GraphLayer, Lowered, Lowering, divisors, resources
from .sliding_window import SlidingWindow


@dataclass(eq=False)
class VVU(GraphLayer):
    weights: np.ndarray = field(default=None, repr=False)  # (C, K) integer, taps in (ky, kx) order
    weight_dtype: DataType = DataType["INT8"]
    kernel: tuple[int, int] = (3, 3)  # (KH, KW): K = KH * KW taps per channel
    pe: int = 1
    simd: int = 1
    mem_style: str = "lutram"  # weight ROM: bram | lutram

    kind = "VVU"
    KERNEL_HEADER = "fg_vvu.h"
    CONFIG_TEMPLATE = "vvu.h.j2"
    STYLES = {"mem_style": MEM_STYLES}

    # --- shape and folding -----------------------------------------------------------------------------------
    @property
    def channels(self) -> int:
        return self.out_shapes[0][2]

    @property
    def taps(self) -> int:
        return self.kernel[0] * self.kernel[1]

    @property
    def pixels(self) -> int:
        return self.out_shapes[0][0] * self.out_shapes[0][1]

    @property
    def channel_folds(self) -> int:
        return self.channels // self.pe

    @property
    def tap_groups(self) -> int:
        return self.taps // self.simd

    @property
    def in_words(self) -> tuple[int, ...]:
        return (self.pe * self.simd,)

    @property
    def out_words(self) -> tuple[int, ...]:
        return (self.pe,)

    @property
    def acc_dtype(self) -> DataType:
        return self.out_dtypes[0]

    def folding(self) -> dict:
        return {"pe": self.pe, "simd": self.simd}

    def fold_cores(self) -> list[dict]:
        c = self.channels
        return [{"pe": p, "simd": 1} for p in divisors(c)] + \
            [{"pe": c, "simd": s} for s in divisors(self.taps) if s > 1]

    def validate(self) -> None:
        c, k = self.channels, self.taps
        self._require(self.weights is not None and self.weights.shape == (c, k),
                      f"weights of shape {None if self.weights is None else self.weights.shape}, expected {(c, k)}",
                      "one row of KH*KW weights per channel")
        self._require(tuple(self.in_shapes[0]) == (*self.out_shapes[0][:2], k * c),
                      f"input {self.in_shapes[0]} is not the {k}-tap window of output {self.out_shapes[0]}",
                      "feed the unit from a sliding window of its kernel")
        self._require(c % self.pe == 0, f"PE={self.pe} does not divide C={c}", f"choose PE from {divisors(c)}")
        self._require(k % self.simd == 0 and (self.simd == 1 or self.pe == c),
                      f"SIMD={self.simd} with PE={self.pe}: the window streams taps one after another, so SIMD > 1 "
                      f"needs every channel per cycle (PE = {c}) and must divide the {k} taps",
                      f"use SIMD=1, or PE={c} with SIMD from {divisors(k)}")
        lo, hi = self.weights.min(initial=0), self.weights.max(initial=0)
        self._require(self.weight_dtype.min() <= lo and hi <= self.weight_dtype.max(),
                      f"weights span [{lo}, {hi}], outside {self.weight_dtype.name}", "widen weight_dtype")

    # --- models ----------------------------------------------------------------------------------------------
    def cycles(self) -> int:
        return self.pixels * self.tap_groups * self.channel_folds

    def io_pattern(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Every iteration pops a word; the last tap group's CF iterations of each pixel push one each."""
        per_pixel = self.tap_groups * self.channel_folds
        last = np.arange(per_pixel) >= per_pixel - self.channel_folds
        return [np.ones(self.cycles(), bool)], [np.tile(last, self.pixels)]

    def style_groups(self) -> list[list[dict]]:
        depth = self.tap_groups * self.channel_folds
        return [[{"mem_style": m} for m in (MEM_STYLES if depth > 1 else ("lutram",))]]

    def memories(self) -> list[Memory]:
        depth = self.tap_groups * self.channel_folds
        return [Memory("weights", 1, depth, self.pe * self.simd, self.weight_dtype.bitwidth(),
                       self.mem_style if depth > 1 else "registers"),
                Memory("acc", 1, self.channel_folds, self.pe, self.acc_dtype.bitwidth(), "registers",
                       reads=1, writes=1)]

    def logic(self) -> dict[str, int]:
        """Per lane FINN-R's MVAU terms with SIMD products (1.1 routing factor): SIMD LUT multipliers of W+A bits,
        their adder tree, the accumulator adder, plus the CF:1 multiplexer that reads the fold's accumulator (4:1
        per LUT6). FF: a register stage per product and half the adder tree (as the MVAU's LUT PEs), the input
        and output words; control."""
        w, a, acc = self.weight_dtype.bitwidth(), self.in_dtypes[0].bitwidth(), self.acc_dtype.bitwidth()
        mult = self.simd * (2 * math.ceil((w + a) / 6) - 1) * (w + a)
        adder = (w + a) * (2 * self.simd - 1)
        mux = acc * math.ceil(self.channel_folds / 4) if self.channel_folds > 1 else 0
        return resources(LUT=CONTROL_LUT + 1.1 * self.pe * (mult + adder + acc + mux),
                         FF=CONTROL_FF + self.pe * (1.5 * self.simd * (w + a) + acc) + self.pe * self.simd * a)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        (x,) = self._check_inputs(inputs)
        oh, ow, c = self.out_shapes[0]
        win = x.reshape(x.shape[0], oh, ow, self.taps, c)  # (ky, kx, c) window order
        return [np.einsum("nhwtc,ct->nhwc", win, self.weights.astype(np.int64))]

    # --- the ROM as the kernel reads it ----------------------------------------------------------------------
    def weight_words(self) -> np.ndarray:
        """[1][TG*CF][PE*SIMD]: word tg*CF + cf, element s*PE + p = weight of channel cf*PE + p, tap tg*SIMD + s."""
        tg, cf, pe, simd = self.tap_groups, self.channel_folds, self.pe, self.simd
        w = self.weights.reshape(cf, pe, tg, simd)  # [cf][p][tg][s]
        return w.transpose(2, 0, 3, 1).reshape(1, tg * cf, simd * pe)


# --- lowering ----------------------------------------------------------------------------------------------------
def _group(node) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def _is_grouped(node) -> bool:
    return _group(node) > 1


def _per_channel(value, channels: int, what: str, where: str) -> np.ndarray:
    v = np.asarray(value, np.float64).reshape(-1)
    if v.size not in (1, channels):
        raise FpgagenError(f"{what} of {v.size} values for {channels} channels", where, "use per-channel values")
    return np.broadcast_to(v, (channels,)).copy()


def lower_depthwise(node, views: list[AffineView], shapes, ctx) -> Lowered:
    """ONNX Conv with group == input channels == output channels (depthwise), any kernel, stride and padding,
    dilation 1: a sliding window (unless 1x1, stride 1, unpadded) feeding a VVU that emits the raw accumulators."""
    where = f"node '{node.name}' ({node.op_type})"
    (view,), ((h, w, c),) = views, shapes
    attrs = {a.name: (list(a.ints) if a.ints else a.i) for a in node.attribute}
    group = _group(node)
    weight = ctx.quantized(node.input[1])
    if weight is None:
        raise FpgagenError("the layer has float (unquantized) weights", where,
                           "use brevitas QuantConv2d so weights are exported through a Quant node")
    codes = np.asarray(weight.codes, np.int64)
    if group != c or codes.ndim != 4 or codes.shape[:2] != (c, 1):
        raise FpgagenError(f"grouped convolution with group={group} on {c} channels and weights "
                           f"{list(codes.shape)}", where,
                           "use group=1, or a depthwise conv (groups = in_channels = out_channels)")
    if any(d != 1 for d in attrs.get("dilations", [1, 1])):
        raise FpgagenError("dilated convolution", where, "use dilation 1")
    if view.clamp is not None:
        raise FpgagenError("the input is a float activation (a ReLU/Clip no quantizer has applied)", where,
                           "put a brevitas quantized activation (QuantReLU, QuantIdentity) before this layer")
    if np.any(view.scale == 0):
        raise FpgagenError("an input channel with scale 0", where, "check the activation quantizer before it")
    kh, kw = codes.shape[2:]
    stride = tuple(attrs.get("strides", [1, 1]))
    pads = tuple(attrs.get("pads") or [0, 0, 0, 0])  # ONNX: top, left, bottom, right
    auto_pad = next((a.s.decode() for a in node.attribute if a.name == "auto_pad"), "") or "NOTSET"
    if len(stride) != 2 or len(pads) != 4 or min(stride) < 1 or min(pads) < 0 or auto_pad != "NOTSET":
        raise FpgagenError(f"strides {list(stride)}, pads {list(pads)}, auto_pad {auto_pad}", where,
                           "use a 2-D conv with explicit non-negative padding")
    oh, ow = (h + pads[0] + pads[2] - kh) // stride[0] + 1, (w + pads[1] + pads[3] - kw) // stride[1] + 1
    if min(oh, ow) < 1:
        raise FpgagenError(f"a {kh}x{kw} kernel on a {h}x{w} input gives no output pixel", where,
                           "pad the input or use a smaller kernel")
    lo, hi = view.lo, view.hi
    pad = 0
    if any(pads):  # a padded tap holds the code whose real value is 0: a_c * p + o_c = 0
        code = -view.offset / view.scale
        if not np.all(code == code[0]) or code[0] != np.rint(code[0]):
            raise FpgagenError("zero padding needs the code of 0 to be one integer on every channel", where,
                               "use a per-tensor activation quantizer with an integer zero point before it")
        pad = int(code[0])
        if not view.dtype.min() <= pad <= view.dtype.max():
            raise FpgagenError(f"the pad code {pad} lies outside the input's {view.dtype.name}", where,
                               "use an activation quantizer whose zero point is one of its codes")
        lo, hi = np.minimum(lo, pad), np.maximum(hi, pad)
    wmat = codes.reshape(c, kh * kw)
    acc_lo = np.minimum(wmat * lo[:, None], wmat * hi[:, None]).sum(1)
    acc_hi = np.maximum(wmat * lo[:, None], wmat * hi[:, None]).sum(1)
    acc_dt = smallest_dtype(int(acc_lo.min()), int(acc_hi.max()))  # the walk's type of the view's range
    feeders = ()
    if (kh, kw) != (1, 1) or stride != (1, 1) or any(pads):
        window = SlidingWindow(f"{ctx.name}_window", (h, w, c), (oh, ow, kh * kw * c), view.dtype, view.dtype,
                               kernel=(kh, kw), stride=stride, pads=pads, pad_value=pad)
        window.validate()
        feeders = (window,)
    layer = VVU(ctx.name, ((oh, ow, kh * kw * c),), ((oh, ow, c),), (view.dtype,), (acc_dt,), weights=wmat,
                weight_dtype=weight.dtype, kernel=(kh, kw))
    layer.validate()
    w_scale = _per_channel(weight.scale, c, "a weight scale", where)
    bias = np.zeros(c)
    if len(node.input) > 2 and node.input[2]:
        q = ctx.quantized(node.input[2])
        value = q.codes * np.asarray(q.scale, np.float64) if q is not None else ctx.const(node.input[2])
        if value is None:
            raise FpgagenError("bias is not a constant", where, "export in inference mode")
        bias = _per_channel(value, c, "a bias", where)
    alpha = w_scale * view.scale
    beta = w_scale * view.offset * wmat.sum(1) + bias
    return Lowered(layer, AffineView(alpha, beta, acc_dt, acc_lo, acc_hi), feeders=feeders)


KINDS = (VVU,)
LOWERINGS = {"Conv": Lowering(lower_depthwise, applies=_is_grouped, doc="Conv (depthwise: group = channels)")}
