"""ChannelSlice: channels [start, stop) of every pixel (ONNX Slice on the channel axis, torch ``x[:, a:b]``, the
split of CSP-style blocks).

Codes pass through unchanged, so each kept channel keeps its exact view (the lowering's passthrough).

Kernel ``fg::channel_slice`` (templates/hls/fg_slice.h): one flat loop, II=1, of H*W*C/PE iterations, one input
word each; the word counter within the pixel decides whether the word is pushed (words start/PE .. stop/PE - 1).
No memory. PE divides C, start and the kept count, so a word never straddles the cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...errors import FpgagenError
from .affine import AffineView
from .base import CONTROL_FF, CONTROL_LUT, GraphLayer, Lowered, Lowering, PEWords, divisors, resources


@dataclass(eq=False)
class ChannelSlice(PEWords, GraphLayer):
    start: int = 0  # first kept channel; the output has out_shapes[0][2] channels
    pe: int = 1

    kind = "ChannelSlice"
    KERNEL_HEADER = "fg_slice.h"
    CONFIG_TEMPLATE = "slice.h.j2"

    @property
    def stop(self) -> int:
        return self.start + self.out_shapes[0][2]

    def validate(self) -> None:
        h, w, c = self.in_shapes[0]
        self._require(0 <= self.start < self.stop <= c and self.out_shapes[0][:2] == (h, w),
                      f"channels [{self.start}, {self.stop}) of {self.in_shapes[0]}", "keep a non-empty channel range")
        self._require(self.out_dtypes == self.in_dtypes, "a slice keeps its input's datatype", "use the input's")
        self._require(math.gcd(c, self.start, self.stop) % self.pe == 0,
                      f"PE={self.pe} does not divide C={c}, start={self.start} and stop={self.stop}",
                      f"choose PE from {divisors(math.gcd(c, self.start, self.stop))}")

    def fold_cores(self) -> list[dict]:
        return [{"pe": p} for p in divisors(math.gcd(self.in_shapes[0][2], self.start, self.stop))]

    def cycles(self) -> int:
        return self.words_in(0)

    def io_pattern(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        word = np.arange(self.channel_words)
        kept = (word >= self.start // self.pe) & (word < self.stop // self.pe)
        pixels = self.in_shapes[0][0] * self.in_shapes[0][1]
        return [np.ones(self.cycles(), bool)], [np.tile(kept, pixels)]

    def logic(self) -> dict[str, int]:
        """The word counter and its two compares; the output register."""
        bits = self.pe * self.in_dtypes[0].bitwidth()
        return resources(LUT=CONTROL_LUT + 2 * self.channel_words.bit_length(), FF=bits + CONTROL_FF)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        (x,) = self._check_inputs(inputs)
        return [x[..., self.start:self.stop].copy()]


def lower_slice(node, views: list[AffineView], shapes, ctx) -> Lowered:
    """ONNX Slice (opset 10+: data, starts, ends, axes, steps as constants) on the channel axis of NCHW, step 1."""
    where = f"node '{node.name}' ({node.op_type})"
    (view,), ((h, w, c),) = views, shapes
    inputs = list(node.input) + [""] * (5 - len(node.input))
    starts, ends, axes, steps = (ctx.const(n) if n else None for n in inputs[1:5])
    if starts is None or ends is None or (inputs[3] and axes is None) or (inputs[4] and steps is None):
        raise FpgagenError("Slice with non-constant starts, ends, axes or steps", where, "slice by constants")
    axes = [1] if axes is None else [int(a) for a in np.reshape(axes, -1)]
    if len(axes) != 1 or axes[0] not in (1, -3) or (steps is not None and np.any(np.reshape(steps, -1) != 1)):
        raise FpgagenError(f"Slice on axes {axes}", where, "slice channels only (x[:, a:b]), with step 1")
    start, stop = (int(np.reshape(v, -1)[0]) for v in (starts, ends))
    start, stop = (min(max(v + c if v < 0 else v, 0), c) for v in (start, stop))  # ONNX clamps to [0, C]
    if stop <= start:
        raise FpgagenError(f"Slice keeps no channel ({start}:{stop} of {c})", where, "keep at least one channel")
    layer = ChannelSlice(ctx.name, ((h, w, c),), ((h, w, stop - start),), (view.dtype,), (view.dtype,), start=start)
    layer.validate()
    keep = slice(start, stop)
    out = AffineView(view.scale[keep], view.offset[keep], view.dtype, view.lo[keep], view.hi[keep], view.clamp)
    return Lowered(layer, out, [(0, ch) for ch in range(start, stop)])


KINDS = (ChannelSlice,)
LOWERINGS = {"Slice": Lowering(lower_slice, doc="Slice (channel axis, step 1)")}
