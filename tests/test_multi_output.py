"""Networks with more than one output (issue 9): every output is a stream, the host gets all of them from one DMA
transfer (one output frame of per-output segments, fpgagen/packing.py), ``acc.run(x)`` returns a tuple as the
torch model does, bit-exact (np.array_equal) on every output; the later outputs' FIFOs are sized from the output
adapter's pattern, and the bounded-FIFO C-simulation completes at those depths and deadlocks below them."""

from __future__ import annotations

import json

import graph_nets as GN
import nets
import numpy as np
import onnx
import pytest
import torch
from brevitas.nn import QuantHardTanh, QuantIdentity
from brevitas.quant import Int8ActPerTensorFloatMinMaxInit
from checks import check_memories_against_report
from torch import nn

import fpgagen
from fpgagen import codegen, fifo, lint, packing
from fpgagen.accelerator import Accelerator
from fpgagen.geometry import stream_geometry
from fpgagen.ir import Edge, Network
from fpgagen.models.lpyolo import PixelQuant
from fpgagen.packing import Segment, StreamGeometry


def _build(model, tmp_path, quiet, dynamo=False, name="net", **kwargs):
    path = fpgagen.export(model, tmp_path / f"{name}.onnx", dynamo=dynamo)
    return fpgagen.build(path, board="pynq_z2", out_dir=tmp_path / f"build_{name}", log=quiet, **kwargs)


def _assert_outputs_bitexact(model, acc, seed=1, frames=3):
    x = nets.net_input(model, seed, shape=(frames, *model.input_shape[1:]))
    got = acc.run(x, codes=True)
    exact = GN.graph_exact_codes(model, x)
    assert isinstance(got, tuple) and len(got) == len(exact) == len(acc.net.outputs)
    for k, (g, e) in enumerate(zip(got, exact, strict=True)):
        assert g.shape == e.shape, k
        assert np.array_equal(g, e), f"output {k} differs in {(g != e).sum()} of {e.size} codes"
        assert len(np.unique(e)) > 2, f"output {k} is nearly constant: the test would prove little"
    for k, (g, b) in enumerate(zip(got, GN.graph_brevitas_codes(model, x), strict=True)):
        assert np.array_equal(g, b), f"output {k}: Brevitas' float32 forward differs"
    ref = acc.reference(x, codes=True)
    assert all(np.array_equal(r, g) for r, g in zip(ref, got, strict=True))
    return x, got


def _check_code_against_report(acc):
    """The generated code passes the lint; every layer's arrays and every FIFO the code declares price to what
    the report charges (the later outputs' large FIFOs included)."""
    assert lint.lint_project(acc.hls_dir, acc.net) == []
    doc, checked = check_memories_against_report(acc)
    assert checked == len(acc.net.layers)
    streams = {s.name: s for s in lint.parse_streams((acc.hls_dir / "top.cpp").read_text())}
    from_code = {"BRAM18": 0, "LUTRAM": 0}
    for e in acc.net.stream_edges():
        if e.src == "input":
            continue
        s = streams[codegen.stream_name(acc.net, e)]
        assert (s.depth, s.impl) == (e.depth, e.storage)
        from_code = {r: from_code[r] + v for r, v in lint.price_stream(s).items()}
    reported = {r: sum(lay["fifo"]["resources"][r] for lay in doc["layers"]) for r in from_code}
    assert reported == from_code == {r: fifo.fifos_resources(acc.net)[r] for r in from_code}
    return doc


# ------------------------------------------------------------------------------------------ two_head_net

@pytest.fixture(scope="module")
def two_head(tmp_path_factory):
    d = tmp_path_factory.mktemp("two_head")
    model = GN.graph_net("two_head", seed=0)
    return model, _build(model, d, lambda m: None, name="two_head")


def test_two_head_net_returns_a_tuple_bitexact(two_head):
    model, acc = two_head
    assert len(acc.net.outputs) == 2 and acc.net.outputs[0].shape == (1, 4, 16, 16)
    assert acc.net.outputs[1].shape == (1, 5, 8, 8)
    x, codes = _assert_outputs_bitexact(model, acc)
    values = acc.run(x)  # dequantized as Brevitas dequantizes: the torch model's tuple, value for value
    with torch.no_grad():
        want = model(torch.from_numpy(x))
    assert isinstance(values, tuple) and len(values) == 2
    for v, w in zip(values, want, strict=True):
        assert np.array_equal(v, w.numpy())


def test_two_head_net_dynamo_export_bitexact(tmp_path, quiet):
    model = GN.graph_net("two_head", seed=2)
    acc = _build(model, tmp_path, quiet, dynamo=True, name="two_head_dynamo")
    _assert_outputs_bitexact(model, acc, seed=4, frames=2)


def test_two_head_build_reloads_and_reports_every_output(two_head):
    model, acc = two_head
    again = fpgagen.load(acc.build_dir, log=lambda m: None)
    assert [o.shape for o in again.net.outputs] == [o.shape for o in acc.net.outputs]
    assert [(e.src, e.dst_port) for e in again.net.edges if e.dst == "output"] == \
        [(e.src, e.dst_port) for e in acc.net.edges if e.dst == "output"]
    x = nets.net_input(model, 5, shape=(2, *model.input_shape[1:]))
    assert all(np.array_equal(a, b) for a, b in zip(again.run(x, codes=True), acc.run(x, codes=True), strict=True))
    doc = json.loads((acc.build_dir / "report.json").read_text())
    io = stream_geometry(acc.net)
    assert [o["shape"] for o in doc["outputs"]] == [[1, 4, 16, 16], [1, 5, 8, 8]]
    assert [o["segment_offset_bytes"] for o in doc["outputs"]] == [0, io.segment_offset(1)]
    assert doc["output_frame_bytes"] == io.out_frame_bytes == sum(o["segment_bytes"] for o in doc["outputs"])
    assert "## Outputs" in (acc.build_dir / "report.md").read_text()
    _check_code_against_report(acc)
    geometry = json.loads((acc.build_dir / "hls" / "stream_geometry.json").read_text())
    assert StreamGeometry.from_dict(geometry) == io


def test_network_file_keeps_every_output(two_head, tmp_path):
    _, acc = two_head
    acc.net.save(tmp_path)
    doc = json.loads((tmp_path / "network.json").read_text())
    assert "output" not in doc and len(doc["outputs"]) == 2
    again = Network.load(tmp_path)
    for a, b in zip(again.outputs, acc.net.outputs, strict=True):
        assert (a.kind, a.shape, a.dtype) == (b.kind, b.shape, b.dtype)
        assert np.array_equal(a.scale, b.scale) and np.array_equal(a.offset, b.offset)
    with pytest.raises(ValueError, match="2 outputs"):
        again.output  # noqa: B018 - a network with several outputs has no single one
    # every output is fed by exactly one stream
    net = acc.net
    to_out = {e.dst_port: e for e in net.edges if e.dst == "output"}
    others = [e for e in net.edges if e.dst != "output"]
    twice = [*others, to_out[0], Edge(to_out[0].src, 0, "output", 1)]  # output 1 fed by output 0's producer too
    moved = [*others, to_out[0], Edge(to_out[1].src, 0, "output", 2)]  # a third output the network lacks
    for edges, match in ((twice, "two streams"), (moved, "output 1 is not connected")):
        with pytest.raises(ValueError, match=match):
            Network(net.name, net.input, net.outputs, net.layers, edges).check_graph()
    # an output stream left unconnected is a damaged file
    edges = [e for e in acc.net.edges if not (e.dst == "output" and e.dst_port == 1)]
    Network(acc.net.name, acc.net.input, acc.net.outputs, acc.net.layers, edges).save(tmp_path)
    with pytest.raises(fpgagen.errors.FpgagenError, match="damaged"):
        Network.load(tmp_path)


class HeadsReversed(GN.TwoHeadNet):
    """two_head_net's outputs the other way round: the slow 8x8 head first, so the fast 16x16 head's words wait
    a whole segment for the adapter."""

    def forward(self, x):
        s = self.stem(self.input_quant(x))
        return self.head_b(s), self.head_a(s)


def _path_to_output(net, k):
    """The edges from the fork down to output k (through one-input layers)."""
    into = {(e.dst, e.dst_port): e for e in net.edges}
    e, path = into[("output", k)], []
    while True:
        path.append(e)
        if e.src == "input" or net.layer(e.src).kind == "StreamFork":
            return path
        e = into[(e.src, 0)]


def test_later_output_fifo_sized_completes_too_small_deadlocks(tmp_path, quiet):
    """The output adapter drains output 0's segment before output 1's: the stream to output 1 must hold what the
    graph produces meanwhile (here the fast head's whole frame while the slow head computes). At the sized depths
    the bounded-FIFO C-simulation completes bit-exact; with output 1's path at 2 words per FIFO the fork stalls on
    it, output 0 starves and the simulation reports the deadlock."""
    model = GN.build_net(HeadsReversed, 0)
    acc = _build(model, tmp_path, quiet, name="reversed")
    net = acc.net
    io = stream_geometry(net)
    reads = fifo.output_adapter_pattern(io)  # the adapter pops stream 1 only after stream 0's segment
    assert np.flatnonzero(reads[1])[0] > np.flatnonzero(reads[0])[-1]
    assert reads[0].sum() == io.segment_stream_words(0) and reads[1].sum() == io.segment_stream_words(1)
    path = _path_to_output(net, 1)
    held = sum(e.depth for e in path)
    assert held >= io.segment_stream_words(1)  # the sizing buffers output 1's whole frame on its way
    big = max(path, key=lambda e: e.depth)
    assert big.storage == "bram"  # large, so in block RAM, declared like every FIFO
    top = (acc.hls_dir / "top.cpp").read_text()
    assert f"depth={big.depth}" in top and "output_adapter(" in top
    acc.verify(frames=2, bounded_fifos=True)
    _assert_outputs_bitexact(model, acc, seed=3, frames=2)
    _check_code_against_report(acc)
    for e in path:
        e.depth, e.storage = 2, "srl"
    codegen.generate(net, tmp_path / "small" / "hls", acc.board)
    small = Accelerator(net, tmp_path / "small", acc.board, log=quiet)
    with pytest.raises(Exception, match="deadlock"):
        small.verify(frames=1, bounded_fifos=True)


def test_testbench_and_block_design_use_the_whole_output_frame(two_head, tmp_path):
    from fpgagen.board import load_board
    from fpgagen.synth import flow

    _, acc = two_head
    io = stream_geometry(acc.net)
    flow.testbench_check(acc.hls_dir, lambda m: None)  # g++: every byte of every frame, TLAST on the last word
    top_h = (acc.hls_dir / "top.h").read_text()
    assert f"_OUT_WORDS = {io.out_words}," in top_h and io.out_words == io.segment_words(0) + io.segment_words(1)
    bd = flow.render_block_design(tmp_path, codegen.top_name(acc.net), io, load_board("pynq_z2"), "ip")
    text = bd.read_text()
    assert f"out {io.out_frame_bytes:,} bytes per frame" in text
    word_bytes = io.out_axi_bits // 8
    assert (f"2 outputs, one segment each ({io.segment_words(0) * word_bytes:,} + "
            f"{io.segment_words(1) * word_bytes:,} bytes)") in text


def test_runtime_backends_pass_tuples(two_head, tmp_path, monkeypatch):
    import sys

    from runtime_nets import fake_pynq

    from fpgagen.runtime.backends import CSimBackend, PynqBackend, ReferenceBackend, runtime_spec, write_runtime_spec

    model, acc = two_head
    spec = runtime_spec(acc)
    assert spec["output_shapes"] == [[16, 16, 4], [8, 8, 5]] and spec["outputs_signed"] == [True, True]
    assert spec["output_quant"] is None  # the single-output decoders refuse it
    assert spec["out_frame_bytes"] == stream_geometry(acc.net).out_frame_bytes
    frames = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    want = ReferenceBackend(acc).infer(frames)
    assert isinstance(want, tuple) and len(want) == 2
    same = lambda got: isinstance(got, tuple) and all(  # noqa: E731
        np.array_equal(u, v) for u, v in zip(got, want, strict=True))
    assert same(CSimBackend(acc).infer(frames))
    # the board: one DMA transfer per frame carries both outputs (a stand-in pynq whose DMA runs the C-sim),
    # from the accelerator and from a deploy directory with runtime.json only
    (tmp_path / "design.bit").write_bytes(b"bit")
    monkeypatch.setitem(sys.modules, "pynq", fake_pynq(acc.lib))
    assert same(PynqBackend(acc, bitstream=tmp_path / "design.bit").infer(frames))
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    write_runtime_spec(acc).rename(deploy / "runtime.json")
    assert same(PynqBackend(deploy, bitstream=tmp_path / "design.bit").infer(frames))


# ------------------------------------------------------------------- outputs of different element widths

class MixedHeads(nn.Module):
    """A 9x9 input (odd element counts): a UINT4 ReLU head of 3 channels (243 codes, 972 bits: 30.4 AXI words)
    and an INT8 hardtanh head of 5 channels behind a 3x3 maxpool (45 codes)."""

    def __init__(self):
        super().__init__()
        self.input_quant = QuantIdentity(act_quant=PixelQuant)
        self.stem = nn.Sequential(nets._conv(3, 8, 4), nn.BatchNorm2d(8), nets._relu(4))
        self.head_a = nn.Sequential(nets._conv(8, 3, 4, k=1, bias=True), nets._relu(4, max_val=1.5))
        self.head_b = nn.Sequential(nn.MaxPool2d(3, 3), nets._conv(8, 5, 4, bias=True), GN._hardtanh(8))

    def forward(self, x):
        s = self.stem(self.input_quant(x))
        return self.head_a(s), self.head_b(s)


def mixed_heads(seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = MixedHeads().eval()
    model.input_shape = (1, 3, 9, 9)
    return GN.random_init(model, seed)


def test_outputs_of_different_widths_share_one_frame(tmp_path, quiet):
    model = mixed_heads(seed=1)
    # the cheapest design at a modest rate keeps one element per output word, so both segments fit a 32-bit port
    # (the fastest design's widths follow the cycle model's pipeline depths on a net this small)
    acc = _build(model, tmp_path, quiet, name="mixed", target_fps=20_000)
    io = stream_geometry(acc.net)
    assert [(s.bits, s.elems) for s in io.segments] == [(4, 243), (8, 45)] and io.out_axi_bits == 32
    assert [acc.net.outputs[k].dtype.name for k in range(2)] == ["UINT4", "INT8"]
    assert (io.segment_words(0), io.segment_words(1)) == (31, 12)  # 972 bits -> 31 words; 360 bits -> 12
    _assert_outputs_bitexact(model, acc, seed=2)
    acc.verify(frames=2, bounded_fifos=True)
    # the raw bytes the accelerator sends: each segment's padding bits are zero, segment 1 starts at word 31
    codes = acc.random_stream_input(2, seed=3)
    raw = acc.lib.run(packing.frames_to_bytes(codes, io))
    ref = acc.reference_stream(codes)
    assert raw.shape == (2, 43 * 4)
    assert np.array_equal(raw, packing.output_frames_to_bytes(ref, io))
    assert not raw[:, 243 // 2 + 1: 124].any() and not raw[:, 124 + 45: 172].any()
    assert np.array_equal(raw[:, 124: 124 + 45].view(np.int8).astype(np.int64), ref[1].reshape(2, -1))
    low, high = raw[:, :122] & 0xF, raw[:, :122] >> 4
    assert np.array_equal(np.stack([low, high], -1).reshape(2, -1)[:, :243], ref[0].reshape(2, -1))


# ----------------------------------------------------------------------------------------------- packing

def _geometry(axi=32):
    return StreamGeometry(in_word=1, in_bits=8, in_elems=4, in_axi_bits=32, out_word=3, out_bits=4, out_elems=3,
                          out_axi_bits=axi, extra_outputs=(Segment(word=1, bits=8, elems=2),))


def test_multi_segment_frame_layout_by_hand():
    io = _geometry()
    out = packing.output_frames_to_bytes([np.array([[1, 2, 3]]), np.array([[-1, 5]])], io)
    # UINT4 1, 2, 3 -> 0x21 0x03, padded to a word; INT8 -1, 5 -> 0xff 0x05, padded; TLAST on word 1
    assert out.tolist() == [[0x21, 0x03, 0, 0, 0xFF, 0x05, 0, 0]]
    assert (io.out_words, io.out_frame_bytes, io.segment_offset(1)) == (2, 8, 4)
    back = packing.bytes_to_output_frames(out, io, [(1, 1, 3), (1, 1, 2)], [False, True])
    assert back[0].ravel().tolist() == [1, 2, 3] and back[1].ravel().tolist() == [-1, 5]
    wide = _geometry(axi=64)  # a 64-bit port: each segment pads to 8 bytes
    assert packing.output_frames_to_bytes([np.array([[1, 2, 3]]), np.array([[-1, 5]])], wide).tolist() == \
        [[0x21, 0x03, 0, 0, 0, 0, 0, 0, 0xFF, 0x05, 0, 0, 0, 0, 0, 0]]


@pytest.mark.parametrize("bits,signed", [(3, False), (5, True), (8, True), (13, True), (16, False)])
def test_multi_segment_round_trip(bits, signed):
    rng = np.random.default_rng(bits)
    io = StreamGeometry(1, 8, 1, 32, 1, bits, 37, 64, extra_outputs=(Segment(2, 4, 10), Segment(1, 7, 3)))
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    outs = [rng.integers(lo, hi + 1, (4, 1, 1, 37)), rng.integers(0, 16, (4, 1, 1, 10)),
            rng.integers(-64, 64, (4, 1, 1, 3))]
    data = packing.output_frames_to_bytes(outs, io)
    assert data.shape == (4, io.out_frame_bytes) and io.out_words == -(-37 * bits // 64) + 1 + 1
    back = packing.bytes_to_output_frames(data, io, [(1, 1, 37), (1, 1, 10), (1, 1, 3)], [signed, False, True])
    assert all(np.array_equal(a, b) for a, b in zip(outs, back, strict=True))
    assert StreamGeometry.from_dict(json.loads(json.dumps(io.to_dict()))) == io


def test_one_output_frame_is_unchanged():
    """A one-output geometry has no extra segments and the bytes of the one-segment layout."""
    io = StreamGeometry(1, 8, 4, 32, 2, 5, 6, 32)
    assert "extra_outputs" not in io.to_dict() and StreamGeometry.from_dict(io.to_dict()) == io
    codes = np.arange(6).reshape(1, 1, 1, 6)
    assert np.array_equal(packing.output_frames_to_bytes(codes, io), packing.pack_elements(codes.reshape(1, 6), 5, 4))
    assert io.out_words == 1 and io.out_adapter_cycles == max(1, 3) + 1


# ------------------------------------------------------------------------------ a tuple of QuantTensors

class QuantTensorHeads(nn.Module):
    """Two heads that return QuantTensors: the legacy exporter writes 12 graph outputs (value, scale, zero point,
    bit width, signed, training per head); the values are the two output streams."""

    def __init__(self):
        super().__init__()
        self.input_quant = QuantIdentity(act_quant=PixelQuant)
        self.stem = nn.Sequential(nets._conv(3, 8, 4), nn.BatchNorm2d(8), nets._relu(4))
        self.head_a = nn.Sequential(nets._conv(8, 4, 4, k=1, bias=True),
                                    QuantHardTanh(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=8,
                                                  min_val=-1.0, max_val=1.0, return_quant_tensor=True))
        self.head_b = nn.Sequential(nn.MaxPool2d(2, 2), nets._conv(8, 6, 4, bias=True),
                                    QuantIdentity(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=6,
                                                  min_val=-2.0, max_val=2.0, return_quant_tensor=True))

    def forward(self, x):
        s = self.stem(self.input_quant(x))
        return self.head_a(s), self.head_b(s)


def test_a_tuple_of_quant_tensors_gives_two_streams(tmp_path, quiet):
    model = GN.build_net(QuantTensorHeads, 5, shape=(1, 3, 12, 12))
    path = fpgagen.export(model, tmp_path / "qt.onnx", dynamo=False)
    assert len(onnx.load(str(path)).graph.output) == 12
    acc = fpgagen.build(path, out_dir=tmp_path / "build", log=quiet)
    assert [o.dtype.name for o in acc.net.outputs] == ["INT8", "INT6"]
    _assert_outputs_bitexact(model, acc, seed=6, frames=2)


def test_csim_command_writes_every_output(two_head, tmp_path, capsys):
    from fpgagen.cli import main

    model, acc = two_head
    x = nets.net_input(model, 7, shape=(2, *model.input_shape[1:]))
    np.save(tmp_path / "x.npy", x)
    assert main(["csim", str(acc.build_dir), "--input", str(tmp_path / "x.npy"), "--output",
                 str(tmp_path / "y.npy"), "--codes"]) == 0
    with np.load(tmp_path / "y.npz") as saved:
        assert sorted(saved.files) == ["output0", "output1"]
        got = acc.run(x, codes=True)
        assert np.array_equal(saved["output0"], got[0]) and np.array_equal(saved["output1"], got[1])
    assert "output1 [2, 5, 8, 8]" in capsys.readouterr().out


class AccumulatorHead(nn.Module):
    """A UINT4 head and a head that ends in a conv with no quantizer after it: its output is the raw integer
    accumulator (an odd, signed element width), 5x5x5 = 125 elements after a maxpool."""

    def __init__(self):
        super().__init__()
        self.input_quant = QuantIdentity(act_quant=PixelQuant)
        self.stem = nn.Sequential(nets._conv(3, 8, 4), nn.BatchNorm2d(8), nets._relu(4))
        self.head_a = nn.Sequential(nets._conv(8, 3, 4, k=1, bias=True), nets._relu(4, max_val=1.5))
        self.head_b = nn.Sequential(nn.MaxPool2d(2, 2), nets._conv(8, 5, 4))

    def forward(self, x):
        s = self.stem(self.input_quant(x))
        return self.head_a(s), self.head_b(s)


def test_a_raw_accumulator_output_beside_a_quantized_one(tmp_path, quiet):
    model = GN.build_net(AccumulatorHead, 4, shape=(1, 3, 10, 10))
    acc = _build(model, tmp_path, quiet, name="acc_head")
    a, b = acc.net.outputs
    assert (a.kind, a.dtype.name, b.kind) == ("codes", "UINT4", "accumulators")
    io = stream_geometry(acc.net)
    assert io.segments[1].elems == 125 and io.segments[1].bits not in (8, 16, 32)  # an odd signed width
    x = nets.net_input(model, 8, shape=(2, 3, 10, 10))
    got = acc.run(x, codes=True)
    assert all(np.array_equal(r, g) for r, g in zip(acc.reference(x, codes=True), got, strict=True))
    # the accumulators, recomputed from Brevitas' integer weights and the stem's exact codes: sum(w * q)
    log = GN.graph_exact_codes(model, x, all_layers=True)  # (codes, t, scale) per activation call
    stem = torch.from_numpy(log[1][0].astype(np.float64))
    pooled = nn.functional.max_pool2d(stem, 2)
    conv = model.head_b[1]
    with torch.no_grad():
        weights = conv.quant_weight().int().double()
    want = nn.functional.conv2d(pooled, weights, padding=1).numpy()
    assert np.array_equal(got[1], want.astype(np.int64)) and len(np.unique(want)) > 10
    assert np.array_equal(got[0], log[2][0])
    acc.verify(frames=2, bounded_fifos=True)
