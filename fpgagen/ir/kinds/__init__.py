"""Layer kinds, one module each: the graph kinds (see base.py for the contract every graph kind fulfils) and the
chain kinds (sliding_window, mvau, maxpool, threshold, width_converter: one stream in and out, their base class
and shared helpers in fpgagen.ir.layers). What the passes ask of every kind is fpgagen.ir.kind.KindHooks.

A kind's module holds its IR class (cost and cycle model, numpy reference ``run``, folding options), names its
static kernel (templates/hls/fg_*.h) and config template (templates/hls/*.h.j2), and declares
- ``KINDS``: its classes (``GRAPH_KINDS`` / ``CHAIN_KINDS``: kind name -> class, what the network file loader uses);
- ``LOWERINGS``: ONNX op type -> ``Lowering`` (base.py): its rule ``rule(node, views, shapes, ctx) -> Lowered``,
  a pure function of the node, its streamed inputs' affine views and shapes, and a ``LoweringContext`` (the
  layer's name, constants, the Quant or Pad it may fuse). fpgagen.streamline calls it for every such op;
- optionally ``REWRITES``: layer -> a layer with the same output codes at less cost, or None (the XNOR unit
  replaces a thresholded MVAU on bipolar weights and codes), applied to every layer once the walk is done.
Registering a kind is one entry in ``KIND_MODULES``.

The walk inserts ``lower_fork`` where a tensor has several consumers (no ONNX op); fpgagen.fifo sizes graph
FIFOs from each kind's ``io_pattern()``; the optimizer takes ``fold_options()`` and ``resources()``; codegen
includes ``KERNEL_HEADER`` and renders ``CONFIG_TEMPLATE``'s ``instance`` macro per layer.
"""

from importlib import import_module

from .add import AddStreams, lower_add
from .affine import AffineView, QuantSpec, Requant, requantize
from .base import GraphLayer, Lowered, Lowering, LoweringContext, Shape
from .concat import Concat, lower_concat
from .fork import StreamFork, lower_fork
from .maxpool_general import MaxPoolGeneral, lower_maxpool, pad_of_node
from .upsample import Upsample, lower_resize
from .xnor import XnorMVAU, xnor_from_mvau, xnor_rewrite

# The registration: one module per kind, each declaring KINDS (its classes), LOWERINGS (ONNX op type -> Lowering)
# and optionally REWRITES (layer -> a cheaper layer with the same codes, or None).
KIND_MODULES = ("fork", "concat", "upsample", "add", "maxpool_general", "xnor", "channel_slice",
                "sliding_window", "mvau", "maxpool", "threshold", "width_converter", "letterbox")

_modules = [import_module(f".{name}", __name__) for name in KIND_MODULES]
GRAPH_KINDS = {cls.kind: cls for m in _modules for cls in m.KINDS if not cls.CHAIN_KIND}
CHAIN_KINDS = {cls.kind: cls for m in _modules for cls in m.KINDS if cls.CHAIN_KIND}  # one port each way
LOWERINGS: dict[str, Lowering] = {op: rule for m in _modules for op, rule in m.LOWERINGS.items()}
REWRITES = tuple(rw for m in _modules for rw in getattr(m, "REWRITES", ()))


def apply_rewrites(layer):
    """``layer``, or what the registered rewrites turn it into."""
    for rewrite in REWRITES:
        layer = rewrite(layer) or layer
    return layer


__all__ = ["AffineView", "QuantSpec", "Requant", "requantize", "GraphLayer", "Shape", "StreamFork", "Concat",
           "Upsample", "AddStreams", "MaxPoolGeneral", "lower_fork", "lower_concat", "lower_resize", "lower_add",
           "lower_maxpool", "pad_of_node", "XnorMVAU", "xnor_from_mvau", "xnor_rewrite", "GRAPH_KINDS", "LOWERINGS",
           "REWRITES", "apply_rewrites", "KIND_MODULES", "CHAIN_KINDS", "Lowered", "Lowering", "LoweringContext"]
