"""Hardware layers of the integer dataflow: typed dataclasses with shapes, datatypes, folding and cost models.

Every stream carries *words* of ``in_word``/``out_word`` integer elements; pixels are streamed in raster order
(NHWC), channels fastest. Each class documents its cycle model, which is the trip count of its HLS kernel's
pipelined loop (II=1), so the estimate matches what the template does.

Resource model (*estimated*): every class has ``resources()`` -> {LUT, FF, BRAM18, DSP, LUTRAM} (LUTRAM is the part of
LUT used as memory, SRL FIFOs included) and ``fold_options()``, the valid folding/style choices the optimizer may take.
The MVAU starts from FINN-R's published formulas (shared/facts.md); each deviation is argued where it is made.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field, fields
from typing import ClassVar

import numpy as np
from qonnx.core.datatype import DataType

from ..errors import FpgagenError
from ..quant import apply_thresholds, as_dtype, smallest_dtype
from .cpp import CppHelpers
from .kind import KindHooks
from .memory import RESOURCES, Memory, add_resources, bram18, memory_resources, ram_luts, resources, rom_luts  # noqa: F401

Shape = tuple[int, int, int]  # (H, W, C) of one image, channels last


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def pipelined_pattern(reads: np.ndarray, writes: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """A pipelined loop's per-cycle stream pattern over one frame, from its per-iteration ``reads``/``writes``:
    iteration i issues in cycle i and pops in its first stage, and pushes in its last stage, ``depth - 1`` cycles
    later (a blocked stream stalls the whole pipeline, so the offset holds in steps). The frame takes
    iterations + ``depth`` cycles: the pipeline fills and drains once, as the loop is entered once per frame."""
    n = len(reads)
    out_r, out_w = np.zeros(n + depth, bool), np.zeros(n + depth, bool)
    out_r[:n] = reads
    out_w[depth - 1:depth - 1 + n] = writes
    return out_r, out_w


MEM_STYLES = ("bram", "lutram")
CONTROL_LUT, CONTROL_FF = 60, 80  # loop counters, FSM and stream handshakes of one HLS process (a judgement)


def dtype_fields(obj) -> list[str]:
    """The names of a dataclass's DataType-valued fields (annotated ``DataType``)."""
    return [f.name for f in fields(obj) if f.type in ("DataType", DataType)]


def datatypes_from_names(obj) -> None:
    """Turn the DataType fields of ``obj`` given by name ("UINT4") into DataType objects, so hand-written layers
    and specs may name their types while the IR holds objects only."""
    for name in dtype_fields(obj):
        setattr(obj, name, as_dtype(getattr(obj, name)))


def memory(depth: int, width: int, style: str, dual_port: bool = False) -> dict[str, int]:
    """Resources of one on-chip memory in ``style`` (bram | lutram); a 1-deep ROM is a constant (no memory)."""
    if depth <= 1 and not dual_port:
        return resources()
    if style == "bram":
        return resources(BRAM18=bram18(depth, width))
    luts = ram_luts(depth, width) if dual_port else rom_luts(depth, width)
    return resources(LUT=luts, LUTRAM=luts)


@dataclass(eq=False)
class Layer(KindHooks):
    name: str
    in_shape: Shape
    out_shape: Shape
    in_dtype: DataType  # qonnx DataType objects; names only in network.json (fpgagen.ir.network)
    out_dtype: DataType
    fifo_depth: int = 2  # depth of this layer's output stream (fpgagen.fifo sizes it)
    fifo_style: str = "srl"  # srl | bram

    kind = "Layer"
    STYLES: ClassVar[dict[str, tuple | type]] = {}  # implementation choices: allowed values (or int)
    CHAIN_KIND = True  # one stream in, one out, its own output FIFO (fpgagen.ir.kind)
    CPP = CppHelpers  # the g.* helpers of the chain kinds' templates (KERNEL_HEADER, CONFIG_TEMPLATE: fpgagen.ir.cpp)

    def __post_init__(self):
        datatypes_from_names(self)

    @property
    def idt(self) -> DataType:
        return self.in_dtype

    @property
    def odt(self) -> DataType:
        return self.out_dtype

    @property
    def in_word(self) -> int:
        raise NotImplementedError

    @property
    def out_word(self) -> int:
        raise NotImplementedError

    def folding(self) -> dict:
        """The integer folding attributes (PE, SIMD, ...), as in a folding.json entry."""
        return {}

    def styles(self) -> dict:
        """The implementation choices (memory and multiplier styles), also settable in folding.json."""
        return {key: getattr(self, key) for key in self.STYLES}

    def set_folding(self, **attrs) -> None:
        settable = [*self.folding(), *self.STYLES, "fifo_depth"]
        for key, value in attrs.items():
            if key not in settable:
                raise FpgagenError(f"unknown folding attribute '{key}' for {self.kind}", f"layer {self.name}",
                                   f"use one of {sorted(settable)}")
            allowed = self.STYLES.get(key, int)
            if allowed is not int:
                if value not in allowed:
                    raise FpgagenError(f"{key}='{value}' is not a valid choice", f"layer {self.name}",
                                       f"use one of {list(allowed)}")
                setattr(self, key, value)
            elif isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or \
                    value < (0 if key == self.DSP_COUNT else 1):
                raise FpgagenError(f"{key}={value!r} is not a valid count", f"layer {self.name}",
                                   f"write {key} as a whole number, e.g. \"{key}\": 2")
            else:
                setattr(self, key, int(value))
        self.validate()

    def validate(self) -> None:
        """Raise FpgagenError if the folding violates the kernel's divisibility constraints."""

    def cycles(self) -> int:
        raise NotImplementedError

    def resources(self) -> dict[str, int]:
        """Estimated LUT, FF, BRAM18, DSP and LUTRAM of this layer's kernel (its output FIFO is costed apart)."""
        raise NotImplementedError

    def memories(self) -> list[Memory]:
        """Every on-chip array of this layer's kernel, declared once (fpgagen.ir.memory): the template emits each
        from its declaration and ``resources()`` prices the same declarations."""
        return []

    def io_pattern(self) -> tuple[np.ndarray, np.ndarray]:
        """(reads, writes): per iteration of the kernel's pipelined loop (one frame, ``cycles()`` of them), whether
        it pops its input stream and whether it pushes its output stream. fpgagen.fifo sizes the FIFOs from it."""
        raise NotImplementedError

    def fold_cores(self) -> list[dict]:
        """The valid folding choices that set this layer's stream words and cycles (PE, SIMD)."""
        return [{}]

    def style_groups(self) -> list[list[dict]]:
        """For the current folding: groups of alternatives that change resources only, independently of each
        other: ``resources()`` is a core term plus one term per group (a group of ``dsp_pe`` counts is linear)."""
        return []

    def fold_options(self) -> list[dict]:
        """Every valid choice (the optimizer's domain): each core with one alternative from every style group."""
        return enumerate_fold_options(self)

    @property
    def in_bits(self) -> int:
        return self.idt.bitwidth()

    @property
    def out_bits(self) -> int:
        return self.odt.bitwidth()

    def _require(self, ok: bool, what: str, fix: str) -> None:
        if not ok:
            raise FpgagenError(what, f"layer {self.name} ({self.kind})", fix)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The integer numpy reference with the graph kinds' ports: ``[x]`` in, ``[y]`` out, (N, H, W, C) codes."""
        (x,) = inputs
        return [self.reference(x)]

    def reference(self, x: np.ndarray) -> np.ndarray:
        """The integer numpy reference of one stream: (N, *in_shape) codes -> (N, *out_shape), bit-exact."""
        raise NotImplementedError(f"no reference for {type(self).__name__}")


@dataclass(eq=False)
class SlidingWindow(Layer):
    """Sliding-window generator (im2col on a stream): emits, per output pixel, the KH*KW*C window in
    (ky, kx, c) order as words of ``simd`` elements. Padding is generated on the fly with ``pad_value``, the
    code that stands for a real 0. Kernel: templates/hls/fg_sliding_window.h.

    Line buffer (``line_buffer_memory``): KH + SH rows of the (unpadded) input, so the next (at most SH) rows are
    read while the current output row is emitted; a word spanning several pixels (SIMD > C) reads KW columns per
    cycle, so then each row is also split cyclically by column into KW memories. Every bank is read once and
    written at most once per cycle.

    Cycles: the kernel is ONE flat pipelined loop (II=1, counters, no per-row re-entry) of ``iterations()``: the
    rows needed by output row 0 are preloaded, then every output row runs a static ``ROW_ITERATIONS =
    max(SH*IW*C/IN_WORD, OW*KH*KW*C/SIMD)`` iterations (FINN-R's ``OFM_h*max(OFM_w*k^2*C/SIMD,
    stride*IFM_w*C/SIMD)``, with the preload replacing its start-up term); plus the loop's pipeline depth, paid
    once per frame (``PIPELINE_DEPTH``).
    """

    kernel: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    pad_value: int = 0
    simd: int = 1
    ifm_word: int = 1  # elements per input word (the producer's word)
    mem_style: str = "lutram"  # line buffer: bram | lutram

    kind = "SlidingWindow"
    TAKES_CONSUMER_SIMD = True
    KERNEL_HEADER = "fg_sliding_window.h"
    CONFIG_TEMPLATE = "sliding_window.h.j2"
    STYLES = {"mem_style": MEM_STYLES}
    # Stages of the window loop (a judgement, not a synthesis result): 1 for the counters and addresses, 2 for the
    # line-buffer read (BRAM with its output register; LUTRAM needs 1, counted as 2 all the same), 1 for the row,
    # column and channel multiplexers, 1 for the stream write. Paid once per frame: the loop is entered once.
    PIPELINE_DEPTH: ClassVar[int] = 5

    @property
    def channels(self) -> int:
        return self.in_shape[2]

    @property
    def window(self) -> int:
        return self.kernel[0] * self.kernel[1] * self.channels

    @property
    def in_word(self) -> int:
        return self.ifm_word

    @property
    def out_word(self) -> int:
        return self.simd

    def folding(self) -> dict:
        return {"simd": self.simd, "ifm_word": self.ifm_word}

    def validate(self) -> None:
        c = self.channels
        self._require(self.window % self.simd == 0 and (c % self.simd == 0 or self.simd % c == 0),
                      f"SIMD={self.simd} must divide the channels ({c}) or be a multiple of them that divides "
                      f"the window ({self.window})", f"choose SIMD from {self.simd_options()}")
        self._require(c % self.ifm_word == 0, f"input word of {self.ifm_word} elements does not divide C={c}",
                      f"use one of {divisors(c)}")

    def simd_options(self) -> list[int]:
        c = self.channels
        return [d for d in divisors(self.window) if c % d == 0 or d % c == 0]

    def rows_needed(self, oy: int) -> int:
        """Input rows that must have been read before output row ``oy`` can be emitted."""
        return min(self.in_shape[0], oy * self.stride[0] - self.pads[0] + self.kernel[0])

    @property
    def row_words(self) -> int:
        """Input words per input row."""
        return self.in_shape[1] * self.channels // self.ifm_word

    @property
    def row_iterations(self) -> int:
        return max(self.stride[0] * self.row_words, self.out_shape[1] * self.window // self.simd)

    @property
    def split(self) -> int:
        """Column memories per line-buffer row: KW when a word spans several pixels (it reads KW columns in one
        cycle), else 1."""
        return self.kernel[1] if self.simd > self.channels else 1

    def loop_constants(self) -> dict[str, int]:
        """The window loop's compile-time constants (fg_sliding_window.h): line-buffer geometry, the counters'
        start values for the padded top-left corner, and the read limits of the preload and the first row."""
        rows, split = self.kernel[0] + self.stride[0], self.split
        x0q = -self.pads[1] // split  # floor division: x0 = -PL = X0Q * SPLIT + X0P
        preload = max(self.rows_needed(0), 0) * self.row_words
        frame = self.in_shape[0] * self.row_words
        next_limit = (self.stride[0] - self.pads[0] + self.kernel[0]) * self.row_words
        first_row = next_limit if self.out_shape[0] > 1 and next_limit < frame else frame
        return {"ROWS": rows, "SPLIT": split, "X0Q": x0q, "X0P": -self.pads[1] - x0q * split,
                "R0": -self.pads[0] % rows, "PRELOAD_WORDS": preload, "READ_LIMIT0": preload or first_row,
                "NEXT_LIMIT": next_limit, "ROW_ITERATIONS": self.row_iterations}

    def iterations(self) -> int:
        """Trip count of the kernel's one pipelined loop."""
        return max(self.rows_needed(0), 0) * self.row_words + self.out_shape[0] * self.row_iterations

    def cycles(self) -> int:
        return self.iterations() + self.PIPELINE_DEPTH

    def fold_cores(self) -> list[dict]:
        return [{"simd": s} for s in self.simd_options()]

    def io_pattern(self) -> tuple[np.ndarray, np.ndarray]:
        """Preload reads, then per output row ROW_ITERATIONS iterations that write the row's window words first
        and read the rows the next output row needs (all remaining rows on the last one); then the pipeline
        drains (no new iteration)."""
        ih = self.in_shape[0]
        oh, ow = self.out_shape[:2]
        per_row = self.row_words
        pre = max(self.rows_needed(0), 0) * per_row
        it = np.arange(self.row_iterations)
        reads, writes, done = [np.ones(pre, bool)], [np.zeros(pre, bool)], pre
        for oy in range(oh):
            need = (oy + 1) * self.stride[0] - self.pads[0] + self.kernel[0] if oy + 1 < oh else ih
            n = min(need, ih) * per_row - done
            reads.append(it < n)
            writes.append(it < ow * self.window // self.simd)
            done += n
        return pipelined_pattern(np.concatenate(reads), np.concatenate(writes), self.PIPELINE_DEPTH)

    def style_groups(self) -> list[list[dict]]:
        return [[{"mem_style": m} for m in MEM_STYLES]]

    def line_buffer_memory(self) -> Memory:
        """KH+SH rows x SPLIT column phases, one memory each, whose word is one whole pixel (C elements); each read
        once (the window's column in it) and written at most once (the assembled input pixel) per cycle."""
        rows, split = self.kernel[0] + self.stride[0], self.split
        return Memory(f"{self.name}_line_buffer", rows * split, math.ceil(self.in_shape[1] / split), self.channels,
                      self.in_bits, self.mem_style, reads=1, writes=1)

    def pixel_memory(self) -> Memory:
        """The register that assembles C/IN_WORD input words into the whole pixel written to the line buffer (when
        IN_WORD == C the word is the pixel and HLS keeps no state in it, but it is priced all the same)."""
        return Memory(f"{self.name}_pixel", 1, 1, self.channels, self.in_bits, "registers", reads=1, writes=1)

    def word_from(self, producer_word: int | None) -> int:
        """The window buffer accepts any word that divides C: its producer's when it does, else whole pixels
        (``None``: the host feeds whole pixels)."""
        return self.channels if producer_word is None or self.channels % producer_word else producer_word

    def follow_producer(self, producer_word: int | None) -> None:
        self.ifm_word = self.word_from(producer_word)

    def input_word_options(self, first: bool) -> list[dict]:
        return [{"ifm_word": w} for w in ([self.channels] if first else divisors(self.channels))]

    def takes_word(self, producer_word: int, input_word: int) -> bool:
        return input_word == self.word_from(producer_word)

    def greedy_styles(self) -> None:
        self.mem_style = "lutram" if self.line_buffer()[1] <= 64 else "bram"

    def reference(self, x: np.ndarray) -> np.ndarray:
        (kh, kw), (sh, sw), (pt, pl, pb, pr) = self.kernel, self.stride, self.pads
        xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=self.pad_value)
        win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))  # N, OH', OW', C, KH, KW
        oh, ow = self.out_shape[:2]
        win = win[:, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw]
        return np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3)).reshape(x.shape[0], oh, ow, -1)

    def memories(self) -> list[Memory]:
        return [self.line_buffer_memory(), self.pixel_memory()]

    def line_buffer(self) -> tuple[int, int, int]:
        """(memories, depth, width in bits) of the line buffer."""
        m = self.line_buffer_memory()
        return m.banks, m.depth, m.width

    def resources(self) -> dict[str, int]:
        """The line buffer (``memories()``, priced by fpgagen.ir.memory) plus logic: each of the SIMD output
        elements picks one of ``fan_in`` sources (a bank's pixel: the rotating row, the column phase when
        SIMD > C or the channel group when SIMD < C; or the pad code), a LUT6 being a 4:1 multiplexer bit; the
        counters and address clamps of two loop sides. FF: the output and input words and the counters (the pixel
        register is a declared memory). Not in FINN-R (FINN counts padding as zero)."""
        rows, c, a = self.kernel[0] + self.stride[0], self.channels, self.in_bits
        fan_in = rows * (self.split if self.simd > c else c // self.simd) + 1
        mux = self.simd * a * math.ceil(fan_in / 4)
        ff = (self.simd + self.ifm_word) * a + 2 * CONTROL_FF
        return add_resources(memory_resources(self.memories()), resources(LUT=mux + 2 * CONTROL_LUT, FF=ff))


@dataclass(eq=False)
class MVAU(Layer):
    """Matrix-vector-threshold unit: ``acc = W @ x`` per pixel, then multi-thresholding to output codes (or the
    raw accumulator when ``thresholds`` is None, for a final layer).

    ``weights`` is (MH, MW) integer with columns in the window's (ky, kx, c) order; ``thresholds`` is (MH, NT).
    Folding: PE output channels and SIMD inputs per cycle; MW % SIMD == 0 and MH % PE == 0.
    Cycles: (MH/PE) * (MW/SIMD) * pixels (FINN-R), the trip count of the kernel's flattened loop.

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

    def cycles(self) -> int:
        return (self.mh // self.pe) * (self.mw // self.simd) * self.pixels

    @property
    def nt(self) -> int:
        return 0 if self.thresholds is None else self.thresholds.shape[1]

    @property
    def thr_bits(self) -> int:
        """Stored threshold width: the smallest integer type holding them (as codegen declares thr_t); in search
        mode the padding value (``search_tables``) too."""
        if not self.nt:
            return 0
        top = max(int(self.thresholds.max()), self.search_pad if self.thr_mode == "search" else 0)
        return smallest_dtype(min(int(self.thresholds.min()), -1), top).bitwidth()

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

    def io_pattern(self) -> tuple[np.ndarray, np.ndarray]:
        """Per pixel NF*SF iterations: the first neuron fold reads the SF input words, every SF-th writes."""
        nf, sf = self.mh // self.pe, self.mw // self.simd
        i = np.arange(nf * sf)
        return np.tile(i < sf, self.pixels), np.tile(i % sf == sf - 1, self.pixels)

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
        same address). ``search`` (binary search, as finn-rtllib's thresholding: one memory per stage): stage s
        holds 2^s thresholds per channel, NF*2^s words of TB bits per PE, and each PE reads its own address
        nf*2^s + j (j: its answer's top s bits); in BRAM two PEs share a bank through its two read ports."""
        if not self.nt:
            return []
        nf, tb = self.mh // self.pe, self.thr_bits
        if self.thr_mode == "parallel":
            return [Memory("thresholds", 1, nf, self.pe * self.nt, tb, self.thr_style if nf > 1 else "registers")]
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
            out["thresholds"] = self.threshold_tiles().transpose(1, 0, 2).reshape(1, nf, self.pe * self.nt)
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

    def threshold_tiles(self) -> np.ndarray:
        """Thresholds as the kernel's ROM: [PE][NF][NT]."""
        return fold_channels(self.thresholds, self.pe)


@dataclass(eq=False)
class MaxPool(Layer):
    """Non-overlapping max pooling (kernel == stride, no padding, floor mode) on integer codes. Codes are a
    monotonic image of the real values, so max commutes with dequantization. Kernel: templates/hls/fg_maxpool.h.

    Memories (``memories()``): the column maxima of the current window, one word per channel fold (CW = C/PE
    words: a shift register, so the word of the same channel fold comes back after CW cycles, whatever CW); and
    KH-1 row memories of OW*CW words: row memory k holds, between input rows, the maximum over window rows 0..k.
    Row memory k is written only from row memory k-1's value (never from its own), so no read-modify-write of
    one memory closes a loop and II=1 needs no dependence pragma.
    Cycles: IH * IW * C / PE iterations (every input word is read once), plus the pipeline depth once per frame.
    """

    kernel: tuple[int, int] = (2, 2)
    pe: int = 1
    mem_style: str = "lutram"  # row memories of partial maxima: bram | lutram

    kind = "MaxPool"
    KERNEL_HEADER = "fg_maxpool.h"
    CONFIG_TEMPLATE = "maxpool.h.j2"
    STYLES = {"mem_style": MEM_STYLES}

    @property
    def in_word(self) -> int:
        return self.pe

    @property
    def out_word(self) -> int:
        return self.pe

    @property
    def PIPELINE_DEPTH(self) -> int:  # noqa: N802 (a per-instance constant)
        """Stages (a judgement): 1 for the pop and the column maximum, then per row memory 2 for its read (BRAM
        with output register) and 1 for the compare-select that feeds the next (row memory k's read waits for
        the write of k-1's value), 1 for the stream write."""
        return 2 + 3 * (self.kernel[0] - 1)

    def folding(self) -> dict:
        return {"pe": self.pe}

    def validate(self) -> None:
        c = self.in_shape[2]
        self._require(c % self.pe == 0, f"PE={self.pe} does not divide C={c}", f"choose PE from {divisors(c)}")

    def iterations(self) -> int:
        h, w, c = self.in_shape
        return h * w * c // self.pe

    def cycles(self) -> int:
        return self.iterations() + self.PIPELINE_DEPTH

    def fold_cores(self) -> list[dict]:
        return [{"pe": p} for p in divisors(self.in_shape[2])]

    def style_groups(self) -> list[list[dict]]:
        return [[{"mem_style": m} for m in MEM_STYLES]]

    def io_pattern(self) -> tuple[np.ndarray, np.ndarray]:
        """Every iteration reads; the last pixel of each (complete) window writes; then the pipeline drains."""
        h, w, c = self.in_shape
        (kh, kw), (oh, ow) = self.kernel, self.out_shape[:2]
        y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        last = (y % kh == kh - 1) & (x % kw == kw - 1) & (y // kh < oh) & (x // kw < ow)
        return pipelined_pattern(np.ones(self.iterations(), bool), np.repeat(last.reshape(-1), c // self.pe),
                          self.PIPELINE_DEPTH)

    def greedy_styles(self) -> None:
        self.mem_style = "lutram" if self.out_shape[1] * self.in_shape[2] // self.pe <= 64 else "bram"

    def greedy_fold(self, target_cycles: float, prev_word: int) -> None:
        greedy_channel_pe(self, target_cycles, prev_word)

    def reference(self, x: np.ndarray) -> np.ndarray:
        kh, kw = self.kernel
        oh, ow, c = self.out_shape
        x = x[:, : oh * kh, : ow * kw]
        return x.reshape(x.shape[0], oh, kh, ow, kw, c).max(axis=(2, 4))

    def memories(self) -> list[Memory]:
        cw, a = self.in_shape[2] // self.pe, self.in_bits
        return [Memory(f"{self.name}_colmax", 1, cw, self.pe, a, "registers", reads=1, writes=1),
                Memory(f"{self.name}_rowmax", max(1, self.kernel[0] - 1), self.out_shape[1] * cw, self.pe, a,
                       self.mem_style, reads=1, writes=1)]

    def resources(self) -> dict[str, int]:
        """The memories (``memories()``) plus per lane a comparator and a 2:1 select (2*A LUTs, carry chain
        plus multiplexer) for the column maximum and for each row memory's maximum. FINN counts max pooling as
        zero LUTs; derived from the kernel's loop body."""
        lanes = self.pe * self.in_bits * self.kernel[0]
        return add_resources(memory_resources(self.memories()),
                             resources(LUT=2 * lanes + CONTROL_LUT, FF=lanes + CONTROL_FF))


@dataclass(eq=False)
class Threshold(Layer):
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

    def threshold_tiles(self) -> np.ndarray:
        return fold_channels(self.thresholds, self.pe)

    @property
    def thr_bits(self) -> int:
        return smallest_dtype(min(int(self.thresholds.min()), -1), int(self.thresholds.max())).bitwidth()

    def fold_cores(self) -> list[dict]:
        return [{"pe": p} for p in divisors(self.in_shape[2])]

    def style_groups(self) -> list[list[dict]]:
        return [[{"thr_style": t} for t in (MEM_STYLES if self.in_shape[2] // self.pe > 1 else ("lutram",))]]

    def io_pattern(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.cycles()
        return np.ones(n, bool), np.ones(n, bool)

    def greedy_styles(self) -> None:
        self.thr_style = "lutram" if self.in_shape[2] // self.pe <= 64 else "bram"

    def greedy_fold(self, target_cycles: float, prev_word: int) -> None:
        greedy_channel_pe(self, target_cycles, prev_word)

    def reference(self, x: np.ndarray) -> np.ndarray:
        return apply_thresholds(x, self.thresholds, self.out_base, self.negate)

    def memories(self) -> list[Memory]:
        """The threshold ROM (C/PE words, each the PE x NT thresholds of one channel fold; every lane reads the
        same address) and the negate flags (C/PE words of PE bits, in LUTs: a BRAM18 for PE bits would be waste);
        constants when C == PE."""
        cw, nt = self.in_shape[2] // self.pe, self.thresholds.shape[1]
        return [Memory("thresholds", 1, cw, self.pe * nt, self.thr_bits, self.thr_style if cw > 1 else "registers"),
                Memory("negate", 1, cw, self.pe, 1, "lutram" if cw > 1 else "registers")]

    def memory_contents(self) -> dict[str, np.ndarray]:
        cw, nt = self.in_shape[2] // self.pe, self.thresholds.shape[1]
        return {"thresholds": self.threshold_tiles().transpose(1, 0, 2).reshape(1, cw, self.pe * nt),
                "negate": self.negate_tiles().T.reshape(1, cw, self.pe)}

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

    def negate_tiles(self) -> np.ndarray:
        return fold_channels(self.negate.astype(np.int64)[:, None], self.pe)[..., 0]


@dataclass(eq=False)
class WidthConverter(Layer):
    """Repacks a stream from words of ``in_elems`` to words of ``out_elems`` elements (same element type).
    Inserted by the fold step where a producer's word differs from its consumer's. Kernel:
    templates/hls/fg_width_converter.h, one flat II=1 loop: each iteration reads a word when the buffer holds
    fewer than OUT elements (when IN >= OUT; every iteration when IN < OUT) and writes one when it holds at
    least OUT, so a chunk of lcm(IN, OUT) elements takes max(chunk/IN, chunk/OUT) iterations.
    Cycles: max(elements/IN, elements/OUT) plus the pipeline depth once per frame."""

    in_elems: int = 1
    out_elems: int = 1

    kind = "WidthConverter"
    INSERTED_BY_FOLD = True
    KERNEL_HEADER = "fg_width_converter.h"
    CONFIG_TEMPLATE = "width_converter.h.j2"
    # Stages (a judgement): 1 for the pop and the buffer update, 1 for the stream write.
    PIPELINE_DEPTH: ClassVar[int] = 2

    @property
    def in_word(self) -> int:
        return self.in_elems

    @property
    def out_word(self) -> int:
        return self.out_elems

    @property
    def chunk(self) -> int:
        """Elements after which the buffer is empty again: the least common multiple of both word sizes."""
        return math.lcm(self.in_elems, self.out_elems)

    @property
    def capacity(self) -> int:
        """Buffer elements: the most it holds, just after a read (fewer than OUT before one, so at most
        IN + OUT - 1; exact multiples need only max(IN, OUT))."""
        reads, _, fills = self.chunk_schedule()
        return int(fills[reads].max()) + self.in_elems

    def validate(self) -> None:
        self._require(math.prod(self.in_shape) % self.chunk == 0,
                      f"{math.prod(self.in_shape)} elements per frame are not a whole number of "
                      f"lcm({self.in_elems}, {self.out_elems}) chunks", "choose word sizes that divide the channels")

    def iterations(self) -> int:
        n = math.prod(self.in_shape)
        return max(n // self.in_elems, n // self.out_elems)

    def cycles(self) -> int:
        return self.iterations() + self.PIPELINE_DEPTH

    def chunk_schedule(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(reads, writes, fill before the read) per iteration of one chunk, as the kernel's counter runs."""
        n_in, n_out = self.chunk // self.in_elems, self.chunk // self.out_elems
        have, reads, writes, fills = 0, [], [], []
        for _ in range(max(n_in, n_out)):
            rd = have < self.out_elems if self.in_elems >= self.out_elems else True
            fills.append(have)
            have += self.in_elems * rd
            wr = have >= self.out_elems
            have -= self.out_elems * wr
            reads.append(rd)
            writes.append(wr)
        return np.array(reads, bool), np.array(writes, bool), np.array(fills)

    def io_pattern(self) -> tuple[np.ndarray, np.ndarray]:
        reads, writes, _ = self.chunk_schedule()
        chunks = math.prod(self.in_shape) // self.chunk
        return pipelined_pattern(np.tile(reads, chunks), np.tile(writes, chunks), self.PIPELINE_DEPTH)

    def reference(self, x: np.ndarray) -> np.ndarray:
        return x  # repacking changes words, not values

    def memories(self) -> list[Memory]:
        return [Memory(f"{self.name}_buffer", 1, 1, self.capacity, self.in_bits, "registers", reads=1, writes=1)]

    def resources(self) -> dict[str, int]:
        """The buffer register (``capacity`` elements, ``memories()``) and its input multiplexers: buffer element k
        takes the element OUT above it (after a write) or input lane k - h for every fill h it can have at a read;
        a LUT6 is a 4:1 multiplexer bit and holding is the flip-flop's enable, so exact multiples need no
        multiplexer. The output word is the buffer's bottom OUT elements (wires)."""
        reads, writes, fills = self.chunk_schedule()
        read_fills = set(fills[reads].tolist())
        luts = 0
        for k in range(self.capacity):
            sources = (k + self.out_elems < self.capacity) + sum(0 <= k - h < self.in_elems for h in read_fills)
            luts += math.ceil(sources / 4) if sources > 1 else 0
        a = self.in_bits
        return add_resources(memory_resources(self.memories()),
                             resources(LUT=luts * a + CONTROL_LUT, FF=self.out_elems * a + CONTROL_FF))


def greedy_channel_pe(layer: Layer, target_cycles: float, prev_word: int) -> None:
    """FINN-style greedy PE of a per-channel kind (MaxPool, Threshold): the least meeting ``target_cycles``."""
    h, w, c = layer.in_shape
    fast_enough = [p for p in divisors(c) if h * w * c // p <= target_cycles]
    # Taking the producer's word when it is fast enough saves a width converter.
    layer.pe = prev_word if prev_word in fast_enough else (fast_enough or [c])[0]


def exact_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Integer x @ w.T through float64 BLAS: exact while every partial sum stays below 2**53."""
    bound = float(np.abs(x).max(initial=0)) * float(np.abs(w).sum(axis=1).max(initial=0))  # float: no int64 wrap
    if bound < 2**53:
        return np.rint(x.astype(np.float64) @ w.T.astype(np.float64)).astype(np.int64)
    return x.astype(np.int64) @ w.T.astype(np.int64)


def enumerate_fold_options(layer) -> list[dict]:
    """Each of the layer's ``fold_cores()`` combined with one alternative from every one of its ``style_groups()``
    (probed on a copy with that core applied, since the groups depend on the folding)."""
    out = []
    for core in layer.fold_cores():
        probe = copy.copy(layer)
        probe.__dict__.update(core)
        for combo in itertools.product(*probe.style_groups()):
            out.append({k: v for part in (core, *combo) for k, v in part.items()})
    return out


def fold_channels(per_channel: np.ndarray, pe: int) -> np.ndarray:
    """(C, K) -> [PE][C/PE][K]: channel cw*PE + p goes to PE p, fold cw (PE consecutive channels per word)."""
    c, k = per_channel.shape
    return per_channel.reshape(c // pe, pe, k).transpose(1, 0, 2)


LAYER_KINDS = {cls.kind: cls for cls in (SlidingWindow, MVAU, MaxPool, Threshold, WidthConverter)}
