"""GlobalAveragePool: the mean over H x W of every channel (ONNX GlobalAveragePool, torch ``AdaptiveAvgPool2d(1)``
in the legacy exporter; ``ReduceMean`` over the two spatial axes, as the dynamo exporter writes AdaptiveAvgPool2d(1)
and ``x.mean((2, 3))``), followed by a Quant: an integer sum and thresholds, no division in hardware.

With the input view real = a_c * q + o_c and N = H*W pixels, the mean is a_c * S_c / N + o_c, S_c = sum of the
codes, an integer. The Quant after it gives q_out >= k exactly when a_c * S_c + N * o_c reaches N * s * (k - 1/2 - z)
(ties to even): the same rule as every requantization (fpgagen.ir.kinds.affine.requantize) applied to the exact view
(scale a_c, offset N * o_c) of S_c and the grid (N * s, z). N * s is exact in float64 (a float32 scale times
N < 2^29), and so is N * o_c where a zero point makes the offset (a float32 scale times an integer): the 1/N never
rounds, and the thresholds on S_c are exact whatever N is. Without a Quant
right after it (its output a graph output, or a Flatten between), the layer streams S_c with the view a_c / N,
which float64 holds exactly only for N a power of two; any other N is refused with what to do.

Kernel ``fg::global_pool`` / ``fg::global_pool_requant`` (templates/hls/fg_global_pool.h): one flat loop, II=1,
of H*W*C/PE iterations, each popping one word of PE channels and adding it to the sums of its channel fold; during
the last pixel each iteration pushes its fold's PE finished sums, or their codes (NT comparators per lane,
fg_arith.h's count_passed as every thresholding kind, a negated compare where a_c < 0). Memories: the sums, C/PE
words of PE in registers (read, added to and written every cycle at the fold the counter names), and the
threshold table and negate flags (fpgagen.ir.kinds.base.threshold_memories).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from qonnx.core.datatype import DataType

from ...errors import FpgagenError
from ...quant import apply_thresholds, smallest_dtype
from ..memory import Memory
from .affine import AffineView, QuantSpec, requantize
from .base import (
    CONTROL_FF,
    CONTROL_LUT,
    MEM_STYLES,
    GraphLayer,
    Lowered,
    Lowering,
    PEWords,
    Requantizing,
    compare_luts,
    divisors,
    resources,
    threshold_dtype,
    threshold_memories,
)


@dataclass(eq=False)
class GlobalAveragePool(PEWords, Requantizing, GraphLayer):
    pe: int = 1

    kind = "GlobalAveragePool"
    KERNEL_HEADER = "fg_global_pool.h"
    CONFIG_TEMPLATE = "global_pool.h.j2"
    STYLES = {"thr_style": MEM_STYLES}

    @property
    def pixels(self) -> int:
        return self.in_shapes[0][0] * self.in_shapes[0][1]

    @property
    def sum_dtype(self) -> DataType:
        """The type holding a sum of H*W codes of the input type (without thresholds the output type holds the sums
        of the input's actual range, which may be narrower)."""
        dt = self.in_dtypes[0]
        return smallest_dtype(self.pixels * int(dt.min()), self.pixels * int(dt.max()))

    @property
    def compare_dtype(self) -> DataType:
        """A signed type holding every sum and its negation (what the comparators see)."""
        s = self.sum_dtype
        return smallest_dtype(min(int(s.min()), -int(s.max()), -1), max(int(s.max()), -int(s.min())))

    def validate(self) -> None:
        h, w, c = self.in_shapes[0]
        self._require(tuple(self.out_shapes[0]) == (1, 1, c), f"output {self.out_shapes[0]} should be (1, 1, {c})",
                      "pool every pixel of each channel")
        self._require(c % self.pe == 0, f"PE={self.pe} does not divide C={c}", f"choose PE from {divisors(c)}")
        if self.requantizes:
            self._require(self.thresholds.shape[0] == c and self.negate is not None and self.negate.shape == (c,),
                          "the threshold table needs one row per channel", "rebuild it with the lowering")

    def fold_cores(self) -> list[dict]:
        return [{"pe": p} for p in divisors(self.in_shapes[0][2])]

    def style_groups(self) -> list[list[dict]]:
        return [[{"thr_style": t} for t in (MEM_STYLES if self.requantizes and self.channel_words > 1
                                            else ("lutram",))]]

    def cycles(self) -> int:
        return self.pixels * self.channel_words

    def io_pattern(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Every iteration pops a word; the last pixel's C/PE iterations push one each."""
        i = np.arange(self.cycles())
        return [np.ones(self.cycles(), bool)], [i >= self.cycles() - self.channel_words]

    def memories(self) -> list[Memory]:
        sums = Memory("sums", 1, self.channel_words, self.pe, self.sum_dtype.bitwidth(), "registers",
                      reads=1, writes=1)
        if not self.requantizes:
            return [sums]
        return [sums, *threshold_memories(self.thresholds, self.negate, self.pe, self.thr_style)]

    def logic(self) -> dict[str, int]:
        """Per lane the sum's adder and the C/PE:1 multiplexer reading its fold's sum (4:1 per LUT6); when
        requantizing the negation and NT comparators with their count (``compare_luts``); the input and output
        words; control."""
        sb, words = self.sum_dtype.bitwidth(), self.channel_words
        mux = sb * math.ceil(words / 4) if words > 1 else 0
        lut = self.pe * (sb + mux)
        if self.requantizes:
            vb = self.compare_dtype.bitwidth()
            lut += self.pe * vb + compare_luts(self.pe, self.nt, vb, threshold_dtype(self.thresholds).bitwidth())
        bits = self.in_dtypes[0].bitwidth() + self.out_dtypes[0].bitwidth()
        return resources(LUT=lut + CONTROL_LUT, FF=self.pe * bits + CONTROL_FF)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        (x,) = self._check_inputs(inputs)
        sums = x.sum(axis=(1, 2), keepdims=True)
        if not self.requantizes:
            return [sums]
        return [apply_thresholds(sums, self.thresholds, self.out_base, self.negate)]



# --- lowering ----------------------------------------------------------------------------------------------------
def _spatial_mean(node, ctx) -> None:
    """Refuse a ReduceMean that is not over the two spatial axes of an NCHW tensor."""
    where = f"node '{node.name}' ({node.op_type})"
    if node.op_type != "ReduceMean":
        return
    attrs = {a.name: a for a in node.attribute}
    axes = list(attrs["axes"].ints) if "axes" in attrs else None  # opset < 18: an attribute
    if axes is None and len(node.input) > 1 and node.input[1]:
        value = ctx.const(node.input[1])
        if value is None:
            raise FpgagenError("ReduceMean with non-constant axes", where, "reduce over constant axes (2, 3)")
        axes = [int(a) for a in np.reshape(value, -1)]
    if axes is None or sorted(a % 4 for a in axes) != [2, 3]:
        raise FpgagenError(f"ReduceMean over axes {axes}", where,
                           "average over the height and width only (x.mean((2, 3)) or AdaptiveAvgPool2d(1))")


def lower_global_pool(node, views: list[AffineView], shapes, ctx) -> Lowered:
    """ONNX GlobalAveragePool, or ReduceMean over H and W, on the stream of ``views[0]``; ``ctx.out_quant``: the
    Quant right after it, folded into thresholds on the integer sums."""
    where = f"node '{node.name}' ({node.op_type})"
    _spatial_mean(node, ctx)
    (view,), ((h, w, c),) = views, shapes
    n = h * w
    if view.clamp is not None:
        raise FpgagenError("averaging a float activation (a ReLU/Clip no quantizer has applied)", where,
                           "quantize the activation (QuantReLU/QuantIdentity) before the pooling")
    s_lo, s_hi = n * view.lo, n * view.hi
    sum_dt = smallest_dtype(int(s_lo.min()), int(s_hi.max()))
    shape_in, shape_out = ((h, w, c),), ((1, 1, c),)
    if ctx.out_quant is None:
        if n & (n - 1):
            raise FpgagenError(f"an average over {h}x{w} = {n} pixels (not a power of two) with no Quant right after "
                               f"it: its scale 1/{n} has no exact binary form", where,
                               "put the activation quantizer (QuantIdentity) directly after the pooling")
        layer = GlobalAveragePool(ctx.name, shape_in, shape_out, (view.dtype,), (sum_dt,))
        layer.validate()
        return Lowered(layer, AffineView(view.scale / n, view.offset, sum_dt, s_lo, s_hi))
    quant = ctx.out_quant.for_channels(c)
    # n * mean = a * S + n * o, requantized on the grid n * s: exact in float64 (module docstring)
    req, on_sums = requantize(AffineView(view.scale, n * view.offset, sum_dt, s_lo, s_hi),
                              QuantSpec(n * quant.scale, quant.zero, quant.range))
    out = AffineView(quant.scale, -quant.scale * quant.zero, on_sums.dtype, on_sums.lo, on_sums.hi)
    if req is None:  # the sums are already the codes
        layer = GlobalAveragePool(ctx.name, shape_in, shape_out, (view.dtype,), (sum_dt,))
        layer.validate()
        return Lowered(layer, AffineView(out.scale, out.offset, sum_dt, out.lo, out.hi))
    layer = GlobalAveragePool(ctx.name, shape_in, shape_out, (view.dtype,), (out.dtype,),
                              thresholds=req.thresholds, negate=req.negate, out_base=req.base)
    layer.validate()
    return Lowered(layer, out)


KINDS = (GlobalAveragePool,)
_RULE = Lowering(lower_global_pool, fuses_quant=True, doc="GlobalAveragePool / ReduceMean over H, W")
LOWERINGS = {"GlobalAveragePool": _RULE, "ReduceMean": _RULE}
