"""MaxPool: max pooling with any kernel (KH, KW), stride (SH, SW) and padding, on integer codes; its IR class (cost
and cycle model, numpy reference ``reference``, folding options, greedy baseline hooks), its config template
(``CONFIG_TEMPLATE``) and the MaxPool and Pad nodes' rules (``LOWERINGS``).

Codes are a monotonic image of the real values where the scale is positive, so the max commutes with
dequantization; a pad stands in as the code of the pad's real value (a Pad node's constant), or as the type's
minimum for MaxPool's own pads (-inf: it never wins, and every window holds at least one real pixel because ONNX
requires pads < kernel). TinyYOLOv3's last pool is 2x2 at stride 1 after a (0, 1, 0, 1) zero pad.

The kind has two kernels, and each layer runs the cheaper one that computes it (``plain``); its memories,
resources, cycles, stream pattern and config follow that choice. Both live in the static library: the kind's
``KERNEL_HEADER`` (templates/hls/fg_maxpool.h) includes fg_maxpool_general.h.

- **Non-overlapping** (kernel == stride, no padding, the output type the input's): ``fg::maxpool``
  (fg_maxpool.h). The column maxima of the current window, one word per channel fold (CW = C/PE words: a shift
  register, so the word of the same channel fold comes back after CW cycles, whatever CW); and KH-1 row memories
  of OW*CW words: row memory k holds, between input rows, the maximum over window rows 0..k. Row memory k is
  written only from row memory k-1's value (never from its own), so no read-modify-write of one memory closes a
  loop and II=1 needs no dependence pragma. Cycles: IH * IW * C / PE iterations (every input word is read once),
  plus the pipeline depth once per frame.
- **Any other** window: ``fg::maxpool_general`` (fg_maxpool_general.h), one flat loop, II=1, over the padded input
  (PH * PW * C/PE iterations): each iteration pops a word (or makes the pad word), stores it, and where a window
  ends there, pushes the max of the window. The ``rows`` memory keeps the last KH padded rows, split into KH*KW
  banks (bank (y mod KH, x mod KW), address (x div KW)*C/PE + word): a window's KH*KW - 1 stored words all lie in
  different banks, and the bank written (the current pixel's) is not read, so every bank serves one read and one
  write per cycle. The word written is the popped one, never a value read back, so no recurrence runs through
  the memory and II=1 needs no dependence pragma. Counters replace every div and mod.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ...errors import FpgagenError
from ..layers import (
    CONTROL_FF,
    CONTROL_LUT,
    MEM_STYLES,
    Memory,
    OnePortLayer,
    divisors,
    greedy_channel_pe,
    pipelined_pattern,
    resources,
)
from .affine import AffineView, StreamView, dtype_of
from .base import Lowered, Lowering, Shape, same_channels


@dataclass(eq=False)
class MaxPool(OnePortLayer):
    """Max pooling (floor mode) of ``kernel`` at ``stride`` (None: the kernel) after ``pads`` (top, left, bottom,
    right) of the code ``pad_value`` (an element of ``out_dtype``); see the module docstring for its two kernels."""

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] | None = None
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    pad_value: int = 0
    pe: int = 1
    mem_style: str = "lutram"  # the row memories (partial maxima, or the padded rows): bram | lutram

    kind = "MaxPool"
    KERNEL_HEADER = "fg_maxpool.h"  # with fg_maxpool_general.h
    CONFIG_TEMPLATE = "maxpool.h.j2"
    STYLES = {"mem_style": MEM_STYLES}

    def __post_init__(self):
        super().__post_init__()
        self.kernel = tuple(self.kernel)
        self.stride = tuple(self.stride) if self.stride is not None else self.kernel
        self.pads = tuple(self.pads)

    @property
    def plain(self) -> bool:
        """Whether the non-overlapping kernel (fg::maxpool) computes this layer: kernel == stride, no padding, the
        output type the input's. It needs KH-1 row memories of OW words where the general one needs KH*KW."""
        return self.kernel == self.stride and not any(self.pads) and self.out_dtype == self.in_dtype

    @property
    def in_word(self) -> int:
        return self.pe

    @property
    def out_word(self) -> int:
        return self.pe

    @property
    def channel_words(self) -> int:
        return self.in_shape[2] // self.pe

    @property
    def padded(self) -> tuple[int, int]:
        h, w, _ = self.in_shape
        t, left, b, r = self.pads
        return h + t + b, w + left + r

    @property
    def PIPELINE_DEPTH(self) -> int:  # noqa: N802 (a per-instance constant)
        """The non-overlapping kernel's stages (a judgement): 1 for the pop and the column maximum, then per row
        memory 2 for its read (BRAM with output register) and 1 for the compare-select that feeds the next (row
        memory k's read waits for the write of k-1's value), 1 for the stream write. The general kernel's cycle
        model counts none."""
        return 2 + 3 * (self.kernel[0] - 1) if self.plain else 0

    def folding(self) -> dict:
        return {"pe": self.pe}

    def validate(self) -> None:
        (kh, kw), (sh, sw) = self.kernel, self.stride
        ph, pw = self.padded
        c = self.in_shape[2]
        self._require(min(kh, kw, sh, sw) >= 1 and min(self.pads) >= 0 and ph >= kh and pw >= kw,
                      f"kernel {self.kernel}, stride {self.stride}, pads {self.pads} on {self.in_shape}",
                      "use a kernel no larger than the padded input")
        expect = ((ph - kh) // sh + 1, (pw - kw) // sw + 1, c)
        self._require(tuple(self.out_shape) == expect, f"output {self.out_shape} should be {expect}",
                      "pool in floor mode")
        dt = self.out_dtype
        self._require(dt.min() <= self.pad_value <= dt.max() and dt.min() <= self.in_dtype.min()
                      and self.in_dtype.max() <= dt.max(),
                      f"{dt.name} must hold the input codes and the pad code {self.pad_value}", "widen out_dtypes")
        self._require(c % self.pe == 0, f"PE={self.pe} does not divide C={c}", f"choose PE from {divisors(c)}")

    def iterations(self) -> int:
        """The kernel's loop trip count: every input word (non-overlapping), every padded word (general)."""
        if self.plain:
            h, w, _ = self.in_shape
            return h * w * self.channel_words
        ph, pw = self.padded
        return ph * pw * self.channel_words

    def cycles(self) -> int:
        return self.iterations() + self.PIPELINE_DEPTH

    def fold_cores(self) -> list[dict]:
        return [{"pe": p} for p in divisors(self.in_shape[2])]

    def style_groups(self) -> list[list[dict]]:
        return [[{"mem_style": m} for m in MEM_STYLES]]

    def stream_pattern(self) -> tuple[np.ndarray, np.ndarray]:
        """Non-overlapping: every iteration reads; the last pixel of each (complete) window writes; then the
        pipeline drains. General: pops at the real (unpadded) pixels, pushes where a window ends (its bottom-right
        pixel)."""
        (kh, kw), (sh, sw), cw = self.kernel, self.stride, self.channel_words
        if self.plain:
            h, w, _ = self.in_shape
            oh, ow = self.out_shape[:2]
            y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
            last = (y % kh == kh - 1) & (x % kw == kw - 1) & (y // kh < oh) & (x // kw < ow)
            return pipelined_pattern(np.ones(self.iterations(), bool), np.repeat(last.reshape(-1), cw),
                                     self.PIPELINE_DEPTH)
        h, w, _ = self.in_shape
        t, left, _, _ = self.pads
        ph, pw = self.padded
        y, x = np.meshgrid(np.arange(ph), np.arange(pw), indexing="ij")
        real = (y >= t) & (y < t + h) & (x >= left) & (x < left + w)
        ends = (y >= kh - 1) & ((y - kh + 1) % sh == 0) & (x >= kw - 1) & ((x - kw + 1) % sw == 0)
        return np.repeat(real.reshape(-1), cw), np.repeat(ends.reshape(-1), cw)

    def greedy_styles(self) -> None:
        if self.plain:
            self.mem_style = "lutram" if self.out_shape[1] * self.channel_words <= 64 else "bram"

    def greedy_fold(self, target_cycles: float, prev_word: int) -> None:
        if self.plain:
            greedy_channel_pe(self, target_cycles, prev_word)
        else:
            super().greedy_fold(target_cycles, prev_word)

    def reference(self, x: np.ndarray) -> np.ndarray:
        (kh, kw), (sh, sw), (t, left, b, r) = self.kernel, self.stride, self.pads
        xp = np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)), constant_values=self.pad_value)
        win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))  # N, OH', OW', C, KH, KW
        oh, ow = self.out_shape[:2]
        return win[:, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw].max(axis=(-2, -1))

    def memories(self) -> list[Memory]:
        cw = self.channel_words
        if self.plain:
            a = self.in_bits
            return [Memory(f"{self.name}_colmax", 1, cw, self.pe, a, "registers", reads=1, writes=1),
                    Memory(f"{self.name}_rowmax", max(1, self.kernel[0] - 1), self.out_shape[1] * cw, self.pe, a,
                           self.mem_style, reads=1, writes=1)]
        (kh, kw), pw = self.kernel, self.padded[1]
        depth = math.ceil(pw / kw) * cw
        storage = self.mem_style if depth > 1 else "registers"
        return [Memory("rows", kh * kw, depth, self.pe, self.out_bits, storage, reads=1, writes=1)]

    def logic(self) -> dict[str, int]:
        """Non-overlapping: per lane a comparator and a 2:1 select (2*A LUTs, carry chain plus multiplexer) for
        the column maximum and for each row memory's maximum (FINN counts max pooling as zero LUTs; derived from
        the kernel's loop body). General: per lane KH*KW - 1 comparators with their select and the KH*KW-bank read
        multiplexers (each window position picks one of KH*KW banks, 4:1 per LUT6); the pad/real select;
        counters."""
        (kh, kw), bits = self.kernel, self.out_bits
        if self.plain:
            lanes = self.pe * self.in_bits * kh
            return resources(LUT=2 * lanes + CONTROL_LUT, FF=lanes + CONTROL_FF)
        taps = kh * kw
        cmp = (taps - 1) * 2 * bits
        mux = (taps - 1) * bits * math.ceil(taps / 4) if taps > 1 else 0
        return resources(LUT=self.pe * (cmp + mux + bits) + CONTROL_LUT + 30,
                         FF=self.pe * bits * 2 + CONTROL_FF + 60)


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
                  pre_pad: tuple[tuple[int, int, int, int], float] | None = None) -> tuple[MaxPool, AffineView]:
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
    # a pending monotone clamp commutes with max: it stays pending on the output
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
    layer = MaxPool(name, shape, (oh, ow, c), view.dtype, out_dtype, kernel=kernel, stride=stride, pads=pads,
                    pad_value=pad_value)
    layer.validate()
    return layer, AffineView(view.scale, view.offset, out_dtype, lo, hi, view.clamp)


def _lower(node, views, shapes, ctx) -> Lowered:
    """The walk's MaxPool: kernel == stride, unpadded, floor (or an exact ceil) mode keeps the input's type and
    view (the non-overlapping kernel); any other window goes through ``lower_maxpool``, with the Pad before it
    fused."""
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


KINDS = (MaxPool,)
LOWERINGS = {"MaxPool": Lowering(_lower, fuses_pad=True,
                                  doc="MaxPool (any kernel, stride, pads; a Pad before it is fused)"),
             "Pad": Lowering(lower_pad, max_streams=1, exact=True, doc="Pad (before a MaxPool)")}
