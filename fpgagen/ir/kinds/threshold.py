"""Standalone multi-threshold requantization, a chain kind: its IR class (cost and cycle model, numpy reference
``reference``, folding options, greedy baseline hooks), its kernel (``KERNEL_HEADER``) and config template
(``CONFIG_TEMPLATE``). Chain kinds are lowered by fpgagen.streamline's chain rules, so ``LOWERINGS`` is empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from qonnx.core.datatype import DataType

from ...quant import apply_thresholds, smallest_dtype
from ..layers import (
    CONTROL_FF,
    CONTROL_LUT,
    MEM_STYLES,
    Memory,
    OnePortLayer,
    add_resources,
    divisors,
    fold_channels,
    greedy_channel_pe,
    memory_resources,
    resources,
)


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

    def threshold_tiles(self) -> np.ndarray:
        return fold_channels(self.thresholds, self.pe)

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


KINDS = (Threshold,)
LOWERINGS: dict = {}
