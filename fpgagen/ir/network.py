"""The whole dataflow: host-side input quantizer, a graph of hardware layers joined by streams, the output
dequantizer.

A network is ``layers`` in a topological order plus ``edges``, one per stream: (producer, port) -> (consumer,
port) with its FIFO depth and storage; the stream's datatype and word width are those of the producer's port
(``edge_dtype``/``edge_word``), so they are never stored twice. ``"input"`` is the host's input stream and
``"output"`` the stream(s) to the host: a network with several outputs (the torch model returns a tuple, in
QONNX ``graph.output`` order) has one edge to ``("output", k)`` per output k, and ``outputs[k]`` says how its
integers map back to torch's k-th value. Every network stores its edges, a chain (each layer feeding the next)
too; a Network made without edges (a file written before, or a list of layers) gets that single path.
Every layer has ports (base class fpgagen.ir.layers.Layer; the kinds are one module each in fpgagen.ir.kinds);
``in_ports``/``out_ports`` read them.
Every datatype in the IR (a layer's, a port's, the input's and outputs') is a qonnx ``DataType`` object;
network.json stores its name (``_to_doc``/``_from_doc``, the one serializer of layers and specs), so build
directories keep one format.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from qonnx.core.datatype import BaseDataType, DataType

from ..errors import FpgagenError
from ..quant import IntRange, quantize
from .host_steps import apply_float_steps
from .kinds import KINDS
from .layers import Layer, datatypes_from_names


@dataclass(eq=False)
class InputSpec:
    """The model's input quantizer, run on the host: its integer codes are what the accelerator consumes.

    ``pre``: the float pre-processing the graph does before its first Quant (e.g. FINN's ``2x - 1`` and a
    flattening reshape), run on the host in float32 in the graph's order, so the codes equal what qonnx and
    brevitas compute. ``bipolar``: a BipolarQuant input, code 1 where the value is >= 0, else 0 (real 2s*q - s).
    """

    shape: tuple[int, ...]  # as the torch model takes it, e.g. (1, 3, 416, 416) or (1, 64)
    scale: np.ndarray = field(repr=False)  # float32, broadcastable to the quantized tensor
    zero_point: np.ndarray = field(repr=False)
    lo: int = 0
    hi: int = 255
    dtype: DataType = DataType["UINT8"]
    quant_shape: tuple[int, ...] = ()  # the quantized tensor's shape (after ``pre``); () means ``shape``
    pre: tuple = ()
    bipolar: bool = False
    # the letterbox in the fabric (fpgagen.ir.kinds.letterbox, a --camera build): the host streams uint8 camera
    # frames and this records the geometry (runtime.json's "preprocess"); None: the host streams the codes
    preprocess: dict | None = None

    def __post_init__(self):
        datatypes_from_names(self)

    def codes(self, x) -> np.ndarray:
        """Float input (torch layout) -> integer codes in the quantized tensor's layout (NCHW or NC)."""
        x = apply_float_steps(x, self.pre)
        if self.bipolar:  # BipolarQuant (qonnx, brevitas): +1 where x >= 0, else -1
            return (x >= 0).astype(np.int64)
        scale, zero = np.asarray(self.scale, np.float32), np.asarray(self.zero_point, np.float32)
        if x.ndim == 4 and scale.ndim == 1 and scale.size > 1:  # a per-channel (C,) vector: channels on axis 1
            scale, zero = scale.reshape(1, -1, 1, 1), zero.reshape(1, -1, 1, 1)
        return quantize(x, scale, zero, IntRange(self.lo, self.hi))


@dataclass(eq=False)
class OutputSpec:
    """How the accelerator's output integers map back to what the torch model returns.

    ``kind == "codes"``: quantized output, real = (q - zero_point) * scale (float32, as brevitas dequantizes);
    a BipolarQuant output has codes {0, 1}, zero point 1/2 and scale 2s (brevitas' codes are 2q - 1).
    ``kind == "accumulators"``: raw accumulator of a final MVAU, real = alpha_c * acc + beta_c.
    ``kind == "affine"``: codes followed by folded float ops, real = alpha_c * q + beta_c.
    ``post``: float ops after the last integer layer (e.g. CNV's TensorNorm), run on the host in float32 in the
    graph's order on that real value.
    """

    kind: str
    shape: tuple[int, ...]  # torch output shape for one image, NCHW or NC
    scale: np.ndarray = field(repr=False)  # per channel (codes) or alpha (accumulators)
    offset: np.ndarray = field(repr=False)  # zero point (codes) or beta (accumulators)
    dtype: DataType = DataType["INT8"]
    post: tuple = ()

    def __post_init__(self):
        datatypes_from_names(self)

    def real(self, codes: np.ndarray) -> np.ndarray:
        """Output integers (torch layout) -> float32 values, before ``post``.

        For codes this is brevitas' own float32 dequantization. For accumulators it is ``alpha*acc + beta``
        in float64, rounded once to float32: equal to torch's float32 layer output whenever that output is exact
        (e.g. power-of-two or unit scales and no long-sum rounding, as in FINN's bnn_pynq nets), and the correctly
        rounded value otherwise. ``post`` then runs in float32 in the graph's order on this value, so the float
        output is bit-identical to torch's whenever the layer output is."""
        axis_shape = (1, -1) + (1,) * (codes.ndim - 2)
        scale = np.asarray(self.scale).reshape(axis_shape) if np.size(self.scale) > 1 else self.scale
        offset = np.asarray(self.offset).reshape(axis_shape) if np.size(self.offset) > 1 else self.offset
        if self.kind == "codes":  # brevitas: (q - zero_point) * scale in float32
            return ((codes.astype(np.float32) - np.float32(offset)) * np.float32(scale)).astype(np.float32)
        return (codes * np.asarray(scale, np.float64) + np.asarray(offset, np.float64)).astype(np.float32)

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        """Output integers (torch layout) -> what the torch model returns."""
        return apply_float_steps(self.real(codes), self.post)


@dataclass
class Edge:
    """One stream of the graph: ``src`` port ``src_port`` -> ``dst`` port ``dst_port`` (layer names, or "input" /
    "output"), bounded to ``depth`` words in ``storage`` (srl | bram)."""

    src: str
    src_port: int
    dst: str
    dst_port: int
    depth: int = 2
    storage: str = "srl"


def in_ports(layer) -> list[tuple[tuple[int, int, int], DataType, int]]:
    """(shape, datatype, word) of each input port of a layer."""
    return list(zip(layer.in_shapes, layer.in_dtypes, layer.in_words, strict=True))


def out_ports(layer) -> list[tuple[tuple[int, int, int], DataType, int]]:
    return list(zip(layer.out_shapes, layer.out_dtypes, layer.out_words, strict=True))


@dataclass(eq=False)
class Network:
    name: str
    input: InputSpec
    outputs: list[OutputSpec]  # in torch's output order; a single OutputSpec is taken as [it]
    layers: list[Layer]
    edges: list[Edge] = field(default_factory=list)  # none given: the single path through ``layers``
    # Recorded at lowering, for `fpgagen debug`: "layer:port" (or "input:0") -> the ONNX tensor whose quantized
    # codes that stream carries; streams absent here (forks' copies, windows, converters) have no ONNX counterpart
    onnx_tensors: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.outputs, OutputSpec) or self.outputs is None:
            self.outputs = [self.outputs]
        self.outputs = list(self.outputs)
        if not self.edges and self.layers:
            names = ["input", *(lay.name for lay in self.layers), "output"]
            self.edges = [Edge(a, 0, b, 0) for a, b in zip(names[:-1], names[1:], strict=False)]

    @property
    def output(self) -> OutputSpec:
        """The only output (a network with several has ``outputs`` instead)."""
        if len(self.outputs) != 1:
            raise ValueError(f"network {self.name} has {len(self.outputs)} outputs: use .outputs")
        return self.outputs[0]

    def stream_edges(self) -> list[Edge]:
        """Every stream (``edges``, as a list a caller may reorder)."""
        return list(self.edges)

    def producer_of(self, edge: Edge):
        return None if edge.src == "input" else self.layer(edge.src)

    def edge_dtype(self, edge: Edge) -> DataType:
        if edge.src == "input":
            return in_ports(self.layer(edge.dst))[edge.dst_port][1]
        return out_ports(self.layer(edge.src))[edge.src_port][1]

    def edge_word(self, edge: Edge) -> int:
        if edge.src == "input":
            return in_ports(self.layer(edge.dst))[edge.dst_port][2]
        return out_ports(self.layer(edge.src))[edge.src_port][2]

    def check_graph(self) -> None:
        """Every port of every layer has exactly one stream, the order is topological, shapes and datatypes agree
        across each stream; raises ValueError otherwise (a damaged file or a lowering bug)."""
        position = {lay.name: i for i, lay in enumerate(self.layers)}
        if len(position) != len(self.layers):
            raise ValueError("two layers share a name")
        seen_in, seen_out = set(), set()
        for e in self.stream_edges():
            for end, port, seen in ((e.src, e.src_port, seen_out), (e.dst, e.dst_port, seen_in)):
                if end not in position and end not in ("input", "output"):
                    raise ValueError(f"edge to unknown layer {end}")
                if (end, port) in seen:
                    raise ValueError(f"port {end}:{port} has two streams")
                seen.add((end, port))
            if e.src == "output" or e.dst == "input":
                raise ValueError("edge direction")
            if e.src != "input" and e.dst != "output":
                if position[e.src] >= position[e.dst]:
                    raise ValueError(f"layers are not in topological order ({e.src} -> {e.dst})")
                src_shape, src_dt, _ = out_ports(self.layer(e.src))[e.src_port]
                dst_shape, dst_dt, _ = in_ports(self.layer(e.dst))[e.dst_port]
                if int(np.prod(src_shape)) != int(np.prod(dst_shape)) or src_dt != dst_dt:
                    raise ValueError(f"stream {e.src} -> {e.dst} changes shape or datatype")
        for k in range(len(self.outputs)):
            if ("output", k) not in seen_in:
                raise ValueError(f"output {k} is not connected")
        if any(end == "output" and port >= len(self.outputs) for end, port in seen_in):
            raise ValueError(f"a stream to an output beyond the {len(self.outputs)} outputs")
        if ("input", 0) not in seen_out:
            raise ValueError("the input is not connected")
        for lay in self.layers:
            for p in range(len(in_ports(lay))):
                if (lay.name, p) not in seen_in:
                    raise ValueError(f"input {p} of {lay.name} is not connected")
            for p in range(len(out_ports(lay))):
                if (lay.name, p) not in seen_out:
                    raise ValueError(f"output {p} of {lay.name} is not connected")

    def input_port(self):
        """(layer, port) the host's input stream feeds."""
        e = next(e for e in self.stream_edges() if e.src == "input")
        return self.layer(e.dst), e.dst_port

    def output_port(self):
        """(layer, port) that feeds the host's only output stream."""
        if len(self.outputs) != 1:
            raise ValueError(f"network {self.name} has {len(self.outputs)} outputs: use output_ports()")
        return self.output_ports()[0]

    def output_ports(self) -> list[tuple[Layer, int]]:
        """(layer, port) that feeds each output stream, in output order."""
        feeds = {e.dst_port: e for e in self.stream_edges() if e.dst == "output"}
        return [(self.layer(feeds[k].src), feeds[k].src_port) for k in range(len(self.outputs))]

    @property
    def in_stream_shape(self) -> tuple[int, int, int]:
        layer, port = self.input_port()
        return in_ports(layer)[port][0]

    @property
    def out_stream_shape(self) -> tuple[int, int, int]:
        layer, port = self.output_port()
        return out_ports(layer)[port][0]

    @property
    def out_stream_shapes(self) -> list[tuple[int, int, int]]:
        """The stream shape (H, W, C) of every output, in output order."""
        return [out_ports(layer)[port][0] for layer, port in self.output_ports()]

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise FpgagenError(f"no layer named '{name}'", f"network {self.name}",
                           f"layers are: {', '.join(lay.name for lay in self.layers)}")

    def bottleneck(self) -> Layer:
        return max(self.layers, key=lambda layer: layer.cycles())

    # --- persistence: JSON for the structure, npz for the arrays -------------------------------------------
    def save(self, directory: Path) -> None:
        directory = Path(directory)
        arrays: dict[str, np.ndarray] = {}
        doc = {"name": self.name, "input": _to_doc(self.input, "input", arrays)}
        if len(self.outputs) == 1:  # the one-output format, as before
            doc["output"] = _to_doc(self.outputs[0], "output", arrays)
        else:
            doc["outputs"] = [_to_doc(o, f"output{k}", arrays) for k, o in enumerate(self.outputs)]
        doc["layers"] = [layer_to_doc(lay, f"layer{i}", arrays) for i, lay in enumerate(self.layers)]
        if self.edges:
            doc["edges"] = [dataclasses.asdict(e) for e in self.edges]
        if self.onnx_tensors:
            doc["onnx_tensors"] = dict(self.onnx_tensors)
        (directory / "network.json").write_text(json.dumps(doc, indent=1))
        np.savez_compressed(directory / "network.npz", **arrays)

    @staticmethod
    def load(directory: Path) -> Network:
        directory = Path(directory)
        rebuild = f"rebuild it with 'fpgagen build MODEL -o {directory}'"
        for name in ("network.json", "network.npz"):
            if not (directory / name).is_file():
                raise FpgagenError(f"the build directory is damaged ({name} is missing)", str(directory), rebuild)
        try:
            doc = json.loads((directory / "network.json").read_text())
        except (OSError, ValueError, RecursionError) as exc:
            raise FpgagenError(f"the build directory is damaged (network.json: {str(exc)[:120]})", str(directory),
                               rebuild) from None
        try:
            with np.load(directory / "network.npz", allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except Exception as exc:  # BadZipFile, EOFError, zlib.error, ValueError, OSError: all mean damaged
            raise FpgagenError(f"the build directory is damaged (network.npz: {type(exc).__name__})", str(directory),
                               rebuild) from None
        try:
            layers = []
            for i, entry in enumerate(doc["layers"]):
                layers.append(layer_from_doc(entry, f"layer{i}", arrays))
            edges = [Edge(**e) for e in doc.get("edges", [])]
            if "outputs" in doc:
                outputs = [_from_doc(OutputSpec, o, f"output{k}", arrays) for k, o in enumerate(doc["outputs"])]
            else:
                outputs = [_from_doc(OutputSpec, doc["output"], "output", arrays)]
            if not outputs:
                raise ValueError("no outputs")
            net = Network(doc["name"], _from_doc(InputSpec, doc["input"], "input", arrays), outputs, layers, edges,
                          onnx_tensors={str(k): str(v) for k, v in doc.get("onnx_tensors", {}).items()})
            if not layers or not isinstance(net.name, str):
                raise ValueError("no layers")
            net.check_graph()
            for layer in layers:
                layer.validate()
        except _MissingArray as exc:
            raise FpgagenError(f"the build directory is damaged (network.npz lacks the array '{exc.args[0]}' that "
                               "network.json names)", str(directory), rebuild) from None
        except Exception as exc:  # any inconsistency between the two files, or a field of the wrong kind
            raise FpgagenError(f"the build directory is damaged (network.json does not describe a network: "
                               f"{type(exc).__name__} {str(exc)[:80]})", str(directory), rebuild) from None
        return net


def layer_to_doc(layer: Layer, prefix: str, arrays: dict) -> dict:
    """A layer of any kind as JSON: its kind and its fields (``_to_doc``)."""
    return {"kind": layer.kind, **_to_doc(layer, prefix, arrays)}


def layer_from_doc(doc: dict, prefix: str, arrays: dict) -> Layer:
    doc = dict(doc)
    return _from_doc(KINDS[doc.pop("kind")], doc, prefix, arrays)
class _MissingArray(KeyError):
    """network.json names an array that network.npz does not hold."""


def _to_doc(obj, prefix: str, arrays: dict) -> dict:
    """A layer or spec as JSON, the one serializer of the IR: arrays go to ``arrays`` (the npz), DataTypes by
    name (also inside tuples, e.g. a layer's port types), numpy scalars as numbers."""
    return {f.name: _encode(getattr(obj, f.name), f"{prefix}.{f.name}", arrays) for f in dataclasses.fields(obj)}


def _encode(value, key: str, arrays: dict):
    if isinstance(value, np.ndarray):
        arrays[key] = value
        return {"array": key}
    if isinstance(value, BaseDataType):
        return value.name
    if isinstance(value, tuple | list):
        return [_encode(v, f"{key}.{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    return value


def _from_doc(cls, doc: dict, prefix: str, arrays: dict):
    """``_to_doc`` reversed, each field decoded by its annotation."""
    hints = typing.get_type_hints(cls)  # each field's annotation, resolved in the module that declares it
    kwargs = {f.name: _decode(doc[f.name], hints[f.name], arrays) for f in dataclasses.fields(cls) if f.name in doc}
    return cls(**kwargs)


def _decode(value, hint, arrays: dict):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return None if value is None else _decode(value, next(a for a in args if a is not type(None)), arrays)
    if isinstance(value, dict) and "array" in value:
        if value["array"] not in arrays:
            raise _MissingArray(str(value["array"]))
        return arrays[value["array"]]
    if hint is DataType:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a datatype name")
        return DataType[value]
    if hint is np.ndarray:  # an integer table stored inline (network.json of earlier versions)
        return np.asarray(value, np.int64)
    if origin is tuple and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(v, args[0], arrays) for v in value)
        return tuple(_decode(v, a, arrays) for v, a in zip(value, args, strict=True))
    if isinstance(value, list):
        return tuple(value)
    return value
