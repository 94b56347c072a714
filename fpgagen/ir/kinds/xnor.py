"""XnorMVAU: a W1A1 matrix unit on bipolar weights and activations stored as bits, by XNOR and popcount.

Bipolar values are -1/+1 (qonnx BIPOLAR, brevitas' 1-bit bipolar quantizers as FINN's CNV/TFC/SFC use them); on
the stream and in the ROM a bit b stands for 2b - 1. A product w*x is +1 exactly when the bits agree, so over
MW inputs

    acc = sum_i w_i x_i = #agree - #disagree = 2 * popcount(XNOR(w, x)) - MW,

the integer MVAU's accumulator exactly. Its thresholds T_k on acc (the rule every Quant follows, computed by
the lowering as for any MVAU) become thresholds on the popcount: acc >= T  <=>  2*pc >= T + MW  <=>
pc >= ceil((T + MW) / 2). A BIPOLAR output (BipolarQuant, one threshold) streams the bit [acc >= T]; an integer
output streams OUT_BASE + #{k : pc >= T'_k}; without thresholds the unit streams acc itself.

The input may also be declared BINARY: codes {0, 1} that are the bits themselves, as the graph walk
(fpgagen.streamline) carries a BipolarQuant's output (codes {0, 1} for {-s, +s}). The stream is the same bits.

Lowering (``xnor_rewrite``, registered in fpgagen.ir.kinds.REWRITES): the walk lowers every Conv/MatMul to an
integer MVAU; an MVAU with thresholds whose weights are all -1/+1 and whose input codes are {0, 1} computes
acc_m = W @ b on the bits b, and acc = W @ (2b - 1) = 2 * acc_m - rowsum(W), so its thresholds T on acc_m become
2T - rowsum(W) on acc, and the layer becomes this unit with the same output codes. Without thresholds (the raw
accumulator of a final layer, which the host dequantizes as acc_m) a BINARY-input unit streams acc_m itself:
acc_m = popcount - #{i : w_i = -1} (a bit agrees with a -1 weight exactly when it is 0), one constant per neuron
(the ``offsets`` memory).

Kernel ``fg::xnor_mvau`` (templates/hls/fg_xnor.h): one flat loop, II=1, of PIXELS * NF * SF iterations (NF =
MH/PE neuron folds, SF = MW/SIMD input folds), as FINN-R's MVAU model counts: the first neuron fold pops the SF
input words and keeps them in ``inbuf`` for the others; every SF-th iteration pushes PE outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from qonnx.core.datatype import DataType

from ...errors import FpgagenError
from ...quant import apply_thresholds, smallest_dtype
from ..memory import Memory
from .base import (
    CONTROL_FF,
    CONTROL_LUT,
    MEM_STYLES,
    GraphLayer,
    divisors,
    resources,
    threshold_memories,
    threshold_words,
)

BIPOLAR = DataType["BIPOLAR"]
BINARY = DataType["BINARY"]


def to_bits(codes: np.ndarray) -> np.ndarray:
    """Bipolar codes (-1/+1) as stream bits (0/1)."""
    return (np.asarray(codes, np.int64) + 1) // 2


def from_bits(bits: np.ndarray) -> np.ndarray:
    return 2 * np.asarray(bits, np.int64) - 1


@dataclass(eq=False)
class XnorMVAU(GraphLayer):
    weights: np.ndarray = field(default=None, repr=False)  # (MH, MW) of -1/+1, columns in the window's order
    thresholds: np.ndarray | None = field(default=None, repr=False)  # (MH, NT) on acc = sum w*x, or None
    out_base: int = 0
    pe: int = 1
    simd: int = 1
    mem_style: str = "bram"
    thr_style: str = "lutram"

    kind = "XnorMVAU"
    KERNEL_HEADER = "fg_xnor.h"
    CONFIG_TEMPLATE = "xnor.h.j2"
    STYLES = {"mem_style": MEM_STYLES, "thr_style": MEM_STYLES}
    MATRIX_UNIT = True  # folds as an MVAU does (mh, mw, pixels, PE, SIMD): a sliding window before it takes its SIMD

    @property
    def mh(self) -> int:
        return self.weights.shape[0]

    @property
    def mw(self) -> int:
        return self.weights.shape[1]

    @property
    def nf(self) -> int:
        return self.mh // self.pe

    @property
    def sf(self) -> int:
        return self.mw // self.simd

    @property
    def pixels(self) -> int:
        return self.in_shapes[0][0] * self.in_shapes[0][1]

    @property
    def nt(self) -> int:
        return 0 if self.thresholds is None else self.thresholds.shape[1]

    @property
    def in_words(self) -> tuple[int, ...]:
        return (self.simd,)

    @property
    def out_words(self) -> tuple[int, ...]:
        return (self.pe,)

    @property
    def weight_dtype(self) -> DataType:
        """The weights' declared type (-1/+1; the ROM stores them as bits): what codegen checks the ROM against."""
        return BIPOLAR

    @property
    def bits_acc(self) -> bool:
        """No thresholds on a BINARY input: the output is the accumulator on the bits, acc_m = W @ b."""
        return self.thresholds is None and self.in_dtypes[0] == BINARY

    def negatives(self) -> np.ndarray:
        """Per neuron, how many weights are -1 (acc_m = popcount - negatives)."""
        return (self.weights < 0).sum(axis=1).astype(np.int64)

    @property
    def popcount_dtype(self) -> DataType:
        return smallest_dtype(0, self.mw + 1)

    def popcount_thresholds(self) -> np.ndarray:
        """T'_k = ceil((T_k + MW) / 2): acc >= T_k exactly when popcount >= T'_k (clipped to [0, MW + 1])."""
        return np.clip(-((-(self.thresholds + self.mw)) // 2), 0, self.mw + 1)

    def folding(self) -> dict:
        return {"pe": self.pe, "simd": self.simd}

    def validate(self) -> None:
        self._require(self.weights is not None and self.weights.ndim == 2 and np.all(np.abs(self.weights) == 1),
                      "XNOR weights must all be -1 or +1", "use bipolar (1-bit) weight quantizers")
        self._require(self.in_dtypes in ((BIPOLAR,), (BINARY,)) and self.in_shapes[0][2] == self.mw,
                      f"the input must be a BIPOLAR (or BINARY bits) stream of MW={self.mw} channels",
                      "quantize the input bipolar")
        self._require(self.out_shapes[0] == (*self.in_shapes[0][:2], self.mh), "output shape", "MH output channels")
        if self.bits_acc:
            odt, neg = self.out_dtypes[0], self.negatives()
            self._require(odt.min() <= -neg.max() and (self.mw - neg).max() <= odt.max(),
                          f"{odt.name} does not hold the accumulator on the bits", "use the MVAU's accumulator type")
        if self.out_dtypes[0] == BIPOLAR:
            self._require(self.nt == 1, "a BIPOLAR output needs exactly one threshold per channel",
                          "use a BipolarQuant after the layer")
        self._require(self.mw % self.simd == 0, f"SIMD={self.simd} does not divide MW={self.mw}",
                      f"choose SIMD from {divisors(self.mw)}")
        self._require(self.mh % self.pe == 0, f"PE={self.pe} does not divide MH={self.mh}",
                      f"choose PE from {divisors(self.mh)}")

    def simd_options(self) -> list[int]:
        """SIMD choices: every divisor of MW (the greedy folder asks a matrix unit for them)."""
        return divisors(self.mw)

    def fold_cores(self) -> list[dict]:
        return [{"pe": p, "simd": s} for p in divisors(self.mh) for s in self.simd_options()]

    def style_groups(self) -> list[list[dict]]:
        return [[{"mem_style": m} for m in (MEM_STYLES if self.nf * self.sf > 1 else ("lutram",))],
                [{"thr_style": t} for t in (MEM_STYLES if (self.nt or self.bits_acc) and self.nf > 1
                                            else ("lutram",))]]

    def cycles(self) -> int:
        return self.pixels * self.nf * self.sf

    def io_pattern(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        i = np.arange(self.nf * self.sf)
        return [np.tile(i < self.sf, self.pixels)], [np.tile(i % self.sf == self.sf - 1, self.pixels)]

    def memories(self) -> list[Memory]:
        depth = self.nf * self.sf
        mems = [Memory("weights", self.pe, depth, self.simd, 1, self.mem_style if depth > 1 else "registers"),
                Memory("inbuf", 1, self.sf, self.simd, 1, "lutram" if self.sf > 1 else "registers",
                       reads=1, writes=1)]
        bits = self.popcount_dtype.bitwidth()
        if self.nt:  # the layout every thresholding kind shares, and the offsets the same way: one word per fold
            mems += threshold_memories(self.popcount_thresholds(), None, self.pe, self.thr_style, bits)
        if self.bits_acc:
            mems.append(Memory("offsets", 1, self.nf, self.pe, bits, self.thr_style if self.nf > 1 else "registers"))
        return mems

    def logic(self) -> dict[str, int]:
        """Per PE: SIMD XNORs folded into the popcount's first compressor level (one LUT6 counts three bit pairs),
        the popcount adder tree (about SIMD LUTs), the accumulator, NT comparators of the popcount's width; the
        1.1 routing factor of FINN-R; control."""
        pcb = self.popcount_dtype.bitwidth()
        per_pe = math.ceil(self.simd / 3) + self.simd + pcb + self.nt * pcb + (pcb if self.bits_acc else 0)
        return resources(LUT=1.1 * self.pe * per_pe + CONTROL_LUT + 20,
                         FF=self.pe * (2 * pcb + self.nt) + self.simd + CONTROL_FF)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        (x,) = self._check_inputs(inputs)
        if self.in_dtypes[0] == BINARY:  # the bits themselves
            x = from_bits(x)
        acc = x.reshape(-1, self.mw) @ self.weights.T.astype(np.int64)
        acc = acc.reshape(*x.shape[:-1], self.mh)
        if self.thresholds is None:  # on bits: acc_m = W @ b = (acc + rowsum) / 2, exactly
            return [(acc + self.weights.sum(axis=1)) // 2 if self.in_dtypes[0] == BINARY else acc]
        count = apply_thresholds(acc, self.thresholds, 0)
        return [from_bits(count) if self.out_dtypes[0] == BIPOLAR else self.out_base + count]

    def weight_tiles(self) -> np.ndarray:
        """Weight bits as the kernel's ROM: [PE][NF*SF][SIMD], neuron nf*PE+p, input sf*SIMD+s."""
        bits = to_bits(self.weights)
        return bits.reshape(self.nf, self.pe, self.sf, self.simd).transpose(1, 0, 2, 3).reshape(
            self.pe, self.nf * self.sf, self.simd)

    def threshold_tiles(self) -> np.ndarray:
        return threshold_words(self.popcount_thresholds(), self.pe)

    def offset_tiles(self) -> np.ndarray:
        return threshold_words(self.negatives()[:, None], self.pe)


def xnor_from_mvau(name: str, in_shape, weights: np.ndarray, thresholds: np.ndarray | None, out_base: int,
                   out_dtype: DataType, in_dtype: DataType) -> XnorMVAU:
    """The lowering rule: an integer MVAU (weights, thresholds on its accumulator, as the walk builds it for any
    Conv/MatMul) whose weights and input are bipolar becomes an XnorMVAU with the same semantics."""
    if in_dtype not in (BIPOLAR, BINARY) or not np.all(np.abs(weights) == 1):
        raise FpgagenError("an XNOR-popcount unit needs bipolar weights and a bipolar input", f"layer {name}",
                           "use brevitas' bipolar 1-bit quantizers on both, or keep the integer MVAU")
    acc_dtype = smallest_dtype(-weights.shape[1], weights.shape[1])
    out = (*in_shape[:2], weights.shape[0])
    odt = out_dtype if thresholds is not None or (in_dtype == BINARY and out_dtype is not None) else acc_dtype
    layer = XnorMVAU(name, (tuple(in_shape),), (out,), (in_dtype,), (odt,),
                     weights=np.asarray(weights, np.int64), thresholds=thresholds, out_base=out_base)
    layer.validate()
    return layer


def xnor_rewrite(layer) -> XnorMVAU | None:
    """The XnorMVAU that computes ``layer``'s output exactly, if ``layer`` is an MVAU with weights all -1/+1 on a
    {0, 1} input (see the module docstring); otherwise None (the layer stays)."""
    if getattr(layer, "kind", None) != "MVAU" or layer.idt != BINARY:
        return None
    if getattr(layer, "in_scale", None) is not None:  # inputs on several grids: the popcount has no multipliers
        return None
    weights = np.asarray(layer.weights, np.int64)
    if not np.all(np.abs(weights) == 1):
        return None
    rowsum = weights.sum(axis=1)
    thresholds = None if layer.thresholds is None else 2 * np.asarray(layer.thresholds, np.int64) - rowsum[:, None]
    return xnor_from_mvau(layer.name, layer.in_shape, weights, thresholds, layer.out_base, layer.odt, BINARY)


KINDS = (XnorMVAU,)
LOWERINGS = {}  # no ONNX op of its own: the walk's MVAU is rewritten (xnor_rewrite)
REWRITES = (xnor_rewrite,)
