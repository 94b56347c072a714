"""Graph layer kinds, one module each (see base.py for the contract every kind fulfils).

``GRAPH_KINDS``: kind name -> class, the registration the graph's file loader (``from_doc``) and codegen use.
"""

from .affine import AffineView, QuantSpec, Requant, requantize
from .base import GraphLayer, Shape
from .concat import Concat, lower_concat
from .fork import StreamFork, lower_fork

GRAPH_KINDS = {cls.kind: cls for cls in (StreamFork, Concat)}

__all__ = ["AffineView", "QuantSpec", "Requant", "requantize", "GraphLayer", "Shape", "StreamFork", "Concat",
           "lower_fork", "lower_concat", "GRAPH_KINDS"]
