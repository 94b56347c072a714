"""The sliding-window generator (im2col on a stream), a chain kind: its IR class (cost and cycle model, numpy
reference ``reference``, folding options, greedy baseline hooks), its kernel (``KERNEL_HEADER``) and config
template (``CONFIG_TEMPLATE``). ``LOWERINGS`` is empty: no ONNX op is a window of its own; the Conv rules (mvau.py,
vvu.py) put one in front of their unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..layers import (
    CONTROL_FF,
    CONTROL_LUT,
    MEM_STYLES,
    Memory,
    OnePortLayer,
    add_resources,
    divisors,
    memory_resources,
    pipelined_pattern,
    resources,
)


@dataclass(eq=False)
class SlidingWindow(OnePortLayer):
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

    def stream_pattern(self) -> tuple[np.ndarray, np.ndarray]:
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


KINDS = (SlidingWindow,)
LOWERINGS: dict = {}
