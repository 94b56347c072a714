"""Intermediate representation: hardware layers with shapes, datatypes, folding and cost models."""

from .layers import LAYER_KINDS, MVAU, Layer, MaxPool, SlidingWindow, Threshold, WidthConverter, divisors
from .network import Edge, InputSpec, Network, OutputSpec, in_ports, out_ports

__all__ = ["MVAU", "LAYER_KINDS", "Layer", "MaxPool", "SlidingWindow", "Threshold", "WidthConverter",
           "divisors", "Edge", "in_ports", "out_ports", "InputSpec", "Network", "OutputSpec"]
