"""Layer kinds, one module each, all built on one base class with ports (fpgagen.ir.layers.Layer; a kind with one
stream each way derives from its ``OnePortLayer``, one with several ports from base.py's ``GraphLayer``). What the
passes ask of every kind is fpgagen.ir.kind.KindHooks.

A kind's module holds its IR class (cost and cycle model, numpy reference ``run``, folding options), names its
static kernel (templates/hls/fg_*.h) and config template (templates/hls/*.h.j2), and declares
- ``KINDS``: its classes (the package's ``KINDS``: kind name -> class, what the network file loader uses);
- ``LOWERINGS``: ONNX op type -> ``Lowering`` (base.py): its rule ``rule(node, views, shapes, ctx) -> Lowered``,
  a pure function of the node, its streamed inputs' affine views and shapes, and a ``LoweringContext`` (the
  layer's name, constants, the Quant or Pad it may fuse). fpgagen.streamline calls it for every op; an ``exact``
  rule (a Conv or Gemm's MVAU, a Quant's thresholds, view_ops.py's view-only ops) takes the walk's exact
  ``StreamView`` with its pending accumulators;
- optionally ``REWRITES``: layer -> a layer with the same output codes at less cost, or None (the XNOR unit
  replaces a thresholded MVAU on bipolar weights and codes), applied to every layer once the walk is done.
Registering a kind is one entry in ``KIND_MODULES``.

The walk inserts ``lower_fork`` where a tensor has several consumers (no ONNX op); fpgagen.fifo sizes graph
FIFOs from each kind's ``io_pattern()``; the optimizer takes ``fold_options()`` and ``resources()``; codegen
includes ``KERNEL_HEADER`` and renders ``CONFIG_TEMPLATE``'s ``instance`` macro per layer.
"""

from importlib import import_module

from .add import AddStreams, lower_add
from .affine import AffineView, PendingMVAU, QuantSpec, Requant, StreamView, per_channel, requantize
from .base import GraphLayer, Lowered, Lowering, LoweringContext, Shape
from .concat import Concat, lower_concat
from .fork import StreamFork, lower_fork
from .maxpool import MaxPool, lower_maxpool, pad_of_node
from .mvau import MVAU
from .sliding_window import SlidingWindow
from .threshold import QuantizedConst, Threshold, quant_params, quant_spec, quantized_const
from .upsample import Upsample, lower_resize
from .width_converter import WidthConverter
from .xnor import XnorMVAU, xnor_from_mvau, xnor_rewrite

# The registration: one module per kind, each declaring KINDS (its classes), LOWERINGS (ONNX op type -> Lowering)
# and optionally REWRITES (layer -> a cheaper layer with the same codes, or None).
KIND_MODULES = ("fork", "concat", "upsample", "add", "maxpool", "xnor", "channel_slice",
                "sliding_window", "mvau", "threshold", "width_converter", "vvu", "global_pool",
                "letterbox", "view_ops")

_modules = [import_module(f".{name}", __name__) for name in KIND_MODULES]
KINDS = {cls.kind: cls for m in _modules for cls in m.KINDS}  # kind name -> class (the network file's loader)
# Several kinds may lower one op type, each taking the nodes its ``applies`` accepts and its number of streamed inputs
# (a depthwise Conv is the VVU's, the others the MVAU's; an Add of two streams is AddStreams', of a constant a view
# update): ``lowering_for`` picks; LOWERINGS keeps the first rule of each op, RULES all of them.
RULES: dict[str, list[Lowering]] = {}
for _m in _modules:
    for _op, _rule in _m.LOWERINGS.items():
        RULES.setdefault(_op, []).append(_rule)
LOWERINGS: dict[str, Lowering] = {op: rules[0] for op, rules in RULES.items()}
REWRITES = tuple(rw for m in _modules for rw in getattr(m, "REWRITES", ()))


def lowering_for(node, streams: int | None = None) -> Lowering | None:
    """The registered rule that takes ``node`` with ``streams`` streamed inputs (None: any number), its op's rules
    in registration order (``Lowering.applies``, ``min_streams``, ``max_streams``)."""
    return next((r for r in RULES.get(node.op_type, ()) if (r.applies is None or r.applies(node)) and
                 (streams is None or r.min_streams <= streams <= (r.max_streams or streams))), None)


def apply_rewrites(layer):
    """``layer``, or what the registered rewrites turn it into."""
    for rewrite in REWRITES:
        layer = rewrite(layer) or layer
    return layer


__all__ = ["AffineView", "QuantSpec", "Requant", "requantize", "GraphLayer", "Shape", "StreamFork", "Concat",
           "Upsample", "AddStreams", "lower_fork", "lower_concat", "lower_resize", "lower_add",
           "lower_maxpool", "pad_of_node", "XnorMVAU", "xnor_from_mvau", "xnor_rewrite", "KINDS", "LOWERINGS",
           "REWRITES", "apply_rewrites", "lowering_for", "RULES", "KIND_MODULES", "StreamView", "PendingMVAU",
           "per_channel", "QuantizedConst", "quant_params", "quant_spec", "quantized_const", "MVAU", "SlidingWindow",
           "MaxPool", "Threshold", "WidthConverter", "Lowered", "Lowering", "LoweringContext"]
