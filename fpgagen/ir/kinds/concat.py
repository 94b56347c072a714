"""Concat: channel concatenation of K streams, with per-branch requantization where the branches' grids differ.

Per pixel the output carries branch 0's channels, then branch 1's, ... (ONNX Concat on the channel axis). A
word never straddles two branches: PE divides every branch's channel count, so the kernel reads, per pixel,
C_0/PE words from input 0, then C_1/PE from input 1, ... and writes each as it reads it.

Requantization (FINN fails here, shared/facts.md): when a Quant follows the Concat and a branch's codes are not
already on its grid, that branch's codes q map exactly to the output codes through integer thresholds
(fpgagen.ir.kinds.affine.level_thresholds: the same rule as every other Quant, ties to even, negative scales by
negating). The branches share one comparator bank (one branch is read per cycle), so the table is stacked per
output channel; a branch already on the grid gets the identity thresholds T_k = k, which reproduce its code.

Kernel ``fg::concat`` / ``fg::concat_requant`` (templates/hls/fg_concat.h): one flat loop, II=1, of
PIXELS * sum(C_b)/PE iterations; each pops one word from the branch a counter selects and pushes one word.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from qonnx.core.datatype import DataType

from ...errors import FpgagenError
from ...quant import apply_thresholds, smallest_dtype
from ..memory import Memory
from .affine import AffineView, QuantSpec, dtype_of, is_identity, level_thresholds, out_view, quant_levels
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
    same_channels,
    threshold_dtype,
    threshold_memories,
)


@dataclass(eq=False)
class Concat(PEWords, Requantizing, GraphLayer):
    pe: int = 1

    kind = "Concat"
    KERNEL_HEADER = "fg_concat.h"
    CONFIG_TEMPLATE = "concat.h.j2"
    STYLES = {"thr_style": MEM_STYLES}

    @property
    def branches(self) -> int:
        return len(self.in_shapes)

    @property
    def branch_channels(self) -> list[int]:
        return [s[2] for s in self.in_shapes]

    @property
    def pixels(self) -> int:
        return self.out_shapes[0][0] * self.out_shapes[0][1]

    @property
    def words_per_pixel(self) -> int:
        return self.out_shapes[0][2] // self.pe

    @property
    def compare_dtype(self) -> DataType:
        """A signed type holding every branch's codes and their negation (what the comparators see)."""
        lo = min(min(int(d.min()), -int(d.max())) for d in self.in_dtypes)
        hi = max(max(int(d.max()), -int(d.min())) for d in self.in_dtypes)
        return smallest_dtype(min(lo, -1), hi)

    def pe_options(self) -> list[int]:
        return [d for d in divisors(math.gcd(*self.branch_channels))]

    def validate(self) -> None:
        h, w, c = self.out_shapes[0]
        self._require(self.branches >= 2, "a concat needs at least 2 inputs", "concatenate two or more tensors")
        self._require(all(s[:2] == (h, w) for s in self.in_shapes) and sum(self.branch_channels) == c,
                      f"inputs {list(self.in_shapes)} do not concatenate to {self.out_shapes[0]} on the channel axis",
                      "concatenate tensors of the same height and width")
        self._require(all(ch % self.pe == 0 for ch in self.branch_channels),
                      f"PE={self.pe} does not divide every branch's channels {self.branch_channels}",
                      f"choose PE from {self.pe_options()}")
        if self.thresholds is not None:
            self._require(self.thresholds.shape[0] == c and self.negate is not None and self.negate.shape == (c,),
                          "the threshold table needs one row per output channel", "rebuild it with lower_concat")

    def fold_cores(self) -> list[dict]:
        return [{"pe": p} for p in self.pe_options()]

    def style_groups(self) -> list[list[dict]]:
        return [[{"thr_style": t} for t in (MEM_STYLES if self.requantizes and self.words_per_pixel > 1
                                            else ("lutram",))]]

    def cycles(self) -> int:
        return self.pixels * self.words_per_pixel

    def io_pattern(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per pixel: the words of branch 0, then of branch 1, ...; every iteration writes."""
        owner = np.repeat(np.arange(self.branches), [ch // self.pe for ch in self.branch_channels])
        reads = [np.tile(owner == b, self.pixels) for b in range(self.branches)]
        return reads, [np.ones(self.cycles(), bool)]

    def memories(self) -> list[Memory]:
        if not self.requantizes:
            return []
        return threshold_memories(self.thresholds, self.negate, self.pe, self.thr_style)

    def logic(self) -> dict[str, int]:
        """Per lane a K:1 input select (4:1 per LUT6) and, when requantizing, NT comparators with their count;
        the word registers; control."""
        vbits, obits = self.compare_dtype.bitwidth(), self.out_dtypes[0].bitwidth()
        mux = self.pe * vbits * math.ceil(self.branches / 4) if self.branches > 1 else 0
        cmp = compare_luts(self.pe, self.nt, vbits, threshold_dtype(self.thresholds).bitwidth()) \
            if self.requantizes else 0
        return resources(LUT=mux + cmp + CONTROL_LUT + 8, FF=self.pe * (vbits + obits) + CONTROL_FF + 16)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        x = np.concatenate(self._check_inputs(inputs), axis=-1)
        if not self.requantizes:
            return [x]
        return [apply_thresholds(x, self.thresholds, self.out_base, self.negate)]


    def branch_words(self) -> list[int]:
        return [ch // self.pe for ch in self.branch_channels]


def lower_concat(node, views: list[AffineView], shapes: list[Shape], name: str,
                 out_quant: QuantSpec | None = None) -> tuple[Concat, AffineView]:
    """An ONNX Concat on the channel axis of ``views`` (their (H, W, C) ``shapes``), optionally followed by the
    Quant ``out_quant`` (the graph walk passes it when the Concat's only consumer is a Quant, and drops that node).

    Without a Quant the codes pass through: the output view is the branches' per-channel views side by side,
    which is exact whatever the scales. With one, each branch is requantized to its grid, or passes unchanged
    where it already is on it."""
    where = f"node '{node.name}' ({node.op_type})"
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    if axis not in (1, -3):
        raise FpgagenError(f"Concat on axis {axis}", where, "concatenate NCHW tensors on the channel axis (1)")
    if out_quant is None:
        clamps = {v.clamp for v in views}
        if len(clamps) != 1:
            raise FpgagenError("concatenating branches with different pending activations (ReLU/Clip)", where,
                               "quantize each branch (QuantReLU/QuantIdentity) before the concat")
        lo, hi = np.concatenate([v.lo for v in views]), np.concatenate([v.hi for v in views])
        view = AffineView(np.concatenate([v.scale for v in views]), np.concatenate([v.offset for v in views]),
                          dtype_of(lo, hi), lo, hi, clamps.pop())
        layer = Concat(name, tuple(shapes), ((*shapes[0][:2], sum(s[2] for s in shapes)),),
                       tuple(v.dtype for v in views), (view.dtype,))
        layer.validate()
        return layer, view
    quants = [out_quant.for_channels(v.channels) for v in views]
    if any(np.any(q.zero != np.rint(q.zero)) for q in quants):
        raise FpgagenError("non-integer activation zero point", where, "use integer zero points")
    levels = [quant_levels(v, q) for v, q in zip(views, quants, strict=True)]
    identity = [is_identity(v, q) for v, q in zip(views, quants, strict=True)]
    q_lo = np.concatenate([v.lo if same else lv[0] for v, lv, same in zip(views, levels, identity, strict=True)])
    q_hi = np.concatenate([v.hi if same else lv[1] for v, lv, same in zip(views, levels, identity, strict=True)])
    view = out_view(QuantSpec(np.concatenate([q.scale for q in quants]), np.concatenate([q.zero for q in quants]),
                              out_quant.range), q_lo, q_hi)
    out_shape = ((*shapes[0][:2], sum(s[2] for s in shapes)),)
    if all(identity):
        layer = Concat(name, tuple(shapes), out_shape, tuple(v.dtype for v in views), (view.dtype,))
    else:
        base, top = int(q_lo.min()), int(q_hi.max())
        rows, neg = [], []
        for v, q, same in zip(views, quants, identity, strict=True):
            if same:  # already on the grid: T_k = k reproduces the code
                rows.append(np.broadcast_to(np.arange(base + 1, top + 1), (v.channels, top - base)))
                neg.append(np.zeros(v.channels, bool))
            else:
                req = level_thresholds(v, q, base, top)
                rows.append(req.thresholds)
                neg.append(req.negate)
        layer = Concat(name, tuple(shapes), out_shape, tuple(v.dtype for v in views), (view.dtype,),
                       thresholds=np.concatenate(rows).astype(np.int64), negate=np.concatenate(neg), out_base=base)
    layer.validate()
    return layer, view


def _lower(node, views, shapes, ctx) -> Lowered:
    quant = ctx.out_quant
    if quant is not None and (np.ptp(quant.scale) or np.ptp(quant.zero)):  # the rule takes one grid for all
        raise FpgagenError("a per-channel quantizer after a Concat", f"node '{node.name}' ({node.op_type})",
                           "quantize the concatenation per tensor")
    if quant is not None:
        quant = QuantSpec(quant.scale[:1], quant.zero[:1], quant.range)
    layer, view = lower_concat(node, views, shapes, ctx.name, quant)
    return Lowered(layer, view, same_channels(views) if quant is None else None)


KINDS = (Concat,)
LOWERINGS = {"Concat": Lowering(_lower, min_streams=2, fuses_quant=True,
                                      doc="Concat (channel axis)")}
