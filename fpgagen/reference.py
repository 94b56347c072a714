"""Numpy reference of every IR layer: integer, vectorized, bit-exact. Arrays are (N, H, W, C) codes."""

from __future__ import annotations

from functools import singledispatch

import numpy as np

from .ir import MVAU, Layer, MaxPool, Network, SlidingWindow, Threshold, WidthConverter, in_ports
from .ir.kinds import GraphLayer
from .quant import apply_thresholds


@singledispatch
def run_layer(layer: Layer, x: np.ndarray) -> np.ndarray:
    raise NotImplementedError(f"no reference for {type(layer).__name__}")


@run_layer.register
def _(layer: SlidingWindow, x: np.ndarray) -> np.ndarray:
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = layer.kernel, layer.stride, layer.pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=layer.pad_value)
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))  # N, OH', OW', C, KH, KW
    oh, ow = layer.out_shape[:2]
    win = win[:, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw]
    return np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3)).reshape(x.shape[0], oh, ow, -1)


def _exact_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Integer x @ w.T through float64 BLAS: exact while every partial sum stays below 2**53."""
    bound = float(np.abs(x).max(initial=0)) * float(np.abs(w).sum(axis=1).max(initial=0))  # float: no int64 wrap
    if bound < 2**53:
        return np.rint(x.astype(np.float64) @ w.T.astype(np.float64)).astype(np.int64)
    return x.astype(np.int64) @ w.T.astype(np.int64)


@run_layer.register
def _(layer: MVAU, x: np.ndarray) -> np.ndarray:
    cols = x.reshape(-1, layer.mw)
    if layer.in_scale is not None:  # channels on different grids: acc = sum_c w_c * k_c * x_c, exact
        cols = cols * np.asarray(layer.in_scale, np.int64)
    acc = _exact_matmul(cols, layer.weights).reshape(*x.shape[:-1], layer.mh)
    if layer.thresholds is None:
        return acc
    return apply_thresholds(acc, layer.thresholds, layer.out_base)


@run_layer.register
def _(layer: MaxPool, x: np.ndarray) -> np.ndarray:
    kh, kw = layer.kernel
    oh, ow, c = layer.out_shape
    x = x[:, : oh * kh, : ow * kw]
    return x.reshape(x.shape[0], oh, kh, ow, kw, c).max(axis=(2, 4))


@run_layer.register
def _(layer: Threshold, x: np.ndarray) -> np.ndarray:
    return apply_thresholds(x, layer.thresholds, layer.out_base, layer.negate)


@run_layer.register
def _(layer: WidthConverter, x: np.ndarray) -> np.ndarray:
    return x  # repacking changes words, not values


def run_network(net: Network, codes: np.ndarray) -> np.ndarray:
    """Stream codes (N, H, W, C) through every layer; returns the output stream codes (N, H, W, C).

    Each layer sees its input as its own ``in_shape``: a stream is a raster of elements (y, x, c), so a layer may
    reinterpret its producer's (H, W, C) with the same element count, as a fully connected MVAU does when it
    consumes a whole flattened H x W x C feature map as one (1, 1, H*W*C) vector."""
    x = np.asarray(codes, np.int64)
    if not net.is_chain:
        outs = run_graph_outputs(net, x)
        return outs[0] if len(outs) == 1 else tuple(outs)
    for layer in net.layers:
        x = run_layer(layer, x.reshape(x.shape[0], *layer.in_shape))
    return x


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
    feeds = {(e.dst, e.dst_port): (e.src, e.src_port) for e in net.edges}
    for layer in net.layers:
        ports = in_ports(layer)
        xs = [values[feeds[(layer.name, p)]] for p in range(len(ports))]
        xs = [x.reshape(x.shape[0], *shape) for x, (shape, _, _) in zip(xs, ports, strict=True)]
        outs = layer.run(xs) if isinstance(layer, GraphLayer) else [run_layer(layer, xs[0])]
        for p, y in enumerate(outs):
            values[(layer.name, p)] = y
    return [values[feeds[("output", k)]] for k in range(len(net.outputs))]
