"""StreamFork: one stream duplicated to K consumers (a tensor that several layers read).

Kernel ``fg::stream_fork`` (templates/hls/fg_fork.h): one flat loop, II=1, one word per iteration: pop the
input, push the same word to every output. No memory. The graph walk inserts a fork wherever a tensor has more
than one consumer; on a reconvergent path (fork -> ... -> concat/add) the FIFO of the short branch must cover the
latency difference (fpgagen.fifo sizes it from the io patterns).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .affine import AffineView
from .base import CONTROL_FF, CONTROL_LUT, GraphLayer, PEWords, Shape, divisors, resources


@dataclass(eq=False)
class StreamFork(PEWords, GraphLayer):
    pe: int = 1  # elements per word, on the input and on every output

    kind = "StreamFork"
    KERNEL_HEADER = "fg_fork.h"
    CONFIG_TEMPLATE = "fork.h.j2"

    @property
    def branches(self) -> int:
        return len(self.out_shapes)

    def validate(self) -> None:
        c = self.in_shapes[0][2]
        self._require(self.branches >= 2, f"a fork needs at least 2 outputs, it has {self.branches}",
                      "connect the tensor to two or more consumers, or drop the fork")
        self._require(all(s == self.in_shapes[0] for s in self.out_shapes) and
                      all(d == self.in_dtypes[0] for d in self.out_dtypes),
                      "every output of a fork carries its input unchanged", "give the outputs the input's shape")
        self._require(c % self.pe == 0, f"PE={self.pe} does not divide C={c}", f"choose PE from {divisors(c)}")

    def fold_cores(self) -> list[dict]:
        return [{"pe": p} for p in divisors(self.in_shapes[0][2])]

    def cycles(self) -> int:
        return self.words_in(0)

    def io_pattern(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        n = self.cycles()
        return [np.ones(n, bool)], [np.ones(n, bool) for _ in range(self.branches)]

    def logic(self) -> dict[str, int]:
        """The popped word is registered once and fanned out; each output adds its handshake (full flag AND)."""
        bits = self.pe * self.in_dtypes[0].bitwidth()
        return resources(LUT=CONTROL_LUT + 2 * self.branches, FF=bits + CONTROL_FF)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        (x,) = self._check_inputs(inputs)
        return [x.copy() for _ in range(self.branches)]


def lower_fork(name: str, view: AffineView, shape: Shape, consumers: int) -> tuple[StreamFork, list[AffineView]]:
    """A tensor read by ``consumers`` layers: a fork whose outputs all carry the input's view (no ONNX node)."""
    fork = StreamFork(name, (shape,), (shape,) * consumers, (view.dtype,), (view.dtype,) * consumers)
    fork.validate()
    return fork, [view] * consumers


KINDS = (StreamFork,)
LOWERINGS = {}  # no ONNX op: the walk inserts a fork where a tensor has several consumers (lower_fork)
