"""The user-facing pipeline: ``build`` (ONNX -> verified HLS project) and ``Accelerator`` (run it)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from . import builddir, codegen, fold, frontend, lint, packing, reference, streamline, validate
from .board import load_board
from .csim import CSimLibrary, compile_library, log_stderr
from .errors import CSimError, FpgagenError
from .geometry import stream_geometry
from .ir import Network, out_ports
from .quant import IntRange, quantize
from .report import write_reports


def input_takes_pixels(net: Network) -> bool:
    """Whether the network's input quantizer maps every uint8 pixel k (as the float k/255) to the code k, on a
    three-dimensional (H, W, C) input stream with no float pre-processing."""
    spec = net.input
    if (spec.lo, spec.hi) != (0, 255) or len(net.in_stream_shape) != 3 or spec.pre or spec.bipolar:
        return False
    pixels = np.arange(256, dtype=np.float32) / np.float32(255)
    scale, zero = np.asarray(spec.scale, np.float32).reshape(-1), np.asarray(spec.zero_point).reshape(-1)
    codes = quantize(pixels[:, None], scale[None, :], zero[None, :], IntRange(spec.lo, spec.hi))
    return bool(np.array_equal(codes, np.broadcast_to(np.arange(256)[:, None], codes.shape)))


def add_camera(net: Network, camera: tuple[int, int, bool], where: str) -> None:
    """``--camera``: the letterbox in the fabric, in front of a network whose input code is the uint8 pixel."""
    from .data.transforms import PAD_VALUE
    from .ir.kinds.letterbox import put_camera_in_front

    if not input_takes_pixels(net):
        raise FpgagenError("the network's input code is not the uint8 pixel (its input quantizer does not map "
                           "pixel k, fed as k/255, to code k, or float ops run before it)", where,
                           "give the model an 8-bit unsigned input quantizer of scale 1/255 and zero point 0 "
                           "(e.g. brevitas QuantIdentity with a uint8 scale-1/255 quantizer, as LPYOLO's), "
                           "or build without --camera and letterbox on the host")
    w, h, swap = camera
    put_camera_in_front(net, (w, h), swap, PAD_VALUE)


class Accelerator:
    """A built accelerator: the IR, its generated HLS project and the C-simulation of that project.

    ``run(x)`` and ``reference(x)`` take the float input the torch model takes (NCHW or NC) and return what the
    torch model returns, dequantized the same way; with ``codes=True`` they return the integer output codes. A
    network with several outputs returns a tuple of them, in the torch model's order (one DMA transfer carries
    them all, see fpgagen/packing.py); ``run_stream``/``reference_stream`` then return a tuple of stream codes.
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
        """Float input (torch layout) -> integer codes as streamed: (N, H, W, C). Runs the graph's float
        pre-processing first (see InputSpec). A --camera build takes uint8 camera frames (N, H, W, 3) instead."""
        spec = self.net.input
        if spec.preprocess:  # a --camera build: uint8 camera frames are the stream, the fabric letterboxes them
            return validate.check_camera_frames(x, self.camera, f"network {self.net.name}")
        x = validate.check_input_array(x, spec.shape, f"network {self.net.name}").astype(np.float32)
        return self._to_stream(spec.codes(x))

    @property
    def pixels_are_codes(self) -> bool:
        """True when the input quantizer maps every uint8 pixel k (as the float k/255) to the code k: then the
        host streams the pixel bytes as they are (no float conversion, no transpose of NHWC frames)."""
        return input_takes_pixels(self.net)

    @property
    def camera(self) -> tuple[int, int] | None:
        """(W, H) of the camera frames a --camera build takes (the letterbox is in the fabric), else None."""
        pre = self.net.input.preprocess
        return tuple(pre["camera"]) if pre else None

    def _to_stream(self, codes: np.ndarray) -> np.ndarray:
        if codes.ndim == 4:
            return codes.transpose(0, 2, 3, 1)
        return codes.reshape(codes.shape[0], 1, 1, -1)

    def _from_stream(self, out, k: int = 0) -> np.ndarray:
        """Output k's stream codes (N, H, W, C) -> torch layout; a tuple of every output's -> a tuple."""
        if isinstance(out, tuple):
            return tuple(self._from_stream(o, k) for k, o in enumerate(out))
        shape = self.net.outputs[k].shape
        if len(shape) == 4:
            return out.transpose(0, 3, 1, 2)
        return out.reshape(out.shape[0], *shape[1:])

    def dequantize(self, codes):
        """Output integers (torch layout) -> what the torch model returns (float post-processing included); a
        tuple of every output's integers -> a tuple of values."""
        if isinstance(codes, tuple):
            return tuple(spec.dequantize(c) for spec, c in zip(self.net.outputs, codes, strict=True))
        return self.net.output.dequantize(codes)

    # --- execution ----------------------------------------------------------------------------------------
    def run_stream(self, codes: np.ndarray, bounded_fifos: bool = False):
        """Stream codes (N, H, W, C) through the C-simulated accelerator; returns output stream codes (a tuple of
        them, one per output, when there are several)."""
        ports = [out_ports(layer)[port] for layer, port in self.net.output_ports()]
        geometry = stream_geometry(self.net)
        out = (self.bounded_lib if bounded_fifos else self.lib).run(packing.frames_to_bytes(codes, geometry))
        outs = packing.bytes_to_output_frames(out, geometry, [shape for shape, _, _ in ports],
                                              [dt.signed() for _, dt, _ in ports])
        return outs[0] if len(outs) == 1 else tuple(outs)

    def reference_stream(self, codes: np.ndarray) -> np.ndarray:
        return reference.run_network(self.net, codes)

    def run(self, x, codes: bool = False):
        out = self._from_stream(self.run_stream(self.quantize_input(x)))
        return out if codes else self.dequantize(out)

    def reference(self, x, codes: bool = False):
        out = self._from_stream(self.reference_stream(self.quantize_input(x)))
        return out if codes else self.dequantize(out)

    def random_stream_input(self, frames: int, seed: int = 0) -> np.ndarray:
        spec = self.net.input
        rng = np.random.default_rng(seed)
        return rng.integers(spec.lo, spec.hi + 1, size=(frames, *self.net.in_stream_shape))

    def verify(self, frames: int = codegen.TESTBENCH_FRAMES, seed: int = 0, bounded_fifos: bool = False) -> None:
        """C-sim == numpy reference on random input codes (np.array_equal); writes the HLS testbench vectors.
        With ``bounded_fifos`` the C-sim runs every process concurrently on streams bounded to their depths."""
        codes = self.random_stream_input(frames, seed)
        got, want = self.run_stream(codes, bounded_fifos), self.reference_stream(codes)
        several = isinstance(want, tuple)
        for k, (g, w) in enumerate(zip(*((got, want) if several else ((got,), (want,))), strict=True)):
            if not np.array_equal(g, w):
                bad = np.argwhere(g != w)
                which = f"output {k} " if several else ""
                raise CSimError(f"C-simulation differs from the numpy reference in {len(bad)} of {g.size} {which}"
                                f"outputs (first at frame/y/x/c {bad[0].tolist()}: {g[tuple(bad[0])]} != "
                                f"{w[tuple(bad[0])]})", str(self.hls_dir), "this is an fpgagen bug; please report it")
        self.write_testbench_vectors(codes, want)

    def write_testbench_vectors(self, codes: np.ndarray | None = None, want: np.ndarray | None = None) -> None:
        """hls/tb_input.bin and hls/tb_expected.bin for the HLS testbench; without arguments from random frames
        through the numpy reference (a build without C-sim still gets a complete project)."""
        if codes is None:
            codes = self.random_stream_input(codegen.TESTBENCH_FRAMES, 0)
        if want is None:
            want = self.reference_stream(codes)
        geometry = stream_geometry(self.net)
        packing.frames_to_bytes(codes, geometry).tofile(self.hls_dir / "tb_input.bin")
        packing.output_frames_to_bytes(want, geometry).tofile(self.hls_dir / "tb_expected.bin")


def build(model: str | Path, board: str = "pynq_z2", out_dir: str | Path | None = None,
          folding: dict | str | Path | None = None, target_fps: float | None = None, verify: bool = True,
          log=log_stderr, optimizer: str = "ilp", ceilings: dict | None = None,
          camera: str | None = None, debug_outputs=None) -> Accelerator:
    """QONNX file -> integer dataflow IR -> folded -> HLS C++ -> C-sim library, verified bit-exact against the
    numpy reference. Returns the :class:`Accelerator`.

    Folding: ``folding`` (a user's, validated) if given; else ``optimizer="ilp"`` (default): the fastest design
    within the board budget (``ceilings``: utilization fractions, default LUT 0.8, BRAM18 0.9, DSP 0.9), or the
    cheapest that reaches ``target_fps``; ``optimizer="greedy"``: the FINN-style baseline at ``target_fps``.

    ``camera="640x480"`` (``WxH[:rgb|bgr]``): the camera frame's letterbox runs in the fabric, bit-exact with the
    host's ``letterbox_exact`` (cv2.INTER_LINEAR_EXACT); the accelerator then takes uint8 (N, H, W, 3) camera
    frames. Needs an input quantizer whose code is the uint8 pixel.

    ``debug_outputs`` (layer names): a debug build that also sends those layers' output streams to the host as
    extra outputs (fpgagen/debug/board.py), for comparing the board's inner streams with the reference."""
    model = Path(model)
    camera_spec = validate.check_camera(camera)
    validate.check_target_fps(target_fps)
    validate.check_ceilings(ceilings)
    validate.check_optimizer(optimizer)
    if folding is not None and not isinstance(folding, str | Path):
        validate.check_folding(folding, "folding")
    board_cfg = load_board(board)
    out_dir = Path(out_dir) if out_dir is not None else Path("build") / model.stem
    validate.check_out_dir(out_dir)
    if out_dir.resolve() in model.resolve().parents:
        raise FpgagenError("the model file lies inside the build directory, which a build replaces whole",
                           str(model), "move the model elsewhere or build into another -o directory")
    t0 = time.perf_counter()

    def step(msg: str) -> None:
        log(f"[fpgagen {time.perf_counter() - t0:6.1f}s] {msg}")

    # The previous build in out_dir stays untouched until the new one is complete and checked (see builddir).
    with builddir.BuildLock(out_dir):
        return _build_locked(model, board, board_cfg, out_dir, folding, target_fps, verify, log, optimizer,
                             ceilings, step, camera_spec, debug_outputs)


def _build_locked(model: Path, board: str, board_cfg: dict, out_dir: Path, folding, target_fps, verify: bool, log,
                  optimizer: str, ceilings, step, camera=None, debug_outputs=None) -> Accelerator:
    step(f"loading {model}")
    qmodel = frontend.load_qonnx(model)
    step("streamlining to integer layers")
    net = streamline.lower(qmodel, name=codegen.c_identifier(model.stem))
    if camera is not None:
        step(f"putting the {camera[0]}x{camera[1]} camera's letterbox in front of the network")
        add_camera(net, camera, str(model))
    if debug_outputs:
        from .debug.board import expose_streams

        step(f"debug build: {', '.join(expose_streams(net, debug_outputs))} also stream to the host")
    if folding is not None:
        step("applying the given folding")
        folding = fold.load_folding(folding) if isinstance(folding, str | Path) else folding
    else:
        goal = f"target {target_fps:g} FPS" if target_fps else "maximum FPS"
        step(f"folding ({optimizer}, {goal} at {board_cfg['clock_mhz']} MHz within the {board} budget)")
    fd, solver_log = tempfile.mkstemp(prefix="fpgagen_milp_", suffix=".log")  # HiGHS' log, until logs/ exists
    os.close(fd)
    try:
        fold_info = fold.fold_network(net, board_cfg, folding=folding, target_fps=target_fps, optimizer=optimizer,
                                      ceilings=ceilings, log=log, solver_log=solver_log)
    except BaseException:
        os.unlink(solver_log)
        raise
    step(f"generating HLS C++ in {out_dir / 'hls'}")
    tmp = builddir.temporary_dir(out_dir)
    try:
        (tmp / "logs").mkdir(exist_ok=True)
        shutil.move(solver_log, tmp / "logs" / "fold_milp.log")
        codegen.generate(net, tmp / "hls", board_cfg, source=model.name)
        findings = lint.lint_project(tmp / "hls", net, static_headers=False)  # what it emits passes the lint
        if findings:
            raise FpgagenError(f"the generated C++ fails fpgagen's lint ({len(findings)} findings; first: "
                               f"{findings[0]})", str(out_dir / "hls"), "this is an fpgagen bug; please report it")
        net.save(tmp)
        (tmp / "folding.json").write_text(json.dumps(fold.folding_of(net), indent=1))
        # the model's absolute path: `fpgagen bitstream` rebuilds it at a lower resolution for RTL co-simulation
        (tmp / "build.json").write_text(json.dumps({"board": board, "model": str(model.resolve()),
                                                    "sha256": _ir_digests(tmp),
                                                    # the generated sources, so `fpgagen debug` tells hand edits
                                                    "hls_sha256": hls_digests(tmp / "hls")}, indent=1))
        doc = write_reports(net, board_cfg, tmp, fold_info, ceilings)
        acc = Accelerator(net, tmp, board_cfg, log=log)
        if verify:
            step("compiling the C-simulation")
            acc.lib  # noqa: B018 - compile (or fetch from cache) now, so the timing shows up in the log
            step("verifying C-sim == numpy reference on random frames")
            try:
                acc.verify()
            except CSimError as exc:  # keep the failing project for the bug report
                failed = out_dir.parent / f"{out_dir.name}.failed"
                shutil.rmtree(failed, ignore_errors=True)
                os.rename(tmp, failed)
                raise CSimError(exc.what, str(failed / "hls"), exc.fix) from None
        else:
            acc.write_testbench_vectors()  # from the numpy reference: the HLS project stays complete
        Network.load(tmp)  # what 'fpgagen csim' and 'load' will read back must read back
        step(f"installing the build in {out_dir}")
        builddir.swap_in(tmp, out_dir, log=log)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if os.path.exists(solver_log):
            os.unlink(solver_log)
        raise
    acc.build_dir = out_dir
    step(f"done: {len(net.layers)} layers, {doc['fps_estimated']:.1f} FPS estimated "
         f"(bottleneck {doc['bottleneck']}), reports in {out_dir}")
    return acc


IR_FILES = ("network.json", "network.npz")  # the IR the reference runs and the C++ was generated from


def _sha256_file(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ir_digests(build_dir: Path) -> dict[str, str]:
    return {name: _sha256_file(build_dir / name) for name in IR_FILES}


def hls_digests(hls_dir: Path) -> dict[str, str]:
    """SHA-256 of every C++ source of an HLS project (what the C-sim compiles), by path inside hls/."""
    from .csim import _sources

    return {src.relative_to(hls_dir).as_posix(): _sha256_file(src) for src in _sources(Path(hls_dir))}


def load(build_dir: str | Path, log=log_stderr) -> Accelerator:
    """Reopen a built accelerator without rebuilding it (the C-sim library comes from the cache)."""
    build_dir = Path(build_dir)
    builddir.recover_unlocked(build_dir)  # a build killed while swapping directories left the old one aside
    if not build_dir.is_dir():
        raise FpgagenError("no build directory here", str(build_dir), "build one with 'fpgagen build MODEL -o DIR'")
    rebuild = f"rebuild it with 'fpgagen build MODEL -o {build_dir}'"
    try:
        info = json.loads((build_dir / "build.json").read_text())
        board = info["board"]
        if not isinstance(board, str):
            raise TypeError("board is not a string")
    except (OSError, ValueError, KeyError, TypeError):
        raise FpgagenError("the build directory is damaged (build.json is missing or unreadable)", str(build_dir),
                           rebuild) from None
    recorded = info.get("sha256") if isinstance(info.get("sha256"), dict) else {}
    for name, digest in sorted(recorded.items()):  # what C-sim and --reference both run on must be what was built
        path = build_dir / name
        if name in IR_FILES and path.is_file() and _sha256_file(path) != digest:
            raise FpgagenError(f"the build directory is damaged ({name} changed since the build: its SHA-256 is not "
                               "the one build.json recorded)", str(build_dir), rebuild)
    net = Network.load(build_dir)
    missing = [name for name in ("top.cpp", "csim_bridge.cpp") if not (build_dir / "hls" / name).is_file()]
    if missing:
        raise FpgagenError(f"the build directory is damaged (hls/{missing[0]} is missing)", str(build_dir), rebuild)
    try:
        board_cfg = load_board(board)
    except FpgagenError as exc:
        raise FpgagenError(f"the build directory names a board that cannot be used ({exc.what})", str(build_dir),
                           rebuild) from None
    return Accelerator(net, build_dir, board_cfg, log=log)
