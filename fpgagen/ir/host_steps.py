"""Float steps the host runs before the input quantizer and after the last integer result (InputSpec.pre,
OutputSpec.post), as JSON-serializable dicts, and ``pre_step``: the step of an ONNX op on the graph input.
"""

from __future__ import annotations

import numpy as np

from ..errors import FpgagenError

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


def pre_step(node, shape: tuple, out_shape: tuple, const, input_name: str) -> dict | None:
    """The host step of a float op on the graph input (``input_name``, of ``shape``) before its quantizer; None for
    an Identity or Dropout."""
    if node.op_type in ("Identity", "Dropout"):
        return None
    where = f"node '{node.name}' ({node.op_type})"
    if node.op_type in ("Reshape", "Flatten"):
        if len(out_shape) < 2 or out_shape[0] != shape[0] or np.prod(out_shape) != np.prod(shape):
            raise FpgagenError(f"reshape of the input {list(shape)} to {list(out_shape)}", where,
                               "keep the batch axis: reshape to (N, ...) before the input quantizer")
        return {"op": "Reshape", "shape": [int(d) for d in out_shape[1:]]}
    other = next(n for n in node.input if n != input_name)
    value = const(other)
    if value is None or len(node.input) != 2:
        raise FpgagenError("elementwise op on the input with a non-constant operand", where,
                           "only constants can be applied on the host before the input quantizer")
    if np.broadcast_shapes(shape, np.shape(value)) != shape or np.asarray(value).dtype != np.float32:
        raise FpgagenError(f"float32 constant of shape {list(np.shape(value))} on an input of shape {list(shape)}",
                           where, "use a scalar or per-channel float32 constant")
    return elementwise_step(node.op_type, value, const_first=node.input[0] == other)
