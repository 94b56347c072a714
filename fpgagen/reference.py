"""Numpy reference of every IR layer: integer, vectorized, bit-exact. Arrays are (N, H, W, C) codes.

Each kind carries its own reference (``layer.run(inputs) -> outputs``, one array per port); this module walks
a network through them."""

from __future__ import annotations

import numpy as np

from .ir import Layer, Network, in_ports


def run_layer(layer: Layer, x: np.ndarray) -> np.ndarray:
    """A one-input, one-output layer's reference on ``x``."""
    (y,) = layer.run([x])
    return y


def run_network(net: Network, codes: np.ndarray) -> np.ndarray:
    """Stream codes (N, H, W, C) through every layer; returns the output stream codes (N, H, W, C).

    Each layer sees its input as its own ``in_shape``: a stream is a raster of elements (y, x, c), so a layer may
    reinterpret its producer's (H, W, C) with the same element count, as a fully connected MVAU does when it
    consumes a whole flattened H x W x C feature map as one (1, 1, H*W*C) vector."""
    outs = run_graph_outputs(net, np.asarray(codes, np.int64))
    return outs[0] if len(outs) == 1 else tuple(outs)


def run_network_outputs(net: Network, codes: np.ndarray) -> list[np.ndarray]:
    """Every output's stream codes (N, H, W, C), in output order (``run_network`` returns a tuple for several)."""
    out = run_network(net, codes)
    return list(out) if isinstance(out, tuple) else [out]


def run_graph(net: Network, codes: np.ndarray) -> np.ndarray:
    """The graph's only (or first) output; see run_graph_outputs."""
    return run_graph_outputs(net, codes)[0]


def run_graph_outputs(net: Network, codes: np.ndarray) -> list[np.ndarray]:
    """The graph in its (topological) layer order: each layer's inputs are the tensors on its input streams.
    Returns every output's codes, in output order."""
    values = {("input", 0): np.asarray(codes, np.int64)}
    feeds = {(e.dst, e.dst_port): (e.src, e.src_port) for e in net.stream_edges()}
    for layer in net.layers:
        ports = in_ports(layer)
        xs = [values[feeds[(layer.name, p)]] for p in range(len(ports))]
        xs = [x.reshape(x.shape[0], *shape) for x, (shape, _, _) in zip(xs, ports, strict=True)]
        for p, y in enumerate(layer.run(xs)):
            values[(layer.name, p)] = y
    return [values[feeds[("output", k)]] for k in range(len(net.outputs))]
