"""The contract every graph layer kind fulfils, and the pieces the kinds share.

Conventions (multi-port layers):
- ``in_shapes`` / ``out_shapes``: one ``Shape = (H, W, C)`` (channels last) per input / output port; every port
  streams its tensor in raster order, channels fastest, as words of ``in_words[p]`` / ``out_words[q]`` elements.
- ``in_dtypes`` / ``out_dtypes``: one qonnx ``DataType`` per port, in memory; ``to_doc``/``from_doc`` turn a layer
  into plain JSON (datatypes by name, arrays as nested lists) at the file boundary only.
- The kernel is one flat pipelined loop at II=1 of ``cycles()`` iterations per frame; ``io_pattern()`` says, per
  iteration, whether it pops each input port and whether it pushes each output port (what fpgagen.fifo sizes
  FIFOs from).
- ``memories()`` declares each on-chip array once (fpgagen.ir.memory.Memory): the config template emits it with
  memory.j2's ``declare`` and ``resources()`` prices the same declarations, plus the kind's logic.
- ``run(inputs)``: the integer numpy reference, a list of (N, H, W, C) int64 arrays per port in and out.
- ``KERNEL_HEADER`` (templates/hls/fg_*.h, the static kernel) and ``CONFIG_TEMPLATE`` (templates/hls/*.h.j2,
  whose ``instance(L, g)`` macro emits the config struct, the memories and one wrapper function per layer).
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

import jinja2
import numpy as np
from qonnx.core.datatype import BaseDataType, DataType

from ...errors import FpgagenError
from ...quant import smallest_dtype
from ..cpp import Cpp
from ..kind import KindHooks
from ..layers import enumerate_fold_options
from ..memory import Memory, add_resources, memory_resources, resources

Shape = tuple[int, int, int]  # (H, W, C) of one image, channels last

TEMPLATE_DIR = Path(__file__).resolve().parents[3] / "templates" / "hls"
MEM_STYLES = ("bram", "lutram")
CONTROL_LUT, CONTROL_FF = 60, 80  # loop counters, FSM and stream handshakes of one HLS process (a judgement)


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass(eq=False)
class GraphLayer(KindHooks):
    name: str
    in_shapes: tuple[Shape, ...]
    out_shapes: tuple[Shape, ...]
    in_dtypes: tuple[DataType, ...]
    out_dtypes: tuple[DataType, ...]

    kind: ClassVar[str] = "GraphLayer"
    STYLES: ClassVar[dict[str, tuple]] = {}  # implementation choices that change resources only

    # --- ports ----------------------------------------------------------------------------------------------
    @property
    def in_words(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def out_words(self) -> tuple[int, ...]:
        raise NotImplementedError

    def words_in(self, port: int) -> int:
        """Stream words per frame on input ``port``."""
        return math.prod(self.in_shapes[port]) // self.in_words[port]

    def words_out(self, port: int) -> int:
        return math.prod(self.out_shapes[port]) // self.out_words[port]

    # --- folding --------------------------------------------------------------------------------------------
    def folding(self) -> dict:
        return {}

    def styles(self) -> dict:
        return {key: getattr(self, key) for key in self.STYLES}

    def set_folding(self, **attrs) -> None:
        settable = [*self.folding(), *self.STYLES]
        for key, value in attrs.items():
            if key not in settable:
                raise FpgagenError(f"unknown folding attribute '{key}' for {self.kind}", f"layer {self.name}",
                                   f"use one of {sorted(settable)}")
            if key in self.STYLES:
                if value not in self.STYLES[key]:
                    raise FpgagenError(f"{key}='{value}' is not a valid choice", f"layer {self.name}",
                                       f"use one of {list(self.STYLES[key])}")
                setattr(self, key, value)
            elif isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or value < 1:
                raise FpgagenError(f"{key}={value!r} is not a valid count", f"layer {self.name}",
                                   f"write {key} as a whole number, e.g. \"{key}\": 2")
            else:
                setattr(self, key, int(value))
        self.validate()

    def validate(self) -> None:
        """Raise FpgagenError if the folding violates the kernel's constraints."""

    def fold_cores(self) -> list[dict]:
        return [{}]

    def style_groups(self) -> list[list[dict]]:
        return [[{key: v} for v in values] for key, values in self.STYLES.items()]

    def fold_options(self) -> list[dict]:
        return enumerate_fold_options(self)

    # --- models ---------------------------------------------------------------------------------------------
    def cycles(self) -> int:
        raise NotImplementedError

    def io_pattern(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        raise NotImplementedError

    def memories(self) -> list[Memory]:
        return []

    def logic(self) -> dict[str, int]:
        """LUT/FF/DSP of the kernel's datapath and control (its memories are priced from ``memories()``)."""
        raise NotImplementedError

    def resources(self) -> dict[str, int]:
        return add_resources(memory_resources(self.memories()), self.logic())

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    # --- checks shared by kinds -----------------------------------------------------------------------------
    def _require(self, ok: bool, what: str, fix: str) -> None:
        if not ok:
            raise FpgagenError(what, f"layer {self.name} ({self.kind})", fix)

    def _check_inputs(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if len(inputs) != len(self.in_shapes):
            raise ValueError(f"{self.name}: {len(inputs)} inputs, expected {len(self.in_shapes)}")
        out = []
        for p, x in enumerate(inputs):
            x = np.asarray(x, np.int64)
            if x.shape[1:] != tuple(self.in_shapes[p]):
                raise ValueError(f"{self.name}: input {p} has shape {x.shape[1:]}, expected {self.in_shapes[p]}")
            out.append(x)
        return out

    # --- file boundary --------------------------------------------------------------------------------------
    def to_doc(self) -> dict:
        doc = {"kind": self.kind}
        doc.update({f.name: _encode(getattr(self, f.name)) for f in fields(self)})
        return doc

    @classmethod
    def from_doc(cls, doc: dict) -> GraphLayer:
        hints = typing.get_type_hints(cls)  # each field's annotation, resolved in the module that declares it
        kw = {f.name: _decode(doc[f.name], hints[f.name]) for f in fields(cls) if f.name in doc}
        layer = cls(**kw)
        layer.validate()
        return layer


def _encode(value):
    if isinstance(value, BaseDataType):
        return value.name
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    return value


def _decode(value, hint):
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _decode(value, next(a for a in args if a is not type(None)))
    if hint is DataType:
        return DataType[value]
    if hint is np.ndarray:
        return np.asarray(value, np.int64)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(v, args[0]) for v in value)
        return tuple(_decode(v, a) for v, a in zip(value, args, strict=True))
    return value


# --- lowering: how the graph walk (fpgagen.streamline) calls a kind's rule for an ONNX op ------------------
@dataclass
class LoweringContext:
    """What a lowering rule may need from the walk besides the node and its inputs' views."""

    name: str  # the layer's unique name
    const: typing.Callable  # const(tensor name) -> the initializer, or None
    out_quant: typing.Any = None  # QuantSpec of the Quant that is the node's only consumer (rules that fuse one)
    pre_pad: tuple | None = None  # ((top, left, bottom, right), value) of a Pad right before (rules that fuse one)
    # quantized(tensor name) -> the walk's integer form of a quantized constant (``codes`` minus the zero point,
    # float ``scale``, code range ``lo``/``hi``: a weight behind its Quant), or None
    quantized: typing.Callable = lambda name: None


@dataclass
class Lowered:
    """A rule's result: the layer (reading the node's streamed inputs in order, port p from input p) and its
    output view. ``passthrough``: per output channel, the (input port, channel) whose codes it carries unchanged
    (the walk then keeps that channel's exact view); None: ``view`` describes new codes. ``feeders``: layers in
    front of ``layer`` on a one-input rule, a chain (a Conv's sliding window): the first reads the node's input,
    the last feeds ``layer``."""

    layer: typing.Any
    view: typing.Any
    passthrough: list[tuple[int, int]] | None = None
    feeders: tuple = ()


@dataclass(frozen=True)
class Lowering:
    """A kind's lowering rule for one ONNX op type: ``rule(node, views, shapes, ctx) -> Lowered`` with the
    streamed inputs' affine views and (H, W, C) shapes. ``min_streams``: with fewer streamed inputs the op is not
    this kind's (an Add of a constant is an affine update of the walk). ``fuses_quant`` / ``fuses_pad``: the rule
    takes ``ctx.out_quant`` (and the walk drops that Quant node) / ``ctx.pre_pad``. ``doc``: the supported form
    of the op, as the unsupported-op error lists it. ``applies(node)``: whether the rule takes this node (a
    depthwise Conv, not every Conv); None: every node of the op."""

    rule: typing.Callable
    min_streams: int = 1
    fuses_quant: bool = False
    fuses_pad: bool = False
    doc: str = ""  # what the op may be, for the list of supported ops
    applies: typing.Callable | None = None


class PEWords:
    """Ports for a kind folded by one ``pe`` (its field): every input and output word is ``pe`` channels, and a
    pixel of input 0 is ``channel_words`` words. Mixed in before GraphLayer (methods only, no fields)."""

    @property
    def in_words(self) -> tuple[int, ...]:
        return (self.pe,) * len(self.in_shapes)

    @property
    def out_words(self) -> tuple[int, ...]:
        return (self.pe,) * len(self.out_shapes)

    @property
    def channel_words(self) -> int:
        return self.in_shapes[0][2] // self.pe

    def folding(self) -> dict:
        return {"pe": self.pe}


def same_channels(views) -> list[tuple[int, int]]:
    """The passthrough of a layer whose output channels are its inputs' channels, in port order."""
    return [(p, c) for p, v in enumerate(views) for c in range(len(v.scale))]


# --- C++ helpers the config templates call as g.* (fpgagen.ir.cpp) -----------------------------------------


def stream_codes(dt: DataType, codes: np.ndarray) -> np.ndarray:
    """The integers a stream of ``dt`` carries for these codes: the codes, or for BIPOLAR the bits (x + 1) / 2."""
    codes = np.asarray(codes, np.int64)
    return (codes + 1) // 2 if dt.name == "BIPOLAR" else codes


def codes_of_stream(dt: DataType, values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, np.int64)
    return 2 * values - 1 if dt.name == "BIPOLAR" else values


def environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True)


def render_instance(layer: GraphLayer, env: jinja2.Environment | None = None) -> str:
    """The layer's config struct, memories and wrapper function (its CONFIG_TEMPLATE's ``instance`` macro)."""
    return layer.render_instance(env or environment())


# --- thresholds shared by the kinds that requantize --------------------------------------------------------
def threshold_dtype(thresholds: np.ndarray) -> DataType:
    """The stored threshold type: the smallest integer type holding every threshold (and -1, so it is signed)."""
    return smallest_dtype(min(int(thresholds.min()), -1), max(int(thresholds.max()), 0))


def threshold_memories(thresholds: np.ndarray, negate: np.ndarray, lanes: int, style: str) -> list[Memory]:
    """A (rows, NT) threshold table read one row of ``lanes`` channels per cycle: [lanes][rows/lanes][NT] words,
    plus the per-channel negate flags [lanes][rows/lanes][1]."""
    rows, nt = thresholds.shape
    depth = rows // lanes
    storage = style if depth > 1 else "registers"
    return [Memory("thresholds", lanes, depth, nt, threshold_dtype(thresholds).bitwidth(), storage, reads=1),
            Memory("negate", lanes, depth, 1, 1, storage, reads=1)]


def threshold_tiles(table: np.ndarray, lanes: int) -> np.ndarray:
    """(rows, K) -> [lanes][rows/lanes][K]: row r*lanes + p goes to lane p, address r."""
    rows, k = table.shape
    return table.reshape(rows // lanes, lanes, k).transpose(1, 0, 2)


def compare_luts(lanes: int, nt: int, value_bits: int, thr_bits: int) -> int:
    """NT comparators of max(value, threshold) bits per lane and the adder that counts them (FINN-R's terms,
    with its 1.1 routing factor)."""
    return math.ceil(1.1 * lanes * (nt * max(value_bits, thr_bits) + nt.bit_length() * 2))


__all__ = ["Shape", "GraphLayer", "Lowering", "LoweringContext", "Lowered", "same_channels",
           "Cpp", "PEWords", "MEM_STYLES", "CONTROL_LUT", "CONTROL_FF", "divisors", "render_instance",
           "environment", "threshold_dtype", "threshold_memories", "threshold_tiles", "compare_luts", "resources"]
