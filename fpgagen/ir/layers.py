"""The one layer base and the helpers the kinds share: ``Layer`` (ports, folding, cost models; every kind's base
class) and ``OnePortLayer`` (a kind with one input and one output stream). The kinds themselves live one module
each in fpgagen.ir.kinds.

Every stream carries *words* of ``in_words``/``out_words`` integer elements; pixels are streamed in raster order
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
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np
from qonnx.core.datatype import DataType

from ..errors import FpgagenError
from ..quant import as_dtype
from .cpp import Cpp
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
    """The one base of every layer kind. A layer has ports: ``in_shapes`` / ``out_shapes`` (one ``Shape`` per
    input / output port), ``in_dtypes`` / ``out_dtypes`` (one qonnx ``DataType`` each) and ``in_words`` /
    ``out_words`` (elements per stream word); ``io_pattern()`` gives per port, per iteration of the kernel's
    pipelined loop, whether it pops / pushes. A kind with one port each way derives them from ``OnePortLayer``'s
    fields; a kind with several declares them as fields (fpgagen.ir.kinds.base.GraphLayer)."""

    name: str

    kind: ClassVar[str] = "Layer"
    STYLES: ClassVar[dict[str, tuple | type]] = {}  # implementation choices: allowed values (or int)
    SETTABLE: ClassVar[tuple[str, ...]] = ()  # folding.json entries besides the folding and the styles

    def words_in(self, port: int) -> int:
        """Stream words per frame on input ``port``."""
        return math.prod(self.in_shapes[port]) // self.in_words[port]

    def words_out(self, port: int) -> int:
        return math.prod(self.out_shapes[port]) // self.out_words[port]

    def folding(self) -> dict:
        """The integer folding attributes (PE, SIMD, ...), as in a folding.json entry."""
        return {}

    def styles(self) -> dict:
        """The implementation choices (memory and multiplier styles), also settable in folding.json."""
        return {key: getattr(self, key) for key in self.STYLES}

    def set_folding(self, **attrs) -> None:
        settable = [*self.folding(), *self.STYLES, *self.SETTABLE]
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

    def memories(self) -> list[Memory]:
        """Every on-chip array of this layer's kernel, declared once (fpgagen.ir.memory): the template emits each
        from its declaration and ``resources()`` prices the same declarations."""
        return []

    def logic(self) -> dict[str, int]:
        """LUT/FF/DSP of the kernel's datapath and control (its memories are priced from ``memories()``)."""
        raise NotImplementedError

    def resources(self) -> dict[str, int]:
        """Estimated LUT, FF, BRAM18, DSP and LUTRAM of this layer's kernel (its FIFOs are costed apart)."""
        return add_resources(memory_resources(self.memories()), self.logic())

    def io_pattern(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(reads, writes): per input port / output port, per iteration of the kernel's pipelined loop (one frame,
        ``cycles()`` of them), whether it pops that input and whether it pushes that output. fpgagen.fifo sizes
        the FIFOs from it."""
        raise NotImplementedError

    def fold_cores(self) -> list[dict]:
        """The valid folding choices that set this layer's stream words and cycles (PE, SIMD)."""
        return [{}]

    def style_groups(self) -> list[list[dict]]:
        """For the current folding: groups of alternatives that change resources only, independently of each
        other: ``resources()`` is a core term plus one term per group (a group of ``dsp_pe`` counts is linear)."""
        return [[{key: v} for v in values] for key, values in self.STYLES.items()]

    def fold_options(self) -> list[dict]:
        """Every valid choice (the optimizer's domain): each core with one alternative from every style group."""
        return enumerate_fold_options(self)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The integer numpy reference: one (N, H, W, C) int64 array per port in and out, bit-exact."""
        raise NotImplementedError(f"no reference for {type(self).__name__}")

    def _require(self, ok: bool, what: str, fix: str) -> None:
        if not ok:
            raise FpgagenError(what, f"layer {self.name} ({self.kind})", fix)


@dataclass(eq=False)
class OnePortLayer(Layer):
    """A layer with one input and one output port (the sliding window, MVAU, MaxPool, Threshold, width
    converter): its ports are ``in_shape``/``in_dtype``/``in_word`` and ``out_shape``/``out_dtype``/``out_word``,
    its numpy reference ``reference(x)`` and its stream pattern ``stream_pattern()`` of that one port each way."""

    in_shape: Shape
    out_shape: Shape
    in_dtype: DataType  # qonnx DataType objects; names only in network.json (fpgagen.ir.network)
    out_dtype: DataType
    CPP = Cpp  # the g.* helpers of the templates (KERNEL_HEADER, CONFIG_TEMPLATE: fpgagen.ir.cpp)

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

    @property
    def in_shapes(self) -> tuple[Shape]:
        return (tuple(self.in_shape),)

    @property
    def out_shapes(self) -> tuple[Shape]:
        return (tuple(self.out_shape),)

    @property
    def in_dtypes(self) -> tuple[DataType]:
        return (self.in_dtype,)

    @property
    def out_dtypes(self) -> tuple[DataType]:
        return (self.out_dtype,)

    @property
    def in_words(self) -> tuple[int]:
        return (self.in_word,)

    @property
    def out_words(self) -> tuple[int]:
        return (self.out_word,)

    @property
    def in_bits(self) -> int:
        return self.idt.bitwidth()

    @property
    def out_bits(self) -> int:
        return self.odt.bitwidth()

    def style_groups(self) -> list[list[dict]]:
        return []

    def stream_pattern(self) -> tuple[np.ndarray, np.ndarray]:
        """(reads, writes) of the one input and the one output port, per iteration of one frame."""
        raise NotImplementedError

    def io_pattern(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        reads, writes = self.stream_pattern()
        return [reads], [writes]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        (x,) = inputs
        return [self.reference(x)]

    def reference(self, x: np.ndarray) -> np.ndarray:
        """The integer numpy reference of one stream: (N, *in_shape) codes -> (N, *out_shape), bit-exact."""
        raise NotImplementedError(f"no reference for {type(self).__name__}")


def greedy_channel_pe(layer: OnePortLayer, target_cycles: float, prev_word: int) -> None:
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


__all__ = ["Layer", "OnePortLayer", "RESOURCES", "add_resources", "divisors", "enumerate_fold_options",
           "fold_channels", "exact_matmul", "greedy_channel_pe", "pipelined_pattern", "memory", "dtype_fields",
           "datatypes_from_names", "MEM_STYLES", "CONTROL_LUT", "CONTROL_FF", "Shape"]
