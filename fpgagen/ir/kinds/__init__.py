"""Graph layer kinds, one module each (see base.py for the contract every kind fulfils).

``GRAPH_KINDS``: kind name -> class (the registration the graph's file loader, ``from_doc``, and codegen use).
``LOWERINGS``: ONNX op type -> lowering rule, a pure function of the node and its inputs' affine views.
"""

from .add import AddStreams, lower_add
from .affine import AffineView, QuantSpec, Requant, requantize
from .base import GraphLayer, Shape
from .concat import Concat, lower_concat
from .fork import StreamFork, lower_fork
from .maxpool_general import MaxPoolGeneral, lower_maxpool, pad_of_node
from .upsample import Upsample, lower_resize
from .xnor import XnorMVAU, xnor_from_mvau

GRAPH_KINDS = {cls.kind: cls for cls in (StreamFork, Concat, Upsample, AddStreams, MaxPoolGeneral, XnorMVAU)}
LOWERINGS = {"Concat": lower_concat, "Resize": lower_resize, "Upsample": lower_resize, "Add": lower_add,
             "MaxPool": lower_maxpool}

__all__ = ["AffineView", "QuantSpec", "Requant", "requantize", "GraphLayer", "Shape", "StreamFork", "Concat",
           "Upsample", "AddStreams", "MaxPoolGeneral", "lower_fork", "lower_concat", "lower_resize", "lower_add",
           "lower_maxpool", "pad_of_node", "XnorMVAU", "xnor_from_mvau", "GRAPH_KINDS", "LOWERINGS"]
