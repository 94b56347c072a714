"""Intermediate representation: hardware layers with shapes, datatypes, folding and cost models."""

from .layers import LAYER_KINDS, MVAU, Layer, MaxPool, SlidingWindow, Threshold, WidthConverter, divisors
from .network import InputSpec, Network, OutputSpec

__all__ = ["MVAU", "LAYER_KINDS", "Layer", "MaxPool", "SlidingWindow", "Threshold", "WidthConverter",
           "divisors", "InputSpec", "Network", "OutputSpec"]
