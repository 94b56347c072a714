"""On the board: a debug build (``fpgagen build --debug-outputs conv_0,conv_3``) sends chosen inner streams to the
host as extra outputs, through the existing multi-output framing (one DMA transfer, one output-frame segment per
output, fpgagen/packing.py). Each chosen layer's output gets a ``StreamFork``: one copy to its consumer as before,
one to a new output. The fork's name, ``<layer>_debug_tap``, says which stream an extra output carries, so the
host needs nothing beyond the network file (and runtime.json's output shapes) to read them back.

    outs = backend.infer(frames)                      # a tuple: the network's outputs, then the tapped streams
    t = fpgagen.debug.Trace(acc).use_input(codes)     # no C-sim needed
    t.compare("reference").compare("board", model=board_taps(acc.net, outs))
"""

from __future__ import annotations

import numpy as np

from ..errors import FpgagenError
from ..ir import Edge, OutputSpec, out_ports
from ..ir.kinds.fork import StreamFork

TAP_SUFFIX = "_debug_tap"


def expose_streams(net, names, where: str = "--debug-outputs") -> list[str]:
    """Give each named layer's (first) output stream a second copy to a new network output; returns the names."""
    names = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    if not names:
        raise FpgagenError("no layer names", where, "pass layer names, e.g. --debug-outputs conv_0,conv_3 (see "
                           "network.json or report.md for the names)")
    for name in names:
        layer = net.layer(name)  # FpgagenError naming the layers when there is none
        if any(e.src == f"{name}{TAP_SUFFIX}" for e in net.edges):
            continue
        shape, dtype, _ = out_ports(layer)[0]
        fork = StreamFork(f"{name}{TAP_SUFFIX}", (tuple(shape),), (tuple(shape),) * 2, (dtype,), (dtype,) * 2)
        fork.validate()
        feed = next(e for e in net.edges if (e.src, e.src_port) == (name, 0))
        feed.src, feed.src_port = fork.name, 0
        k = len(net.outputs)
        net.edges += [Edge(name, 0, fork.name, 0), Edge(fork.name, 1, "output", k)]
        net.layers.insert(net.layers.index(layer) + 1, fork)
        h, w, c = shape
        net.outputs.append(OutputSpec("codes", (1, c, h, w), np.ones(1, np.float32), np.zeros(1, np.float32),
                                      dtype))
    net.check_graph()
    return names


def tapped_outputs(net) -> dict[int, str]:
    """Output index -> the tap key ("<layer>:0") of every extra output a --debug-outputs build has."""
    feeds = {e.dst_port: e.src for e in net.stream_edges() if e.dst == "output"}
    return {k: f"{src[:-len(TAP_SUFFIX)]}:0" for k, src in feeds.items() if src.endswith(TAP_SUFFIX)}


def board_taps(net, outputs) -> dict[str, np.ndarray]:
    """The board's (or the stand-in DMA's) decoded outputs, a tuple in stream layout (N, H, W, C) as
    ``PynqBackend.infer`` returns them -> {tap key: codes}, the network's real outputs included."""
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    if len(outputs) != len(net.outputs):
        raise FpgagenError(f"{len(outputs)} outputs for a network of {len(net.outputs)}", "board_taps",
                           "pass every output the backend returned, in order")
    taps = {key: np.asarray(outputs[k], np.int64) for k, key in tapped_outputs(net).items()}
    for k, (layer, port) in enumerate(net.output_ports()):
        if not layer.name.endswith(TAP_SUFFIX):
            taps.setdefault(f"{layer.name}:{port}", np.asarray(outputs[k], np.int64))
    return taps
