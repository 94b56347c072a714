"""The stream width converter the fold step inserts, a chain kind: its IR class (cost and cycle model, numpy
reference ``reference``, folding options, greedy baseline hooks), its kernel (``KERNEL_HEADER``) and config
template (``CONFIG_TEMPLATE``). ``LOWERINGS`` is empty: no ONNX op becomes one; the fold step inserts it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..layers import (
    CONTROL_FF,
    CONTROL_LUT,
    Memory,
    OnePortLayer,
    add_resources,
    memory_resources,
    pipelined_pattern,
    resources,
)


@dataclass(eq=False)
class WidthConverter(OnePortLayer):
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

    def stream_pattern(self) -> tuple[np.ndarray, np.ndarray]:
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
        read_fills = np.unique(fills[reads])
        capacity = int(read_fills[-1]) + self.in_elems  # = self.capacity, without walking the schedule again
        k = np.arange(capacity)
        # per element k: the element OUT above it, and each fill h with k - IN < h <= k (read_fills is sorted)
        lanes = np.searchsorted(read_fills, k, "right") - np.searchsorted(read_fills, k - self.in_elems, "right")
        sources = (k + self.out_elems < capacity) + lanes
        luts = int(np.where(sources > 1, -(-sources // 4), 0).sum())
        a = self.in_bits
        return add_resources(memory_resources(self.memories()),
                             resources(LUT=luts * a + CONTROL_LUT, FF=self.out_elems * a + CONTROL_FF))


KINDS = (WidthConverter,)
LOWERINGS: dict = {}
