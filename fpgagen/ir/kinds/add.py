"""AddStreams: elementwise sum of two code streams (residual connections), exact whatever the two scales.

Real values ``alpha_a*qa + beta_a`` and ``alpha_b*qb + beta_b`` add to ``s * (MA*qa + MB*qb) + (beta_a + beta_b)``
with coprime integers MA/MB = alpha_a/alpha_b (fpgagen.ir.kinds.affine.integer_ratio; s = alpha_a/MA). Equal
scales give MA = MB = 1, a plain integer add; power-of-two ratios give shifts; any other float ratio gives two
small constant multipliers. Requantizing one branch to the other's grid first would round it on its own, which
is not what the float graph computes, so the kernel never does that: it forms the exact integer sum, then either
streams the sum as the output code (its own datatype and view), or, when a Quant follows (the lowering decides),
thresholds the sum to that Quant's codes exactly (same rule as every Quant, ties to even, negative scales by
negating).

Kernel ``fg::add_streams`` / ``fg::add_streams_requant`` (templates/hls/fg_add.h): one flat loop, II=1, of
H*W*C/PE iterations; each pops one word from each input and pushes one word.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from qonnx.core.datatype import DataType

from ...errors import FpgagenError
from ...quant import apply_thresholds, smallest_dtype
from ..memory import Memory
from .affine import AffineView, QuantSpec, dtype_of, integer_ratio, requantize
from .base import (
    CONTROL_FF,
    CONTROL_LUT,
    MEM_STYLES,
    GraphLayer,
    Lowered,
    Lowering,
    PEWords,
    Requantizing,
    Shape,
    compare_luts,
    divisors,
    resources,
    threshold_dtype,
    threshold_memories,
)


@dataclass(eq=False)
class AddStreams(PEWords, Requantizing, GraphLayer):
    factors: tuple[int, int] = (1, 1)  # (MA, MB): acc = MA*a + MB*b
    acc_dtype: DataType = DataType["INT32"]
    pe: int = 1

    kind = "AddStreams"
    KERNEL_HEADER = "fg_add.h"
    CONFIG_TEMPLATE = "add.h.j2"
    STYLES = {"thr_style": MEM_STYLES}

    @property
    def channels(self) -> int:
        return self.in_shapes[0][2]

    @property
    def factor_dtype(self) -> DataType:
        ma, mb = self.factors
        return smallest_dtype(min(ma, mb, -1), max(ma, mb, 1))

    @property
    def compare_dtype(self) -> DataType:
        """The sum and its negation (the comparators see -acc for a negative scale)."""
        lo, hi = int(self.acc_dtype.min()), int(self.acc_dtype.max())
        return smallest_dtype(min(lo, -hi), max(hi, -lo))

    def validate(self) -> None:
        self._require(len(self.in_shapes) == 2 and self.in_shapes[0] == self.in_shapes[1] == self.out_shapes[0],
                      f"AddStreams adds two tensors of one shape, got {list(self.in_shapes)} -> {self.out_shapes}",
                      "add tensors of the same shape (no broadcasting)")
        self._require(self.channels % self.pe == 0, f"PE={self.pe} does not divide C={self.channels}",
                      f"choose PE from {divisors(self.channels)}")
        self._require(self.requantizes or self.out_dtypes[0] == self.acc_dtype,
                      "without thresholds the output is the sum itself", "set out_dtypes to (acc_dtype,)")

    def fold_cores(self) -> list[dict]:
        return [{"pe": p} for p in divisors(self.channels)]

    def style_groups(self) -> list[list[dict]]:
        return [[{"thr_style": t} for t in (MEM_STYLES if self.requantizes and self.channel_words > 1
                                            else ("lutram",))]]

    def cycles(self) -> int:
        return self.words_out(0)

    def io_pattern(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        n = self.cycles()
        return [np.ones(n, bool), np.ones(n, bool)], [np.ones(n, bool)]

    def memories(self) -> list[Memory]:
        if not self.requantizes:
            return []
        return threshold_memories(self.thresholds, self.negate, self.pe, self.thr_style)

    def logic(self) -> dict[str, int]:
        """Per lane: a constant multiplier per factor that is not a power of two (one adder per extra set bit of
        the factor, at the product's width), the adder, and when requantizing NT comparators; registers."""
        acc_bits = self.acc_dtype.bitwidth()
        mult = 0
        for m, dt in zip(self.factors, self.in_dtypes, strict=True):
            ones = bin(abs(m)).count("1")
            mult += (ones - 1) * (dt.bitwidth() + abs(m).bit_length()) + (acc_bits if m < 0 else 0)
        cmp = compare_luts(self.pe, self.nt, self.compare_dtype.bitwidth(),
                           threshold_dtype(self.thresholds).bitwidth()) if self.requantizes else 0
        lut = self.pe * (mult + acc_bits) + cmp + CONTROL_LUT
        ff = self.pe * (acc_bits + self.out_dtypes[0].bitwidth()) + CONTROL_FF
        return resources(LUT=lut, FF=ff)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        a, b = self._check_inputs(inputs)
        acc = self.factors[0] * a + self.factors[1] * b
        if not self.requantizes:
            return [acc]
        return [apply_thresholds(acc, self.thresholds, self.out_base, self.negate)]



def lower_add(node, views: list[AffineView], shapes: list[Shape], name: str,
              out_quant: QuantSpec | None = None) -> tuple[AddStreams, AffineView]:
    """An ONNX Add of two streamed tensors (a constant operand is an affine update the walk folds instead),
    optionally followed by the Quant ``out_quant``."""
    where = f"node '{node.name}' ({node.op_type})"
    if len(views) != 2 or shapes[0] != shapes[1]:
        raise FpgagenError(f"elementwise add of tensors of shapes {list(shapes)}", where,
                           "add two tensors of the same shape (no broadcasting)")
    if any(v.clamp is not None for v in views):
        raise FpgagenError("an add after a float activation (ReLU/Clip with no quantizer)", where,
                           "quantize both branches (QuantReLU/QuantIdentity) before the add")
    a, b = views
    ma, mb = integer_ratio(a.scale, b.scale)
    lo = np.minimum(ma * a.lo, ma * a.hi) + np.minimum(mb * b.lo, mb * b.hi)
    hi = np.maximum(ma * a.lo, ma * a.hi) + np.maximum(mb * b.lo, mb * b.hi)
    acc_dtype = dtype_of(lo, hi)
    if acc_dtype.bitwidth() > 48:
        raise FpgagenError(f"the exact sum needs {acc_dtype.bitwidth()} bits", where,
                           "use one shared quantizer (or power-of-two scales) for both branches")
    total = AffineView(a.scale / ma, a.offset + b.offset, acc_dtype, lo, hi)
    kw = dict(factors=(ma, mb), acc_dtype=acc_dtype)
    if out_quant is None:
        layer = AddStreams(name, (shapes[0], shapes[1]), (shapes[0],), (a.dtype, b.dtype), (acc_dtype,), **kw)
        layer.validate()
        return layer, total
    req, view = requantize(total, out_quant)
    if req is None:  # the sum is already the Quant's code (same grid, within range)
        layer = AddStreams(name, (shapes[0], shapes[1]), (shapes[0],), (a.dtype, b.dtype), (acc_dtype,), **kw)
    else:
        layer = AddStreams(name, (shapes[0], shapes[1]), (shapes[0],), (a.dtype, b.dtype), (view.dtype,),
                           thresholds=req.thresholds, negate=req.negate, out_base=req.base, **kw)
    layer.validate()
    return layer, view




def _lower(node, views, shapes, ctx) -> Lowered:
    return Lowered(*lower_add(node, views, shapes, ctx.name, ctx.out_quant))


KINDS = (AddStreams,)
LOWERINGS = {"Add": Lowering(_lower, min_streams=2, fuses_quant=True,
                                doc="Add of two streams (residuals)")}
