"""Inference backends behind one interface: ``infer(uint8 frames (N, H, W, C)) -> integer output codes (N, h, w, c)``.

* ``pynq``: the bitstream on a PYNQ board: Overlay, ``allocate``d buffers, AXI DMA send and receive;
* ``csim``: the generated HLS C++ compiled with g++ and called through ctypes;
* ``reference``: the integer numpy model of the IR.

Frames and codes stay in the accelerator's stream order (NHWC). When the input quantizer's code is the uint8 pixel
(``Accelerator.pixels_are_codes``), the frames go in as they are: no float conversion, no transpose. The pynq and
csim backends exchange exactly the bytes made by :mod:`fpgagen.packing` with the stream geometry of
:func:`fpgagen.geometry.stream_geometry`, so the C-simulation covers the bytes the board receives.
"""

from __future__ import annotations

import dataclasses
import json
import time
import types
from pathlib import Path

import numpy as np

from ..errors import FpgagenError

BACKENDS = ("csim", "reference", "pynq")
RUNTIME_JSON = "runtime.json"


def runtime_spec(acc) -> dict:
    """What a backend needs to know about a built accelerator, from its IR through the shared functions
    (geometry.stream_geometry, packing). Saved as ``runtime.json``, it lets the board run the bitstream without
    the IR's dependencies (qonnx, onnx), which a PYNQ-Z2 image does not have."""
    from .. import packing
    from ..geometry import stream_geometry
    from ..ir import out_ports

    net = acc.net
    geometry = stream_geometry(net)
    fields = geometry.to_dict() if hasattr(geometry, "to_dict") else dataclasses.asdict(geometry)
    ports = [out_ports(layer)[port] for layer, port in net.output_ports()]
    quants = [_output_quant(spec) for spec in net.outputs]
    in_shape = tuple(int(v) for v in net.in_stream_shape)
    doc = {"format": 1, "name": net.name, "input_shape": list(in_shape),
           "output_shape": [int(v) for v in ports[0][0]], "pixels_are_codes": acc.pixels_are_codes,
           # the decoders (fpgagen.detect) take one output: none is offered for several
           "output_quant": quants[0] if len(quants) == 1 else None, "output_signed": bool(ports[0][1].signed()),
           "geometry": fields,
           "in_frame_bytes": int(packing.frames_to_bytes(np.zeros((1, *in_shape), np.uint8), geometry).shape[1]),
           "out_frame_bytes": _out_frame_bytes(geometry)}
    if net.input.preprocess:  # a --camera build: the fabric letterboxes the camera frame (the host sends it as is)
        doc["preprocess"] = dict(net.input.preprocess)
    from .dma import frames_per_transfer

    # what the block design's DMA length register is sized for (fpgagen.synth.flow); a deploy folder without it
    # (an older bitstream) gets one frame per transfer, which any of them holds
    doc["frames_per_transfer"] = frames_per_transfer(doc["in_frame_bytes"])
    if len(ports) > 1:  # several outputs: one stream each, one segment each of the output frame (packing)
        doc |= {"output_shapes": [[int(v) for v in shape] for shape, _, _ in ports],
                "outputs_signed": [bool(dt.signed()) for _, dt, _ in ports], "output_quants": quants}
    return doc


def _output_quant(spec) -> list[float] | None:
    """(scale, zero point) of a per-tensor output quantizer, the integer decode's input; None otherwise."""
    scale = np.unique(np.asarray(spec.scale, np.float64))
    zero = np.unique(np.asarray(spec.offset, np.float64))
    return [float(scale[0]), float(zero[0])] if spec.kind == "codes" and scale.size == 1 and zero.size == 1 else None


def _out_frame_bytes(geometry) -> int:
    if hasattr(geometry, "out_frame_bytes"):
        return int(geometry.out_frame_bytes)
    return int(geometry.out_words * geometry.out_axi_bits // 8)


def write_runtime_spec(acc) -> Path:
    path = Path(acc.build_dir) / RUNTIME_JSON
    path.write_text(json.dumps(runtime_spec(acc), indent=1))
    return path


def write_deploy_files(acc, deploy_dir: str | Path) -> list[Path]:
    """What the board's runtime reads beside the bitstream: runtime.json, and the build's detector.json (anchors)
    when it has one. ``fpgagen bitstream`` calls this for its deploy/ folder."""
    deploy_dir = Path(deploy_dir)
    deploy_dir.mkdir(parents=True, exist_ok=True)
    written = [deploy_dir / RUNTIME_JSON]
    written[0].write_text(json.dumps(runtime_spec(acc), indent=1))
    detector = Path(acc.build_dir) / "detector.json"
    if detector.is_file():
        written.append(deploy_dir / detector.name)
        written[-1].write_text(detector.read_text())
    return written


def read_runtime_spec(build_dir: str | Path) -> dict | None:
    try:
        spec = json.loads((Path(build_dir) / RUNTIME_JSON).read_text())
    except (OSError, ValueError):
        return None
    return spec if isinstance(spec, dict) and spec.get("format") == 1 else None


def geometry_from_spec(spec: dict):
    """The stream geometry saved in runtime.json, as the shared packing functions take it."""
    from .. import packing

    cls = getattr(packing, "StreamGeometry", None)
    if cls is not None and hasattr(cls, "from_dict"):
        return cls.from_dict(spec["geometry"])
    return types.SimpleNamespace(**spec["geometry"])


class Backend:
    """The common part: shapes, the output quantizer, input checks and the input conversion when needed."""

    name = "backend"

    def __init__(self, spec: dict, acc=None):
        self.spec, self.acc = spec, acc
        self.net_name = spec["name"]
        self.input_shape = tuple(spec["input_shape"])  # (H, W, C)
        self.output_shape = tuple(spec["output_shape"])
        self.pixels_are_codes = bool(spec["pixels_are_codes"])
        # a --camera build: the fabric letterboxes camera frames of input_shape into the network's square input
        self.preprocess = spec.get("preprocess")
        self.output_quant = tuple(spec["output_quant"]) if spec["output_quant"] is not None else None

    def check_frames(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.shape[1:] != self.input_shape:
            raise FpgagenError(f"frames of shape {list(frames.shape)} and type {frames.dtype}",
                               f"the {self.name} backend of {self.net_name}",
                               f"pass uint8 frames of shape [N, {', '.join(map(str, self.input_shape))}] "
                               + ("(camera frames: the fabric letterboxes them)" if self.preprocess else
                                  "(letterbox the image first)"))
        return frames

    def input_codes(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames -> the input stream codes: the frames themselves when the pixel is the code."""
        if self.pixels_are_codes:
            return frames
        if self.acc is None:
            raise FpgagenError("this accelerator's input quantizer does not take the uint8 pixel as its code",
                               self.net_name, "run from the build directory with fpgagen's full install (the IR "
                               "quantizes the input)")
        x = frames.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)  # a general input quantizer
        return self.acc.quantize_input(x)

    def infer(self, frames: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{self.name} backend {self.net_name} {self.input_shape}->{self.output_shape}>"


class ReferenceBackend(Backend):
    name = "reference"

    def __init__(self, acc):
        super().__init__(runtime_spec(acc), acc)

    def infer(self, frames: np.ndarray) -> np.ndarray:
        return self.acc.reference_stream(self.input_codes(self.check_frames(frames)))


class CSimBackend(Backend):
    name = "csim"

    def __init__(self, acc):
        super().__init__(runtime_spec(acc), acc)
        acc.lib  # noqa: B018 - compile (or fetch from the cache) now, not on the first frame

    def infer(self, frames: np.ndarray) -> np.ndarray:
        return self.acc.run_stream(self.input_codes(self.check_frames(frames)))


class PynqBackend(Backend):
    """The bitstream on the board. ``pynq`` is the board image's own package (PYNQ 3.x on a Z2), imported here
    and nowhere else, so the rest of fpgagen runs without it. Give it an :class:`fpgagen.Accelerator`, or a
    build/deploy directory with ``runtime.json`` (then neither the IR nor its dependencies are needed).

    Frames go through a :class:`fpgagen.runtime.dma.TransferRing`: up to ``frames_per_transfer`` frames per DMA
    transfer, two transfers in the fabric while the ARM fills the third buffer, every frame's status checked."""

    name = "pynq"

    def __init__(self, accelerator, bitstream: str | Path | None = None, dma: str | None = None,
                 frames_per_transfer: int | None = None):
        from .. import packing

        if hasattr(accelerator, "net"):
            from ..geometry import stream_geometry

            super().__init__(runtime_spec(accelerator), accelerator)
            self.geometry = stream_geometry(accelerator.net)
            build_dir = Path(accelerator.build_dir)
        else:
            build_dir = Path(accelerator)
            spec = read_runtime_spec(build_dir)
            if spec is None:
                raise FpgagenError(f"no {RUNTIME_JSON}", str(build_dir), "copy the build directory's runtime.json "
                                   "(written by 'fpgagen detect/serve' or fpgagen.runtime.write_runtime_spec)")
            super().__init__(spec)
            self.geometry = geometry_from_spec(spec)
        try:
            import pynq
        except ImportError:
            raise FpgagenError("the pynq package is not installed", "--backend pynq",
                               "run on a PYNQ board (its image ships pynq), or use --backend csim") from None
        self._packing = packing
        bit = Path(bitstream) if bitstream else find_bitstream(build_dir)
        self.overlay = pynq.Overlay(str(bit))
        self.dma = _find_dma(self.overlay, dma)
        from .dma import TransferRing

        k = frames_per_transfer or int(self.spec.get("frames_per_transfer", 1))
        self.ring = TransferRing(self.dma, pynq.allocate, self.spec["in_frame_bytes"], self.spec["out_frame_bytes"],
                                 k, status=getattr(self.overlay, "status_fifo", None))

    def frame_bytes(self, frames: np.ndarray) -> np.ndarray:
        """The DMA bytes of uint8 frames: the frames themselves (no copy) when the pixel is the code and the
        packing adds nothing, else the shared packing."""
        codes = self.input_codes(self.check_frames(frames))
        if (codes.dtype == np.uint8 and self.geometry.in_bits == 8
                and codes[0].size == self.spec["in_frame_bytes"]):
            return codes.reshape(len(codes), -1)
        return self._packing.frames_to_bytes(codes, self.geometry)

    def decode(self, out: np.ndarray):
        """Output bytes (N, out_frame_bytes) -> codes, as ``infer`` returns them."""
        if "output_shapes" not in self.spec:
            return output_codes(out, self.geometry, self.output_shape, self.spec["output_signed"])
        return tuple(self._packing.bytes_to_output_frames(out, self.geometry, self.spec["output_shapes"],
                                                          self.spec["outputs_signed"]))

    def infer_each(self, frames: np.ndarray) -> tuple[list, list]:
        """Per frame: its output bytes (or None) and its error (or None), in order; a faulty DMA transfer costs
        only its own frames."""
        done = self.ring.submit(self.frame_bytes(frames)) + self.ring.drain()
        return [d.data for d in done], [d.error for d in done]

    def infer(self, frames: np.ndarray) -> np.ndarray:
        data, errors = self.infer_each(frames)
        bad = [(i, e) for i, e in enumerate(errors) if e]
        if bad:
            raise FpgagenError(f"DMA transfer failed for frame(s) {', '.join(str(i) for i, _ in bad)}: {bad[0][1]}",
                               f"the {self.name} backend of {self.net_name}",
                               "check the bitstream matches runtime.json; the frames after them were not affected")
        return self.decode(np.stack(data))

    def close(self) -> None:
        ring = getattr(self, "ring", None)
        for buf in (ring.inputs + ring.outputs) if ring is not None else ():
            if hasattr(buf, "freebuffer"):
                buf.freebuffer()


def save_inputs(backend: Backend, path: str | Path, limit: int = 100) -> Backend:
    """Record what ``backend`` receives: after every ``infer`` that adds frames, the uint8 frames so far (the first
    ``limit``) are written to ``path`` (.npy, atomically), for ``fpgagen debug --deployed-input``."""
    path, frames, infer = Path(path), [], backend.infer

    def recording_infer(batch):
        room = max(0, limit - len(frames))
        if room:
            frames.extend(backend.check_frames(batch)[:room])
            tmp = path.with_name(f".{path.name}.tmp.npy")
            np.save(tmp, np.stack(frames))
            tmp.replace(path)
        return infer(batch)

    backend.infer = recording_infer
    return backend


def output_codes(out: np.ndarray, geometry, shape, signed: bool) -> np.ndarray:
    """One output's bytes (N, out_frame_bytes) -> codes (N, *shape) int64: packing.bytes_to_frames, with the
    per-frame fast path of 8-bit codes (the bytes reinterpreted, one widening pass)."""
    from .. import packing

    if geometry.out_bits != 8:
        return packing.bytes_to_frames(out, geometry, shape, signed)
    n, elems = out.shape[0], int(np.prod(shape))
    return out.reshape(n, -1)[:, :elems].view(np.int8 if signed else np.uint8).astype(np.int64).reshape(n, *shape)


def find_bitstream(build_dir: Path) -> Path:
    """The .bit in a deploy/build directory (its .hwh must sit beside it, as pynq.Overlay reads both)."""
    bits = sorted(Path(build_dir).rglob("*.bit"))
    if not bits:
        raise FpgagenError("no bitstream (.bit) found", str(build_dir),
                           "copy the .bit and .hwh of the synthesized design there, or pass --bitstream")
    return bits[0]


def _find_dma(overlay, name: str | None):
    ips = getattr(overlay, "ip_dict", {})
    if name:
        if name in ips or hasattr(overlay, name):
            return getattr(overlay, name)
        raise FpgagenError(f"no IP named '{name}' in the overlay (it has: {', '.join(ips) or 'none'})",
                           "PynqBackend(dma=...)", "pass the AXI DMA's name as the .hwh lists it")
    for ip, info in ips.items():
        if "axi_dma" in str(info.get("type", "")):
            return getattr(overlay, ip)
    raise FpgagenError(f"no AXI DMA in the overlay (its IPs: {', '.join(ips) or 'none'})",
                       str(getattr(overlay, "path", "the bitstream")),
                       "load the fpgagen.bit made by 'fpgagen bitstream' with its fpgagen.hwh beside it (the .hwh "
                       "tells pynq which IPs exist); another design's .bit has no fpgagen DMA")


def make_backend(kind: str, accelerator, **options) -> Backend:
    """``kind`` in BACKENDS; ``accelerator`` an :class:`fpgagen.Accelerator` or a build directory (for pynq, a
    directory with runtime.json is enough)."""
    log = options.pop("log", lambda m: None)
    if kind not in BACKENDS:
        raise FpgagenError(f"unknown backend '{kind}'", "--backend", f"choose one of {', '.join(BACKENDS)}")
    if kind == "pynq" and not hasattr(accelerator, "net") and read_runtime_spec(accelerator) is not None:
        return PynqBackend(accelerator, **options)
    if not hasattr(accelerator, "net"):
        from ..accelerator import load

        accelerator = load(accelerator, log=log)
        try:  # for the board: with these files a deploy directory runs without the IR
            write_runtime_spec(accelerator)
            if (Path(accelerator.build_dir) / "deploy").is_dir():
                write_deploy_files(accelerator, Path(accelerator.build_dir) / "deploy")
        except OSError:
            pass
    if kind == "csim":
        return CSimBackend(accelerator)
    if kind == "reference":
        return ReferenceBackend(accelerator)
    return PynqBackend(accelerator, **options)


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
