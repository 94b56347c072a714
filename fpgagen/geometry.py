"""The frame layout on the AXI-Stream ports of a network (``stream_geometry``), a stage below codegen: codegen,
the FIFO model, the report, the accelerator, the synthesis flow and the runtime all read it from here. The layout
itself and the byte packing are fpgagen.packing's (kept free of the IR, for the board's runtime)."""

from __future__ import annotations

import numpy as np

from .ir import Network, in_ports, out_ports
from .packing import Segment, StreamGeometry, axi_width


def stream_geometry(net: Network) -> StreamGeometry:
    """The frame layout on the AXI-Stream ports: element widths and stream words from the ports the host streams
    feed and drain, the AXI width per direction from the stream word it feeds (packing.axi_width); with several
    outputs, one segment per output and the widest AXI width any of them needs (packing's docstring)."""
    first, fp = net.input_port()
    in_shape, in_dt, in_word = in_ports(first)[fp]
    segments = [Segment(word, dt.bitwidth(), int(np.prod(shape)))
                for shape, dt, word in (out_ports(last)[lp] for last, lp in net.output_ports())]
    return StreamGeometry(in_word=in_word, in_bits=in_dt.bitwidth(), in_elems=int(np.prod(in_shape)),
                          in_axi_bits=axi_width(in_word * in_dt.bitwidth()),
                          out_word=segments[0].word, out_bits=segments[0].bits, out_elems=segments[0].elems,
                          out_axi_bits=max(axi_width(seg.word * seg.bits) for seg in segments),
                          extra_outputs=tuple(segments[1:]))
