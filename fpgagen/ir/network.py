"""The whole dataflow: host-side input quantizer, the chain of hardware layers, the output dequantizer."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from qonnx.core.datatype import DataType

from ..errors import FpgagenError
from ..quant import IntRange, quantize
from .layers import LAYER_KINDS, Layer

# Float pre/post-processing on the host: ONNX elementwise ops with a constant, computed in float32 exactly as the
# graph computes them (numpy float32 arithmetic is IEEE, as onnxruntime's and torch's elementwise kernels).
ELEMENTWISE = {"Mul": np.multiply, "Add": np.add, "Sub": np.subtract, "Div": np.divide}


def elementwise_step(op: str, const: np.ndarray, const_first: bool = False) -> dict:
    """A host step ``x op c`` (or ``c op x``); JSON-serializable (float32 values round-trip exactly)."""
    const = np.asarray(const, np.float32)
    return {"op": op, "value": const.tolist(), "value_shape": list(const.shape), "const_first": bool(const_first)}


def apply_float_steps(x: np.ndarray, steps) -> np.ndarray:
    """Run host steps (``elementwise_step``, ``{"op": "Reshape", "shape": [...]}`` without the batch axis, or
    ``{"op": "BatchNormalization", ...}`` with the ONNX formula) on a float32 batch in the graph's layout."""
    x = np.asarray(x, np.float32)
    for step in steps:
        op = step["op"]
        if op == "Reshape":
            x = x.reshape(x.shape[0], *step["shape"])
        elif op in ELEMENTWISE:
            c = np.asarray(step["value"], np.float32).reshape(step["value_shape"])
            x = ELEMENTWISE[op](c, x) if step["const_first"] else ELEMENTWISE[op](x, c)
        elif op == "BatchNormalization":  # ONNX: (x - mean) / sqrt(var + eps) * scale + B, channels on axis 1
            shape = (1, -1) + (1,) * (x.ndim - 2)
            mean, var, scale, bias = (np.asarray(step[k], np.float32).reshape(shape)
                                      for k in ("mean", "var", "scale", "bias"))
            x = (x - mean) / np.sqrt(var + np.float32(step["epsilon"])) * scale + bias
        else:
            raise ValueError(f"unknown host step {op}")
        x = x.astype(np.float32, copy=False)
    return x


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
    dtype: str = "UINT8"
    quant_shape: tuple[int, ...] = ()  # the quantized tensor's shape (after ``pre``); () means ``shape``
    pre: tuple = ()
    bipolar: bool = False

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
    dtype: str = "INT8"
    post: tuple = ()

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


@dataclass(eq=False)
class Network:
    name: str
    input: InputSpec
    output: OutputSpec
    layers: list[Layer]

    @property
    def in_stream_shape(self) -> tuple[int, int, int]:
        return self.layers[0].in_shape

    @property
    def out_stream_shape(self) -> tuple[int, int, int]:
        return self.layers[-1].out_shape

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
        doc = {"name": self.name, "input": _to_doc(self.input, "input", arrays),
               "output": _to_doc(self.output, "output", arrays),
               "layers": [dict(kind=lay.kind, **_to_doc(lay, f"layer{i}", arrays))
                          for i, lay in enumerate(self.layers)]}
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
                entry = dict(entry)
                cls = LAYER_KINDS[entry.pop("kind")]
                layers.append(_from_doc(cls, entry, f"layer{i}", arrays))
            net = Network(doc["name"], _from_doc(InputSpec, doc["input"], "input", arrays),
                          _from_doc(OutputSpec, doc["output"], "output", arrays), layers)
            if not layers or not isinstance(net.name, str):
                raise ValueError("no layers")
            for layer in layers:
                layer.validate()
        except Exception as exc:  # any inconsistency between the two files, or a field of the wrong kind
            raise FpgagenError(f"the build directory is damaged (network.json does not describe a network: "
                               f"{type(exc).__name__} {str(exc)[:80]})", str(directory), rebuild) from None
        return net


def _to_doc(obj, prefix: str, arrays: dict) -> dict:
    doc = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, np.ndarray):
            arrays[f"{prefix}.{f.name}"] = value
            doc[f.name] = {"array": f"{prefix}.{f.name}"}
        elif isinstance(value, DataType):
            doc[f.name] = value.name
        else:
            doc[f.name] = value
    return doc


def _from_doc(cls, doc: dict, prefix: str, arrays: dict):
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in doc:
            continue
        value = doc[f.name]
        if isinstance(value, dict) and "array" in value:
            value = arrays[value["array"]]
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)
