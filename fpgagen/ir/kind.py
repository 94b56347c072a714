"""What every layer kind (base class fpgagen.ir.layers.Layer) declares for the passes that treat kinds alike: the
fold step, the optimizer,
FIFO sizing, the network file and codegen ask the layer, never its type. The defaults are a kind that needs none
of these hooks."""

from __future__ import annotations

import copy
from typing import ClassVar

from .cpp import EmitsCode


class KindHooks(EmitsCode):
    # A width converter: the fold step inserts it between words that differ and strips it before folding again.
    INSERTED_BY_FOLD: ClassVar[bool] = False
    # Folds as an MVAU does (mh, mw, pixels, PE, SIMD): the sliding window before it takes its SIMD.
    MATRIX_UNIT: ClassVar[bool] = False
    # A sliding window: its SIMD is the matrix unit's after it (folded with it, not on its own).
    TAKES_CONSUMER_SIMD: ClassVar[bool] = False
    # The folding count of PEs on DSP multiply-add chains, if the kind has one: it may be 0, and resources are
    # linear in it (one unit per style-group step), so the optimizer gives it one integer variable.
    DSP_COUNT: ClassVar[str] = ""

    def follow_producer(self, producer_word: int | None) -> None:
        """Take the input word a producer streams (``None``: the host, whole pixels), for a kind whose input word
        adapts to its producer's; the others' input word is fixed by their folding."""

    def input_word_options(self, first: bool) -> list[dict]:
        """The settings of an adaptive input word the optimizer chooses among (``first``: the host feeds it)."""
        return [{}]

    def takes_word(self, producer_word: int, input_word: int) -> bool:
        """Whether this layer can run with ``input_word`` behind a producer of ``producer_word`` (a converter
        between them when they differ)."""
        return True

    def greedy_styles(self) -> None:
        """FINN's default styles, for the greedy baseline (fpgagen.fold.greedy_within); no-op without styles."""

    def greedy_fold(self, target_cycles: float, prev_word: int) -> None:
        """The FINN-style greedy folding of a kind folded on its own (no matrix unit, no window): the least
        parallelism meeting ``target_cycles``; ``prev_word`` is the producer's word. Default: the first of
        ``fold_cores()`` fast enough (else the last)."""
        for core in self.fold_cores():
            probe = copy.copy(self)
            probe.__dict__.update(core)
            if probe.cycles() <= target_cycles:
                break
        self.__dict__.update(core)
