"""Lower a cleaned QONNX graph to an integer-only dataflow of IR layers: the walk.

The walk visits the nodes in graph order and keeps, for every tensor, the exact affine view of its integer stream
(fpgagen.ir.kinds.affine's ``StreamView``: ``real = alpha_c * (q - center_c) + beta_c`` per channel, plus a pending
monotone clamp) and the stream end(s) carrying its codes. Every op is some kind's ``Lowering`` rule
(``fpgagen.ir.kinds.lowering_for``): the rule gets the inputs' views and returns the layer(s) and the output's
view; the walk only wires the streams, inserts a fork where a tensor has several consumers, and keeps the places
of the MVAUs whose accumulators are still pending. Linear ops (Conv, Gemm/MatMul, mvau.py) turn codes into the
accumulators of an MVAU that is created once, when its Quant (threshold.py: exact integer thresholds in that MVAU,
else a Threshold layer) or the output is reached; no layer is changed after it was created. BatchNorm,
Mul/Add/Sub/Div by constants, ReLU, Clip and Flatten only update the view (view_ops.py). Nothing is computed in
floating point on the accelerator.

``center`` keeps the exact part of the offset apart from the float part: a quantizer's zero point (1/2 for a
BipolarQuant, whose codes {0, 1} stand for {-s, +s}) and, after a linear layer, ``W @ center_in``, all small
dyadic rationals that float64 holds exactly. Thresholds are then solved as ``(target - beta)/alpha + center``, so
a tie the network's structure makes exact (a bipolar dot product of exactly 0 through a zero-mean BatchNorm) stays
exact instead of becoming ``k*c/k``, which float64 may round past an integer.

Float ops between the graph input and its first Quant become host steps (``InputSpec.pre``), float ops after the
last integer result host steps on the output (``OutputSpec.post``). Once the walk is done, the kinds' ``REWRITES``
may swap a layer for a cheaper one with the same codes (a thresholded MVAU on bipolar weights and codes becomes an
XnorMVAU).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from .errors import FpgagenError
from .ir import MVAU, Edge, InputSpec, Network, OutputSpec
from .ir.host_steps import ELEMENTWISE, pre_step
from .ir.kinds import (
    LOWERINGS,
    RULES,
    Lowering,
    LoweringContext,
    PendingMVAU,
    StreamView,
    apply_rewrites,
    lower_fork,
    lowering_for,
    per_channel,
    quant_params,
    quant_spec,
    quantized_const,
)
from .ir.network import out_ports

# Every kind's rules (fpgagen.ir.kinds.RULES), as the unsupported-op error lists them.
SUPPORTED_OPS = tuple(dict.fromkeys(rule.doc or op for op, rules in RULES.items() for rule in rules))
# Float ops between the graph input and its first Quant: run on the host before the input quantizer.
PRE_OPS = (*ELEMENTWISE, "Reshape", "Flatten", "Identity", "Dropout")


def _err(node, what: str, fix: str) -> FpgagenError:
    return FpgagenError(what, f"node '{node.name}' ({node.op_type})", fix)


class _Walk:
    def __init__(self, model: ModelWrapper, name: str):
        self.model = model
        self.name = name
        self.layers: list = []  # a pending MVAU's place holds None until it is created
        self.consts: dict = {}  # quantized constants (weights), threshold.QuantizedConst
        # The graph: every tensor's view and the stream end(s) carrying its codes (a forked tensor has one end per
        # consumer); ``tail`` is the end the next layer added reads from.
        self.views: dict[str, StreamView] = {}
        self.ends: dict[str, list[tuple[str, int]]] = {}
        self.tail: tuple[str, int] = ("input", 0)
        self.edges: list[Edge] = []
        self.consumers: dict[str, list] = {}
        for node in model.graph.node:
            for name in dict.fromkeys(node.input):
                self.consumers.setdefault(name, []).append(node)
        self.graph_outputs = [o.name for o in model.graph.output]
        self.fused: set[str] = set()  # Quant nodes folded into the Concat/Add before them
        self.pendings: list[PendingMVAU] = []
        self.reserved: set[str] = set()  # names of the pending MVAUs
        self.input_spec: InputSpec | None = None
        self.graph_input = model.graph.input[0].name
        self.pre_name = self.graph_input  # the float tensor before the input quantizer
        self.pre_steps: list[dict] = []
        self.onnx_tensors: dict[str, str] = {}  # "layer:port" -> the ONNX tensor whose codes that stream carries

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

    # --- the graph ----------------------------------------------------------------------------------------
    def add_layer(self, layer, ends: list[tuple[str, int]]) -> None:
        self.layers.append(layer)
        self.edges += [Edge(src, port, layer.name, p) for p, (src, port) in enumerate(ends)]
        self.tail = (layer.name, 0)

    def reserve(self, fields: dict) -> PendingMVAU:
        """The place of an MVAU reading the current tail, to be created by ``emit``; it becomes the tail."""
        pending = PendingMVAU(len(self.layers), fields)
        self.layers.append(None)
        self.reserved.add(fields["name"])
        self.pendings.append(pending)
        self.edges.append(Edge(self.tail[0], self.tail[1], fields["name"], 0))
        self.tail = (fields["name"], 0)
        return pending

    def emit(self, pending: PendingMVAU | None, **final) -> None:
        """Create a pending MVAU, once: with ``final`` (its thresholds) or, without, emitting its accumulators."""
        if pending is not None and not pending.emitted:
            self.layers[pending.slot] = MVAU(**{**pending.fields, **final})
            pending.emitted = True

    def n_consumers(self, name: str) -> int:
        return len(self.consumers.get(name, [])) + self.graph_outputs.count(name)

    def publish(self, name: str, s: StreamView, end: tuple[str, int], where: str) -> None:
        """Tensor ``name`` now has view ``s`` and streams from ``end``; several consumers get a fork."""
        s.where = where
        if s.quant is not None and s.pending is None and s.clamp is None:  # for `fpgagen debug`: codes = Quant's
            self.onnx_tensors.setdefault(f"{end[0]}:{end[1]}", name)  # first (a reshape keeps the stream's)
        n = self.n_consumers(name)
        if n > 1:
            if s.pending_pad is not None:
                raise FpgagenError("a padded tensor read by several layers", where, "pad right before one MaxPool")
            fork, _ = lower_fork(self.uname(f"{name}_fork"), s.view(), s.shape, n)
            self.add_layer(fork, [end])
            # each consumer gets its own copy: a Quant on one branch must not fold into a shared MVAU
            self.emit(s.pending)
            s = replace(s, pending=None)
            self.ends[name] = [(fork.name, p) for p in range(n)]
        else:
            self.ends[name] = [end]
        self.views[name] = s

    def take(self, name: str, node, lowering: Lowering) -> tuple[StreamView, tuple[str, int]]:
        s = self.views[name]
        if s.pending_pad is not None and not lowering.fuses_pad:
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

    def lower_node(self, node, lowering: Lowering, names: list[str]) -> None:
        """One op: its kind's rule on the views of its streamed inputs (one input port each), the layers it returns
        wired after them; a Quant that is the node's only consumer is fused when the rule takes one."""
        taken = [self.take(n, node, lowering) for n in names]
        streams, ends = [t[0] for t in taken], [t[1] for t in taken]
        if not lowering.exact:  # a kind's layer reads the accumulators as they are
            for st in streams:
                self.emit(st.pending)
        shapes = [st.shape for st in streams]
        pre_pad = streams[0].pending_pad if lowering.fuses_pad else None
        if pre_pad is not None:  # the rule reads the tensor before the Pad it fuses
            (top, left, bottom, right), _ = pre_pad
            h, w, c = shapes[0]
            shapes[0] = (h - top - bottom, w - left - right, c)
        quant_node = self.fusable_quant(node) if lowering.fuses_quant else None
        out_quant = quant_spec(quant_node, self.const) if quant_node is not None else None
        ctx = LoweringContext(self.uname(node.name), self.const, out_quant, pre_pad, self.consts.get, tuple(names),
                              self.model.get_tensor_shape, self.uname)
        done = lowering.rule(node, streams if lowering.exact else [st.view() for st in streams], shapes, ctx)
        if done.finish is not None:  # the Quant the input's pending MVAU was waiting for
            self.emit(streams[0].pending, **done.finish)
        self.tail = ends[0] if ends else self.tail
        for feeder in done.feeders:  # a chain in front of the layer (a Conv's sliding window)
            self.add_layer(feeder, ends)
            ends = [self.tail]
        if done.layer is not None:
            self.add_layer(done.layer, ends)
        out_name = node.output[0]
        if lowering.exact:
            out = done.view
            if done.pending is not None:
                out = replace(out, pending=self.reserve(done.pending))
        else:
            out = StreamView.of_plain(tuple(out_ports(done.layer)[0][0]), done, streams, out_quant)
            if out_quant is not None:
                self.fused.add(quant_node.name)
                out_name = quant_node.output[0]
        self.publish(out_name, out, self.tail, f"node '{node.name}'")

    # --- the walk -----------------------------------------------------------------------------------------
    def run(self) -> Network:
        for node in self.model.graph.node:
            if node.name in self.fused:
                continue
            if lowering_for(node) is None:
                raise _err(node, f"unsupported op type '{node.op_type}'",
                           f"fpgagen supports: {', '.join(SUPPORTED_OPS)}")
            data_inputs = [i for i in node.input if not self.is_const(i)]
            is_quant = node.op_type in ("Quant", "BipolarQuant")
            if is_quant and not data_inputs:
                self.consts[node.output[0]] = quantized_const(node, self.model)
                continue
            if self.input_spec is None and data_inputs == [self.pre_name]:
                if is_quant:
                    self.input_quant(node)
                    continue
                if node.op_type in PRE_OPS:
                    step = pre_step(node, tuple(self.model.get_tensor_shape(self.pre_name)),
                                    tuple(self.model.get_tensor_shape(node.output[0]) or ()), self.const,
                                    self.pre_name)
                    self.pre_steps += [step] if step is not None else []
                    self.pre_name = node.output[0]
                    continue
            if self.input_spec is None or any(n not in self.views for n in data_inputs):
                raise _err(node, "the network input reaches a float layer before any Quant (float input layer)",
                           "start the model with a brevitas QuantIdentity input quantizer (only "
                           f"{'/'.join(PRE_OPS)} by constants may come before it; they run on the host)")
            lowering = lowering_for(node, len(data_inputs))
            if lowering is None:
                joins = sorted(op for op, rule in LOWERINGS.items() if rule.min_streams > 1)
                raise _err(node, f"{node.op_type} of {len(data_inputs)} streamed tensors",
                           f"only {' and '.join(joins)} join branches")
            self.lower_node(node, lowering, data_inputs)
        if self.input_spec is None or not self.layers:
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

    def input_quant(self, node) -> None:
        """The input quantizer: the host's (InputSpec) and the first stream's view."""
        scale, zero, rng, bipolar = quant_params(node, self.const)
        shape = tuple(self.model.get_tensor_shape(self.pre_name))
        if len(shape) == 4:
            stream = (shape[2], shape[3], shape[1])
        elif len(shape) == 2:
            stream = (1, 1, shape[1])
        else:
            raise _err(node, f"input of rank {len(shape)} ({list(shape)})", "use an NCHW image or NC vector input")
        c = stream[2]
        s, z = per_channel(scale, c, node), per_channel(zero, c, node)
        if np.any(z != np.rint(z)):
            raise _err(node, "non-integer input zero point", "use an integer zero point")
        graph_shape = tuple(self.model.get_tensor_shape(self.graph_input))
        self.input_spec = InputSpec(graph_shape, scale, zero, rng.lo, rng.hi, rng.dtype(), quant_shape=shape,
                                    pre=tuple(self.pre_steps), bipolar=bipolar)
        if bipolar:  # codes {0, 1}: real = 2s*(q - 1/2)
            s, z = 2 * s, np.full(c, 0.5)
        view = StreamView(stream, s, np.zeros(c), np.full(c, rng.lo), np.full(c, rng.hi), center=z, quant=(s, z))
        self.publish(node.output[0], view, ("input", 0), f"node '{node.name}'")


def lower(model: ModelWrapper, name: str = "net") -> Network:
    """Lower a cleaned QONNX model (see frontend.load_qonnx) to the integer dataflow IR."""
    return _Walk(model, name).run()
