"""Taps: the codes on every stream of the graph, from each source, aligned by the stream's producer.

A tap is named by the end that writes it: ``input:0`` (the host's input stream) or ``<layer>:<port>``. Every source
returns ``{tap key: (N, H, W, C) int64}`` for the taps it has a counterpart for:
- ``csim``: the generated C++ (the project's own sources, hand edits included) compiled with the recording streams
  of templates/hls/debug_taps.h (fpgagen.csim ``debug_taps``); the synthesized top is not touched;
- ``reference``: the IR's numpy reference, layer by layer (fpgagen.reference's walk);
- ``qonnx``: the cleaned QONNX model executed node by node (qonnx + onnxruntime, float32); a tap's counterpart is
  the ONNX tensor lowering recorded (``Network.onnx_tensors``), turned back into codes with its quantizer;
- ``brevitas``: forward hooks on the torch model's activation quantizers, paired in call order with the QONNX
  graph's activation Quant nodes;
- ``board``: the streams a ``--debug-outputs`` build sends to the host as extra outputs (fpgagen.debug.board).
A tap with no counterpart in a source (a fork's copies, a sliding window's im2col, a width converter, raw
accumulators) is absent from that source's dict, with the reason in ``Tap.no_counterpart``.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import numpy as np

from ..codegen import stream_name
from ..errors import FpgagenError
from ..ir import Network, in_ports, out_ports

# ONNX ops that move a quantizer's codes without changing them: the codes of their output are those of the Quant
# they come from (the scale and zero point to read them with)
CODE_PRESERVING = ("MaxPool", "Identity", "Dropout", "Flatten", "Reshape", "Resize", "Slice", "Pad", "Transpose")
VIEW_ONLY = ("Identity", "Dropout", "Flatten", "Reshape")  # same values, same order: Brevitas' quantizer output


@dataclass
class Tap:
    key: str  # "input:0" or "<layer>:<port>"
    layer: str  # the producing layer ("input" for the host's stream)
    port: int
    kind: str
    shape: tuple[int, int, int]  # (H, W, C) as streamed
    lo: int  # the code range the producer can write (clip_low / clip_high are shares at these)
    hi: int
    stream: str  # the C++ stream's name in top.cpp
    onnx_tensor: str | None = None
    onnx_node: str | None = None  # the node that writes onnx_tensor (set when QONNX runs)
    no_counterpart: dict[str, str] = field(default_factory=dict)  # source -> why it has none
    quantizes: bool = False  # the producer writes new codes (the input, a thresholding layer): health flags apply

    @property
    def name(self) -> str:
        return self.layer if self.port == 0 else f"{self.layer}:{self.port}"


def code_range(layer, port: int) -> tuple[int, int]:
    """The codes a layer's output port can carry: a thresholding layer's out_base .. out_base + levels, else its
    datatype's range."""
    thresholds = getattr(layer, "thresholds", None)
    if thresholds is not None and hasattr(layer, "out_base"):
        return int(layer.out_base), int(layer.out_base) + int(np.asarray(thresholds).shape[-1])
    dt = out_ports(layer)[port][1]
    return int(dt.min()), int(dt.max())


def taps_of(net: Network) -> list[Tap]:
    """Every stream's tap, in topological order: the input, then each layer's output ports."""
    edges = {(e.src, e.src_port): e for e in net.stream_edges()}
    first, first_port = net.input_port()
    in_shape, in_dt, _ = in_ports(first)[first_port]
    spec = net.input
    taps = [Tap("input:0", "input", 0, "input", tuple(in_shape), int(spec.lo), int(spec.hi),
                stream_name(net, edges[("input", 0)]), net.onnx_tensors.get("input:0"), quantizes=True)]
    for layer in net.layers:
        for p, (shape, _, _) in enumerate(out_ports(layer)):
            lo, hi = code_range(layer, p)
            key = f"{layer.name}:{p}"
            taps.append(Tap(key, layer.name, p, layer.kind, tuple(shape), lo, hi,
                            stream_name(net, edges[(layer.name, p)]), net.onnx_tensors.get(key),
                            quantizes=getattr(layer, "thresholds", None) is not None))
    if net.input.preprocess:  # a --camera build: the letterbox's output is the ONNX graph's input codes
        lb = net.layers[0]
        taps[1].onnx_tensor = net.onnx_tensors.get("input:0")
        taps[0].onnx_tensor = None
        taps[0].no_counterpart["qonnx"] = taps[0].no_counterpart["brevitas"] = \
            f"the camera frame, before the fabric's letterbox ({lb.name})"
    for tap in taps:
        if tap.onnx_tensor is None and "qonnx" not in tap.no_counterpart:
            why = {"StreamFork": "a fork's copy of its input (the ONNX graph reads one tensor twice)",
                   "WidthConverter": "a width converter the fold step inserted (no ONNX op)",
                   "SlidingWindow": "a sliding window's im2col stream (inside the ONNX Conv)"}.get(tap.kind)
            if why is None and tap.kind in ("MVAU", "VVU", "XnorMVAU"):
                why = "raw accumulators (no ONNX quantizer reads them out as codes)"
            tap.no_counterpart["qonnx"] = tap.no_counterpart["brevitas"] = \
                why or "lowering recorded no ONNX tensor for this stream"
    return taps


def reference_taps(net: Network, codes: np.ndarray) -> dict[str, np.ndarray]:
    """Every stream of the numpy reference (fpgagen.reference.run_graph_outputs, keeping each layer's outputs)."""
    values = {("input", 0): np.asarray(codes, np.int64)}
    feeds = {(e.dst, e.dst_port): (e.src, e.src_port) for e in net.stream_edges()}
    for layer in net.layers:
        xs = [values[feeds[(layer.name, p)]] for p in range(len(in_ports(layer)))]
        xs = [x.reshape(x.shape[0], *shape) for x, (shape, _, _) in zip(xs, in_ports(layer), strict=True)]
        for p, y in enumerate(layer.run(xs)):
            values[(layer.name, p)] = np.asarray(y, np.int64)
    return {f"{src}:{port}": v for (src, port), v in values.items()}


def compile_tap_library(acc, log=lambda m: None):
    """The C-sim of ``acc``'s hls/ (as it is now on disk) with every inter-layer stream recorded."""
    from ..csim import CSimLibrary, compile_library

    return CSimLibrary(compile_library(acc.hls_dir, log=log, debug_taps=True))


def read_taps(lib) -> dict[str, np.ndarray]:
    """Every recorded stream of a tap library, by C++ stream name (flat elements, all frames run since the last
    ``clear_taps``)."""
    c = lib._lib
    c.fg_tap_name.restype = ctypes.c_char_p
    c.fg_tap_size.restype = ctypes.c_longlong
    c.fg_tap_copy.argtypes = [ctypes.c_int, ctypes.c_void_p]
    out = {}
    for i in range(c.fg_tap_count()):
        data = np.zeros(c.fg_tap_size(i), np.int64)
        c.fg_tap_copy(i, data.ctypes.data)
        out[c.fg_tap_name(i).decode()] = data
    return out


def clear_taps(lib) -> None:
    lib._lib.fg_tap_clear()


def csim_taps(taps: list[Tap], recorded: dict[str, np.ndarray], frames: int) -> tuple[dict, list[str]]:
    """The C-sim's recorded streams as tap arrays (N, H, W, C); a stream that carried the wrong number of elements
    is reported, not reshaped."""
    out, problems = {}, []
    for tap in taps:
        data = recorded.get(tap.stream)
        if data is None:
            problems.append(f"stream {tap.stream} ({tap.name}) was never written in the C-sim")
            continue
        want = frames * int(np.prod(tap.shape))
        if data.size != want:
            problems.append(f"stream {tap.stream} ({tap.name}) carried {data.size} elements for {frames} frame(s), "
                            f"expected {want}")
            continue
        out[tap.key] = data.reshape(frames, *tap.shape)
    return out, problems


# --- QONNX ---------------------------------------------------------------------------------------------------
def _producers(model) -> dict:
    return {o: n for n in model.graph.node for o in n.output}


def quant_of(model, tensor: str):
    """The Quant node whose codes ``tensor`` carries (through code-preserving ops), or None."""
    producers = _producers(model)
    node = producers.get(tensor)
    while node is not None and node.op_type in CODE_PRESERVING:
        node = producers.get(node.input[0])
    return node if node is not None and node.op_type in ("Quant", "BipolarQuant") else None


def _to_stream(y: np.ndarray) -> np.ndarray:
    if y.ndim == 4:
        return y.transpose(0, 2, 3, 1)
    return y.reshape(y.shape[0], 1, 1, -1)


def tensor_codes(model, quant, y: np.ndarray) -> np.ndarray:
    """A tensor's float values -> integer codes with the Quant it carries the codes of (NCHW/NC, int64)."""
    scale = np.asarray(model.get_initializer(quant.input[1]), np.float32)
    if quant.op_type == "BipolarQuant":
        return (np.asarray(y) >= 0).astype(np.int64)
    zero = np.asarray(model.get_initializer(quant.input[2]), np.float32)
    return np.rint(np.asarray(y, np.float32) / scale + zero).astype(np.int64)


def act_quant_nodes(model) -> list:
    """The graph's activation Quant nodes (a streamed input, not a weight), in graph order."""
    inits = {i.name for i in model.graph.initializer}
    producers = _producers(model)

    def constant(name):
        node = producers.get(name)
        return name in inits or (node is not None and node.op_type == "Constant")

    return [n for n in model.graph.node if n.op_type in ("Quant", "BipolarQuant") and not constant(n.input[0])]


def qonnx_taps(taps: list[Tap], model, x: np.ndarray) -> tuple[dict, dict]:
    """Execute the QONNX model frame by frame (float32, qonnx's execute_onnx with every tensor kept); returns the
    taps' codes and, per tap, the float32 pre-rounding value t = x / scale + zero_point of its Quant (where the
    tensor is a Quant's output), for the k - 1/2 boundary test."""
    from qonnx.core.onnx_exec import execute_onnx

    name_in = model.graph.input[0].name
    contexts = []
    for i in range(x.shape[0]):
        contexts.append(execute_onnx(model, {name_in: np.asarray(x[i:i + 1], np.float32)},
                                     return_full_exec_context=True))
    producers = _producers(model)
    codes, pre = {}, {}
    for tap in taps:
        if tap.onnx_tensor is None:
            continue
        quant = quant_of(model, tap.onnx_tensor)
        if quant is None:
            tap.no_counterpart["qonnx"] = f"tensor {tap.onnx_tensor} carries the codes of several quantizers"
            continue
        y = np.concatenate([c[tap.onnx_tensor] for c in contexts])
        got = _to_stream(tensor_codes(model, quant, y))
        if got.shape[1:] != tap.shape:
            tap.no_counterpart["qonnx"] = f"tensor {tap.onnx_tensor} has shape {list(y.shape)}"
            continue
        codes[tap.key] = got
        node = producers.get(tap.onnx_tensor)
        tap.onnx_node = node.name if node is not None else None
        if node is quant and quant.op_type == "Quant":
            xin = np.concatenate([c[quant.input[0]] for c in contexts]).astype(np.float32)
            scale = np.asarray(model.get_initializer(quant.input[1]), np.float32)
            zero = np.asarray(model.get_initializer(quant.input[2]), np.float32)
            pre[tap.key] = _to_stream(xin / scale + zero)
    return codes, pre


# --- Brevitas ------------------------------------------------------------------------------------------------
def brevitas_events(model, x: np.ndarray) -> list[dict]:
    """Per activation quantizer call, in call order: its codes, the float32 pre-rounding value t, and the float
    activation it quantized (the SQNR's signal)."""
    import torch
    from brevitas.proxy.runtime_quant import ActQuantProxyFromInjector
    from brevitas.quant_tensor import QuantTensor

    events, hooks = [], []

    def hook(module, inputs, output):
        if not isinstance(output, QuantTensor):
            return
        pre = inputs[0].value if isinstance(inputs[0], QuantTensor) else inputs[0]
        fused = getattr(module, "fused_activation_quant_proxy", None)  # None: no activation before the quantizer
        act = fused.activation_impl(pre) if fused is not None else pre
        scale, zero = output.scale, output.zero_point
        codes = torch.round(output.value / scale + zero)
        events.append({"codes": codes.detach().numpy().astype(np.int64),
                       "t": (act / scale + zero).detach().numpy().astype(np.float32),
                       "float": act.detach().numpy().astype(np.float64),
                       "value": output.value.detach().numpy().astype(np.float64)})

    for m in model.modules():  # a layer's disabled input/output proxy passes a QuantTensor through: not a quantizer
        if isinstance(m, ActQuantProxyFromInjector) and getattr(m, "is_quant_enabled", True):
            hooks.append(m.register_forward_hook(hook))
    _forward(model, x, hooks, "the Brevitas model", "--model",
             "give the model the build was exported from, taking the input's shape")
    return events


def _forward(model, x: np.ndarray, hooks: list, what: str, where: str, hint: str) -> None:
    """One no-grad forward of the user's model on the user's input with ``hooks`` registered (removed after);
    a failure is the user's, so it is said as an fpgagen error, never a traceback."""
    import torch

    try:
        with torch.no_grad():
            model.eval()(torch.as_tensor(np.asarray(x, np.float32)))
    except Exception as exc:
        raise FpgagenError(f"{what}'s forward failed ({type(exc).__name__}: {str(exc)[:160]})", where, hint) from None
    finally:
        for h in hooks:
            h.remove()


FLOAT_ACTIVATIONS = ("Identity", "ReLU", "ReLU6", "Hardtanh", "LeakyReLU", "Sigmoid", "Tanh", "SiLU")


def float_activations(model, x: np.ndarray) -> list[np.ndarray]:
    """A float model's activation outputs (leaf modules named in FLOAT_ACTIVATIONS), in call order: the float
    twin's counterparts of the quantized model's activation quantizers."""

    outs, hooks = [], []
    for m in model.modules():
        if type(m).__name__ in FLOAT_ACTIVATIONS and not list(m.children()):
            hooks.append(m.register_forward_hook(lambda mod, i, o: outs.append(o.detach().numpy().astype(
                np.float64))))
    _forward(model, x, hooks, "the float model", "--float-model",
             "give the float twin of the model, taking the input's shape")
    return outs


def sqnr_db(signal: np.ndarray, value: np.ndarray) -> float:
    noise = float(((signal - value) ** 2).sum())
    return float("inf") if noise == 0 else float(10 * np.log10(max(float((signal ** 2).sum()), 1e-300) / noise))


def brevitas_taps(taps: list[Tap], model, onnx_model, x: np.ndarray, float_model=None):
    """The Brevitas forward's codes per tap (an activation quantizer's output, paired in call order with the
    QONNX graph's activation Quant nodes), the float32 t per tap, the SQNR (dB) of each quantizer against the
    float activation it quantized and, with ``float_model`` (the float twin), against the float twin's activation
    at that place (paired in call order; the whole float-to-integer drift up to that layer; meaningful where the
    quantized model keeps the float twin's channel scales, e.g. at the output when the conversion equalized
    channels inside, as fpgagen.train.model.quantize_from_float does)."""
    events = brevitas_events(model, x)
    twin = float_activations(float_model, x) if float_model is not None else None
    if twin is not None and len(twin) != len(events):
        twin = None  # no pairing: said in the report by the absence of sqnr_float_db
        sqnr_float = {"__unpaired__": float(len(events))}
    else:
        sqnr_float = {}
    nodes = act_quant_nodes(onnx_model)
    producers = _producers(onnx_model)
    codes, pre, sqnr = {}, {}, {}
    paired = len(events) == len(nodes)
    index = {n.name: k for k, n in enumerate(nodes)}
    for tap in taps:
        if tap.onnx_tensor is None:
            continue
        if not paired:
            tap.no_counterpart["brevitas"] = (f"the model's {len(events)} activation quantizer calls do not pair "
                                              f"with the QONNX graph's {len(nodes)} activation Quant nodes")
            continue
        node = producers.get(tap.onnx_tensor)
        while node is not None and node.op_type in VIEW_ONLY:
            node = producers.get(node.input[0])
        if node is None or node.name not in index:
            tap.no_counterpart["brevitas"] = f"tensor {tap.onnx_tensor} is not an activation quantizer's output"
            continue
        ev = events[index[node.name]]
        got = _to_stream(ev["codes"])
        if got.shape[1:] != tap.shape:
            tap.no_counterpart["brevitas"] = f"quantizer output of shape {list(ev['codes'].shape)}"
            continue
        codes[tap.key], pre[tap.key] = got, _to_stream(ev["t"])
        sqnr[tap.key] = sqnr_db(ev["float"], ev["value"])
        if twin is not None and twin[index[node.name]].shape == ev["value"].shape:
            sqnr_float[tap.key] = sqnr_db(twin[index[node.name]], ev["value"])
    return codes, pre, sqnr, sqnr_float
