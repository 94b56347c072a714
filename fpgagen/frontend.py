"""Load a QONNX file written by brevitas ``export_qonnx`` (either torch exporter) and normalize it with qonnx."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
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
    proto = _quant_tensor_value_only(proto, str(path))
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
    if len(model.graph.input) != 1:
        raise FpgagenError(f"the graph has {len(model.graph.input)} inputs", str(path),
                           "fpgagen builds single-input networks")
    validate.check_qonnx(model, path)
    return model


# brevitas' export of a QuantTensor output (return_quant_tensor=True, legacy exporter): the value, then its scale,
# zero point, bit width, signed and training flags as extra graph outputs.
QUANT_TENSOR_METADATA = ("scale", "zero point", "bit width", "signed", "training")


def _quant_tensor_value_only(proto: onnx.ModelProto, where: str) -> onnx.ModelProto:
    """Keep only the value output of each QuantTensor output. A graph with no constant output has plain tensor
    outputs, each a stream. Otherwise its outputs come in QuantTensors of 6 (value, then the 5 metadata outputs,
    which must be constants: initializers or Constant nodes): they describe the value's fixed quantizer, which
    the lowering reads from its Quant node. Done before qonnx's cleanup, which drops the boolean initializers that
    hold the two flags."""
    outputs = list(proto.graph.output)
    if len(outputs) <= 1:
        return proto
    constants = {init.name for init in proto.graph.initializer}
    constants |= {out for node in proto.graph.node if node.op_type == "Constant" for out in node.output}
    if not any(o.name in constants for o in outputs):
        return proto  # several plain outputs (a tuple in torch): each becomes an output stream
    group = 1 + len(QUANT_TENSOR_METADATA)
    if len(outputs) % group:
        raise FpgagenError(f"the graph has {len(outputs)} outputs ({', '.join(o.name for o in outputs)})", where,
                           "fpgagen builds plain tensor outputs or QuantTensor outputs (return_quant_tensor=True: "
                           "a value from a Quant and 5 constants each), not a mix")
    for k in range(0, len(outputs), group):
        _check_quant_tensor(proto, outputs[k: k + group], constants, where)
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    values = [o for k, o in enumerate(proto.graph.output) if k % group == 0]
    del proto.graph.output[:]
    proto.graph.output.extend(values)
    return proto


def _check_quant_tensor(proto: onnx.ModelProto, outputs: list, constants: set, where: str) -> None:
    producer = {out: node for node in proto.graph.node for out in node.output}
    value = producer.get(outputs[0].name)
    extra = outputs[1:]
    if value is None or value.op_type not in ("Quant", "BipolarQuant"):
        raise FpgagenError(f"the graph has {len(proto.graph.output)} outputs "
                           f"({', '.join(o.name for o in proto.graph.output)})", where,
                           "fpgagen builds plain tensor outputs or QuantTensor outputs (return_quant_tensor=True: "
                           "its value comes from a Quant and the 5 others are constants)")
    for out, meaning in zip(extra, QUANT_TENSOR_METADATA, strict=True):
        if out.name not in constants:
            raise FpgagenError(f"QuantTensor output '{out.name}' ({meaning}) is computed at run time, not a constant",
                               where, "export in eval mode with constant quantizer parameters (model.eval())")
    # The scale, zero point and bit width must be the value's own quantizer's (its inputs 1..3), else this is not
    # a QuantTensor but a second network output that happens to be constant.
    inits = {init.name: onnx.numpy_helper.to_array(init) for init in proto.graph.initializer}
    for out, param, meaning in zip(extra, value.input[1:4], QUANT_TENSOR_METADATA, strict=False):
        if out.name in inits and param in inits and not _same_values(inits[out.name], inits[param]):
            raise FpgagenError(f"QuantTensor output '{out.name}' ({meaning}) differs from the {meaning} of the "
                               f"quantizer '{value.name}' that produces the value", where,
                               "return only the quantized value, or a plain tensor as a second output")


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to broadcasting (a per-channel scale may be stored as (C,) or (1, C, 1, 1))."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size == b.size:
        return bool(np.array_equal(a.ravel(), b.ravel()))
    try:
        return bool(np.all(a == b))
    except ValueError:  # not broadcastable
        return False
