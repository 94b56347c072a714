"""The pieces the kinds share: ``GraphLayer`` (a kind whose ports are fields), the lowering registry's types
(``Lowering``, ``Lowered``, ``LoweringContext``), threshold helpers and the template environment.

Conventions (every layer, fpgagen.ir.layers.Layer):
- ``in_shapes`` / ``out_shapes``: one ``Shape = (H, W, C)`` (channels last) per input / output port; every port
  streams its tensor in raster order, channels fastest, as words of ``in_words[p]`` / ``out_words[q]`` elements.
- ``in_dtypes`` / ``out_dtypes``: one qonnx ``DataType`` per port, in memory; fpgagen.ir.network's
  ``layer_to_doc`` / ``layer_from_doc`` turn a layer into JSON (datatypes by name, arrays in the npz) at the file
  boundary only.
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
import typing
from dataclasses import dataclass, field
from typing import ClassVar

import jinja2
import numpy as np
from qonnx.core.datatype import DataType

from ...quant import smallest_dtype
from ...resources import resource_dir
from ..cpp import Cpp
from ..layers import CONTROL_FF, CONTROL_LUT, MEM_STYLES, Layer, Shape, divisors
from ..memory import Memory, resources

TEMPLATE_DIR = resource_dir("templates") / "hls"


@dataclass(eq=False)
class GraphLayer(Layer):
    """A kind with its ports as fields (any number each way; the contract is fpgagen.ir.layers.Layer's)."""

    in_shapes: tuple[Shape, ...]
    out_shapes: tuple[Shape, ...]
    in_dtypes: tuple[DataType, ...]
    out_dtypes: tuple[DataType, ...]

    kind: ClassVar[str] = "GraphLayer"

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


# --- lowering: how the graph walk (fpgagen.streamline) calls a kind's rule for an ONNX op ------------------
@dataclass
class LoweringContext:
    """What a lowering rule may need from the walk besides the node and its inputs' views."""

    name: str  # the layer's unique name
    const: typing.Callable  # const(tensor name) -> the initializer, or None
    out_quant: typing.Any = None  # QuantSpec of the Quant that is the node's only consumer (rules that fuse one)
    pre_pad: tuple | None = None  # ((top, left, bottom, right), value) of a Pad right before (rules that fuse one)
    # quantized(tensor name) -> the walk's integer form of a quantized constant (``codes`` minus the zero point,
    # float ``scale``, stored ``dtype``: a weight behind its Quant), or None
    quantized: typing.Callable = lambda name: None
    inputs: tuple[str, ...] = ()  # the node's streamed input tensors, in port order
    shape_of: typing.Callable = lambda name: None  # shape_of(tensor name) -> the graph's shape of it, or None
    uname: typing.Callable = lambda base: base  # uname(base) -> a layer name no other layer has (a rule's 2nd layer)


@dataclass
class Lowered:
    """A rule's result: the layer (reading the node's streamed inputs in order, port p from input p; None for an op
    that only changes the view) and its output view. ``passthrough``: per output channel, the (input port, channel)
    whose codes it carries unchanged (the walk then keeps that channel's exact view); None: ``view`` describes new
    codes. ``feeders``: layers in front of ``layer`` on a one-input rule, a chain (a Conv's sliding window): the
    first reads the node's input, the last feeds ``layer``.

    An ``exact`` rule's view is a ``StreamView`` (affine.py), and it may leave the output's layer pending:
    ``pending``, the fields of an MVAU whose output is still its accumulators (the walk reserves its place, after
    the feeders, and creates it once the Quant or the output is reached), and ``finish``, the final fields of the
    input's pending MVAU (the Quant that thresholds it)."""

    layer: typing.Any
    view: typing.Any
    passthrough: list[tuple[int, int]] | None = None
    feeders: tuple = ()
    pending: dict | None = None
    finish: dict | None = None


@dataclass(frozen=True)
class Lowering:
    """A kind's lowering rule for one ONNX op type: ``rule(node, views, shapes, ctx) -> Lowered`` with the
    streamed inputs' affine views and (H, W, C) shapes. ``min_streams`` / ``max_streams``: the number of streamed
    inputs the rule takes (an Add of a constant is the view's update, an Add of two streams a layer).
    ``fuses_quant`` / ``fuses_pad``: the rule takes ``ctx.out_quant`` (and the walk drops that Quant node) /
    ``ctx.pre_pad``. ``doc``: the supported form of the op, as the unsupported-op error lists it.
    ``applies(node)``: whether the rule takes this node (a depthwise Conv, not every Conv); None: every node of the
    op. ``exact``: the rule takes the walk's ``StreamView`` of each input as it is (a pending accumulator
    included) instead of its plain ``AffineView``, and returns one (see ``Lowered``)."""

    rule: typing.Callable
    min_streams: int = 1
    fuses_quant: bool = False
    fuses_pad: bool = False
    doc: str = ""  # what the op may be, for the list of supported ops
    applies: typing.Callable | None = None
    max_streams: int | None = None
    exact: bool = False


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


@dataclass(eq=False)
class Requantizing:
    """The thresholds of a Quant fused into a kind's output (AddStreams, Concat, GlobalAveragePool): output code
    ``out_base + #{k : x' >= thresholds[c, k]}`` with ``x' = -x`` where ``negate[c]``; no thresholds: the values
    themselves are the output. Read one fold of ``pe`` channels per cycle from ``thr_style`` memory
    (``threshold_memories``). Mixed in before GraphLayer, after PEWords."""

    thresholds: np.ndarray | None = field(default=None, repr=False)  # (C, NT), non-decreasing per row, or None
    negate: np.ndarray | None = field(default=None, repr=False)  # (C,) bool: compare -x (a negative scale)
    out_base: int = 0
    thr_style: str = "lutram"

    @property
    def requantizes(self) -> bool:
        return self.thresholds is not None

    @property
    def nt(self) -> int:
        return 0 if self.thresholds is None else self.thresholds.shape[1]

    def threshold_tiles(self) -> np.ndarray:
        return threshold_words(self.thresholds, self.pe)

    def negate_tiles(self) -> np.ndarray:
        return threshold_words(np.asarray(self.negate, np.int64)[:, None], self.pe)


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


def threshold_memories(thresholds: np.ndarray, negate: np.ndarray | None, lanes: int, style: str,
                       bits: int | None = None) -> list[Memory]:
    """The one threshold layout of every kind that thresholds (the kernels count with fg_arith.h's
    count_passed): a (C, NT) table read one fold of ``lanes`` channels per cycle is one ROM of C/lanes words,
    word r holding the lanes x NT thresholds of channels r*lanes .. r*lanes + lanes-1, lane p's at p*NT
    ([1][C/lanes][lanes*NT], ``threshold_words``; one address counter, and a BRAM packs all lanes). ``bits``: the
    stored width (default ``threshold_dtype``'s). With ``negate``, the per-channel flags [1][C/lanes][lanes] in
    LUTs (a BRAM18 for a few bits per word would be waste). Constants (registers) when C == lanes."""
    rows, nt = thresholds.shape
    depth = rows // lanes
    bits = bits or threshold_dtype(thresholds).bitwidth()
    mems = [Memory("thresholds", 1, depth, lanes * nt, bits, style if depth > 1 else "registers")]
    if negate is not None:
        mems.append(Memory("negate", 1, depth, lanes, 1, "lutram" if depth > 1 else "registers"))
    return mems


def threshold_words(table: np.ndarray, lanes: int) -> np.ndarray:
    """(rows, K) -> [1][rows/lanes][lanes*K], ``threshold_memories``' layout: row r*lanes + p's K values in word
    r at p*K."""
    rows, k = table.shape
    return np.asarray(table).reshape(1, rows // lanes, lanes * k)


def compare_luts(lanes: int, nt: int, value_bits: int, thr_bits: int) -> int:
    """NT comparators of max(value, threshold) bits per lane and the adder that counts them (FINN-R's terms,
    with its 1.1 routing factor)."""
    return math.ceil(1.1 * lanes * (nt * max(value_bits, thr_bits) + nt.bit_length() * 2))


__all__ = ["Shape", "GraphLayer", "Lowering", "LoweringContext", "Lowered", "same_channels", "Requantizing",
           "Cpp", "PEWords", "MEM_STYLES", "CONTROL_LUT", "CONTROL_FF", "divisors", "render_instance",
           "environment", "threshold_dtype", "threshold_memories", "threshold_words", "compare_luts", "resources"]
