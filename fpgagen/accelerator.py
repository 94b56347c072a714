"""The user-facing pipeline: ``build`` (ONNX -> verified HLS project) and ``Accelerator`` (run it)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import codegen, fold, frontend, packing, reference, streamline
from .board import load_board
from .csim import CSimLibrary, compile_library, log_stderr
from .errors import CSimError, FpgagenError
from .ir import Network
from .quant import IntRange, quantize
from .report import write_reports


class Accelerator:
    """A built accelerator: the IR, its generated HLS project and the C-simulation of that project.

    ``run(x)`` and ``reference(x)`` take the float input the torch model takes (NCHW or NC) and return what the
    torch model returns, dequantized the same way; with ``codes=True`` they return the integer output codes.
    """

    def __init__(self, net: Network, build_dir: Path, board: dict, log=log_stderr):
        self.net, self.build_dir, self.board, self.log = net, Path(build_dir), board, log
        self._lib: CSimLibrary | None = None
        self._bounded_lib: CSimLibrary | None = None

    @property
    def hls_dir(self) -> Path:
        return self.build_dir / "hls"

    @property
    def lib(self) -> CSimLibrary:
        if self._lib is None:
            self._lib = CSimLibrary(compile_library(self.hls_dir, log=self.log))
        return self._lib

    @property
    def bounded_lib(self) -> CSimLibrary:
        """The C-simulation with every stream bounded to its FIFO depth, one thread per DATAFLOW process."""
        if self._bounded_lib is None:
            path = compile_library(self.hls_dir, log=self.log, bounded_fifos=True)
            self._bounded_lib = CSimLibrary(path, bounded_fifos=True)
        return self._bounded_lib

    # --- host-side quantization and layout ----------------------------------------------------------------
    def quantize_input(self, x) -> np.ndarray:
        """Float input (torch layout) -> integer codes as streamed: (N, H, W, C)."""
        spec = self.net.input
        x = np.asarray(x, np.float32)
        if x.shape[1:] != tuple(spec.shape[1:]):
            raise FpgagenError(f"input of shape {list(x.shape)}", f"network {self.net.name}",
                               f"pass an array of shape [N, {', '.join(map(str, spec.shape[1:]))}]")
        scale, zero = spec.scale, spec.zero_point
        if x.ndim == 4 and scale.ndim >= 1 and scale.size > 1:
            scale, zero = scale.reshape(1, -1, 1, 1), np.asarray(zero).reshape(1, -1, 1, 1)
        codes = quantize(x, scale, zero, IntRange(spec.lo, spec.hi))
        return self._to_stream(codes)

    def _to_stream(self, codes: np.ndarray) -> np.ndarray:
        if codes.ndim == 4:
            return codes.transpose(0, 2, 3, 1)
        return codes.reshape(codes.shape[0], 1, 1, -1)

    def _from_stream(self, out: np.ndarray) -> np.ndarray:
        shape = self.net.output.shape
        if len(shape) == 4:
            return out.transpose(0, 3, 1, 2)
        return out.reshape(out.shape[0], *shape[1:])

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        """Output codes (torch layout) -> what the torch model returns."""
        spec = self.net.output
        axis_shape = (1, -1) + (1,) * (codes.ndim - 2)
        scale = np.asarray(spec.scale).reshape(axis_shape) if np.size(spec.scale) > 1 else spec.scale
        offset = np.asarray(spec.offset).reshape(axis_shape) if np.size(spec.offset) > 1 else spec.offset
        if spec.kind == "codes":  # brevitas: (q - zero_point) * scale in float32
            return ((codes.astype(np.float32) - np.float32(offset)) * np.float32(scale)).astype(np.float32)
        return (codes * np.asarray(scale, np.float64) + np.asarray(offset, np.float64)).astype(np.float32)

    # --- execution ----------------------------------------------------------------------------------------
    def run_stream(self, codes: np.ndarray, bounded_fifos: bool = False) -> np.ndarray:
        """Stream codes (N, H, W, C) through the C-simulated accelerator; returns output stream codes."""
        last = self.net.layers[-1]
        geometry = codegen.stream_geometry(self.net)
        out = (self.bounded_lib if bounded_fifos else self.lib).run(packing.frames_to_bytes(codes, geometry))
        return packing.bytes_to_frames(out, geometry, last.out_shape, last.odt.signed())

    def reference_stream(self, codes: np.ndarray) -> np.ndarray:
        return reference.run_network(self.net, codes)

    def run(self, x, codes: bool = False) -> np.ndarray:
        out = self._from_stream(self.run_stream(self.quantize_input(x)))
        return out if codes else self.dequantize(out)

    def reference(self, x, codes: bool = False) -> np.ndarray:
        out = self._from_stream(self.reference_stream(self.quantize_input(x)))
        return out if codes else self.dequantize(out)

    def random_stream_input(self, frames: int, seed: int = 0) -> np.ndarray:
        spec = self.net.input
        rng = np.random.default_rng(seed)
        return rng.integers(spec.lo, spec.hi + 1, size=(frames, *self.net.in_stream_shape))

    def verify(self, frames: int = 2, seed: int = 0, bounded_fifos: bool = False) -> None:
        """C-sim == numpy reference on random input codes (np.array_equal); writes the HLS testbench vectors.
        With ``bounded_fifos`` the C-sim runs every process concurrently on streams bounded to their depths."""
        codes = self.random_stream_input(frames, seed)
        got, want = self.run_stream(codes, bounded_fifos), self.reference_stream(codes)
        if not np.array_equal(got, want):
            bad = np.argwhere(got != want)
            raise CSimError(f"C-simulation differs from the numpy reference in {len(bad)} of {got.size} outputs "
                            f"(first at frame/y/x/c {bad[0].tolist()}: {got[tuple(bad[0])]} != "
                            f"{want[tuple(bad[0])]})", str(self.hls_dir), "this is an fpgagen bug; please report it")
        geometry = codegen.stream_geometry(self.net)
        packing.frames_to_bytes(codes, geometry).tofile(self.hls_dir / "tb_input.bin")
        packing.output_frames_to_bytes(want, geometry).tofile(self.hls_dir / "tb_expected.bin")


def build(model: str | Path, board: str = "pynq_z2", out_dir: str | Path | None = None,
          folding: dict | str | Path | None = None, target_fps: float | None = None, verify: bool = True,
          log=log_stderr, optimizer: str = "ilp", ceilings: dict | None = None) -> Accelerator:
    """QONNX file -> integer dataflow IR -> folded -> HLS C++ -> C-sim library, verified bit-exact against the
    numpy reference. Returns the :class:`Accelerator`.

    Folding: ``folding`` (a user's, validated) if given; else ``optimizer="ilp"`` (default): the fastest design
    within the board budget (``ceilings``: utilization fractions, default LUT 0.8, BRAM18 0.9, DSP 0.9), or the
    cheapest that reaches ``target_fps``; ``optimizer="greedy"``: the FINN-style baseline at ``target_fps``."""
    model = Path(model)
    board_cfg = load_board(board)
    out_dir = Path(out_dir) if out_dir is not None else Path("build") / model.stem
    t0 = time.perf_counter()

    def step(msg: str) -> None:
        log(f"[fpgagen {time.perf_counter() - t0:6.1f}s] {msg}")

    step(f"loading {model}")
    qmodel = frontend.load_qonnx(model)
    step("streamlining to integer layers")
    net = streamline.lower(qmodel, name=codegen.c_identifier(model.stem))
    if folding is not None:
        step("applying the given folding")
        folding = fold.load_folding(folding) if isinstance(folding, str | Path) else folding
    else:
        goal = f"target {target_fps:g} FPS" if target_fps else "maximum FPS"
        step(f"folding ({optimizer}, {goal} at {board_cfg['clock_mhz']} MHz within the {board} budget)")
    fold_info = fold.fold_network(net, board_cfg, folding=folding, target_fps=target_fps, optimizer=optimizer,
                                  ceilings=ceilings, log=log)
    step(f"generating HLS C++ in {out_dir / 'hls'}")
    out_dir.mkdir(parents=True, exist_ok=True)
    codegen.generate(net, out_dir / "hls", board_cfg, source=model.name)
    net.save(out_dir)
    (out_dir / "folding.json").write_text(json.dumps(fold.folding_of(net), indent=1))
    (out_dir / "build.json").write_text(json.dumps({"board": board, "model": str(model)}, indent=1))
    doc = write_reports(net, board_cfg, out_dir, fold_info, ceilings)
    acc = Accelerator(net, out_dir, board_cfg, log=log)
    if verify:
        step("compiling the C-simulation")
        acc.lib  # noqa: B018 - compile (or fetch from cache) now, so the timing shows up in the log
        step("verifying C-sim == numpy reference on random frames")
        acc.verify()
    step(f"done: {len(net.layers)} layers, {doc['fps_estimated']:.1f} FPS estimated "
         f"(bottleneck {doc['bottleneck']}), reports in {out_dir}")
    return acc


def load(build_dir: str | Path, log=log_stderr) -> Accelerator:
    """Reopen a built accelerator without rebuilding it (the C-sim library comes from the cache)."""
    build_dir = Path(build_dir)
    net = Network.load(build_dir)
    try:
        board = json.loads((build_dir / "build.json").read_text())["board"]
    except (OSError, ValueError, KeyError):
        raise FpgagenError("build.json is missing or damaged", str(build_dir), "rebuild with 'fpgagen build'") \
            from None
    return Accelerator(net, build_dir, load_board(board), log=log)
