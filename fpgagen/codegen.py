"""Render templates/hls/*.j2 into a Vitis-HLS project: top.cpp (DATAFLOW, AXI-Stream), one header per layer,
kernels, the C-simulation bridge, a csim testbench and the HLS Tcl script."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import jinja2

from .errors import FpgagenError
from .geometry import stream_geometry
from .ir import Layer, Network, in_ports, out_ports
from .ir.cpp import Cpp
from .packing import StreamGeometry
from .resources import resource_dir

TEMPLATE_DIR = resource_dir("templates") / "hls"


# The HLS testbench calls the top once per frame of tb_input.bin (Accelerator.write_testbench_vectors writes
# TESTBENCH_FRAMES, all in one transfer) plus 4 times for its TLAST checks (a long transfer: 2 calls, an aborted
# one, then a one-frame transfer); RTL co-simulation of a large network takes hours, so the design itself is
# co-simulated by default only below this many cycles, and a reduced-resolution copy otherwise
# (fpgagen/synth/flow.py reduced_copy).
TESTBENCH_FRAMES = 2
TESTBENCH_CALLS = TESTBENCH_FRAMES + 4
COSIM_CYCLE_LIMIT = 500_000
COSIM_DIR = "cosim"  # build_dir/cosim: the reduced-resolution copy's build, beside hls/


def cosim_by_default(net: Network) -> bool:
    return net.bottleneck().cycles() * TESTBENCH_CALLS <= COSIM_CYCLE_LIMIT


def top_name(net: Network) -> str:
    return c_identifier(net.name) + "_top"


def c_identifier(name: str) -> str:
    ident = re.sub(r"\W", "_", name)
    return ident if re.match(r"[A-Za-z_]", ident) else "net_" + ident


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=False, lstrip_blocks=False)


def generate(net: Network, out_dir: Path, board: dict, source: str = "") -> Path:
    """Write the HLS project for ``net`` into ``out_dir`` and return it."""
    out_dir = Path(out_dir)
    (out_dir / "layers").mkdir(parents=True, exist_ok=True)
    env, g = _environment(), Cpp()
    io = stream_geometry(net)
    classes = {layer.kind: type(layer) for layer in net.layers}
    kinds = list(classes)
    # A kind whose kernel lives in the static library (its KERNEL_HEADER, templates/hls/fg_*.h) is included; the
    # others are still rendered from their CONFIG_TEMPLATE's kernel() macro.
    headers = {kind: cls.KERNEL_HEADER or None for kind, cls in classes.items()}
    kernels = {kind: env.get_template(cls.CONFIG_TEMPLATE).module.kernel()
               for kind, cls in classes.items() if not headers[kind]}
    for header in sorted(TEMPLATE_DIR.glob("fg_*.h")):
        shutil.copyfile(header, out_dir / header.name)
    streams, processes, notes = _streams_and_processes(net, g, io)
    adapter = output_adapter(io, streams, net.stream_edges())
    bottleneck = net.bottleneck()
    ctx = dict(net=net, top=top_name(net), io=io, kinds=kinds, kernels=kernels, headers=headers, streams=streams,
               processes=processes, notes=notes, output_adapter=adapter,
               board=board, clock_mhz=board["clock_mhz"], bottleneck=bottleneck, source=source or net.name,
               fps=board["clock_mhz"] * 1e6 / bottleneck.cycles(), tb_calls=TESTBENCH_CALLS,
               tb_frames=TESTBENCH_FRAMES, cosim_default=cosim_by_default(net), cosim_cycle_limit=COSIM_CYCLE_LIMIT,
               cosim_dir=COSIM_DIR, transfer_end=TRANSFER_END, transfer_end_depth=TRANSFER_END_DEPTH)
    for layer in net.layers:
        _write_layer(env, layer, out_dir / "layers" / f"{layer.name}.h")
    (out_dir / "stream_geometry.json").write_text(json.dumps(io.to_dict(), indent=1) + "\n")
    for template, name in (("top.h.j2", "top.h"), ("top.cpp.j2", "top.cpp"), ("bridge.cpp.j2", "csim_bridge.cpp"),
                           ("testbench.cpp.j2", "testbench.cpp"), ("run_hls.tcl.j2", "run_hls.tcl")):
        (out_dir / name).write_text(env.get_template(template).render(**ctx))
    return out_dir


def stream_name(net: Network, edge) -> str:
    """The C++ name of a graph edge's stream: ``input_codes``, ``<layer>_out`` (a one-output layer) or
    ``<layer>_out<port>`` (one per output of a fork)."""
    if edge.src == "input":
        return "input_codes"
    return f"{edge.src}_out" if len(out_ports(net.layer(edge.src))) == 1 else f"{edge.src}_out{edge.src_port}"


def _streams_and_processes(net: Network, g: Cpp, io) -> tuple[list[dict], list[tuple[str, str]], list[str]]:
    """One stream per edge (name, element type, word, depth, storage); the processes of the DATAFLOW region in
    order (the input adapter, every layer with its input streams then its output streams, the output adapter);
    the shape/folding/cycles comment above each layer's call."""
    edges = net.stream_edges()
    streams = []
    for e in edges:
        dt = net.edge_dtype(e)
        streams.append({"name": stream_name(net, e), "ctype": g.ctype(dt), "word": net.edge_word(e),
                        "depth": e.depth, "impl": e.storage})
    by_in = {(e.dst, e.dst_port): s["name"] for e, s in zip(edges, streams, strict=True)}
    by_out = {(e.src, e.src_port): s["name"] for e, s in zip(edges, streams, strict=True)}
    processes = [("input", f"fg::axis_to_stream<{streams[0]['ctype']}, {io.in_word}, {io.in_bits}, {io.in_axi_bits}, "
                           f"{io.in_words}, {io.in_stream_words}>(in_axis, {by_out[('input', 0)]}, status_axis, "
                           f"{TRANSFER_END})")]
    notes = []
    for layer in net.layers:
        ins = [by_in[(layer.name, p)] for p in range(len(in_ports(layer)))]
        outs = [by_out[(layer.name, p)] for p in range(len(out_ports(layer)))]
        processes.append((layer.name, f"{layer.name}({', '.join(ins + outs)})"))
        shapes = " + ".join("x".join(map(str, shape)) for shape, _, _ in in_ports(layer))
        out_shapes = " + ".join("x".join(map(str, shape)) for shape, _, _ in out_ports(layer))
        folding = "".join(f"{k}={v} " for k, v in layer.folding().items())
        notes.append(f"{layer.kind} {shapes} -> {out_shapes}, {folding}| {layer.cycles():,} cycles/frame (est.)")
    processes.append(("output", output_adapter_call(io, streams, edges)))
    return streams, processes, notes


# The one-bit channel from the input adapter to the output adapter: per frame, whether it closed its DMA transfer
# (fg::axis_to_stream / fg::stream_to_axis). Its depth bounds how many frames the input adapter may run ahead of
# the output adapter; a full channel only stalls the input adapter (the output side never waits on a flag that is
# still upstream), and the dataflow pipeline holds far fewer whole frames than this between the two.
TRANSFER_END = "transfer_end"
TRANSFER_END_DEPTH = 8


def output_adapter_call(io: StreamGeometry, streams: list[dict], edges) -> str:
    """The output adapter's call: ``fg::stream_to_axis`` of the one output, or ``output_adapter(...)`` (see
    ``output_adapter``) of every output stream in output order."""
    by_port = {e.dst_port: s for e, s in zip(edges, streams, strict=True) if e.dst == "output"}
    if len(io.segments) == 1:
        s = by_port[0]
        return (f"fg::stream_to_axis<{s['ctype']}, {io.out_word}, {io.out_bits}, {io.out_axi_bits}, "
                f"{io.out_stream_words}, {io.out_words}>({s['name']}, out_axis, {TRANSFER_END})")
    return (f"output_adapter({', '.join(by_port[k]['name'] for k in range(len(io.segments)))}, out_axis, "
            f"{TRANSFER_END})")


def output_adapter(io: StreamGeometry, streams: list[dict], edges) -> str:
    """With several outputs, the one DATAFLOW process that writes the output frame (packing's docstring): one
    ``fg::stream_to_axis`` per segment, in output order, each run to completion before the next, TLAST on the
    last segment's last word only. Empty for one output (the top calls fg::stream_to_axis directly)."""
    if len(io.segments) == 1:
        return ""
    by_port = {e.dst_port: s for e, s in zip(edges, streams, strict=True) if e.dst == "output"}
    params, body = [], []
    for k, seg in enumerate(io.segments):
        s = by_port[k]
        last = "true" if k == len(io.segments) - 1 else "false"
        params.append(f"hls::stream<fg::Vec<{s['ctype']}, {seg.word}> > &out{k}")
        body.append(f"    fg::stream_to_axis<{s['ctype']}, {seg.word}, {seg.bits}, {io.out_axi_bits}, "
                    f"{io.segment_stream_words(k)}, {io.segment_words(k)}, {last}>(out{k}, out_axis, transfer_end);"
                    f"  // segment {k}: {io.segment_words(k):,} AXI words")
    params.append(f"hls::stream<fg::AxisWord<{io.out_axi_bits}> > &out_axis")
    params.append("hls::stream<ap_uint<1> > &transfer_end")
    return ("// The output frame: one segment per output, in output order, each padded to a whole AXI word\n"
            "// (fpgagen/packing.py); one process, so the segments leave in order.\n"
            f"static void output_adapter({', '.join(params)}) {{\n#pragma HLS INLINE off\n" + "\n".join(body)
            + "\n}\n")


def _check_rom_values(layer: Layer) -> None:
    """The C model stores ROMs as native integers and converts on read (fg_common.h), which equals the
    hardware's ap_int ROM only if every value fits the declared type; never emit one that does not."""
    weights = getattr(layer, "weights", None)
    if weights is not None:
        dt = layer.weight_dtype
        if not (dt.min() <= weights.min() and weights.max() <= dt.max()):
            raise FpgagenError(f"the weights of layer {layer.name} span [{weights.min()}, {weights.max()}], outside "
                               f"their declared {dt.name}", "code generation",
                               "this is an fpgagen bug; please report it with the model")


def _write_layer(env: jinja2.Environment, layer: Layer, path: Path) -> None:
    _check_rom_values(layer)
    body = layer.render_instance(env)  # its CONFIG_TEMPLATE's instance macro, with the helpers its kind declares
    path.write_text(f"// Generated by fpgagen: layer {layer.name} ({layer.kind}). Included by top.cpp only.\n"
                    f"#pragma once\n\n{body}\n")
