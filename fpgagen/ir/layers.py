"""Hardware layers of the integer dataflow: typed dataclasses with shapes, datatypes, folding and cost models.

Every stream carries *words* of ``in_word``/``out_word`` integer elements; pixels are streamed in raster order
(NHWC), channels fastest. Each class documents its cycle model, which is the trip count of its HLS kernel's
pipelined loop (II=1), so the estimate matches what the template does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from qonnx.core.datatype import DataType

from ..errors import FpgagenError

Shape = tuple[int, int, int]  # (H, W, C) of one image, channels last


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass(eq=False)
class Layer:
    name: str
    in_shape: Shape
    out_shape: Shape
    in_dtype: str
    out_dtype: str

    kind = "Layer"

    @property
    def idt(self) -> DataType:
        return DataType[self.in_dtype]

    @property
    def odt(self) -> DataType:
        return DataType[self.out_dtype]

    @property
    def in_word(self) -> int:
        raise NotImplementedError

    @property
    def out_word(self) -> int:
        raise NotImplementedError

    def folding(self) -> dict:
        """The user-settable folding attributes, as in a folding.json entry."""
        return {}

    def set_folding(self, **attrs) -> None:
        for key, value in attrs.items():
            if key not in self.folding():
                raise FpgagenError(
                    f"unknown folding attribute '{key}' for {self.kind}",
                    f"layer {self.name}",
                    f"use one of {sorted(self.folding()) or 'none'}",
                )
            setattr(self, key, int(value))
        self.validate()

    def validate(self) -> None:
        """Raise FpgagenError if the folding violates the kernel's divisibility constraints."""

    def cycles(self) -> int:
        raise NotImplementedError

    def _require(self, ok: bool, what: str, fix: str) -> None:
        if not ok:
            raise FpgagenError(what, f"layer {self.name} ({self.kind})", fix)


@dataclass(eq=False)
class SlidingWindow(Layer):
    """Sliding-window generator (im2col on a stream): emits, per output pixel, the KH*KW*C window in
    (ky, kx, c) order as words of ``simd`` elements. Padding is generated on the fly with ``pad_value``, the
    code that stands for a real 0.

    Line buffer: KH + SH rows of the (unpadded) input, so the next (at most SH) rows are read while the
    current output row is emitted. Cycles (the kernel's loop trip count, II=1): the rows needed by output row 0
    are preloaded, then every output row runs a static ``max(SH*IW*C/IN_WORD, OW*KH*KW*C/SIMD)`` iterations.
    That is FINN-R's ``OFM_h*max(OFM_w*k^2*C/SIMD, stride*IFM_w*C/SIMD)``, with the preload replacing its
    IFM_w*k*C/SIMD start-up term.
    """

    kernel: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    pad_value: int = 0
    simd: int = 1
    ifm_word: int = 1  # elements per input word (the producer's word)

    kind = "SlidingWindow"

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
    def row_iterations(self) -> int:
        iw, c = self.in_shape[1:]
        return max(self.stride[0] * iw * c // self.ifm_word, self.out_shape[1] * self.window // self.simd)

    def cycles(self) -> int:
        iw, c = self.in_shape[1:]
        return max(self.rows_needed(0), 0) * iw * c // self.ifm_word + self.out_shape[0] * self.row_iterations


@dataclass(eq=False)
class MVAU(Layer):
    """Matrix-vector-threshold unit: ``acc = W @ x`` per pixel, then multi-thresholding to output codes (or the
    raw accumulator when ``thresholds`` is None, for a final layer).

    ``weights`` is (MH, MW) integer with columns in the window's (ky, kx, c) order; ``thresholds`` is (MH, NT).
    Folding: PE output channels and SIMD inputs per cycle; MW % SIMD == 0 and MH % PE == 0.
    Cycles: (MH/PE) * (MW/SIMD) * pixels (FINN-R), the trip count of the kernel's flattened loop.
    """

    weights: np.ndarray = field(default=None, repr=False)
    thresholds: np.ndarray | None = field(default=None, repr=False)
    out_base: int = 0  # output code when no threshold passes
    weight_dtype: str = "INT8"
    acc_dtype: str = "INT32"
    pe: int = 1
    simd: int = 1

    kind = "MVAU"

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
        self._require(self.mw % self.simd == 0, f"SIMD={self.simd} does not divide MW={self.mw}",
                      f"choose SIMD from {divisors(self.mw)}")
        self._require(self.mh % self.pe == 0, f"PE={self.pe} does not divide MH={self.mh}",
                      f"choose PE from {divisors(self.mh)}")

    def cycles(self) -> int:
        return (self.mh // self.pe) * (self.mw // self.simd) * self.pixels

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
    monotonic image of the real values, so max commutes with dequantization.
    Cycles: IH * IW * C / PE (every input word is read once)."""

    kernel: tuple[int, int] = (2, 2)
    pe: int = 1

    kind = "MaxPool"

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


@dataclass(eq=False)
class Threshold(Layer):
    """Standalone multi-threshold requantization of a code stream (a Quant that no MVAU can absorb).
    ``negate[c]`` compares -x (a negative per-channel scale). Cycles: pixels * C / PE."""

    thresholds: np.ndarray = field(default=None, repr=False)
    negate: np.ndarray = field(default=None, repr=False)
    out_base: int = 0
    pe: int = 1

    kind = "Threshold"

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

    def negate_tiles(self) -> np.ndarray:
        return fold_channels(self.negate.astype(np.int64)[:, None], self.pe)[..., 0]


@dataclass(eq=False)
class WidthConverter(Layer):
    """Repacks a stream from words of ``in_elems`` to words of ``out_elems`` elements (same element type).
    Inserted by the fold step where a producer's word differs from its consumer's. The kernel reads a chunk of
    lcm(in, out) elements, then writes it, so cycles = elements/in + elements/out."""

    in_elems: int = 1
    out_elems: int = 1

    kind = "WidthConverter"

    @property
    def in_word(self) -> int:
        return self.in_elems

    @property
    def out_word(self) -> int:
        return self.out_elems

    @property
    def chunk(self) -> int:
        """Elements buffered at once: the least common multiple of both word sizes."""
        return math.lcm(self.in_elems, self.out_elems)

    def cycles(self) -> int:
        h, w, c = self.in_shape
        return h * w * c // self.in_elems + h * w * c // self.out_elems


def fold_channels(per_channel: np.ndarray, pe: int) -> np.ndarray:
    """(C, K) -> [PE][C/PE][K]: channel cw*PE + p goes to PE p, fold cw (PE consecutive channels per word)."""
    c, k = per_channel.shape
    return per_channel.reshape(c // pe, pe, k).transpose(1, 0, 2)


LAYER_KINDS = {cls.kind: cls for cls in (SlidingWindow, MVAU, MaxPool, Threshold, WidthConverter)}
