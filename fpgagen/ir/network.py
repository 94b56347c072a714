"""The whole dataflow: host-side input quantizer, the chain of hardware layers, the output dequantizer."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from qonnx.core.datatype import DataType

from ..errors import FpgagenError
from .layers import LAYER_KINDS, Layer


@dataclass(eq=False)
class InputSpec:
    """The model's input quantizer, run on the host: its integer codes are what the accelerator consumes."""

    shape: tuple[int, ...]  # as the torch model takes it, e.g. (1, 3, 416, 416) or (1, 64)
    scale: np.ndarray = field(repr=False)  # float32, broadcastable to the channel axis
    zero_point: np.ndarray = field(repr=False)
    lo: int = 0
    hi: int = 255
    dtype: str = "UINT8"


@dataclass(eq=False)
class OutputSpec:
    """How the accelerator's output integers map back to what the torch model returns.

    ``kind == "codes"``: quantized output, real = (q - zero_point) * scale (float32, as brevitas dequantizes).
    ``kind == "accumulators"``: raw accumulator of a final MVAU, real = alpha_c * acc + beta_c.
    """

    kind: str
    shape: tuple[int, ...]  # torch output shape for one image, NCHW or NC
    scale: np.ndarray = field(repr=False)  # per channel (codes) or alpha (accumulators)
    offset: np.ndarray = field(repr=False)  # zero point (codes) or beta (accumulators)
    dtype: str = "INT8"


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
