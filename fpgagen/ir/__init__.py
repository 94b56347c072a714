"""Intermediate representation: hardware layers with ports, shapes, datatypes, folding and cost models, joined
into a network of streams. The public entry of fpgagen.ir: the passes import from here (or from the module that
defines a name), never through a module that merely re-exports it."""

from .kinds import KINDS, MVAU, GraphLayer, MaxPool, SlidingWindow, Threshold, WidthConverter
from .layers import Layer, OnePortLayer, divisors
from .network import Edge, InputSpec, Network, OutputSpec, in_ports, out_ports

__all__ = ["MVAU", "KINDS", "Layer", "OnePortLayer", "GraphLayer", "MaxPool", "SlidingWindow", "Threshold",
           "WidthConverter", "divisors", "Edge", "in_ports", "out_ports", "InputSpec", "Network", "OutputSpec"]
