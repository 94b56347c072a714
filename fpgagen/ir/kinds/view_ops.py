"""The ops that only change the exact view of a tensor, no layer of their own (``Lowering.exact`` rules): a
BatchNormalization or a Mul/Add/Sub/Div by a per-channel constant updates (alpha, beta), a ReLU or Clip becomes a
pending clamp that the next Quant applies to its codes, a Flatten/Reshape to (N, features) re-indexes the channel
parameters, and Identity, Dropout and a Concat of one tensor pass the view on. Where the graph ends after float ops,
the host runs them in float32 (``StreamView.post``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from qonnx.util.basic import get_by_name

from ..host_steps import elementwise_step
from .affine import StreamView, per_channel
from .base import Lowered, Lowering
from .threshold import node_error


def _affine(node, s: StreamView, mul: np.ndarray, add: np.ndarray, step: dict | None = None) -> Lowered:
    if s.clamp is not None:
        raise node_error(node, "an affine op after a float activation (ReLU/Clip) cannot be folded",
                         "quantize the activation before this op")
    if step is not None and (s.post or s.before_post is None):  # extend the host-side float32 steps
        post, before = (*s.post, step), s.before_post or s
    else:  # no exact float32 form: the output (if it ends here) is the float64 affine view
        post, before = (), None
    return Lowered(None, replace(s, alpha=s.alpha * mul, beta=s.beta * mul + add, quant=None, post=post,
                                 before_post=before))


def lower_batchnorm(node, views: list[StreamView], shapes, ctx) -> Lowered:
    (s,) = views
    c = s.shape[2]
    gamma, bn_beta, mean, var = (per_channel(ctx.const(n), c, node) for n in node.input[1:5])
    eps = get_by_name(node.attribute, "epsilon")
    eps = eps.f if eps is not None else 1e-5
    k = gamma / np.sqrt(var + eps)
    step = {"op": "BatchNormalization", "epsilon": float(np.float32(eps)),
            **{key: np.asarray(ctx.const(n), np.float32).reshape(-1).tolist()
               for key, n in zip(("scale", "bias", "mean", "var"), node.input[1:5], strict=True)}}
    return _affine(node, s, k, bn_beta - mean * k, step)


def lower_elementwise(node, views: list[StreamView], shapes, ctx) -> Lowered:
    """Mul/Add/Sub/Div of the stream by a constant (either side; a division only by it)."""
    (s,), (name,) = views, ctx.inputs
    other = next(n for n in node.input if n != name)
    value = ctx.const(other)
    if value is None:
        raise node_error(node, "elementwise op with a non-constant operand", "only constant operands are folded")
    v = per_channel(value, s.shape[2], node)
    const_first = node.input[0] != name
    step = elementwise_step(node.op_type, value, const_first) if np.asarray(value).dtype == np.float32 else None
    if node.op_type == "Mul":
        return _affine(node, s, v, np.zeros_like(v), step)
    if node.op_type == "Div":
        if const_first:
            raise node_error(node, "division by the activation", "only division by a constant is folded")
        return _affine(node, s, 1.0 / v, np.zeros_like(v), step)
    if node.op_type == "Sub" and const_first:
        return _affine(node, s, -np.ones_like(v), v, step)
    return _affine(node, s, np.ones_like(v), -v if node.op_type == "Sub" else v, step)


def _clamp(s: StreamView, lo: float, hi: float) -> Lowered:
    if s.clamp is not None:
        lo, hi = max(lo, s.clamp[0]), min(hi, s.clamp[1])
    return Lowered(None, replace(s, clamp=(lo, hi), quant=None))


def lower_relu(node, views: list[StreamView], shapes, ctx) -> Lowered:
    return _clamp(views[0], 0.0, np.inf)


def lower_clip(node, views: list[StreamView], shapes, ctx) -> Lowered:
    lo = hi = None
    if len(node.input) > 1:
        lo, hi = (ctx.const(n) if n else None for n in (list(node.input) + ["", ""])[1:3])
    attr_lo, attr_hi = get_by_name(node.attribute, "min"), get_by_name(node.attribute, "max")
    lo = float(lo) if lo is not None else (attr_lo.f if attr_lo is not None else -np.inf)
    hi = float(hi) if hi is not None else (attr_hi.f if attr_hi is not None else np.inf)
    return _clamp(views[0], lo, hi)


def lower_flatten(node, views: list[StreamView], shapes, ctx) -> Lowered:
    (s,) = views
    out_shape = ctx.shape_of(node.output[0])
    if out_shape is None or len(out_shape) != 2 or int(np.prod(out_shape[1:])) != int(np.prod(s.shape)):
        raise node_error(node, f"reshape to {out_shape}", "only flattening to (N, features) is supported")
    h, w, c = s.shape
    if h * w == 1:
        return Lowered(None, s)
    if s.pending is not None:
        raise node_error(node, "flattening raw accumulators", "quantize the activation before flattening")
    tile = h * w  # stream order is (h, w, c): channel parameters repeat once per pixel
    return Lowered(None, replace(s, shape=(1, 1, h * w * c), alpha=np.tile(s.alpha, tile),
                                 beta=np.tile(s.beta, tile), center=np.tile(s.center, tile),
                                 lo=np.tile(s.lo, tile), hi=np.tile(s.hi, tile), flat_from=(h, w, c), post=(),
                                 before_post=None,
                                 quant=None if s.quant is None else tuple(np.tile(q, tile) for q in s.quant)))


def lower_passthrough(node, views: list[StreamView], shapes, ctx) -> Lowered:
    return Lowered(None, views[0])


def _one(rule, doc: str = "") -> Lowering:
    return Lowering(rule, max_streams=1, exact=True, doc=doc)


KINDS = ()
_ELEMENTWISE = _one(lower_elementwise, "Mul/Add/Sub/Div by a per-channel constant")
_FLATTEN = _one(lower_flatten, "Flatten, Reshape (to N x features)")
LOWERINGS = {"BatchNormalization": _one(lower_batchnorm), "Mul": _ELEMENTWISE, "Add": _ELEMENTWISE,
             "Sub": _ELEMENTWISE, "Div": _ELEMENTWISE, "Relu": _one(lower_relu), "Clip": _one(lower_clip),
             "Flatten": _FLATTEN, "Reshape": _FLATTEN, "Identity": _one(lower_passthrough),
             "Dropout": _one(lower_passthrough), "Concat": _one(lower_passthrough, "Concat (of one tensor)")}
