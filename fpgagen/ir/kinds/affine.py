"""The exact affine view of an integer tensor, and requantization by thresholds, as pure functions.

A tensor on the accelerator is an integer stream ``q``; its real value is ``scale[c] * q + offset[c]`` per
channel c, with ``q`` in ``[lo[c], hi[c]]`` (inside ``dtype``). ``clamp`` is a monotone clamp of the real value
(ReLU, Clip) that no quantizer has applied yet. The lowering rules of the graph kinds take and return these
views; the graph walk (fpgagen.streamline) keeps one per tensor.

``requantize`` is the exact rule of a QONNX Quant (ROUND, half to even) on such a view, written once here as
integer thresholds on ``q`` through fpgagen.quant.requant_thresholds (see shared/facts.md, "Quantizer semantics
and thresholds"); it is the same rule as threshold.py's ``lower_quant`` on the walk's exact view.

``StreamView`` is that exact view as the graph walk keeps it per tensor: the offset split into a float part and an
exact dyadic ``center``, the Quant grid the codes sit on, and the accumulators of an MVAU not yet emitted
(``PendingMVAU``). The rules that need it (``Lowering.exact``: linear layers, Quant, the view-only ops) take and
return it; the others get its ``view()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
from qonnx.core.datatype import DataType

from ...errors import FpgagenError
from ...quant import IntRange, apply_thresholds, quantize, requant_thresholds, smallest_dtype


@dataclass(eq=False)
class AffineView:
    scale: np.ndarray  # (C,) float64
    offset: np.ndarray  # (C,) float64
    dtype: DataType
    lo: np.ndarray | None = field(default=None)  # (C,) int64; None: the dtype's minimum
    hi: np.ndarray | None = field(default=None)
    clamp: tuple[float, float] | None = None

    def __post_init__(self):
        self.scale = np.asarray(self.scale, np.float64).reshape(-1)
        self.offset = np.broadcast_to(np.asarray(self.offset, np.float64).reshape(-1), self.scale.shape).copy()
        c = self.scale.shape[0]
        self.lo = np.full(c, int(self.dtype.min()), np.int64) if self.lo is None else \
            np.broadcast_to(np.asarray(self.lo, np.int64), (c,)).copy()
        self.hi = np.full(c, int(self.dtype.max()), np.int64) if self.hi is None else \
            np.broadcast_to(np.asarray(self.hi, np.int64), (c,)).copy()

    @property
    def channels(self) -> int:
        return self.scale.shape[0]

    def real(self, q: np.ndarray) -> np.ndarray:
        """The real value of codes q (..., C), in float64 (for tests and checks)."""
        return self.scale * np.asarray(q, np.float64) + self.offset


@dataclass(eq=False)
class QuantSpec:
    """A QONNX Quant's grid: ``q = clip(round(x / scale + zero), range)`` per channel (scale, zero: (C,))."""

    scale: np.ndarray
    zero: np.ndarray
    range: IntRange

    def __post_init__(self):
        self.scale = np.asarray(self.scale, np.float64).reshape(-1)
        self.zero = np.asarray(self.zero, np.float64).reshape(-1)

    def for_channels(self, c: int) -> QuantSpec:
        return QuantSpec(np.broadcast_to(self.scale, (c,)).copy(), np.broadcast_to(self.zero, (c,)).copy(),
                         self.range)


@dataclass(eq=False)
class Requant:
    """Thresholds that map a view's codes to a Quant's codes: ``out = base + #{k : x' >= thresholds[c, k]}``
    with ``x' = -x`` where ``negate[c]``."""

    thresholds: np.ndarray  # (C, top - base) int64, non-decreasing per row
    negate: np.ndarray  # (C,) bool
    base: int


def quant_levels(view: AffineView, quant: QuantSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (q_lo, q_hi) output codes: the Quant's range, narrowed by a pending clamp (a clamp before a
    monotone quantizer clamps the codes: Q(clip(y, a, b)) = clip(Q(y), Q(a), Q(b)))."""
    c, rng = view.channels, quant.range
    q_lo, q_hi = np.full(c, rng.lo, np.int64), np.full(c, rng.hi, np.int64)
    if view.clamp is not None:
        a, b = view.clamp
        if np.isfinite(a):
            q_lo = np.maximum(q_lo, quantize(np.full(c, a), quant.scale.astype(np.float32),
                                             quant.zero.astype(np.float32), rng))
        if np.isfinite(b):
            q_hi = np.minimum(q_hi, quantize(np.full(c, b), quant.scale.astype(np.float32),
                                             quant.zero.astype(np.float32), rng))
    return q_lo, q_hi


def is_identity(view: AffineView, quant: QuantSpec) -> bool:
    """Requantizing to the grid the codes are already on (and within its range) changes nothing."""
    q_lo, q_hi = quant_levels(view, quant)
    return (view.clamp is None and np.array_equal(view.scale, quant.scale)
            and np.array_equal(view.offset, -quant.scale * quant.zero)
            and bool(np.all(view.lo >= q_lo)) and bool(np.all(view.hi <= q_hi)))


def level_thresholds(view: AffineView, quant: QuantSpec, base: int, top: int) -> Requant:
    """Thresholds for the output levels base+1..top (a superset of the channel's own levels: below its floor a
    level always passes, above its ceiling it never does), so that several views share one table shape."""
    q_lo, q_hi = quant_levels(view, quant)
    if base > int(q_lo.min()) or top < int(q_hi.max()):
        raise ValueError("levels must cover every channel's output range")
    thresholds, negate = requant_thresholds(view.scale, view.offset, quant.scale, quant.zero, IntRange(base, top),
                                            view.lo, view.hi)
    thresholds = clamp_levels(thresholds, negate, view.lo, view.hi, q_lo, q_hi, base, top)
    return Requant(thresholds.astype(np.int64), negate, base)


def clamp_levels(thresholds: np.ndarray, negate: np.ndarray, lo: np.ndarray, hi: np.ndarray, q_lo: np.ndarray,
                 q_hi: np.ndarray, base: int, top: int) -> np.ndarray:
    """Per-channel clamp of a (C, top - base) threshold table over the input range [lo, hi] (negated where
    ``negate``): the levels at or below a channel's floor ``q_lo`` always pass, those above its ceiling ``q_hi``
    never do."""
    levels = np.arange(base + 1, top + 1)
    in_lo = np.where(negate, -hi, lo)
    in_hi = np.where(negate, -lo, hi)
    thresholds = np.where(levels[None, :] <= q_lo[:, None], in_lo[:, None], thresholds)
    return np.where(levels[None, :] > q_hi[:, None], in_hi[:, None] + 1, thresholds)


def out_view(quant: QuantSpec, q_lo: np.ndarray, q_hi: np.ndarray) -> AffineView:
    return AffineView(quant.scale, -quant.scale * quant.zero, smallest_dtype(q_lo.min(), q_hi.max()), q_lo, q_hi)


def requantize(view: AffineView, quant: QuantSpec) -> tuple[Requant | None, AffineView]:
    """The Quant applied to a view: (thresholds, or None where it is the identity; the output view)."""
    quant = quant.for_channels(view.channels)
    if np.any(quant.zero != np.rint(quant.zero)):
        raise FpgagenError("non-integer activation zero point", "a Quant after a graph layer",
                           "use integer zero points")
    q_lo, q_hi = quant_levels(view, quant)
    if is_identity(view, quant):
        return None, out_view(quant, view.lo, view.hi)
    return level_thresholds(view, quant, int(q_lo.min()), int(q_hi.max())), out_view(quant, q_lo, q_hi)


def apply_requant(x: np.ndarray, req: Requant | None) -> np.ndarray:
    """Reference of ``Requant`` on codes (..., C)."""
    if req is None:
        return np.asarray(x, np.int64)
    return apply_thresholds(x, req.thresholds, req.base, req.negate)


def integer_ratio(a: np.ndarray, b: np.ndarray, max_bits: int = 32) -> tuple[int, int]:
    """Coprime integers (ma, mb) with a[c] / ma == b[c] / mb exactly (as the binary fractions the floats are) for
    every channel c, or FpgagenError. Then ``a*qa + b*qb == (a/ma) * (ma*qa + mb*qb)``: an exact integer sum.

    Two float32 scales (24-bit significands) always have such a ratio; its factors stay within ``max_bits`` unless
    the exponents lie far apart (the sum would then need very wide adders)."""
    ratios = {Fraction(float(x)) / Fraction(float(y)) for x, y in zip(a, b, strict=True) if y != 0}
    if np.any(np.asarray(b) == 0) or np.any(np.asarray(a) == 0) or len(ratios) != 1:
        raise FpgagenError("the two branches' scales differ by a ratio that is not the same on every channel",
                           "an elementwise Add of two streams",
                           "quantize both branches with per-tensor scales (or one shared quantizer) before the Add")
    ratio = ratios.pop()  # a / b = ma / mb
    ma, mb = ratio.numerator, ratio.denominator
    if max(abs(ma), abs(mb)).bit_length() > max_bits:
        raise FpgagenError(f"the branches' scales differ by {float(ratio):.6g}, which needs integer factors "
                           f"{ma}/{mb} wider than {max_bits} bits", "an elementwise Add of two streams",
                           "use one shared quantizer (or power-of-two scales) for both residual branches")
    return ma, mb


def dtype_of(lo: np.ndarray, hi: np.ndarray) -> DataType:
    return smallest_dtype(int(np.min(lo)), int(np.max(hi)))


def per_channel(value, channels: int, node) -> np.ndarray:
    """A constant that broadcasts over the channel axis only, as a (C,) float64 vector."""
    v = np.asarray(value, np.float64)
    squeezed = v.reshape(-1) if v.size in (1, channels) else None
    if squeezed is None or (v.ndim > 1 and sorted(d for d in v.shape if d != 1) not in ([], [channels])):
        raise FpgagenError(f"constant of shape {list(v.shape)} varies along more than the channel axis",
                           f"node '{node.name}' ({node.op_type})",
                           "only scalar or per-channel constants can be folded into thresholds")
    return np.broadcast_to(squeezed, (channels,)).copy()


@dataclass
class PendingMVAU:
    """An MVAU whose output is still its raw accumulators. The walk reserves its place in the layer list and its
    input stream when the linear op is reached; the layer itself is created once, when the walk knows its output:
    the Quant that thresholds it (``Lowered.finish``), or anything else (the accumulators are then its output)."""

    slot: int  # index in the walk's layer list
    fields: dict  # the MVAU's fields known at the linear op
    emitted: bool = False


@dataclass
class StreamView:
    """The exact affine view of the integer tensor flowing between layers, as the walk keeps it."""

    shape: tuple[int, int, int]  # (H, W, C) of the integer stream
    alpha: np.ndarray  # (C,) float64: real = alpha * (q - center) + beta
    beta: np.ndarray
    lo: np.ndarray  # (C,) int64: range of the integer values
    hi: np.ndarray
    center: np.ndarray = None  # (C,) float64, exact dyadic; None: zeros
    quant: tuple[np.ndarray, np.ndarray] | None = None  # (scale, zero) when q are the codes of a Quant
    pending: PendingMVAU | None = None  # the raw accumulators of an MVAU not yet emitted (its Quant may come)
    clamp: tuple[float, float] | None = None  # pending monotone clamp of the real value
    flat_from: tuple[int, int, int] | None = None  # stream (H, W, C) flattened in torch (C, H, W) order
    where: str = "graph input"
    # Float ops since the last integer layer or quantizer, as host steps (see OutputSpec.post), and the stream as
    # it was before them: if the graph ends here they run on the host in float32; otherwise (alpha, beta) already
    # holds them and the next quantizer folds them into thresholds.
    post: tuple = ()
    before_post: Any = None  # a StreamView
    pending_pad: tuple | None = None  # ((top, left, bottom, right), value) of a Pad the next MaxPool fuses

    def view(self) -> AffineView:
        """The plain form of this view (what the rules that are not ``exact`` take)."""
        return AffineView(self.alpha, self.offset, self.dtype, self.lo, self.hi, self.clamp)

    def __post_init__(self):
        if self.center is None:
            self.center = np.zeros(self.shape[2])

    @property
    def dtype(self) -> DataType:
        return smallest_dtype(self.lo.min(), self.hi.max())

    @property
    def offset(self) -> np.ndarray:
        """beta' of the plain affine view real = alpha * q + beta' (float64, for host-side dequantization)."""
        return self.beta - self.alpha * self.center

    @classmethod
    def of_plain(cls, shape: tuple[int, int, int], done, streams: list[StreamView],
                 out_quant: QuantSpec | None) -> StreamView:
        """The exact view of a plain rule's output (``done``: its ``Lowered``, whose view is an AffineView) on the
        input views ``streams``: the fused Quant's grid, the inputs' exact views of the channels passed through, or
        the new codes' view."""
        view = done.view
        c = view.channels
        if out_quant is not None:
            q_scale, q_zero = (np.broadcast_to(v, (c,)).copy() for v in (out_quant.scale, out_quant.zero))
            return cls(shape, q_scale, np.zeros(c), view.lo, view.hi, center=q_zero, quant=(q_scale, q_zero))
        if done.passthrough is not None:  # codes pass through: each channel keeps its exact view
            def pick(values):
                return np.array([values(streams[p])[ch] for p, ch in done.passthrough])
            quant = None
            if all(st.quant is not None for st in streams):
                quant = (pick(lambda st: st.quant[0]), pick(lambda st: st.quant[1]))
            return cls(shape, pick(lambda st: st.alpha), pick(lambda st: st.beta), view.lo, view.hi,
                       center=pick(lambda st: st.center), quant=quant, clamp=view.clamp)
        return cls(shape, view.scale, view.offset, view.lo, view.hi, clamp=view.clamp)  # new codes
