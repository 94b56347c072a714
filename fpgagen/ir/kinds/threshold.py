"""Standalone multi-threshold requantization: its IR class (cost and cycle model, numpy reference ``reference``,
folding options, greedy baseline hooks), its kernel (``KERNEL_HEADER``) and config template (``CONFIG_TEMPLATE``),
and the Quant node's rules: ``quant_params`` reads a Quant once, ``quantized_const`` folds a Quant of a constant (a
weight) into integer codes, and ``lower_quant`` (``LOWERINGS``) turns a Quant on a stream into exact integer
thresholds, in the MVAU whose accumulators it reads when that is still pending, else in a Threshold layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.custom_op.registry import getCustomOp
from qonnx.util.basic import get_by_name

from ...errors import FpgagenError
from ...quant import IntRange, apply_thresholds, bipolar_thresholds, quantize, requant_thresholds, smallest_dtype
from ..layers import (
    CONTROL_FF,
    CONTROL_LUT,
    MEM_STYLES,
    Memory,
    OnePortLayer,
    add_resources,
    divisors,
    greedy_channel_pe,
    memory_resources,
    resources,
)
from .affine import QuantSpec, StreamView, clamp_levels, per_channel
from .base import Lowered, Lowering, threshold_memories, threshold_words


@dataclass(eq=False)
class Threshold(OnePortLayer):
    """Standalone multi-threshold requantization of a code stream (a Quant that no MVAU can absorb).
    ``negate[c]`` compares -x (a negative per-channel scale). Cycles: pixels * C / PE."""

    thresholds: np.ndarray = field(default=None, repr=False)
    negate: np.ndarray = field(default=None, repr=False)
    out_base: int = 0
    pe: int = 1
    thr_style: str = "lutram"  # threshold ROM: bram | lutram

    kind = "Threshold"
    KERNEL_HEADER = "fg_threshold.h"
    CONFIG_TEMPLATE = "threshold.h.j2"
    STYLES = {"thr_style": MEM_STYLES}

    @property
    def in_word(self) -> int:
        return self.pe

    @property
    def out_word(self) -> int:
        return self.pe

    def folding(self) -> dict:
        return {"pe": self.pe}

    def validate(self) -> None:
        c = self.in_shape[2]
        self._require(c % self.pe == 0, f"PE={self.pe} does not divide C={c}", f"choose PE from {divisors(c)}")

    def cycles(self) -> int:
        h, w, c = self.in_shape
        return h * w * c // self.pe

    @property
    def thr_bits(self) -> int:
        return smallest_dtype(min(int(self.thresholds.min()), -1), int(self.thresholds.max())).bitwidth()

    def fold_cores(self) -> list[dict]:
        return [{"pe": p} for p in divisors(self.in_shape[2])]

    def style_groups(self) -> list[list[dict]]:
        return [[{"thr_style": t} for t in (MEM_STYLES if self.in_shape[2] // self.pe > 1 else ("lutram",))]]

    def stream_pattern(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.cycles()
        return np.ones(n, bool), np.ones(n, bool)

    def greedy_styles(self) -> None:
        self.thr_style = "lutram" if self.in_shape[2] // self.pe <= 64 else "bram"

    def greedy_fold(self, target_cycles: float, prev_word: int) -> None:
        greedy_channel_pe(self, target_cycles, prev_word)

    def reference(self, x: np.ndarray) -> np.ndarray:
        return apply_thresholds(x, self.thresholds, self.out_base, self.negate)

    def memories(self) -> list[Memory]:
        """The threshold ROM and the negate flags in the layout every thresholding kind shares
        (fpgagen.ir.kinds.base.threshold_memories)."""
        return threshold_memories(self.thresholds, self.negate, self.pe, self.thr_style, self.thr_bits)

    def memory_contents(self) -> dict[str, np.ndarray]:
        return {"thresholds": threshold_words(self.thresholds, self.pe),
                "negate": threshold_words(self.negate.astype(np.int64)[:, None], self.pe)}

    def memory_dtypes(self) -> dict[str, DataType]:
        return {"thresholds": DataType[f"INT{self.thr_bits}"], "negate": DataType["BINARY"]}

    def resources(self) -> dict[str, int]:
        """FINN-R's threshold terms for PE lanes: NT comparators of max(A+1, TB) bits each (A+1: room for -x)
        and the negation, the memories (``memories``), 1.1 routing factor as in FINN-R's MVAU."""
        nt = self.thresholds.shape[1]
        cmp = nt * max(self.in_bits + 1, self.thr_bits) + self.in_bits + 1
        mem = memory_resources(self.memories())
        mem = {**mem, "LUT": math.ceil(1.1 * mem["LUT"])}
        return add_resources(mem, resources(LUT=1.1 * self.pe * cmp + CONTROL_LUT,
                                            FF=self.pe * (self.in_bits + nt + self.out_bits) + CONTROL_FF))


def node_error(node, what: str, fix: str) -> FpgagenError:
    return FpgagenError(what, f"node '{node.name}' ({node.op_type})", fix)


def quant_params(node, const) -> tuple[np.ndarray, np.ndarray, IntRange, bool]:
    """(scale, zero point, code range, bipolar) of a Quant or BipolarQuant (``const``: tensor name -> its
    initializer or None). A BipolarQuant's codes are {0, 1} for {-s, +s}: the exact affine view real = 2s*q - s,
    i.e. scale 2s and zero point 1/2 (its weights are kept as -1/+1)."""
    if node.op_type == "BipolarQuant":
        scale = const(node.input[1])
        if scale is None:
            raise node_error(node, "BipolarQuant with a non-constant scale", "export in inference mode")
        return np.asarray(scale, np.float32), np.zeros((), np.float32), IntRange(0, 1), True
    scale, zero, bits = (const(n) for n in node.input[1:4])
    if scale is None or zero is None or bits is None:
        raise node_error(node, "Quant with non-constant scale, zero point or bit width",
                         "export with constant (inference-mode) quantizer parameters")
    rounding = get_by_name(node.attribute, "rounding_mode")
    mode = rounding.s.decode() if rounding is not None else "ROUND"
    if mode != "ROUND":
        raise node_error(node, f"rounding_mode={mode} is not supported", "use brevitas' default ROUND quantizers")
    attr = {a: getattr(get_by_name(node.attribute, a), "i", 0) for a in ("signed", "narrow")}
    bits_f = float(np.asarray(bits).reshape(-1)[0])
    if bits_f != int(bits_f) or bits_f < 1:
        raise node_error(node, f"bit width {bits_f} is not a positive integer", "use integer bit widths")
    rng = IntRange.of(int(bits_f), bool(attr["signed"]), bool(attr["narrow"]))
    return np.asarray(scale, np.float32), np.asarray(zero, np.float32), rng, False


def quant_spec(node, const) -> QuantSpec:
    """The grid of a Quant that a kind's layer fuses (per tensor: one value)."""
    scale, zero, rng, _ = quant_params(node, const)
    grid = [per_channel(v, max(np.size(scale), np.size(zero)), node) for v in (scale, zero)]
    if not np.ptp(grid[0]) and not np.ptp(grid[1]):  # per tensor: one value
        grid = [g[:1] for g in grid]
    return QuantSpec(grid[0], grid[1], rng)


@dataclass
class QuantizedConst:
    """A Quant of a constant (a weight) as integers: ``real = codes * scale``."""

    codes: np.ndarray  # integer codes minus zero point
    scale: np.ndarray
    dtype: DataType  # what the codes are stored as: the weight ROM's element type


def quantized_const(node, model) -> QuantizedConst:
    """The Quant or BipolarQuant of an initializer of ``model`` (a qonnx ModelWrapper), as integer codes."""
    value = model.get_initializer(node.input[0])
    scale, zero, rng, bipolar = quant_params(node, model.get_initializer)
    if bipolar:  # -1/+1 codes (a 2-bit signed ROM); BipolarQuant maps x >= 0 to +1, as brevitas' sign
        codes = np.where(np.asarray(value) >= 0, 1, -1).astype(np.int64)
        # qonnx calls them BIPOLAR; the matrix unit multiplies them as signed values, so they are stored so
        return QuantizedConst(codes, scale, DataType["INT2"])
    codes = quantize(value, scale, zero, rng)
    zero_i = np.rint(zero).astype(np.int64)
    if np.any(zero != zero_i):
        raise node_error(node, "non-integer weight zero point", "use integer zero points")
    # qonnx's type of the Quant's integer codes (InferDataTypes annotates the dequantized output: FLOAT32
    # unless the scale is 1). Not right for a 1-bit quantizer (qonnx: BIPOLAR/BINARY, the codes: -1..0 / 0..1)
    # nor with a zero point (the codes are stored minus it): there the stored range's type.
    dtype = getCustomOp(node).get_integer_datatype(model)
    if dtype.name in ("BIPOLAR", "BINARY") or zero_i.any():
        dtype = smallest_dtype(rng.lo - int(zero_i.max()), rng.hi - int(zero_i.min()))
    return QuantizedConst(codes - zero_i, scale, dtype)


def lower_quant(node, views: list[StreamView], shapes, ctx) -> Lowered:
    """A Quant (or BipolarQuant) on a stream: the identity when the codes are already on its grid, else exact
    integer thresholds, which the MVAU computing the stream takes when it is still pending (``finish``)."""
    (s,) = views
    scale, zero, rng, bipolar = quant_params(node, ctx.const)
    c = s.shape[2]
    out_s, out_z = per_channel(scale, c, node), per_channel(zero, c, node)
    if np.any(out_z != np.rint(out_z)):
        raise node_error(node, "non-integer activation zero point", "use integer zero points")

    def code_of(v: float) -> np.ndarray:
        if bipolar:
            return np.full(c, int(v >= 0))
        return quantize(np.full(c, v), out_s, out_z, rng)

    # A clamp before a monotone quantizer clamps the codes: Q(clip(y, a, b)) = clip(Q(y), Q(a), Q(b)).
    q_lo, q_hi = np.full(c, rng.lo), np.full(c, rng.hi)
    if s.clamp is not None:
        a, b = s.clamp
        if np.isfinite(a):
            q_lo = np.maximum(q_lo, code_of(a))
        if np.isfinite(b):
            q_hi = np.minimum(q_hi, code_of(b))
    if (not bipolar and s.quant is not None and s.clamp is None and np.array_equal(s.alpha, out_s)
            and not s.beta.any() and np.array_equal(s.center, out_z) and np.all(s.lo >= q_lo)
            and np.all(s.hi <= q_hi)):
        return Lowered(None, replace(s, quant=(out_s, out_z), post=(), before_post=None))  # same grid: identity
    base, top = int(q_lo.min()), int(q_hi.max())
    if bipolar:
        thresholds, negate = bipolar_thresholds(s.alpha, s.beta, s.lo, s.hi, s.center)
    else:
        thresholds, negate = requant_thresholds(s.alpha, s.beta, out_s, out_z, IntRange(base, top), s.lo,
                                                s.hi, s.center)
    thresholds = clamp_levels(thresholds, negate, s.lo, s.hi, q_lo, q_hi, base, top)
    odt = smallest_dtype(base, top)
    layer = finish = None
    if s.pending is not None and not s.pending.emitted:  # the MVAU computing s thresholds it itself
        fields = s.pending.fields
        weights = np.where(negate[:, None], -fields["weights"], fields["weights"])
        # Negating a row of signed non-narrow weights turns the most negative code (-8 in INT4) into one
        # past the type's maximum (+8): widen this layer's weight type to hold the rows as stored.
        declared = fields["weight_dtype"]
        finish = dict(weights=weights, thresholds=thresholds, out_base=base, out_dtype=odt,
                      weight_dtype=smallest_dtype(min(declared.min(), weights.min()),
                                                  max(declared.max(), weights.max())))
    else:
        layer = Threshold(ctx.name, s.shape, s.shape, s.dtype, odt, thresholds=thresholds, negate=negate,
                          out_base=base)
    if bipolar:  # codes {0, 1} for {-s, +s}
        out_s, out_z = 2 * out_s, np.full(c, 0.5)
    out = StreamView(s.shape, out_s, np.zeros(c), q_lo, q_hi, center=out_z, quant=(out_s, out_z))
    return Lowered(layer, out, finish=finish)


KINDS = (Threshold,)
_QUANT = Lowering(lower_quant, max_streams=1, exact=True, doc="Quant (ROUND)")
LOWERINGS = {"Quant": _QUANT, "BipolarQuant": Lowering(lower_quant, max_streams=1, exact=True, doc="BipolarQuant")}
