"""Graph layer kinds, one module each (see base.py for the contract every kind fulfils).

``GRAPH_KINDS``: kind name -> class (the registration the graph's file loader, ``from_doc``, and codegen use).
``LOWERINGS``: ONNX op type -> lowering rule, a pure function of the node and its inputs' affine views.

What the graph wiring does with them (not done here):
- streamline's walk keeps an ``AffineView`` per tensor (its ``_Stream``: alpha -> scale, beta -> offset, lo/hi,
  clamp); it inserts ``lower_fork`` where a tensor has several consumers, fuses a Pad into the MaxPool after it
  (``pad_of_node`` -> ``lower_maxpool(pre_pad=...)``), and passes the Quant that is the only consumer of a
  Concat/Add as ``out_quant`` (dropping that node). Its ``on_quant`` can call ``affine.requantize`` (same rule).
  A bipolar MVAU (bipolar weights and input) becomes ``xnor_from_mvau``.
- codegen emits, per layer, ``render_instance`` (the CONFIG_TEMPLATE's ``instance`` macro: config struct, memories
  through memory.j2, wrapper ``name(in0, ..., out0, ...)``), includes ``KERNEL_HEADER`` once per kind, and
  declares one stream per graph edge with the edge's depth (a fork's outputs are separate streams, so each branch
  gets its own depth).
- fifo sizing runs on the graph: ``io_pattern()`` gives reads per input port and writes per output port per
  iteration; an iteration fires only when all its ports can (the hardware stalls whole iterations). A
  reconvergent path (fork -> ... -> concat/add) needs the branch read later to hold the words the other branch
  is consumed ahead by (tests/test_graph_kinds.py: fork -> concat needs one pixel of branch 0's words).
- the optimizer takes ``fold_options()`` (PE/SIMD cores times style groups) and ``resources()`` of each node;
  throughput is the slowest node's ``cycles()``.
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
KIND_MODULES = ("fork", "concat", "upsample", "add", "maxpool_general", "xnor")

_modules = [import_module(f".{name}", __name__) for name in KIND_MODULES]
GRAPH_KINDS = {cls.kind: cls for m in _modules for cls in m.KINDS}
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
           "REWRITES", "apply_rewrites", "KIND_MODULES", "Lowered", "Lowering", "LoweringContext"]
