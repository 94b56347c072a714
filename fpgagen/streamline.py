"""Lower a cleaned QONNX graph to an integer-only dataflow of IR layers.

The walk keeps, for the one tensor flowing through the chain, an *affine view* of its integer stream:
``real = alpha_c * (q - center_c) + beta_c`` per channel, plus a pending monotone clamp (ReLU, Clip). Linear ops (Conv,
Gemm/MatMul) turn codes into integer accumulators of a new MVAU; BatchNorm, Mul, Add, Sub and Div only update
(alpha, beta); the next ``Quant`` is folded into exact integer thresholds, in the MVAU that produced the
accumulator when it can, else in a standalone Threshold layer. MaxPool acts on integer codes (alpha >= 0, so
max commutes with dequantization). Nothing is computed in floating point on the accelerator.

``center`` keeps the exact part of the offset apart from the float part: a quantizer's zero point (1/2 for a
BipolarQuant, whose codes {0, 1} stand for {-s, +s}) and, after a linear layer, ``W @ center_in``, all small
dyadic rationals that float64 holds exactly. Thresholds are then solved as ``(target - beta)/alpha + center``, so
a tie the network's structure makes exact (a bipolar dot product of exactly 0 through a zero-mean BatchNorm) stays
exact instead of becoming ``k*c/k``, which float64 may round past an integer.

Ops that a graph layer kind lowers (``fpgagen.ir.kinds.LOWERINGS``: Add/Concat of streams, MaxPool, Resize, Slice,
...) all go through ``on_lowering``: the kind's rule gets the streamed inputs' views and a small context (layer
name, constants, the Quant or Pad it may fuse) and returns the layer and its output view; the walk only wires the
streams. Once the walk is done, the kinds' ``REWRITES`` may swap a layer for a cheaper one with the same codes
(a thresholded MVAU on bipolar weights and codes becomes an XnorMVAU).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.util.basic import get_by_name

from .errors import FpgagenError
from .ir import MVAU, Edge, InputSpec, Layer, Network, OnePortLayer, OutputSpec, SlidingWindow, Threshold
from .ir.kinds import (
    LOWERINGS,
    AffineView,
    Lowering,
    LoweringContext,
    QuantSpec,
    apply_rewrites,
    lower_fork,
    lowering_for,
    pad_of_node,
)
from .ir.network import ELEMENTWISE, elementwise_step, out_ports
from .quant import IntRange, bipolar_thresholds, common_grid, quantize, requant_thresholds, smallest_dtype

# The walk's own ops, then each layer kind's (fpgagen.ir.kinds.LOWERINGS).
SUPPORTED_OPS = ("Quant (ROUND)", "BipolarQuant", "Conv (group=1, dilation=1)", "Gemm", "MatMul",
                 "BatchNormalization", "Relu", "Clip", "Pad (before a MaxPool)",
                 "Mul/Add/Sub/Div by a per-channel constant", "Flatten", "Reshape (to N x features)", "Identity",
                 "Dropout", *dict.fromkeys(rule.doc or op for op, rule in LOWERINGS.items()))
# An MVAU on input channels at several scales (add_mvau's k_cols): the widest exact accumulator, sign excluded. The
# thresholds on it are solved in float64 (exact rationals where float64 cannot decide, quant.requant_thresholds), so
# each must be an integer float64 holds exactly; the C model and the kernel then hold it in 64 bits with room.
MAX_SCALED_ACC_BITS = 52
# Float ops between the graph input and its first Quant: run on the host before the input quantizer.
PRE_OPS = (*ELEMENTWISE, "Reshape", "Flatten", "Identity", "Dropout")


@dataclass
class _Stream:
    """The affine view of the integer tensor flowing between layers."""

    shape: tuple[int, int, int]  # (H, W, C) of the integer stream
    alpha: np.ndarray  # (C,) float64: real = alpha * (q - center) + beta
    beta: np.ndarray
    lo: np.ndarray  # (C,) int64: range of the integer values
    hi: np.ndarray
    center: np.ndarray = None  # (C,) float64, exact dyadic; None: zeros
    quant: tuple[np.ndarray, np.ndarray] | None = None  # (scale, zero) when q are the codes of a Quant
    pending: _PendingMVAU | None = None  # the raw accumulators of an MVAU not yet emitted (its Quant may come)
    clamp: tuple[float, float] | None = None  # pending monotone clamp of the real value
    flat_from: tuple[int, int, int] | None = None  # stream (H, W, C) flattened in torch (C, H, W) order
    where: str = "graph input"
    # Float ops since the last integer layer or quantizer, as host steps (see OutputSpec.post), and the stream as
    # it was before them: if the graph ends here they run on the host in float32; otherwise (alpha, beta) already
    # holds them and the next quantizer folds them into thresholds.
    post: tuple = ()
    before_post: _Stream | None = None
    pending_pad: tuple | None = None  # ((top, left, bottom, right), value) of a Pad the next MaxPool fuses

    def view(self) -> AffineView:
        """The graph kinds' form of this view (fpgagen.ir.kinds.affine)."""
        return AffineView(self.alpha, self.offset, self.dtype, self.lo, self.hi, self.clamp)

    def __post_init__(self):
        if self.center is None:
            self.center = np.zeros(self.shape[2])

    @property
    def dtype(self) -> DataType:
        return _dtype_of(self.lo, self.hi)

    @property
    def offset(self) -> np.ndarray:
        """beta' of the plain affine view real = alpha * q + beta' (float64, for host-side dequantization)."""
        return self.beta - self.alpha * self.center


@dataclass
class _PendingMVAU:
    """An MVAU whose output is still its raw accumulators. Its place in the layer list and its input stream are
    reserved when the linear op is reached; the layer itself is created once, when the walk knows its output: the
    Quant that thresholds it, or anything else (the accumulators are then its output)."""

    slot: int  # index in the walk's layer list
    fields: dict  # the MVAU's fields known at the linear op
    emitted: bool = False


@dataclass
class _ConstQuant:
    codes: np.ndarray  # integer codes minus zero point
    scale: np.ndarray
    dtype: DataType  # what the codes are stored as: the weight ROM's element type


def _err(node, what: str, fix: str) -> FpgagenError:
    return FpgagenError(what, f"node '{node.name}' ({node.op_type})", fix)


def _per_channel(value: np.ndarray, channels: int, node) -> np.ndarray:
    """A constant that broadcasts over the channel axis only, as a (C,) float64 vector."""
    v = np.asarray(value, np.float64)
    squeezed = v.reshape(-1) if v.size in (1, channels) else None
    if squeezed is None or (v.ndim > 1 and sorted(d for d in v.shape if d != 1) not in ([], [channels])):
        raise _err(node, f"constant of shape {list(v.shape)} varies along more than the channel axis",
                   "only scalar or per-channel constants can be folded into thresholds")
    return np.broadcast_to(squeezed, (channels,)).copy()


class _Lowering:
    def __init__(self, model: ModelWrapper, name: str):
        self.model = model
        self.name = name
        self.layers: list[Layer] = []
        self.consts: dict[str, _ConstQuant] = {}
        self.cur: _Stream | None = None
        self.cur_name: str | None = None
        # The graph: every tensor's view and the stream end(s) carrying its codes (a forked tensor has one end per
        # consumer); ``tail`` is the end the layers a handler adds read from.
        self.views: dict[str, _Stream] = {}
        self.ends: dict[str, list[tuple[str, int]]] = {}
        self.tail: tuple[str, int] = ("input", 0)
        self.edges: list[Edge] = []
        self.consumers: dict[str, list] = {}
        for node in model.graph.node:
            for name in dict.fromkeys(node.input):
                self.consumers.setdefault(name, []).append(node)
        self.graph_outputs = [o.name for o in model.graph.output]
        self.fused: set[str] = set()  # Quant nodes folded into the Concat/Add before them
        self.pendings: list[_PendingMVAU] = []
        self.reserved: set[str] = set()  # names of the pending MVAUs
        self.input_spec: InputSpec | None = None
        self.graph_input = model.graph.input[0].name
        self.pre_name = self.graph_input  # the float tensor before the input quantizer
        self.pre_steps: list[dict] = []
        self.onnx_tensors: dict[str, str] = {}  # "layer:port" -> the ONNX tensor whose codes that stream carries

    # --- helpers ------------------------------------------------------------------------------------------
    def const(self, name: str):
        return self.model.get_initializer(name) if name else None

    def is_const(self, name: str) -> bool:
        return name == "" or self.const(name) is not None or name in self.consts

    def uname(self, base: str) -> str:
        base = base.lower()
        taken = {layer.name for layer in self.layers if layer is not None} | self.reserved
        name, i = base, 1
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        return name

    def quant_params(self, node):
        """(scale, zero point, code range, bipolar). A BipolarQuant's codes are {0, 1} for {-s, +s}: the exact
        affine view real = 2s*q - s, i.e. scale 2s and zero point 1/2 (its weights are kept as -1/+1)."""
        if node.op_type == "BipolarQuant":
            scale = self.const(node.input[1])
            if scale is None:
                raise _err(node, "BipolarQuant with a non-constant scale", "export in inference mode")
            return np.asarray(scale, np.float32), np.zeros((), np.float32), IntRange(0, 1), True
        scale, zero, bits = (self.const(n) for n in node.input[1:4])
        if scale is None or zero is None or bits is None:
            raise _err(node, "Quant with non-constant scale, zero point or bit width",
                       "export with constant (inference-mode) quantizer parameters")
        rounding = get_by_name(node.attribute, "rounding_mode")
        mode = rounding.s.decode() if rounding is not None else "ROUND"
        if mode != "ROUND":
            raise _err(node, f"rounding_mode={mode} is not supported", "use brevitas' default ROUND quantizers")
        attr = {a: getattr(get_by_name(node.attribute, a), "i", 0) for a in ("signed", "narrow")}
        bits_f = float(np.asarray(bits).reshape(-1)[0])
        if bits_f != int(bits_f) or bits_f < 1:
            raise _err(node, f"bit width {bits_f} is not a positive integer", "use integer bit widths")
        rng = IntRange.of(int(bits_f), bool(attr["signed"]), bool(attr["narrow"]))
        return np.asarray(scale, np.float32), np.asarray(zero, np.float32), rng, False

    # --- the graph ----------------------------------------------------------------------------------------
    def add_layer(self, layer: Layer) -> None:
        """A one-port layer reading the current tail; it becomes the tail."""
        self.layers.append(layer)
        self.edges.append(Edge(self.tail[0], self.tail[1], layer.name, 0))
        self.tail = (layer.name, 0)

    def reserve(self, fields: dict) -> _PendingMVAU:
        """The slot of an MVAU reading the current tail, to be created by ``emit``; it becomes the tail."""
        pending = _PendingMVAU(len(self.layers), fields)
        self.layers.append(None)
        self.reserved.add(fields["name"])
        self.pendings.append(pending)
        self.edges.append(Edge(self.tail[0], self.tail[1], fields["name"], 0))
        self.tail = (fields["name"], 0)
        return pending

    def emit(self, pending: _PendingMVAU | None, **final) -> None:
        """Create a pending MVAU, once: with ``final`` (its thresholds) or, without, emitting its accumulators."""
        if pending is not None and not pending.emitted:
            self.layers[pending.slot] = MVAU(**{**pending.fields, **final})
            pending.emitted = True

    def add_graph_layer(self, layer, ends: list[tuple[str, int]]) -> None:
        self.layers.append(layer)
        self.edges += [Edge(src, port, layer.name, p) for p, (src, port) in enumerate(ends)]
        self.tail = (layer.name, 0)

    def n_consumers(self, name: str) -> int:
        return len(self.consumers.get(name, [])) + self.graph_outputs.count(name)

    def publish(self, name: str, s: _Stream, end: tuple[str, int], where: str) -> None:
        """Tensor ``name`` now has view ``s`` and streams from ``end``; several consumers get a fork."""
        s.where = where
        if s.quant is not None and s.pending is None and s.clamp is None:  # for `fpgagen debug`: codes = Quant's
            self.onnx_tensors.setdefault(f"{end[0]}:{end[1]}", name)  # first (a reshape keeps the stream's)
        n = self.n_consumers(name)
        if n > 1:
            if s.pending_pad is not None:
                raise FpgagenError("a padded tensor read by several layers", where, "pad right before one MaxPool")
            fork, _ = lower_fork(self.uname(f"{name}_fork"), s.view(), s.shape, n)
            self.tail = end
            self.add_graph_layer(fork, [end])
            # each consumer gets its own copy: a Quant on one branch must not fold into a shared MVAU
            self.emit(s.pending)
            s = replace(s, pending=None)
            self.ends[name] = [(fork.name, p) for p in range(n)]
        else:
            self.ends[name] = [end]
        self.views[name] = s

    def take(self, name: str, node) -> tuple[_Stream, tuple[str, int]]:
        s = self.views[name]
        if s.pending_pad is not None and not getattr(LOWERINGS.get(node.op_type), "fuses_pad", False):
            raise _err(node, "a Pad that is not followed by a MaxPool",
                       "pad inside the Conv (padding=...) or right before a MaxPool")
        return s, self.ends[name].pop(0)

    def fusable_quant(self, node):
        """The Quant that is the only consumer of ``node``'s output (folded into a Concat/Add), or None."""
        users = self.consumers.get(node.output[0], [])
        if len(users) == 1 and users[0].op_type == "Quant" and node.output[0] not in self.graph_outputs \
                and users[0].input[0] == node.output[0]:
            return users[0]
        return None

    def on_lowering(self, node, lowering: Lowering, names: list[str]) -> None:
        """An op a layer kind lowers (fpgagen.ir.kinds.LOWERINGS): one input port per streamed tensor, the kind's
        rule on their affine views; a Quant that is the node's only consumer is fused when the rule takes one."""
        taken = [self.take(n, node) for n in names]
        streams, ends = [t[0] for t in taken], [t[1] for t in taken]
        for st in streams:  # a kind's layer reads the accumulators as they are
            self.emit(st.pending)
        shapes = [st.shape for st in streams]
        pre_pad = streams[0].pending_pad if lowering.fuses_pad else None
        if pre_pad is not None:  # the rule reads the tensor before the Pad it fuses
            (top, left, bottom, right), _ = pre_pad
            h, w, c = shapes[0]
            shapes[0] = (h - top - bottom, w - left - right, c)
        quant_node = self.fusable_quant(node) if lowering.fuses_quant else None
        out_quant = None
        if quant_node is not None:
            scale, zero, rng, _ = self.quant_params(quant_node)
            grid = [_per_channel(v, max(np.size(scale), np.size(zero)), quant_node) for v in (scale, zero)]
            if not np.ptp(grid[0]) and not np.ptp(grid[1]):  # per tensor: one value
                grid = [g[:1] for g in grid]
            out_quant = QuantSpec(grid[0], grid[1], rng)
        ctx = LoweringContext(self.uname(node.name), self.const, out_quant, pre_pad, self.consts.get)
        done = lowering.rule(node, [st.view() for st in streams], shapes, ctx)
        for feeder in done.feeders:  # a chain in front of the layer (a Conv's sliding window)
            self.add_graph_layer(feeder, ends)
            ends = [self.tail]
        self.add_graph_layer(done.layer, ends)
        shape, view, out_name = tuple(out_ports(done.layer)[0][0]), done.view, node.output[0]
        c = view.channels
        if out_quant is not None:
            q_scale, q_zero = (np.broadcast_to(v, (c,)).copy() for v in (out_quant.scale, out_quant.zero))
            out = _Stream(shape, q_scale, np.zeros(c), view.lo, view.hi, center=q_zero, quant=(q_scale, q_zero))
            self.fused.add(quant_node.name)
            out_name = quant_node.output[0]
        elif done.passthrough is not None:  # codes pass through: each channel keeps its exact view
            def pick(values):
                return np.array([values(streams[p])[ch] for p, ch in done.passthrough])
            quant = None
            if all(st.quant is not None for st in streams):
                quant = (pick(lambda st: st.quant[0]), pick(lambda st: st.quant[1]))
            out = _Stream(shape, pick(lambda st: st.alpha), pick(lambda st: st.beta), view.lo, view.hi,
                          center=pick(lambda st: st.center), quant=quant, clamp=view.clamp)
        else:  # new codes: real = scale * q + offset
            out = _Stream(shape, view.scale, view.offset, view.lo, view.hi, clamp=view.clamp)
        self.publish(out_name, out, self.tail, f"node '{node.name}'")

    def on_pad(self, node, s: _Stream) -> _Stream:
        if s.pending_pad is not None:
            raise _err(node, "two Pads in a row", "pad once")
        pads, value = pad_of_node(node, self.const)
        h, w, c = s.shape
        return replace(s, pending_pad=(pads, value), shape=(h + pads[0] + pads[2], w + pads[1] + pads[3], c))

    # --- the walk -----------------------------------------------------------------------------------------
    def run(self) -> Network:
        handlers = {
            "Quant": self.on_quant, "BipolarQuant": self.on_quant, "Conv": self.on_conv, "Gemm": self.on_linear,
            "MatMul": self.on_linear,
            "BatchNormalization": self.on_batchnorm, "Mul": self.on_affine, "Add": self.on_affine,
            "Sub": self.on_affine, "Div": self.on_affine, "Relu": self.on_relu, "Clip": self.on_clip,
            "Flatten": self.on_flatten, "Reshape": self.on_flatten,
            "Identity": self.on_passthrough, "Dropout": self.on_passthrough,
            "Pad": self.on_pad,
            "Concat": self.on_passthrough,  # of one tensor; of several: its kind's lowering (LOWERINGS)
        }
        for node in self.model.graph.node:
            if node.name in self.fused:
                continue
            handler, lowering = handlers.get(node.op_type), lowering_for(node)
            if handler is None and lowering is None:
                raise _err(node, f"unsupported op type '{node.op_type}'",
                           f"fpgagen supports: {', '.join(SUPPORTED_OPS)}")
            data_inputs = [i for i in node.input if not self.is_const(i)]
            is_quant = node.op_type in ("Quant", "BipolarQuant")
            if is_quant and not data_inputs:
                self.on_weight_quant(node)
                continue
            if self.cur is None and data_inputs == [self.pre_name]:
                if is_quant:
                    self.on_input_quant(node)
                    continue
                if node.op_type in PRE_OPS:
                    self.on_pre(node)
                    continue
            if self.cur is None or any(n not in self.views for n in data_inputs):
                raise _err(node, "the network input reaches a float layer before any Quant (float input layer)",
                           "start the model with a brevitas QuantIdentity input quantizer (only "
                           f"{'/'.join(PRE_OPS)} by constants may come before it; they run on the host)")
            if lowering is not None and (len(data_inputs) >= lowering.min_streams or handler is None):
                self.on_lowering(node, lowering, data_inputs)
                continue
            if len(data_inputs) != 1:
                joins = sorted(op for op, rule in LOWERINGS.items() if rule.min_streams > 1)
                raise _err(node, f"{node.op_type} of {len(data_inputs)} streamed tensors",
                           f"only {' and '.join(joins)} join branches")
            self.cur, self.tail = self.take(data_inputs[0], node)
            self.cur_name = data_inputs[0]
            out = handler(node, self.cur)
            self.publish(node.output[0], out, self.tail, f"node '{node.name}'")
        if self.cur is None or not self.layers:
            raise FpgagenError("the graph has no quantized layer to build", f"model '{self.name}'",
                               "export a brevitas network with at least one QuantConv2d or QuantLinear")
        for pending in self.pendings:  # what no Quant thresholds streams its accumulators
            self.emit(pending)
        self.layers = [apply_rewrites(layer) for layer in self.layers]  # e.g. W1A1 MVAU -> XNOR-popcount
        specs = []  # every graph output is an output stream, in graph.output (torch) order
        for k, out_name in enumerate(self.graph_outputs):
            if out_name not in self.views:
                raise FpgagenError("the graph output is not computed from the input stream", f"model '{self.name}'",
                                   "return a tensor computed by the network")
            self.edges.append(Edge(*self.ends[out_name].pop(0), "output", k))
            specs.append(self.output_spec(out_name))
        net = Network(self.name, self.input_spec, specs, self.layers, self.edges, onnx_tensors=self.onnx_tensors)
        if all(isinstance(lay, OnePortLayer) for lay in self.layers) and \
                net.stream_edges() == Network(self.name, None, None, self.layers).stream_edges():
            net.edges = []  # a chain: stored as one
        else:
            net.check_graph()
        return net

    def output_spec(self, out_name: str) -> OutputSpec:
        s, node_where = self.views[out_name], self.views[out_name].where
        if s.clamp is not None:
            raise FpgagenError("the network ends in a float activation (ReLU/Clip with no quantizer after it)",
                               node_where, "end the model with a quantized activation (QuantReLU, QuantIdentity)")
        shape = tuple(self.model.get_tensor_shape(out_name))
        post = s.post
        if post:  # float ops after the last integer result: the host runs them in float32 (e.g. TensorNorm)
            s = s.before_post
        if s.pending is not None:
            return OutputSpec("accumulators", shape, s.alpha, s.offset, s.dtype, post=post)
        if s.quant is not None:
            return OutputSpec("codes", shape, s.quant[0], s.quant[1], s.dtype, post=post)
        return OutputSpec("affine", shape, s.alpha, s.offset, s.dtype, post=post)

    # --- float pre-processing before the input quantizer -------------------------------------------------
    def on_pre(self, node) -> None:
        """Record a float op on the graph input as a host step (InputSpec.pre), in the graph's order."""
        shape = tuple(self.model.get_tensor_shape(self.pre_name))
        out_shape = tuple(self.model.get_tensor_shape(node.output[0]) or ())
        if node.op_type in ("Reshape", "Flatten"):
            if len(out_shape) < 2 or out_shape[0] != shape[0] or np.prod(out_shape) != np.prod(shape):
                raise _err(node, f"reshape of the input {list(shape)} to {list(out_shape)}",
                           "keep the batch axis: reshape to (N, ...) before the input quantizer")
            self.pre_steps.append({"op": "Reshape", "shape": [int(d) for d in out_shape[1:]]})
        elif node.op_type in ELEMENTWISE:
            other = next(n for n in node.input if n != self.pre_name)
            value = self.const(other)
            if value is None or len(node.input) != 2:
                raise _err(node, "elementwise op on the input with a non-constant operand",
                           "only constants can be applied on the host before the input quantizer")
            if np.broadcast_shapes(shape, np.shape(value)) != shape or np.asarray(value).dtype != np.float32:
                raise _err(node, f"float32 constant of shape {list(np.shape(value))} on an input of shape "
                           f"{list(shape)}", "use a scalar or per-channel float32 constant")
            self.pre_steps.append(elementwise_step(node.op_type, value, const_first=node.input[0] == other))
        self.pre_name = node.output[0]

    # --- Quant --------------------------------------------------------------------------------------------
    def on_weight_quant(self, node) -> None:
        value = self.const(node.input[0])
        scale, zero, rng, bipolar = self.quant_params(node)
        if bipolar:  # -1/+1 codes (a 2-bit signed ROM); BipolarQuant maps x >= 0 to +1, as brevitas' sign
            codes = np.where(np.asarray(value) >= 0, 1, -1).astype(np.int64)
            # qonnx calls them BIPOLAR; the matrix unit multiplies them as signed values, so they are stored so
            self.consts[node.output[0]] = _ConstQuant(codes, scale, DataType["INT2"])
            return
        codes = quantize(value, scale, zero, rng)
        zero_i = np.rint(zero).astype(np.int64)
        if np.any(zero != zero_i):
            raise _err(node, "non-integer weight zero point", "use integer zero points")
        # qonnx's type of the Quant's integer codes (InferDataTypes annotates the dequantized output: FLOAT32
        # unless the scale is 1). Not right for a 1-bit quantizer (qonnx: BIPOLAR/BINARY, the codes: -1..0 / 0..1)
        # nor with a zero point (the codes are stored minus it): there the stored range's type.
        dtype = getCustomOp(node).get_integer_datatype(self.model)
        if dtype.name in ("BIPOLAR", "BINARY") or zero_i.any():
            dtype = smallest_dtype(rng.lo - int(zero_i.max()), rng.hi - int(zero_i.min()))
        self.consts[node.output[0]] = _ConstQuant(codes - zero_i, scale, dtype)

    def on_input_quant(self, node) -> None:
        scale, zero, rng, bipolar = self.quant_params(node)
        shape = tuple(self.model.get_tensor_shape(self.pre_name))
        if len(shape) == 4:
            stream = (shape[2], shape[3], shape[1])
        elif len(shape) == 2:
            stream = (1, 1, shape[1])
        else:
            raise _err(node, f"input of rank {len(shape)} ({list(shape)})", "use an NCHW image or NC vector input")
        c = stream[2]
        s, z = _per_channel(scale, c, node), _per_channel(zero, c, node)
        if np.any(z != np.rint(z)):
            raise _err(node, "non-integer input zero point", "use an integer zero point")
        graph_shape = tuple(self.model.get_tensor_shape(self.graph_input))
        self.input_spec = InputSpec(graph_shape, scale, zero, rng.lo, rng.hi, rng.dtype(), quant_shape=shape,
                                    pre=tuple(self.pre_steps), bipolar=bipolar)
        if bipolar:  # codes {0, 1}: real = 2s*(q - 1/2)
            s, z = 2 * s, np.full(c, 0.5)
        self.cur = _Stream(stream, s, np.zeros(c), np.full(c, rng.lo), np.full(c, rng.hi), center=z, quant=(s, z))
        self.cur_name = node.output[0]
        self.publish(node.output[0], self.cur, ("input", 0), f"node '{node.name}'")

    def on_quant(self, node, s: _Stream) -> _Stream:
        scale, zero, rng, bipolar = self.quant_params(node)
        c = s.shape[2]
        out_s, out_z = _per_channel(scale, c, node), _per_channel(zero, c, node)
        if np.any(out_z != np.rint(out_z)):
            raise _err(node, "non-integer activation zero point", "use integer zero points")

        def code_of(v: float) -> np.ndarray:
            if bipolar:
                return np.full(c, int(v >= 0))
            return quantize(np.full(c, v), out_s, out_z, rng)

        # A clamp before a monotone quantizer clamps the codes: Q(clip(y, a, b)) = clip(Q(y), Q(a), Q(b)).
        q_lo, q_hi = np.full(c, rng.lo), np.full(c, rng.hi)
        if s.clamp is not None:
            a, b = s.clamp
            if np.isfinite(a):
                q_lo = np.maximum(q_lo, code_of(a))
            if np.isfinite(b):
                q_hi = np.minimum(q_hi, code_of(b))
        if (not bipolar and s.quant is not None and s.clamp is None and np.array_equal(s.alpha, out_s)
                and not s.beta.any() and np.array_equal(s.center, out_z) and np.all(s.lo >= q_lo)
                and np.all(s.hi <= q_hi)):
            return replace(s, quant=(out_s, out_z), post=(), before_post=None)  # same grid: the identity
        base, top = int(q_lo.min()), int(q_hi.max())
        if bipolar:
            thresholds, negate = bipolar_thresholds(s.alpha, s.beta, s.lo, s.hi, s.center)
        else:
            thresholds, negate = requant_thresholds(s.alpha, s.beta, out_s, out_z, IntRange(base, top), s.lo,
                                                    s.hi, s.center)
        levels = np.arange(base + 1, top + 1)
        in_lo = np.where(negate, -s.hi, s.lo)
        in_hi = np.where(negate, -s.lo, s.hi)
        # Per-channel clamp levels: always pass below the channel's floor, never pass above its ceiling.
        thresholds = np.where(levels[None, :] <= q_lo[:, None], in_lo[:, None], thresholds)
        thresholds = np.where(levels[None, :] > q_hi[:, None], in_hi[:, None] + 1, thresholds)
        odt = smallest_dtype(base, top)
        if s.pending is not None and not s.pending.emitted:  # the MVAU computing s thresholds it itself
            fields = s.pending.fields
            weights = np.where(negate[:, None], -fields["weights"], fields["weights"])
            # Negating a row of signed non-narrow weights turns the most negative code (-8 in INT4) into one
            # past the type's maximum (+8): widen this layer's weight type to hold the rows as stored.
            declared = fields["weight_dtype"]
            self.emit(s.pending, weights=weights, thresholds=thresholds, out_base=base, out_dtype=odt,
                      weight_dtype=smallest_dtype(min(declared.min(), weights.min()),
                                                  max(declared.max(), weights.max())))
        else:
            self.add_layer(Threshold(self.uname(node.name), s.shape, s.shape, s.dtype, odt,
                                         thresholds=thresholds, negate=negate, out_base=base))
        if bipolar:  # codes {0, 1} for {-s, +s}
            out_s, out_z = 2 * out_s, np.full(c, 0.5)
        return _Stream(s.shape, out_s, np.zeros(c), q_lo, q_hi, center=out_z, quant=(out_s, out_z))

    # --- linear layers ------------------------------------------------------------------------------------
    def weight(self, node, name: str) -> _ConstQuant:
        if name not in self.consts:
            raise _err(node, "the layer has float (unquantized) weights",
                       "use brevitas QuantConv2d/QuantLinear so weights are exported through a Quant node")
        return self.consts[name]

    def bias(self, node, name: str | None, mh: int) -> np.ndarray:
        if not name:
            return np.zeros(mh)
        if name in self.consts:
            q = self.consts[name]
            return _per_channel(q.codes * q.scale.astype(np.float64), mh, node)
        value = self.const(name)
        if value is None:
            raise _err(node, "bias is not a constant", "export in inference mode")
        return _per_channel(value, mh, node)

    def input_view(self, node, s: _Stream) -> tuple[float, np.ndarray | None]:
        """(g, k): the input's real value is g * k_c * (q_c - center_c), k None when every channel shares one
        scale (k = 1). Channels on different grids (a Concat of branches at different scales, a per-channel
        quantizer) get the coarsest common grid g and integer multipliers k_c (quant.common_grid), exactly."""
        if s.quant is None or s.clamp is not None:
            raise _err(node, f"the input is not quantized (a float activation reaches it from {s.where})",
                       "put a brevitas quantized activation (QuantReLU, QuantIdentity) before this layer")
        alpha = s.alpha[0]
        if np.all(s.alpha == alpha) and alpha > 0:
            return float(alpha), None
        if np.any(s.alpha <= 0):
            raise _err(node, "an input scale that is not positive cannot be folded into integer weights",
                       "use an activation quantizer with a positive scale before this layer")
        return common_grid(s.alpha, f"node '{node.name}' ({node.op_type})")

    def add_mvau(self, node, s: _Stream, w: _ConstQuant, wmat: np.ndarray, center_cols: np.ndarray,
                 cols_lo: np.ndarray, cols_hi: np.ndarray, bias: np.ndarray, alpha: float,
                 in_shape: tuple[int, int, int], k_cols: np.ndarray | None = None) -> _Stream:
        """``k_cols``: per column the integer multiplier of the input's channel (input_view), None when all 1."""
        mh = wmat.shape[0]
        w_scale = _per_channel(w.scale, mh, node)
        if k_cols is not None:  # the exact accumulator, and every threshold on it, must be float64-exact integers
            bound = (np.abs(wmat) * k_cols.astype(np.float64) * np.maximum(np.abs(cols_lo), np.abs(cols_hi))).sum(1)
            if bound.max() >= 2.0**MAX_SCALED_ACC_BITS:
                raise _err(node, f"the input's channels sit on scales {s.alpha.min():.3g} to {s.alpha.max():.3g} "
                           f"whose common integer grid needs a {int(bound.max()).bit_length() + 1}-bit accumulator "
                           f"(at most {MAX_SCALED_ACC_BITS + 1})", "add a QuantIdentity after the Concat, or share "
                           "one quantizer between the branches")
        scaled = wmat if k_cols is None else wmat * k_cols  # the exact integer weights acc is the dot product with
        acc_lo = np.minimum(scaled * cols_lo, scaled * cols_hi).sum(axis=1)
        acc_hi = np.maximum(scaled * cols_lo, scaled * cols_hi).sum(axis=1)
        acc_dt = smallest_dtype(min(acc_lo.min(), -acc_hi.max()), max(acc_hi.max(), -acc_lo.min()))
        out_shape = (*in_shape[:2], mh)
        pending = self.reserve(dict(name=self.uname(node.name), in_shape=in_shape, out_shape=out_shape,
                                    in_dtype=_dtype_of(cols_lo, cols_hi), out_dtype=acc_dt, weights=wmat,
                                    weight_dtype=w.dtype, acc_dtype=acc_dt,
                                    in_scale=None if k_cols is None else np.asarray(k_cols, np.int64)))
        # real = alpha * w_scale * (acc - W' @ center_in) + bias, W' = W * k: the input is quantized (beta 0), and
        # W' @ center_in is exact (integers times small dyadic zero points)
        center = scaled.astype(np.float64) @ center_cols
        return _Stream(out_shape, alpha * w_scale, bias.astype(np.float64), acc_lo, acc_hi, center=center,
                       pending=pending)

    def on_conv(self, node, s: _Stream) -> _Stream:
        attrs = {a.name: list(a.ints) if a.ints else a.i for a in node.attribute}
        if attrs.get("group", 1) != 1:
            raise _err(node, f"grouped/depthwise convolution (group={attrs['group']})", "use group=1 convs")
        if any(d != 1 for d in attrs.get("dilations", [1, 1])):
            raise _err(node, "dilated convolution", "use dilation 1")
        w = self.weight(node, node.input[1])
        mh, c, kh, kw = w.codes.shape
        if c != s.shape[2]:
            raise _err(node, f"weight expects {c} input channels, the stream has {s.shape[2]}", "check the model")
        alpha, k = self.input_view(node, s)
        stride = tuple(attrs.get("strides", [1, 1]))
        pads = attrs.get("pads", [0, 0, 0, 0])
        pads = (pads[0], pads[1], pads[2], pads[3])  # ONNX: top, left, bottom, right
        h, wd, _ = s.shape
        oh = (h + pads[0] + pads[2] - kh) // stride[0] + 1
        ow = (wd + pads[1] + pads[3] - kw) // stride[1] + 1
        wmat = w.codes.transpose(0, 2, 3, 1).reshape(mh, -1)  # columns in (ky, kx, c) window order
        taps = kh * kw
        lo, hi = s.lo, s.hi
        if any(pads):
            pad_code = s.center  # the code whose real value is 0 (beta is 0 on a quantized stream)
            if not np.all(pad_code == pad_code[0]) or pad_code[0] != np.rint(pad_code[0]):
                raise _err(node, "zero padding needs an integer zero point shared by all channels",
                           "use a per-tensor integer zero point before padded convolutions")
            pad = int(pad_code[0])
            lo, hi = np.minimum(lo, pad), np.maximum(hi, pad)
        else:
            pad = 0
        if (kh, kw) != (1, 1) or stride != (1, 1) or any(pads):
            self.add_layer(SlidingWindow(self.uname(node.name + "_window"), s.shape, (oh, ow, taps * c),
                                             s.dtype, s.dtype, kernel=(kh, kw), stride=stride, pads=pads,
                                             pad_value=pad))
        in_shape = (oh, ow, taps * c)
        bias = self.bias(node, node.input[2] if len(node.input) > 2 else None, mh)
        return self.add_mvau(node, s, w, wmat, np.tile(s.center, taps), np.tile(lo, taps), np.tile(hi, taps),
                             bias, alpha, in_shape, None if k is None else np.tile(k, taps))

    def on_linear(self, node, s: _Stream) -> _Stream:
        if node.op_type == "Gemm":
            attrs = {a.name: (a.f if a.type == 1 else a.i) for a in node.attribute}
            if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0):
                raise _err(node, "Gemm with alpha/beta != 1 or transA", "export a plain QuantLinear")
            w = self.weight(node, node.input[1])
            wmat = w.codes if attrs.get("transB", 0) else w.codes.T
            scale = w.scale.reshape(-1) if attrs.get("transB", 0) else w.scale.T.reshape(-1)
            bias_name = node.input[2] if len(node.input) > 2 else None
        else:
            w = self.weight(node, node.input[1])
            if w.codes.ndim != 2:
                raise _err(node, "MatMul with a weight of rank != 2", "use QuantLinear on a flattened input")
            wmat, scale, bias_name = w.codes.T, w.scale.T.reshape(-1), None
        w = replace(w, scale=scale)
        mh, mw = wmat.shape
        if s.shape[:2] != (1, 1) or s.shape[2] != mw:
            raise _err(node, f"fully connected layer on a stream of shape {s.shape}",
                       "flatten the input (MW must equal all stream elements)")
        alpha, k = self.input_view(node, s)
        if s.flat_from is not None:  # torch flattened (C, H, W); the stream carries (H, W, C)
            h, wd, c = s.flat_from
            wmat = wmat.reshape(mh, c, h, wd).transpose(0, 2, 3, 1).reshape(mh, mw)
        bias = self.bias(node, bias_name, mh)
        return self.add_mvau(node, s, w, np.ascontiguousarray(wmat), s.center, s.lo, s.hi, bias, alpha, s.shape, k)

    # --- elementwise and shape ops ------------------------------------------------------------------------
    def on_batchnorm(self, node, s: _Stream) -> _Stream:
        c = s.shape[2]
        gamma, bn_beta, mean, var = (_per_channel(self.const(n), c, node) for n in node.input[1:5])
        eps = get_by_name(node.attribute, "epsilon")
        eps = eps.f if eps is not None else 1e-5
        k = gamma / np.sqrt(var + eps)
        step = {"op": "BatchNormalization", "epsilon": float(np.float32(eps)),
                **{key: np.asarray(self.const(n), np.float32).reshape(-1).tolist()
                   for key, n in zip(("scale", "bias", "mean", "var"), node.input[1:5], strict=True)}}
        return self._affine(node, s, k, bn_beta - mean * k, step)

    def on_affine(self, node, s: _Stream) -> _Stream:
        other = next(n for n in node.input if n != self.cur_name)
        value = self.const(other)
        if value is None:
            raise _err(node, "elementwise op with a non-constant operand", "only constant operands are folded")
        v = _per_channel(value, s.shape[2], node)
        const_first = node.input[0] != self.cur_name
        step = elementwise_step(node.op_type, value, const_first) if np.asarray(value).dtype == np.float32 else None
        if node.op_type == "Mul":
            return self._affine(node, s, v, np.zeros_like(v), step)
        if node.op_type == "Div":
            if const_first:
                raise _err(node, "division by the activation", "only division by a constant is folded")
            return self._affine(node, s, 1.0 / v, np.zeros_like(v), step)
        if node.op_type == "Sub" and const_first:
            return self._affine(node, s, -np.ones_like(v), v, step)
        return self._affine(node, s, np.ones_like(v), -v if node.op_type == "Sub" else v, step)

    def _affine(self, node, s: _Stream, mul: np.ndarray, add: np.ndarray, step: dict | None = None) -> _Stream:
        if s.clamp is not None:
            raise _err(node, "an affine op after a float activation (ReLU/Clip) cannot be folded",
                       "quantize the activation before this op")
        if step is not None and (s.post or s.before_post is None):  # extend the host-side float32 steps
            post, before = (*s.post, step), s.before_post or s
        else:  # no exact float32 form: the output (if it ends here) is the float64 affine view
            post, before = (), None
        return replace(s, alpha=s.alpha * mul, beta=s.beta * mul + add, quant=None, post=post, before_post=before)

    def on_relu(self, node, s: _Stream) -> _Stream:
        return self._clamp(s, 0.0, np.inf)

    def on_clip(self, node, s: _Stream) -> _Stream:
        lo = hi = None
        if len(node.input) > 1:
            lo, hi = (self.const(n) if n else None for n in (list(node.input) + ["", ""])[1:3])
        attr_lo, attr_hi = get_by_name(node.attribute, "min"), get_by_name(node.attribute, "max")
        lo = float(lo) if lo is not None else (attr_lo.f if attr_lo is not None else -np.inf)
        hi = float(hi) if hi is not None else (attr_hi.f if attr_hi is not None else np.inf)
        return self._clamp(s, lo, hi)

    @staticmethod
    def _clamp(s: _Stream, lo: float, hi: float) -> _Stream:
        if s.clamp is not None:
            lo, hi = max(lo, s.clamp[0]), min(hi, s.clamp[1])
        return replace(s, clamp=(lo, hi), quant=None)

    def on_flatten(self, node, s: _Stream) -> _Stream:
        out_shape = self.model.get_tensor_shape(node.output[0])
        if out_shape is None or len(out_shape) != 2 or int(np.prod(out_shape[1:])) != int(np.prod(s.shape)):
            raise _err(node, f"reshape to {out_shape}", "only flattening to (N, features) is supported")
        h, w, c = s.shape
        if h * w == 1:
            return s
        if s.pending is not None:
            raise _err(node, "flattening raw accumulators", "quantize the activation before flattening")
        tile = h * w  # stream order is (h, w, c): channel parameters repeat once per pixel
        return replace(s, shape=(1, 1, h * w * c), alpha=np.tile(s.alpha, tile), beta=np.tile(s.beta, tile),
                       center=np.tile(s.center, tile), lo=np.tile(s.lo, tile), hi=np.tile(s.hi, tile),
                       flat_from=(h, w, c), post=(), before_post=None,
                       quant=None if s.quant is None else tuple(np.tile(q, tile) for q in s.quant))

    def on_passthrough(self, node, s: _Stream) -> _Stream:
        return s


def _dtype_of(lo: np.ndarray, hi: np.ndarray) -> DataType:
    return smallest_dtype(lo.min(), hi.max())


def lower(model: ModelWrapper, name: str = "net") -> Network:
    """Lower a cleaned QONNX model (see frontend.load_qonnx) to the integer dataflow IR."""
    return _Lowering(model, name).run()
