"""Inference backends behind one interface: ``infer(uint8 frames (N, H, W, C)) -> integer output codes (N, h, w, c)``.

* ``pynq``: the bitstream on a PYNQ board: Overlay, ``allocate``d buffers, AXI DMA send and receive;
* ``csim``: the generated HLS C++ compiled with g++ and called through ctypes;
* ``reference``: the integer numpy model of the IR.

Frames and codes stay in the accelerator's stream order (NHWC). When the input quantizer's code is the uint8 pixel
(``Accelerator.pixels_are_codes``), the frames go in as they are: no float conversion, no transpose. The pynq and
csim backends exchange exactly the bytes made by :mod:`fpgagen.packing` with the stream geometry of
:func:`fpgagen.codegen.stream_geometry`, so the C-simulation covers the bytes the board receives.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..errors import FpgagenError

BACKENDS = ("csim", "reference", "pynq")


class Backend:
    """The common part: shapes, the output quantizer, input checks and the input conversion when needed."""

    name = "backend"

    def __init__(self, acc):
        self.acc = acc
        net = acc.net
        self.input_shape = tuple(net.in_stream_shape)  # (H, W, C)
        self.output_shape = tuple(net.out_stream_shape)
        self.pixels_are_codes = acc.pixels_are_codes
        spec = net.output
        scale = np.unique(np.asarray(spec.scale, np.float64))
        zero = np.unique(np.asarray(spec.offset, np.float64))
        # (scale, zero point) of a per-tensor output quantizer, the integer decode's input; None otherwise
        self.output_quant = (float(scale[0]), float(zero[0])) \
            if spec.kind == "codes" and scale.size == 1 and zero.size == 1 else None

    def check_frames(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.shape[1:] != self.input_shape:
            raise FpgagenError(f"frames of shape {list(frames.shape)} and type {frames.dtype}",
                               f"the {self.name} backend of {self.acc.net.name}",
                               f"pass uint8 frames of shape [N, {', '.join(map(str, self.input_shape))}] "
                               "(letterbox the image first)")
        return frames

    def input_codes(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames -> the input stream codes: the frames themselves when the pixel is the code."""
        if self.pixels_are_codes:
            return frames
        x = frames.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)  # a general input quantizer
        return self.acc.quantize_input(x)

    def infer(self, frames: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{self.name} backend {self.acc.net.name} {self.input_shape}->{self.output_shape}>"


class ReferenceBackend(Backend):
    name = "reference"

    def infer(self, frames: np.ndarray) -> np.ndarray:
        return self.acc.reference_stream(self.input_codes(self.check_frames(frames)))


class CSimBackend(Backend):
    name = "csim"

    def __init__(self, acc):
        super().__init__(acc)
        acc.lib  # noqa: B018 - compile (or fetch from the cache) now, not on the first frame

    def infer(self, frames: np.ndarray) -> np.ndarray:
        return self.acc.run_stream(self.input_codes(self.check_frames(frames)))


class PynqBackend(Backend):
    """The bitstream on the board. ``pynq`` is the board image's own package (PYNQ 3.x on a Z2), imported here
    and nowhere else, so the rest of fpgagen runs without it."""

    name = "pynq"

    def __init__(self, acc, bitstream: str | Path | None = None, dma: str | None = None):
        super().__init__(acc)
        try:
            import pynq
        except ImportError:
            raise FpgagenError("the pynq package is not installed", "--backend pynq",
                               "run on a PYNQ board (its image ships pynq), or use --backend csim") from None
        from .. import codegen, packing

        self._packing = packing
        self.geometry = codegen.stream_geometry(acc.net)
        last = acc.net.layers[-1]
        self._out_signed = last.odt.signed()
        bit = Path(bitstream) if bitstream else find_bitstream(acc.build_dir)
        self.overlay = pynq.Overlay(str(bit))
        self.dma = _find_dma(self.overlay, dma)
        # buffer sizes from the shared geometry and packing, never from widths assumed here
        in_bytes = packing.frames_to_bytes(np.zeros((1, *self.input_shape), np.uint8), self.geometry).shape[1]
        out_bytes = self.geometry.out_words * self.geometry.out_axi_bits // 8
        self.in_buffer = pynq.allocate(shape=(in_bytes,), dtype=np.uint8)
        self.out_buffer = pynq.allocate(shape=(out_bytes,), dtype=np.uint8)

    def infer(self, frames: np.ndarray) -> np.ndarray:
        data = self._packing.frames_to_bytes(self.input_codes(self.check_frames(frames)), self.geometry)
        out = np.empty((len(data), self.out_buffer.shape[0]), np.uint8)
        for i, frame in enumerate(data):
            self.in_buffer[:] = frame
            _sync(self.in_buffer, "flush")
            self.dma.recvchannel.transfer(self.out_buffer)  # arm the receive side before the data flows
            self.dma.sendchannel.transfer(self.in_buffer)
            self.dma.sendchannel.wait()
            self.dma.recvchannel.wait()
            _sync(self.out_buffer, "invalidate")
            out[i] = self.out_buffer
        return self._packing.bytes_to_frames(out, self.geometry, self.output_shape, self._out_signed)

    def close(self) -> None:
        for buf in (getattr(self, "in_buffer", None), getattr(self, "out_buffer", None)):
            if buf is not None and hasattr(buf, "freebuffer"):
                buf.freebuffer()


def _sync(buffer, what: str) -> None:
    fn = getattr(buffer, what, None)  # PYNQ's cacheable buffers; its transfer() also syncs, this is cheap
    if callable(fn):
        fn()


def find_bitstream(build_dir: Path) -> Path:
    """The .bit in a deploy/build directory (its .hwh must sit beside it, as pynq.Overlay reads both)."""
    bits = sorted(Path(build_dir).rglob("*.bit"))
    if not bits:
        raise FpgagenError("no bitstream (.bit) found", str(build_dir),
                           "copy the .bit and .hwh of the synthesized design there, or pass --bitstream")
    return bits[0]


def _find_dma(overlay, name: str | None):
    if name:
        return getattr(overlay, name)
    for ip, info in getattr(overlay, "ip_dict", {}).items():
        if "axi_dma" in str(info.get("type", "")):
            return getattr(overlay, ip)
    raise FpgagenError("no AXI DMA in the overlay", "pynq.Overlay.ip_dict", "pass --dma NAME (the DMA's name)")


def make_backend(kind: str, accelerator, **options) -> Backend:
    """``kind`` in BACKENDS; ``accelerator`` an :class:`fpgagen.Accelerator` or a build directory."""
    if not hasattr(accelerator, "net"):
        from ..accelerator import load

        accelerator = load(accelerator, log=options.pop("log", lambda m: None))
    options.pop("log", None)
    if kind == "csim":
        return CSimBackend(accelerator)
    if kind == "reference":
        return ReferenceBackend(accelerator)
    if kind == "pynq":
        return PynqBackend(accelerator, **options)
    raise FpgagenError(f"unknown backend '{kind}'", "--backend", f"choose one of {', '.join(BACKENDS)}")


def default_backend() -> str:
    """``pynq`` on a PYNQ board (its image has /home/xilinx and the pynq package), ``csim`` anywhere else."""
    import importlib.util

    on_board = Path("/home/xilinx").is_dir() and importlib.util.find_spec("pynq") is not None
    return "pynq" if on_board else "csim"


def estimated_fps(build_dir: str | Path) -> float | None:
    """The accelerator's estimated FPS from the cycle model (the build's report.json), if the build has one."""
    try:
        return float(json.loads((Path(build_dir) / "report.json").read_text())["fps_estimated"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def time_infer(backend: Backend, frames: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = backend.infer(frames)
    return out, time.perf_counter() - start
