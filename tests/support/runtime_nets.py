"""A tiny face-detector-shaped network for the runtime tests: uint8 64x64x3 in (the pixel is the input code),
stride 32, one anchor -> a 2x2x6 QuantHardTanh head. It builds in seconds, so the pipeline and protocol tests
do not wait on the full LPYOLO."""

from __future__ import annotations

import types

import nets
import numpy as np
import torch
from brevitas.nn import QuantConv2d, QuantHardTanh, QuantIdentity, QuantReLU
from brevitas.quant import Int8ActPerTensorFloatMinMaxInit, Uint8ActPerTensorFloatMaxInit
from torch import nn

from fpgagen.models import PixelQuant

TINY_SIZE = 64
TINY_ANCHORS = [[20.0, 24.0]]


def tiny_detector_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        QuantIdentity(act_quant=PixelQuant, return_quant_tensor=True),
        QuantConv2d(3, 4, 3, padding=1, bias=False, weight_bit_width=8), nn.BatchNorm2d(4),
        QuantReLU(act_quant=Uint8ActPerTensorFloatMaxInit, bit_width=4, max_val=4.0, return_quant_tensor=True),
        nn.MaxPool2d(4, 4), nn.MaxPool2d(8, 8),
        QuantConv2d(4, 6, 1, bias=True, weight_bit_width=4),
        QuantHardTanh(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=8, min_val=-1.0, max_val=1.0))
    model.input_shape = (1, 3, TINY_SIZE, TINY_SIZE)
    model = nets.randomize_bn(model.eval(), seed, out_std=0.5, shape=(1, 3, TINY_SIZE, TINY_SIZE))
    with torch.no_grad():
        model[6].bias[4] += 1.4  # objectness mostly above 1/2: every frame has a few boxes for NMS and the stream
    return model


def build_tiny(out_dir, seed: int = 0):
    """Export and build the tiny detector (C-sim compiled and verified, cached by content), with detector.json."""
    import fpgagen
    from fpgagen.runtime.model import write_detector_json

    onnx = fpgagen.export(tiny_detector_net(seed), out_dir / "tiny.onnx")
    acc = fpgagen.build(onnx, board="pynq_z2", out_dir=out_dir / "build", log=lambda m: None)
    write_detector_json(acc.build_dir, TINY_ANCHORS, TINY_SIZE, source="tests/support/runtime_nets.py")
    return acc


def moving_frames(n: int, size=(120, 160), seed: int = 0):
    """``n`` uint8 RGB frames of a bright square moving over noise: every frame differs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    h, w = size
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    frames = []
    for i in range(n):
        img = base.copy()
        x = (7 * i) % (w - 30)
        img[20:50, x:x + 30] = (255, 220, 180)
        frames.append(img)
    return frames


class _FakeBuffer(np.ndarray):
    synced: list

    def flush(self):
        self.synced.append("flush")

    def invalidate(self):
        self.synced.append("invalidate")

    def freebuffer(self):
        self.synced.append("free")


def fake_pynq(lib):
    """A stand-in for the board's pynq package: the DMA hands the bytes it is sent to the C-simulation bridge,
    so this checks the exact bytes the board's DMA would carry, both ways."""
    mod = types.ModuleType("pynq")
    mod.sent, mod.overlays, synced = [], [], []

    def allocate(shape, dtype):
        buf = np.zeros(shape, dtype).view(_FakeBuffer)
        buf.synced = synced
        return buf

    class Channel:  # a transfer carries whole frames; the receive side gets them all and their byte count
        def __init__(self, dma, send):
            self.dma, self.send, self.buffer, self.transferred = dma, send, None, 0

        def transfer(self, buffer, nbytes=0):
            self.buffer = buffer
            if self.send:
                data = np.array(buffer[: nbytes or len(buffer)])
                mod.sent.append(data)
                self.dma.results.append(lib.run(data.reshape(-1, lib.in_frame_bytes)).reshape(-1))

        def wait(self):
            if not self.send:
                result = self.dma.results.pop(0)
                self.buffer[: len(result)] = result
                self.transferred = len(result)

    class DMA:
        def __init__(self):
            self.sendchannel, self.recvchannel, self.results = Channel(self, True), Channel(self, False), []

    class Overlay:
        def __init__(self, path):
            self.path = path
            self.ip_dict = {"accel_0": {"type": "xilinx.com:hls:top:1.0"},
                            "axi_dma_0": {"type": "xilinx.com:ip:axi_dma:7.1"}}
            self.axi_dma_0, self.accel_0 = DMA(), object()
            mod.overlays.append(self)

    mod.allocate, mod.Overlay, mod.synced = allocate, Overlay, synced
    return mod
