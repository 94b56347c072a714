"""Load a QONNX file written by brevitas ``export_qonnx`` (either torch exporter) and normalize it with qonnx."""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.cleanup import cleanup_model

from . import validate
from .errors import FpgagenError


def load_qonnx(path: str | Path) -> ModelWrapper:
    """Read, clean up (constant folding except Quant, unique names), and infer shapes and datatypes."""
    path = Path(path)
    if not path.is_file():
        raise FpgagenError(f"model file not found: {path}", "fpgagen build", "pass the path of an exported .onnx")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError, or anything on a truncated file
        raise FpgagenError(f"'{path}' is not a readable ONNX file ({type(exc).__name__})", str(path),
                           "re-export it with brevitas.export.export_qonnx or fpgagen.export") from None
    if not proto.graph.node:
        raise FpgagenError(f"'{path}' holds no graph nodes (empty or not an ONNX model)", str(path),
                           "re-export it with brevitas.export.export_qonnx or fpgagen.export")
    validate.check_onnx(proto, path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cleanup_model(ModelWrapper(proto))
            model = model.transform(InferShapes())
            model = model.transform(InferDataTypes())
    except Exception as exc:
        raise FpgagenError(f"qonnx could not clean up '{path}' ({type(exc).__name__}: {exc})", str(path),
                           "check that the file is a valid QONNX export") from None
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise FpgagenError(f"the graph has {len(model.graph.input)} inputs and {len(model.graph.output)} outputs",
                           str(path), "fpgagen builds single-input single-output networks")
    validate.check_qonnx(model, path)
    return model
