"""MaxPoolGeneral: max pooling with any kernel (KH, KW), stride (SH, SW) and padding, on integer codes.

TinyYOLOv3's last pool is 2x2 at stride 1 after a (0, 1, 0, 1) zero pad. Codes are a monotonic image of the real
values where the scale is positive, so the max commutes with dequantization; a pad stands in as the code of the
pad's real value (a Pad node's constant), or as the type's minimum for MaxPool's own pads (-inf: it never wins,
and every window holds at least one real pixel because ONNX requires pads < kernel).

Kernel ``fg::maxpool_general`` (templates/hls/fg_maxpool_general.h): one flat loop, II=1, over the padded input
(PH * PW * C/PE iterations): each iteration pops a word (or makes the pad word), stores it, and where a window
ends there, pushes the max of the window. The ``rows`` memory keeps the last KH padded rows, split into KH*KW banks
(bank (y mod KH, x mod KW), address (x div KW)*C/PE + word): a window's KH*KW - 1 stored words all lie in
different banks, and the bank written (the current pixel's) is not read, so every bank serves one read and one
write per cycle. The word written is the popped one, never a value read back, so no recurrence runs through the
memory and II=1 needs no dependence pragma. Counters replace every div and mod.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ...errors import FpgagenError
from ..memory import Memory
from .affine import AffineView, StreamView, dtype_of
from .base import (
    CONTROL_FF,
    CONTROL_LUT,
    MEM_STYLES,
    GraphLayer,
    Lowered,
    Lowering,
    PEWords,
    Shape,
    divisors,
    resources,
    same_channels,
)
from .maxpool import MaxPool


@dataclass(eq=False)
class MaxPoolGeneral(PEWords, GraphLayer):
    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    pad_value: int = 0  # the code a pad stands for (an element of out_dtypes[0])
    pe: int = 1
    mem_style: str = "lutram"

    kind = "MaxPoolGeneral"
    KERNEL_HEADER = "fg_maxpool_general.h"
    CONFIG_TEMPLATE = "maxpool_general.h.j2"
    STYLES = {"mem_style": MEM_STYLES}

    @property
    def padded(self) -> tuple[int, int]:
        h, w, _ = self.in_shapes[0]
        t, left, b, r = self.pads
        return h + t + b, w + left + r

    def validate(self) -> None:
        (kh, kw), (sh, sw) = self.kernel, self.stride
        ph, pw = self.padded
        c = self.in_shapes[0][2]
        self._require(min(kh, kw, sh, sw) >= 1 and min(self.pads) >= 0 and ph >= kh and pw >= kw,
                      f"kernel {self.kernel}, stride {self.stride}, pads {self.pads} on {self.in_shapes[0]}",
                      "use a kernel no larger than the padded input")
        expect = ((ph - kh) // sh + 1, (pw - kw) // sw + 1, c)
        self._require(tuple(self.out_shapes[0]) == expect, f"output {self.out_shapes[0]} should be {expect}",
                      "pool in floor mode")
        dt = self.out_dtypes[0]
        self._require(dt.min() <= self.pad_value <= dt.max() and dt.min() <= self.in_dtypes[0].min()
                      and self.in_dtypes[0].max() <= dt.max(),
                      f"{dt.name} must hold the input codes and the pad code {self.pad_value}", "widen out_dtypes")
        self._require(c % self.pe == 0, f"PE={self.pe} does not divide C={c}", f"choose PE from {divisors(c)}")

    def fold_cores(self) -> list[dict]:
        return [{"pe": p} for p in divisors(self.in_shapes[0][2])]

    def cycles(self) -> int:
        ph, pw = self.padded
        return ph * pw * self.channel_words

    def io_pattern(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Pops at the real (unpadded) pixels; pushes where a window ends (its bottom-right pixel)."""
        h, w, _ = self.in_shapes[0]
        t, left, _, _ = self.pads
        (kh, kw), (sh, sw) = self.kernel, self.stride
        ph, pw = self.padded
        y, x = np.meshgrid(np.arange(ph), np.arange(pw), indexing="ij")
        real = (y >= t) & (y < t + h) & (x >= left) & (x < left + w)
        ends = (y >= kh - 1) & ((y - kh + 1) % sh == 0) & (x >= kw - 1) & ((x - kw + 1) % sw == 0)
        return [np.repeat(real.reshape(-1), self.channel_words)], [np.repeat(ends.reshape(-1), self.channel_words)]

    def memories(self) -> list[Memory]:
        (kh, kw), pw = self.kernel, self.padded[1]
        depth = math.ceil(pw / kw) * self.channel_words
        storage = self.mem_style if depth > 1 else "registers"
        return [Memory("rows", kh * kw, depth, self.pe, self.out_dtypes[0].bitwidth(), storage, reads=1, writes=1)]

    def logic(self) -> dict[str, int]:
        """Per lane KH*KW - 1 comparators with their select (2 LUTs per bit: carry chain and multiplexer) and
        the KH*KW-bank read multiplexers (each window position picks one of KH*KW banks, 4:1 per LUT6); the
        pad/real select; counters."""
        (kh, kw), bits = self.kernel, self.out_dtypes[0].bitwidth()
        taps = kh * kw
        cmp = (taps - 1) * 2 * bits
        mux = (taps - 1) * bits * math.ceil(taps / 4) if taps > 1 else 0
        return resources(LUT=self.pe * (cmp + mux + bits) + CONTROL_LUT + 30,
                         FF=self.pe * bits * 2 + CONTROL_FF + 60)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        (x,) = self._check_inputs(inputs)
        (kh, kw), (sh, sw), (t, left, b, r) = self.kernel, self.stride, self.pads
        xp = np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)), constant_values=self.pad_value)
        win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))  # N, OH', OW', C, KH, KW
        oh, ow = self.out_shapes[0][:2]
        return [win[:, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw].max(axis=(-2, -1))]


def pad_of_node(node, const, channels_first_rank: int = 4) -> tuple[tuple[int, int, int, int], float]:
    """An ONNX Pad (constant mode) on the spatial axes of an NCHW tensor: ((top, left, bottom, right), value).
    ``const(name)`` returns an initializer or None."""
    where = f"node '{node.name}' ({node.op_type})"
    attrs = {a.name: a for a in node.attribute}
    mode = attrs["mode"].s.decode() if "mode" in attrs else "constant"
    if mode != "constant":
        raise FpgagenError(f"Pad mode '{mode}'", where, "use constant (zero) padding")
    inputs = list(node.input)
    if len(inputs) > 1 and inputs[1]:
        pads = const(inputs[1])
        value = const(inputs[2]) if len(inputs) > 2 and inputs[2] else 0.0
    else:  # opset < 11: attributes
        pads = list(attrs["pads"].ints) if "pads" in attrs else None
        value = attrs["value"].f if "value" in attrs else 0.0
    if pads is None or value is None:
        raise FpgagenError("Pad with non-constant pads or value", where, "export with constant padding")
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    n = len(pads) // 2
    if n != channels_first_rank or any(pads[i] or pads[n + i] for i in range(n - 2)) or min(pads) < 0:
        raise FpgagenError(f"Pad {pads} pads more than the two spatial axes (or crops)", where,
                           "pad the height and width of an NCHW tensor only")
    return (pads[n - 2], pads[n - 1], pads[2 * n - 2], pads[2 * n - 1]), float(np.asarray(value).reshape(-1)[0])


def lower_maxpool(node, view: AffineView, shape: Shape, name: str,
                  pre_pad: tuple[tuple[int, int, int, int], float] | None = None) -> tuple[MaxPoolGeneral, AffineView]:
    """An ONNX MaxPool (any kernel, stride, pads; floor mode; no dilation) on the stream of ``view`` and
    (H, W, C) ``shape``; ``pre_pad``: a constant Pad right before it (``pad_of_node``), which the walk fuses."""
    where = f"node '{node.name}' ({node.op_type})"
    attrs = {a.name: (list(a.ints) if a.ints else a.i) for a in node.attribute}
    kernel = tuple(attrs["kernel_shape"])
    stride = tuple(attrs.get("strides", [1, 1]) or [1, 1])
    own = attrs.get("pads", [0, 0, 0, 0]) or [0, 0, 0, 0]
    own = (own[0], own[1], own[2], own[3])  # ONNX: top, left, bottom, right
    if any(d != 1 for d in (attrs.get("dilations", [1, 1]) or [1, 1])) or len(kernel) != 2:
        raise FpgagenError("dilated or non-2-D max pooling", where, "use a 2-D MaxPool without dilation")
    if attrs.get("ceil_mode", 0):
        raise FpgagenError("ceil_mode max pooling", where, "use ceil_mode=False (pad explicitly if needed)")
    if np.any(view.scale <= 0):
        raise FpgagenError("max pooling a tensor with a negative or zero per-channel scale (max would become min)",
                           where, "quantize the activation (QuantReLU/QuantIdentity) before the MaxPool")
    if view.clamp is not None:  # a monotone clamp commutes with max: it stays pending on the output
        pass
    lo, hi = view.lo.copy(), view.hi.copy()
    if pre_pad is not None and any(own):
        raise FpgagenError("a Pad followed by a padded MaxPool", where, "pad once, with the Pad or the MaxPool")
    if pre_pad is not None:
        pads, value = pre_pad
        code = (value - view.offset) / view.scale
        if not np.all(code == code[0]) or code[0] != np.rint(code[0]):
            raise FpgagenError(f"the pad value {value} is not one integer code on every channel", where,
                               "use a per-tensor quantizer with an integer zero point before the padded MaxPool")
        pad_value = int(code[0])
        if view.clamp is not None and not (view.clamp[0] <= value <= view.clamp[1]):
            raise FpgagenError("padding a tensor whose pending activation would change the pad", where,
                               "quantize the activation before the Pad")
        lo, hi = np.minimum(lo, pad_value), np.maximum(hi, pad_value)
    else:
        pads, pad_value = own, int(view.dtype.min())  # -inf padding: the smallest code never wins
    out_dtype = dtype_of(np.minimum(lo, view.dtype.min()), np.maximum(hi, view.dtype.max()))
    h, w, c = shape
    t, left, b, r = pads
    oh, ow = (h + t + b - kernel[0]) // stride[0] + 1, (w + left + r - kernel[1]) // stride[1] + 1
    layer = MaxPoolGeneral(name, (shape,), ((oh, ow, c),), (view.dtype,), (out_dtype,), kernel=kernel,
                           stride=stride, pads=pads, pad_value=pad_value)
    layer.validate()
    return layer, AffineView(view.scale, view.offset, out_dtype, lo, hi, view.clamp)


def _lower(node, views, shapes, ctx) -> Lowered:
    """The walk's MaxPool: the chain kernel (fpgagen.ir.kinds.maxpool.MaxPool) when kernel == stride, unpadded, floor
    (or an exact ceil) mode; otherwise MaxPoolGeneral, with the Pad before it fused."""
    (view,), (shape,) = views, shapes
    attrs = {a.name: (list(a.ints) if a.ints else a.i) for a in node.attribute}
    kernel = tuple(attrs["kernel_shape"])
    stride = tuple(attrs.get("strides", kernel))
    h, w, c = shape
    plain = ctx.pre_pad is None and kernel == stride and len(kernel) == 2 and not any(attrs.get("pads", [0])) and \
        all(d == 1 for d in attrs.get("dilations", [1, 1])) and not (attrs.get("ceil_mode", 0) and
                                                                     (h % kernel[0] or w % kernel[1]))
    if not plain:
        return Lowered(*lower_maxpool(node, view, shape, ctx.name, pre_pad=ctx.pre_pad), same_channels(views))
    if np.any(view.scale < 0):
        raise FpgagenError("max pooling a tensor with a negative per-channel scale (max would become min)",
                           f"node '{node.name}' ({node.op_type})",
                           "quantize the activation (QuantReLU/QuantIdentity) before the MaxPool")
    dt = view.dtype
    pool = MaxPool(ctx.name, shape, (h // kernel[0], w // kernel[1], c), dt, dt, kernel=kernel)
    return Lowered(pool, view, same_channels(views))


def lower_pad(node, views: list[StreamView], shapes, ctx) -> Lowered:
    """A Pad is no layer: the view records it, and the MaxPool after it fuses it (the walk refuses any other
    consumer of a padded tensor)."""
    (s,) = views
    if s.pending_pad is not None:
        raise FpgagenError("two Pads in a row", f"node '{node.name}' ({node.op_type})", "pad once")
    pads, value = pad_of_node(node, ctx.const)
    h, w, c = s.shape
    return Lowered(None, replace(s, pending_pad=(pads, value), shape=(h + pads[0] + pads[2], w + pads[1] + pads[3], c)))


KINDS = (MaxPoolGeneral,)
LOWERINGS = {"MaxPool": Lowering(_lower, fuses_pad=True,
                                  doc="MaxPool (any kernel, stride, pads; a Pad before it is fused)"),
             "Pad": Lowering(lower_pad, max_streams=1, exact=True, doc="Pad (before a MaxPool)")}
