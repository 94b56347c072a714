"""Folding: PE/SIMD per layer, validated against each kernel's constraints, and stream-width plumbing.

``greedy_fold`` is FINN's SetFolding idea (grow SIMD, then PE, until a layer meets a cycle target; no resource
model). It is the default for now and stays as the baseline once the integer-program optimizer exists.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import FpgagenError
from .ir import MVAU, Layer, MaxPool, Network, SlidingWindow, Threshold, WidthConverter, divisors

DEFAULT_TARGET_FPS = 30.0


def strip_converters(net: Network) -> None:
    net.layers = [layer for layer in net.layers if not isinstance(layer, WidthConverter)]


def link_streams(net: Network) -> None:
    """Match each consumer's input word to its producer, inserting WidthConverters where they differ."""
    strip_converters(net)
    linked: list[Layer] = []
    for layer in net.layers:
        prev = linked[-1] if linked else None
        if isinstance(layer, SlidingWindow):  # the window buffer accepts any word that divides C
            layer.ifm_word = layer.channels if prev is None or layer.channels % prev.out_word else prev.out_word
        if prev is not None and prev.out_word != layer.in_word:
            linked.append(WidthConverter(f"{layer.name}_dwc", prev.out_shape, prev.out_shape, prev.out_dtype,
                                         prev.out_dtype, in_elems=prev.out_word, out_elems=layer.in_word))
        linked.append(layer)
    net.layers = linked
    for layer in net.layers:
        layer.validate()


def greedy_fold(net: Network, target_cycles: float) -> None:
    """Per layer, the least parallelism that meets ``target_cycles`` (SIMD first, then PE)."""
    strip_converters(net)
    window: SlidingWindow | None = None
    prev_word = net.layers[0].in_shape[2]
    for layer in net.layers:
        if isinstance(layer, SlidingWindow):
            window = layer
            continue
        if isinstance(layer, MVAU):
            mh, mw, pixels = layer.mh, layer.mw, layer.pixels
            simd_options = window.simd_options() if window is not None else divisors(mw)
            simd = next((s for s in simd_options if mh * (mw // s) * pixels <= target_cycles), simd_options[-1])
            layer.simd = simd
            layer.pe = next((p for p in divisors(mh) if (mh // p) * (mw // simd) * pixels <= target_cycles), mh)
            if window is not None:
                window.simd = layer.simd
        elif isinstance(layer, MaxPool | Threshold):
            h, w, c = layer.in_shape
            fast_enough = [p for p in divisors(c) if h * w * c // p <= target_cycles]
            # Taking the producer's word when it is fast enough saves a width converter.
            layer.pe = prev_word if prev_word in fast_enough else (fast_enough or [c])[0]
        window = None
        prev_word = layer.out_word
    link_streams(net)


def apply_folding(net: Network, folding: dict) -> None:
    """Apply a user folding ``{layer_name: {"pe": .., "simd": ..}}`` and validate it."""
    strip_converters(net)
    entries = folding.get("layers", folding)
    if not isinstance(entries, dict):
        raise FpgagenError("folding must map layer names to {attribute: value}", "folding JSON",
                           'write {"conv_0": {"pe": 2, "simd": 3}, ...}')
    names = {layer.name for layer in net.layers}
    for name, attrs in entries.items():
        if name not in names:
            raise FpgagenError(f"folding names an unknown layer '{name}'", "folding JSON",
                               f"layers are: {', '.join(sorted(names))}")
        if not isinstance(attrs, dict):
            raise FpgagenError(f"folding entry for '{name}' is not an object", "folding JSON",
                               'write {"pe": 2, "simd": 3}')
        net.layer(name).set_folding(**attrs)
    link_streams(net)


def load_folding(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise FpgagenError(f"cannot read folding file ({exc})", str(path), "pass a JSON folding file") from None


def folding_of(net: Network) -> dict:
    return {"layers": {layer.name: layer.folding() for layer in net.layers if layer.folding()}}


def target_cycles_for(fps: float, clock_mhz: float) -> float:
    return clock_mhz * 1e6 / fps
