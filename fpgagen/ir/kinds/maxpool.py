"""Non-overlapping max pooling, a chain kind: its IR class (cost and cycle model, numpy reference ``reference``,
folding options, greedy baseline hooks), its kernel (``KERNEL_HEADER``) and config template (``CONFIG_TEMPLATE``).
``LOWERINGS`` is empty: maxpool_general.py's MaxPool rule picks this kernel for k = s without padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
    pipelined_pattern,
    resources,
)


@dataclass(eq=False)
class MaxPool(OnePortLayer):
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

    def stream_pattern(self) -> tuple[np.ndarray, np.ndarray]:
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


KINDS = (MaxPool,)
LOWERINGS: dict = {}
