"""The matrix-vector-threshold unit: its IR class (cost and cycle model, numpy reference ``reference``, folding
options, greedy baseline hooks), its kernel (``KERNEL_HEADER``) and config template (``CONFIG_TEMPLATE``), and its
lowering rules (``LOWERINGS``): a Conv (group 1, behind a sliding window unless 1x1, stride 1, unpadded) or a
Gemm/MatMul becomes an MVAU whose output is its raw accumulators, left pending (``Lowered.pending``) until the walk
knows whether a Quant thresholds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from qonnx.core.datatype import DataType

from ...quant import apply_thresholds, common_grid, smallest_dtype
from ..layers import (
    CONTROL_FF,
    MEM_STYLES,
    RESOURCES,
    Memory,
    OnePortLayer,
    add_resources,
    divisors,
    exact_matmul,
    fold_channels,
    memory_resources,
    pipelined_pattern,
    resources,
)
from .affine import StreamView, per_channel
from .base import Lowered, Lowering, threshold_words
from .base import threshold_memories as shared_threshold_memories
from .sliding_window import SlidingWindow
from .threshold import QuantizedConst, node_error

# An MVAU on input channels at several scales (``input_scales``' k): the widest exact accumulator, sign excluded. The
# thresholds on it are solved in float64 (exact rationals where float64 cannot decide, quant.requant_thresholds), so
# each must be an integer float64 holds exactly; the C model and the kernel then hold it in 64 bits with room.
MAX_SCALED_ACC_BITS = 52


@dataclass(eq=False)
class MVAU(OnePortLayer):
    """Matrix-vector-threshold unit: ``acc = W @ x`` per pixel, then multi-thresholding to output codes (or the
    raw accumulator when ``thresholds`` is None, for a final layer).

    ``weights`` is (MH, MW) integer with columns in the window's (ky, kx, c) order; ``thresholds`` is (MH, NT).
    Folding: PE output channels and SIMD inputs per cycle; MW % SIMD == 0 and MH % PE == 0.
    Cycles: (MH/PE) * (MW/SIMD) * pixels (FINN-R), the trip count of the kernel's flattened loop, plus the loop's
    pipeline depth (``PIPELINE_DEPTH``), paid once per frame: the loop is entered once.

    ``in_scale`` (None, or (MW,) positive integers k per column): the input's channels sit on different grids
    (a Concat of branches at different scales), x_c * alpha_c = g * k_c * x_c, and the layer computes the exact
    integer ``acc = sum_c w_c * k_c * x_c``. Columns of equal k form runs; SIMD must divide every run (each tile's
    SIMD inputs share one k), and the kernel multiplies each PE's tile sum by its tile's k, read from a small ROM
    (``in_scale``, ``scale_depth`` words, one per tile of the repeating pattern, addressed by a wrapping counter),
    before the add into the accumulator.
    """

    weights: np.ndarray = field(default=None, repr=False)
    thresholds: np.ndarray | None = field(default=None, repr=False)
    out_base: int = 0  # output code when no threshold passes
    weight_dtype: DataType = DataType["INT8"]
    acc_dtype: DataType = DataType["INT32"]
    pe: int = 1
    simd: int = 1
    dsp_pe: int = 0  # PEs whose dot product is a chain of DSP48E1 multiply-adds; the others use LUTs
    mem_style: str = "bram"  # weight ROM: bram | lutram
    thr_style: str = "lutram"  # threshold ROM: bram | lutram
    thr_mode: str = "parallel"  # parallel: NT comparators per PE | search: binary search, log2(NT+1) of them
    in_scale: np.ndarray | None = field(default=None, repr=False)  # (MW,) int multipliers k per column, or None

    kind = "MVAU"
    MATRIX_UNIT = True
    DSP_COUNT = "dsp_pe"
    KERNEL_HEADER = "fg_mvau.h"
    CONFIG_TEMPLATE = "mvau.h.j2"
    STYLES = {"dsp_pe": int, "mem_style": MEM_STYLES, "thr_style": MEM_STYLES, "thr_mode": ("parallel", "search")}

    @property
    def mw(self) -> int:
        return self.weights.shape[1]

    @property
    def mh(self) -> int:
        return self.weights.shape[0]

    @property
    def pixels(self) -> int:
        return self.in_shape[0] * self.in_shape[1]

    @property
    def in_word(self) -> int:
        return self.simd

    @property
    def out_word(self) -> int:
        return self.pe

    def folding(self) -> dict:
        return {"pe": self.pe, "simd": self.simd}

    def validate(self) -> None:
        self._require(self.mw % self.simd == 0 and self.simd in self.simd_options(),
                      f"SIMD={self.simd} does not divide MW={self.mw}" if self.mw % self.simd else
                      f"SIMD={self.simd} mixes input channels of different scales in one tile",
                      f"choose SIMD from {self.simd_options()}")
        self._require(self.mh % self.pe == 0, f"PE={self.pe} does not divide MH={self.mh}",
                      f"choose PE from {divisors(self.mh)}")
        self._require(0 <= self.dsp_pe <= self.pe, f"dsp_pe={self.dsp_pe} must lie between 0 and PE={self.pe}",
                      "set dsp_pe to the number of PEs that use DSP48E1 multipliers")

    @property
    def PIPELINE_DEPTH(self) -> int:  # noqa: N802 (a per-instance constant, as MaxPool's)
        """Stages of ``mvau_loop`` (a judgement, not a synthesis result, counted like the other kinds'): 1 for the
        counters and the pop, 2 for the weight ROM read (BRAM with its output register), the dot product, 1 for
        the accumulate, the requantization, 1 for the stream write. The dot product is counted as a DSP48E1 chain
        (3 stages for the first block's A/B, M and P registers, 1 per further block, 1 more for a packed pair's
        pre-adder), which is longer than a LUT PE's multiplier register and adder tree; an ``in_scale`` multiply
        adds a DSP48's 3. Requantization: 2 per binary-search stage (a ROM read, then the compare), which is at
        least the parallel mode's compare and count (2). The count takes the longest of the styles the optimizer
        may choose (DSP or LUT PEs, parallel or search), so cycles depend on the folding alone, as the integer
        program assumes (fpgagen/optimize.py takes a core's cycles before its styles)."""
        dot = 3 + (self.simd - 1) + (1 if self.pack_shift else 0)
        scale = 3 if self.in_scale is not None else 0
        requantize = 2 * self.search_stages if self.nt else 0
        return 1 + 2 + dot + scale + 1 + requantize + 1

    def iterations(self) -> int:
        """Trip count of ``mvau_loop``: NF * SF tiles per pixel."""
        return (self.mh // self.pe) * (self.mw // self.simd) * self.pixels

    def cycles(self) -> int:
        return self.iterations() + self.PIPELINE_DEPTH

    @property
    def nt(self) -> int:
        return 0 if self.thresholds is None else self.thresholds.shape[1]

    @property
    def thr_bits(self) -> int:
        """Stored threshold width: the smallest integer type holding them (as codegen declares thr_t); in search
        mode the padding value (``search_tables``) too."""
        if not self.nt:
            return 0
        low, high = self._threshold_range()
        top = max(high, self.search_pad if self.thr_mode == "search" else 0)
        return smallest_dtype(min(low, -1), top).bitwidth()

    def _threshold_range(self) -> tuple[int, int]:
        """(min, max) of the thresholds, computed once per array: the folder prices thousands of probes (shallow
        copies sharing the array), and each asks for ``thr_bits`` several times."""
        cached = self.__dict__.get("_thr_range")
        if cached is None or cached[0] is not self.thresholds:
            cached = (self.thresholds, int(self.thresholds.min()), int(self.thresholds.max()))
            self.__dict__["_thr_range"] = cached
        return cached[1], cached[2]

    @property
    def search_pad(self) -> int:
        """A threshold no accumulator reaches: pads the search tables up to 2^S - 1 entries."""
        return int(self.acc_dtype.max()) + 1

    def search_tables(self) -> list[np.ndarray]:
        """The binary-search ROMs of ``thr_mode=search``: stage s (of S = ceil(log2(NT+1))) as [PE][NF][2^s].

        With T' the thresholds padded by ``search_pad`` to 2^S - 1 entries, stage s holds, for the prefix j of the
        answer found so far (its top s bits), T'[(2j + 1) * 2^(S-1-s) - 1]. The kernel runs, per output channel,
        ``j = 0; for s: j = 2*j + (acc >= stage_s[p][nf][j])`` and outputs OUT_BASE + j, which equals
        OUT_BASE + #{k : acc >= T_k} because the thresholds are sorted (non-decreasing per channel)."""
        stages = self.search_stages
        padded = np.full((self.mh, 2**stages - 1), self.search_pad, np.int64)
        padded[:, : self.nt] = self.thresholds
        out = []
        for s in range(stages):
            j = np.arange(2**s)
            out.append(fold_channels(padded[:, (2 * j + 1) * 2 ** (stages - 1 - s) - 1], self.pe))
        return out

    def simd_options(self) -> list[int]:
        """SIMD choices: divisors of MW; with ``in_scale``, only those whose tiles each lie in one run of equal k."""
        if self.in_scale is None:
            return divisors(self.mw)
        k = np.asarray(self.in_scale)
        return [d for d in divisors(self.mw) if np.all(k.reshape(-1, d) == k.reshape(-1, d)[:, :1])]

    def fold_cores(self) -> list[dict]:
        return [{"pe": pe, "simd": simd} for pe in divisors(self.mh) for simd in self.simd_options()]

    # --- per-channel input scales (``in_scale``) -------------------------------------------------------------
    @property
    def scale_depth(self) -> int:
        """Words of the ``in_scale`` ROM: the shortest period (in tiles, dividing SF) of the tiles' k sequence, so
        a counter wrapping at it stays aligned with the tiles of every output fold."""
        k = self.tile_scales()
        return next(p for p in divisors(len(k)) if np.array_equal(k, np.tile(k[:p], len(k) // p)))

    def tile_scales(self) -> np.ndarray:
        """k of each of the SF tiles of one output fold (the first of its SIMD columns; ``simd_options`` makes the
        others equal)."""
        return np.asarray(self.in_scale, np.int64)[:: self.simd]

    @property
    def scale_bits(self) -> int:
        return int(np.asarray(self.in_scale).max()).bit_length()

    @property
    def sum_dtype(self) -> DataType:
        """The type of one PE's tile sum before its multiplier: SIMD products of the declared weight and input
        types (the accumulator is wider by the multipliers' bits)."""
        w, x = self.weight_dtype, self.idt
        prods = [int(a) * int(b) for a in (w.min(), w.max()) for b in (x.min(), x.max())]
        return smallest_dtype(self.simd * min(prods), self.simd * max(prods))

    def scale_multiplier(self) -> tuple[dict[str, int], int]:
        """(LUT PE resources, DSP blocks per DSP PE) of one PE's tile-sum x k multiplier, priced as the PE's other
        products: FINN-R's LUT multiplier of the operands' bits (1.1 routing factor, one register stage), or
        DSP48E1 tiles of 25 x 18 signed (k is unsigned: one more bit). Zero without ``in_scale``."""
        if self.in_scale is None:
            return resources(), 0
        sb, kb = self.sum_dtype.bitwidth(), self.scale_bits
        lo, hi = sorted((sb, kb + 1))
        mult = (2 * math.ceil((sb + kb) / 6) - 1) * (sb + kb)
        return resources(LUT=1.1 * mult, FF=sb + kb), math.ceil(lo / 18) * math.ceil(hi / 25)

    def stream_pattern(self) -> tuple[np.ndarray, np.ndarray]:
        """Per pixel NF*SF iterations: the first neuron fold reads the SF input words, every SF-th writes (in the
        pipeline's last stage); then the pipeline drains."""
        nf, sf = self.mh // self.pe, self.mw // self.simd
        i = np.arange(nf * sf)
        return pipelined_pattern(np.tile(i < sf, self.pixels), np.tile(i % sf == sf - 1, self.pixels),
                                 self.PIPELINE_DEPTH)

    def style_groups(self) -> list[list[dict]]:
        """The weight memory style where a memory exists (more than one word); threshold style and mode (binary
        search where there are at least two thresholds); and 0..PE DSP PEs (resources are linear in it)."""
        nf, sf = self.mh // self.pe, self.mw // self.simd
        modes = ("parallel", "search") if self.nt > 1 else ("parallel",)
        thr = MEM_STYLES if self.nt and nf > 1 else ("lutram",)
        return [[{"mem_style": m} for m in (MEM_STYLES if nf * sf > 1 else ("lutram",))],
                [{"thr_style": t, "thr_mode": md} for t in thr for md in modes],
                [{"dsp_pe": d} for d in range(0, self.pe + 1, 2 if self.pack_shift else 1)]]

    @property
    def pack_shift(self) -> int:
        """K > 0 when two DSP PEs can share one DSP48E1 chain, else 0. The pair's two weights of one input enter
        the DSP's 25-bit pre-adder as A = w_hi * 2^K and D = w_lo (so no LUT packs them), the shared input x is
        the 18-bit B operand, and the cascade sums (A + D) * x over the SIMD inputs: P = 2^K * S_hi + S_lo, both
        sums exact integers. With |S_lo| < 2^(K-1), S_lo is P's low K bits read as signed and S_hi = (P - S_lo)
        / 2^K, exactly. K is the least shift with that margin for any weights and inputs of the declared types;
        packing needs A to fit 25 bits signed (W - 1 + K <= 24), x to fit 18 bits, P to fit 48, and PE >= 2."""
        w, x = self.weight_dtype, self.idt
        if self.pe < 2 or self.dsp_per_product() != 1 or x.bitwidth() + (not x.signed()) > 18:
            return 0
        w_max = max(abs(int(w.min())), abs(int(w.max())))
        x_max = max(abs(int(x.min())), abs(int(x.max())))
        shift = (self.simd * w_max * x_max).bit_length() + 1
        if w.bitwidth() - 1 + shift > 24 or self.simd * (w_max * 2**shift + w_max) * x_max >= 2**47:
            return 0
        return shift

    def dsp_blocks(self) -> int:
        """DSP48E1 blocks of the DSP PEs: SIMD per PE, or per PE pair when packed (an odd last PE alone)."""
        chains = (self.dsp_pe + 1) // 2 if self.pack_shift else self.dsp_pe
        return chains * self.simd * self.dsp_per_product() + self.dsp_pe * self.scale_multiplier()[1]

    def dsp_per_product(self) -> int:
        """DSP48E1 blocks per W x A product: its multiplier is 25 x 18 signed (an unsigned operand needs a bit
        more); wider products tile several blocks."""
        w = self.weight_dtype
        wb, ab = w.bitwidth() + (not w.signed()), self.in_bits + (not self.idt.signed())
        lo, hi = sorted((wb, ab))
        return math.ceil(lo / 18) * math.ceil(hi / 25)

    @property
    def search_stages(self) -> int:
        return max(1, math.ceil(math.log2(self.nt + 1)))

    @property
    def thr_lanes(self) -> int:
        """PEs that share one binary-search stage memory: two in BRAM (a BRAM18 has two read ports, each PE
        reads its own address), else one (a distributed ROM copies its LUTs per read port: nothing to share)."""
        return 2 if self.thr_style == "bram" and self.pe % 2 == 0 else 1

    def search_storage(self, depth: int) -> str:
        """Storage of one stage memory of ``depth`` words per bank: a constant when 1 deep; in BRAM only when
        ``thr_style`` asks for it and it is deeper than 64 words (below that one LUT6 per bit holds it, far less
        than a BRAM18 is worth)."""
        if depth <= 1:
            return "registers"
        return "bram" if self.thr_style == "bram" and depth > 64 else "lutram"

    def threshold_memories(self) -> list[Memory]:
        """``parallel``: one ROM of NF words, each the PE x NT thresholds of one output fold (every PE reads the
        same address: the layout of every thresholding kind, fpgagen.ir.kinds.base.threshold_memories). ``search``
        (binary search, as finn-rtllib's thresholding: one memory per stage): stage s holds 2^s thresholds per
        channel, NF*2^s words of TB bits per PE, and each PE reads its own address nf*2^s + j (j: its answer's top
        s bits); in BRAM two PEs share a bank through its two read ports."""
        if not self.nt:
            return []
        nf, tb = self.mh // self.pe, self.thr_bits
        if self.thr_mode == "parallel":
            return shared_threshold_memories(self.thresholds, None, self.pe, self.thr_style, tb)
        out = []
        for s in range(self.search_stages):
            storage = self.search_storage(nf * 2**s)
            lanes = self.thr_lanes if storage == "bram" else 1
            out.append(Memory(f"thr_stage{s}", self.pe // lanes, lanes * nf * 2**s, 1, tb, storage, reads=lanes))
        return out

    def greedy_styles(self) -> None:
        nf, sf = self.mh // self.pe, self.mw // self.simd
        self.mem_style = "lutram" if nf * sf <= 64 else "bram"
        self.thr_style = "lutram" if nf <= 64 else "bram"
        self.thr_mode, self.dsp_pe = "parallel", 0

    def reference(self, x: np.ndarray) -> np.ndarray:
        cols = x.reshape(-1, self.mw)
        if self.in_scale is not None:  # channels on different grids: acc = sum_c w_c * k_c * x_c, exact
            cols = cols * np.asarray(self.in_scale, np.int64)
        acc = exact_matmul(cols, self.weights).reshape(*x.shape[:-1], self.mh)
        if self.thresholds is None:
            return acc
        return apply_thresholds(acc, self.thresholds, self.out_base)

    def memories(self) -> list[Memory]:
        """The weight ROM (one word per cycle: the PE x SIMD weights of tile nf*SF+sf), the threshold ROM(s), the
        input buffer (the SF input words of a pixel, written during the first neuron fold and read by the others:
        one write and one read per cycle; one register word when SF == 1 or NF == 1) and the PE accumulators."""
        nf, sf = self.mh // self.pe, self.mw // self.simd
        w, a = self.weight_dtype.bitwidth(), self.in_bits
        buffered = nf > 1 and sf > 1
        return [Memory("weights", 1, nf * sf, self.pe * self.simd, w, self.mem_style if nf * sf > 1 else "registers"),
                *self.threshold_memories(),
                Memory("inbuf", 1, sf if buffered else 1, self.simd, a, "lutram" if buffered else "registers",
                       reads=1, writes=1),
                Memory("acc", 1, 1, self.pe, self.acc_dtype.bitwidth(), "registers", reads=1, writes=1),
            *self.scale_memories()]

    def scale_memories(self) -> list[Memory]:
        """The ``in_scale`` ROM: ``scale_depth`` words of one k each, read once per cycle by every PE; none without
        ``in_scale``."""
        if self.in_scale is None:
            return []
        depth = self.scale_depth
        return [Memory("in_scale", 1, depth, 1, self.scale_bits, "lutram" if depth > 1 else "registers")]

    def memory_contents(self) -> dict[str, np.ndarray]:
        """The ROMs' contents, each shaped as its declaration: [banks][depth][elems]."""
        nf, sf = self.mh // self.pe, self.mw // self.simd
        out = {"weights": self.weight_tiles().transpose(1, 0, 2).reshape(1, nf * sf, self.pe * self.simd)}
        if self.nt and self.thr_mode == "parallel":
            out["thresholds"] = threshold_words(self.thresholds, self.pe)
        elif self.nt:
            for mem, table in zip(self.threshold_memories(), self.search_tables(), strict=True):
                lanes = self.pe // mem.banks  # [PE][NF][2^s] -> PE p in bank p // lanes at offset (p % lanes)*depth
                out[mem.name] = table.reshape(mem.banks, lanes * table.shape[1] * table.shape[2], 1)
        if self.in_scale is not None:
            out["in_scale"] = self.tile_scales()[: self.scale_depth].reshape(1, -1, 1)
        return out

    def memory_dtypes(self) -> dict[str, DataType]:
        thr = self.thr_dtype
        scale = {"in_scale": DataType[f"UINT{self.scale_bits}"]} if self.in_scale is not None else {}
        return {"weights": self.weight_dtype, "inbuf": self.in_dtype, "acc": self.acc_dtype,
                **{m.name: thr for m in self.threshold_memories()}, **scale}

    @property
    def thr_dtype(self) -> DataType:
        """The stored threshold type (``thr_bits`` wide, signed)."""
        return DataType[f"INT{self.thr_bits}" if self.nt else "INT2"]

    def threshold_logic(self) -> tuple[int, int]:
        """(compare LUTs per PE, pipeline FFs per PE). ``parallel`` (FINN-R): NT comparators of max(ACC, TB)
        bits. ``search``: S = ceil(log2(NT+1)) pipelined steps, one comparator each plus the S-bit answer."""
        acc, nt, tb = self.acc_dtype.bitwidth(), self.nt, self.thr_bits
        cb = max(acc, tb)
        if not nt:
            return 0, 0
        if self.thr_mode == "parallel":
            return nt * cb, nt
        stages = self.search_stages
        return stages * (cb + stages), stages * (acc + stages)

    def resources(self) -> dict[str, int]:
        """FINN-R's MVAU model, per PE with W-bit weights, A-bit inputs, ACC-bit accumulator, NT thresholds:

            LUT = 300 + 1.1 * PE * (mult + adder + ACC + NT * ACC) + weight LUTRAM + threshold LUTRAM
            mult  = SIMD * (2 * ceil((W + A) / 6) - 1) * (W + A)
            adder = (W + A) * (2 * SIMD - 1)

        Deviations, each argued:
        * DSP PEs (``dsp_pe`` of them): the PE's SIMD products and their sum are a chain of SIMD DSP48E1s, each
          multiplying (25 x 18) and adding the previous block's partial sum on its 48-bit post-adder through the
          dedicated cascade (the DSP48E1's intended use for dot products, UG479), so both ``mult`` and ``adder``
          leave the LUTs; the accumulator and comparators stay. Products wider than one DSP48E1 keep the adder
          tree in LUTs. Where ``pack_shift`` allows, two DSP PEs share one chain (``dsp_blocks``), paying the
          split of the packed sum in LUTs.
        * Memories are the kernel's arrays as declared in ``memories()`` (the template emits them from the same
          declarations; tests/test_memories_from_code.py prices the emitted C++ and requires the same figures):
          all PEs read the same address each cycle, so the weights are one ROM of depth NF*SF and width
          PE*SIMD*W (in LUTRAM exactly FINN-R's ``PE*SIMD*W*ceil(WMEM/64)``; in BRAM FINN-R's BRAM18 formula on
          that one wide memory); parallel thresholds are one ROM of NF words of PE*NT*TB bits (TB: the stored
          threshold width); binary-search thresholds are one memory per stage, per PE (each PE reads its own
          address), two PEs per BRAM bank through its two read ports; a 1-deep ROM is a set of constants.
          The LUTRAM of threshold memories carries FINN-R's 1.1 routing factor in LUT.
        * Multipliers and comparators next to a constant ROM are still costed in full, although multiplying or
          comparing with a constant is cheaper, so this stays on the safe side.
        * ``in_scale``: per PE one more product, the tile sum times its k (``scale_multiplier``), in LUTs on a
          LUT PE and on DSP48E1s on a DSP PE, priced as the PE's other products; its ROM is a declared memory.
        * Comparators are costed at max(ACC, TB) bits; ``thr_mode=search`` replaces the NT comparators by a
          binary search (see ``threshold_logic``).
        * Added, not in FINN-R: the input buffer that holds the SF input words while the other neuron folds
          reuse them (SF x SIMD*A bits, a simple-dual-port LUTRAM; a register word when SF == 1 or NF == 1) and
          the PE accumulator registers.
        FF (FINN-R has no FF model; FF never binds on a Zynq-7020 for these designs): per LUT PE one register
        stage per product and half the adder tree, per PE the accumulator and the threshold pipeline, plus the
        input registers.
        """
        w = self.weight_dtype.bitwidth()
        a, acc = self.in_bits, self.acc_dtype.bitwidth()
        pe, simd = self.pe, self.simd
        mult = simd * (2 * math.ceil((w + a) / 6) - 1) * (w + a)
        adder = (w + a) * (2 * simd - 1)
        per_dsp = self.dsp_per_product()
        cmp, thr_ff = self.threshold_logic()
        # one term per style group (each rounded on its own, so the optimizer may add them up exactly)
        scale_lut, _ = self.scale_multiplier()  # the tile sum x k multiplier (``in_scale``), zero without
        lut_pe = add_resources(resources(LUT=1.1 * (mult + adder), FF=1.5 * simd * (w + a)), scale_lut)
        # a DSP PE: its products and sum leave the LUTs; packed in pairs, the pair's DSP chain is shared and each
        # pair pays the split of P (a K-bit sign test and an ACC-bit correction adder) in LUTs
        dsp_pe = resources(LUT=0 if per_dsp == 1 else 1.1 * adder)
        if self.pack_shift:
            dsp_pe = resources(LUT=0.5 * 1.1 * acc)
        compute = {r: (pe - self.dsp_pe) * lut_pe[r] + self.dsp_pe * dsp_pe[r] for r in RESOURCES}
        compute["DSP"] = self.dsp_blocks()
        thr_mem = memory_resources(self.threshold_memories())
        thresholds = add_resources({**thr_mem, "LUT": math.ceil(1.1 * thr_mem["LUT"])},
                                   resources(LUT=1.1 * pe * cmp, FF=pe * thr_ff))
        others = memory_resources([m for m in self.memories() if m.name in ("weights", "inbuf", "acc", "in_scale")])
        core = resources(LUT=300 + 1.1 * pe * acc, FF=pe * acc + simd * a + CONTROL_FF)
        return add_resources(core, others, compute, thresholds)

    def weight_tiles(self) -> np.ndarray:
        """Weights as the kernel's ROM: [PE][NF*SF][SIMD], neuron nf*PE+p, input sf*SIMD+s."""
        nf, sf = self.mh // self.pe, self.mw // self.simd
        return self.weights.reshape(nf, self.pe, sf, self.simd).transpose(1, 0, 2, 3).reshape(
            self.pe, nf * sf, self.simd)


def _group(node) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def _weight(node, ctx) -> QuantizedConst:
    w = ctx.quantized(node.input[1])
    if w is None:
        raise node_error(node, "the layer has float (unquantized) weights",
                         "use brevitas QuantConv2d/QuantLinear so weights are exported through a Quant node")
    return w


def _bias(node, ctx, name: str | None, mh: int) -> np.ndarray:
    if not name:
        return np.zeros(mh)
    q = ctx.quantized(name)
    if q is not None:
        return per_channel(q.codes * q.scale.astype(np.float64), mh, node)
    value = ctx.const(name)
    if value is None:
        raise node_error(node, "bias is not a constant", "export in inference mode")
    return per_channel(value, mh, node)


def input_scales(node, s: StreamView) -> tuple[float, np.ndarray | None]:
    """(g, k): the input's real value is g * k_c * (q_c - center_c), k None when every channel shares one
    scale (k = 1). Channels on different grids (a Concat of branches at different scales, a per-channel
    quantizer) get the coarsest common grid g and integer multipliers k_c (quant.common_grid), exactly."""
    if s.quant is None or s.clamp is not None:
        raise node_error(node, f"the input is not quantized (a float activation reaches it from {s.where})",
                         "put a brevitas quantized activation (QuantReLU, QuantIdentity) before this layer")
    alpha = s.alpha[0]
    if np.all(s.alpha == alpha) and alpha > 0:
        return float(alpha), None
    if np.any(s.alpha <= 0):
        raise node_error(node, "an input scale that is not positive cannot be folded into integer weights",
                         "use an activation quantizer with a positive scale before this layer")
    return common_grid(s.alpha, f"node '{node.name}' ({node.op_type})")


def _pending_mvau(node, ctx, s: StreamView, w: QuantizedConst, wmat: np.ndarray, center_cols: np.ndarray,
                  cols_lo: np.ndarray, cols_hi: np.ndarray, bias: np.ndarray, alpha: float,
                  in_shape: tuple[int, int, int], k_cols: np.ndarray | None = None, feeders: tuple = ()) -> Lowered:
    """The MVAU's fields and its accumulators' view. ``k_cols``: per column the integer multiplier of the input's
    channel (input_scales), None when all 1."""
    mh = wmat.shape[0]
    w_scale = per_channel(w.scale, mh, node)
    if k_cols is not None:  # the exact accumulator, and every threshold on it, must be float64-exact integers
        bound = (np.abs(wmat) * k_cols.astype(np.float64) * np.maximum(np.abs(cols_lo), np.abs(cols_hi))).sum(1)
        if bound.max() >= 2.0**MAX_SCALED_ACC_BITS:
            raise node_error(node, f"the input's channels sit on scales {s.alpha.min():.3g} to {s.alpha.max():.3g} "
                             f"whose common integer grid needs a {int(bound.max()).bit_length() + 1}-bit "
                             f"accumulator (at most {MAX_SCALED_ACC_BITS + 1})", "add a QuantIdentity after the "
                             "Concat, or share one quantizer between the branches")
    scaled = wmat if k_cols is None else wmat * k_cols  # the exact integer weights acc is the dot product with
    acc_lo = np.minimum(scaled * cols_lo, scaled * cols_hi).sum(axis=1)
    acc_hi = np.maximum(scaled * cols_lo, scaled * cols_hi).sum(axis=1)
    acc_dt = smallest_dtype(min(acc_lo.min(), -acc_hi.max()), max(acc_hi.max(), -acc_lo.min()))
    out_shape = (*in_shape[:2], mh)
    fields = dict(name=ctx.name, in_shape=in_shape, out_shape=out_shape,
                  in_dtype=smallest_dtype(cols_lo.min(), cols_hi.max()), out_dtype=acc_dt, weights=wmat,
                  weight_dtype=w.dtype, acc_dtype=acc_dt,
                  in_scale=None if k_cols is None else np.asarray(k_cols, np.int64))
    # real = alpha * w_scale * (acc - W' @ center_in) + bias, W' = W * k: the input is quantized (beta 0), and
    # W' @ center_in is exact (integers times small dyadic zero points)
    center = scaled.astype(np.float64) @ center_cols
    out = StreamView(out_shape, alpha * w_scale, bias.astype(np.float64), acc_lo, acc_hi, center=center)
    return Lowered(None, out, feeders=feeders, pending=fields)


def lower_conv(node, views: list[StreamView], shapes, ctx) -> Lowered:
    """A Conv with group 1 and dilation 1: a sliding window (unless 1x1, stride 1, unpadded) feeding an MVAU."""
    (s,) = views
    attrs = {a.name: list(a.ints) if a.ints else a.i for a in node.attribute}
    if attrs.get("group", 1) != 1:
        raise node_error(node, f"grouped/depthwise convolution (group={attrs['group']})", "use group=1 convs")
    if any(d != 1 for d in attrs.get("dilations", [1, 1])):
        raise node_error(node, "dilated convolution", "use dilation 1")
    w = _weight(node, ctx)
    mh, c, kh, kw = w.codes.shape
    if c != s.shape[2]:
        raise node_error(node, f"weight expects {c} input channels, the stream has {s.shape[2]}", "check the model")
    alpha, k = input_scales(node, s)
    stride = tuple(attrs.get("strides", [1, 1]))
    pads = attrs.get("pads", [0, 0, 0, 0])
    pads = (pads[0], pads[1], pads[2], pads[3])  # ONNX: top, left, bottom, right
    h, wd, _ = s.shape
    oh = (h + pads[0] + pads[2] - kh) // stride[0] + 1
    ow = (wd + pads[1] + pads[3] - kw) // stride[1] + 1
    wmat = w.codes.transpose(0, 2, 3, 1).reshape(mh, -1)  # columns in (ky, kx, c) window order
    taps = kh * kw
    lo, hi = s.lo, s.hi
    if any(pads):
        pad_code = s.center  # the code whose real value is 0 (beta is 0 on a quantized stream)
        if not np.all(pad_code == pad_code[0]) or pad_code[0] != np.rint(pad_code[0]):
            raise node_error(node, "zero padding needs an integer zero point shared by all channels",
                             "use a per-tensor integer zero point before padded convolutions")
        pad = int(pad_code[0])
        lo, hi = np.minimum(lo, pad), np.maximum(hi, pad)
    else:
        pad = 0
    feeders = ()
    if (kh, kw) != (1, 1) or stride != (1, 1) or any(pads):
        feeders = (SlidingWindow(ctx.uname(node.name + "_window"), s.shape, (oh, ow, taps * c), s.dtype, s.dtype,
                                 kernel=(kh, kw), stride=stride, pads=pads, pad_value=pad),)
    in_shape = (oh, ow, taps * c)
    bias = _bias(node, ctx, node.input[2] if len(node.input) > 2 else None, mh)
    return _pending_mvau(node, ctx, s, w, wmat, np.tile(s.center, taps), np.tile(lo, taps), np.tile(hi, taps), bias,
                         alpha, in_shape, None if k is None else np.tile(k, taps), feeders)


def lower_linear(node, views: list[StreamView], shapes, ctx) -> Lowered:
    """A Gemm (alpha = beta = 1, no transA) or a MatMul by a rank-2 weight on a flattened stream: an MVAU."""
    (s,) = views
    if node.op_type == "Gemm":
        attrs = {a.name: (a.f if a.type == 1 else a.i) for a in node.attribute}
        if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0):
            raise node_error(node, "Gemm with alpha/beta != 1 or transA", "export a plain QuantLinear")
        w = _weight(node, ctx)
        wmat = w.codes if attrs.get("transB", 0) else w.codes.T
        scale = w.scale.reshape(-1) if attrs.get("transB", 0) else w.scale.T.reshape(-1)
        bias_name = node.input[2] if len(node.input) > 2 else None
    else:
        w = _weight(node, ctx)
        if w.codes.ndim != 2:
            raise node_error(node, "MatMul with a weight of rank != 2", "use QuantLinear on a flattened input")
        wmat, scale, bias_name = w.codes.T, w.scale.T.reshape(-1), None
    w = replace(w, scale=scale)
    mh, mw = wmat.shape
    if s.shape[:2] != (1, 1) or s.shape[2] != mw:
        raise node_error(node, f"fully connected layer on a stream of shape {s.shape}",
                         "flatten the input (MW must equal all stream elements)")
    alpha, k = input_scales(node, s)
    if s.flat_from is not None:  # torch flattened (C, H, W); the stream carries (H, W, C)
        h, wd, c = s.flat_from
        wmat = wmat.reshape(mh, c, h, wd).transpose(0, 2, 3, 1).reshape(mh, mw)
    bias = _bias(node, ctx, bias_name, mh)
    return _pending_mvau(node, ctx, s, w, np.ascontiguousarray(wmat), s.center, s.lo, s.hi, bias, alpha, s.shape, k)


KINDS = (MVAU,)
_LINEAR = Lowering(lower_linear, max_streams=1, exact=True)
LOWERINGS = {"Conv": Lowering(lower_conv, max_streams=1, exact=True, doc="Conv (group=1, dilation=1)",
                              applies=lambda node: _group(node) <= 1),  # grouped: the VVU's (vvu.py)
             "Gemm": _LINEAR, "MatMul": _LINEAR}
