"""C-simulation: compile the generated HLS C++ with g++ into a shared library (cached by content hash) and run
frames through it with ctypes, several frames per call, on all cores."""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .errors import CSimError, FpgagenError

CXXFLAGS = ["-O2", "-std=c++14", "-fPIC", "-shared", "-w"]


def ap_types_include() -> Path:
    """The Xilinx ap_types headers: a Xilinx install if present, else the copy inside the hls4ml wheel."""
    for var in ("XILINX_HLS", "XILINX_VIVADO_HLS", "XILINX_VITIS_HLS"):
        root = os.environ.get(var)
        if root and (Path(root) / "include" / "ap_int.h").is_file():
            return Path(root) / "include"
    spec = importlib.util.find_spec("hls4ml")  # locate without importing (hls4ml's import is heavy)
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "templates" / "vivado" / "ap_types"
        if (path / "ap_int.h").is_file():
            return path
    raise FpgagenError("the Xilinx ap_types headers were not found", "C-simulation",
                       "pip install hls4ml==1.3.0 (it ships them) or set XILINX_HLS to a Vitis HLS install")


def cache_dir() -> Path:
    return Path(os.environ.get("FPGAGEN_CACHE", Path.home() / ".cache" / "fpgagen")) / "csim"


def _sources(hls_dir: Path) -> list[Path]:
    return sorted([*hls_dir.glob("*.h"), *hls_dir.glob("*.cpp"), *(hls_dir / "layers").glob("*.h")])


BOUNDED_FLAGS = ["-DFG_SIM_BOUNDED_FIFOS", "-pthread"]


# `fpgagen debug`: the project's own sources with every inter-layer stream recorded (templates/hls/debug_taps.h,
# force-included; the synthesized top is not touched)
def _debug_taps_header() -> Path:
    from .resources import resource_dir

    return resource_dir("templates") / "hls" / "debug_taps.h"


def compile_library(hls_dir: Path, log=print, bounded_fifos: bool = False, debug_taps: bool = False) -> Path:
    """Build ``csim_bridge.cpp`` into a shared library; an unchanged project is a cache hit (no g++ run).

    ``bounded_fifos`` builds the variant that runs every DATAFLOW process on its own thread with each stream
    bounded to its depth (slower; it checks that the chosen FIFO depths cannot deadlock).

    The cache is keyed by every input of the library (sources by path relative to the project, the compiler and
    its version, the flags, the header location) and self-healing: each entry is written atomically with a
    ``.sha256`` sidecar and checked against it before use; a damaged, truncated or foreign entry is discarded and
    rebuilt (loading one would crash the process: SIGBUS on a truncated file)."""
    hls_dir = Path(hls_dir)
    flags = CXXFLAGS + (BOUNDED_FLAGS if bounded_fifos else [])
    if debug_taps:
        flags = flags + ["-DFG_DEBUG_TAPS", "-include", str(_debug_taps_header())]
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        raise FpgagenError("no C++ compiler found", "C-simulation", "install g++ (apt-get install g++)")
    include = ap_types_include()
    digest = hashlib.sha256()
    header = include / "ap_int.h"
    for part in (cxx, " ".join(flags), str(include), _compiler_version(cxx), f"{header.stat().st_size}"):
        digest.update(part.encode() + b"\0")
    if debug_taps:
        digest.update(_debug_taps_header().read_bytes())
    sources = _sources(hls_dir)
    if not (hls_dir / "csim_bridge.cpp").is_file():
        raise FpgagenError("the HLS project has no csim_bridge.cpp", str(hls_dir),
                           "rebuild it with 'fpgagen build'")
    for src in sources:
        digest.update(src.relative_to(hls_dir).as_posix().encode() + b"\0" + src.read_bytes())
    key = digest.hexdigest()[:24]
    lib = cache_dir() / f"{key}.so"
    if _cached_entry_ok(lib, log):
        log(f"  C-sim library cached: {lib}")
        return lib
    try:
        lib.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FpgagenError(f"cannot create the C-sim cache ({exc.strerror})", str(lib.parent),
                           "set FPGAGEN_CACHE to a writable folder") from None
    tmp = lib.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    cmd = [cxx, *flags, "-isystem", str(include), "-I", str(hls_dir), str(hls_dir / "csim_bridge.cpp"),
           "-o", str(tmp)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            log_path = cache_dir() / "logs" / f"{key}.log"  # outside the build's temporary directory
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text(" ".join(cmd) + "\n" + proc.stderr)
            first = next((line for line in proc.stderr.splitlines() if "error" in line), "no message")[:300]
            raise FpgagenError(f"g++ failed to compile the generated C++ ({first})", str(log_path),
                               "if you edited the HLS sources, rebuild with 'fpgagen build'; otherwise this is an "
                               "fpgagen bug, please report it with that log")
        sidecar_tmp = tmp.with_suffix(".sha256.tmp")
        sidecar_tmp.write_text(_sha256(tmp) + "\n")
        # Both renames are atomic, the record first: a library at its final path always has one, and a reader
        # never loads a library whose bytes differ from it.
        sidecar_tmp.replace(_sidecar(lib))
        tmp.replace(lib)
    finally:
        for leftover in (tmp, tmp.with_suffix(".sha256.tmp")):
            leftover.unlink(missing_ok=True)
    log(f"  g++ built the C-sim library in {time.perf_counter() - start:.1f} s")
    return lib


def _sidecar(lib: Path) -> Path:
    return lib.with_name(lib.name + ".sha256")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _cached_entry_ok(lib: Path, log) -> bool:
    """True if the cache entry exists and matches its recorded hash; a damaged entry is deleted (one log line)."""
    sidecar = _sidecar(lib)
    if not lib.exists():
        return False  # a miss (a record alone is overwritten by the rebuild)
    try:
        recorded = sidecar.read_text().strip()
        if lib.is_file() and recorded == _sha256(lib):
            return True
        why = "its content does not match the recorded hash"
    except (OSError, UnicodeDecodeError):
        why = "its hash record is missing or unreadable"
    log(f"  C-sim cache entry {lib.name} is damaged ({why}): discarding it and rebuilding")
    for path in (lib, sidecar):
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass
    return False


def _compiler_version(cxx: str) -> str:
    return subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout


class CSimLibrary:
    """A loaded C-simulation library: bytes in, bytes out, exactly as the DMA would move them."""

    def __init__(self, path: Path, bounded_fifos: bool = False):
        self.path = Path(path)
        self.bounded_fifos = bounded_fifos  # that variant simulates one frame at a time (threads inside)
        try:
            self._lib = ctypes.CDLL(str(self.path))
        except OSError as exc:
            raise FpgagenError(f"cannot load the C-sim library ({exc})", str(self.path),
                               "delete it (the cache rebuilds it) or point FPGAGEN_CACHE elsewhere") from None
        geometry = (ctypes.c_uint * 4)()
        self._lib.fg_geometry(geometry)
        self.in_words, self.in_bytes, self.out_words, self.out_bytes = list(geometry)
        self._lib.fg_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p,
                                     ctypes.c_int]
        self.has_taps = hasattr(self._lib, "fg_tap_count")  # built with debug_taps (fpgagen/debug)

    @property
    def in_frame_bytes(self) -> int:
        return self.in_words * self.in_bytes

    @property
    def out_frame_bytes(self) -> int:
        return self.out_words * self.out_bytes

    def run(self, frames: np.ndarray, threads: int | None = None) -> np.ndarray:
        """(N, in_frame_bytes) uint8 -> (N, out_frame_bytes) uint8; frames are split across threads (ctypes
        releases the GIL and the generated kernels keep no static state)."""
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        if frames.ndim != 2 or frames.shape[1] != self.in_frame_bytes:
            raise CSimError(f"input of shape {frames.shape}", "C-simulation",
                            f"expected (frames, {self.in_frame_bytes}) bytes")
        n = frames.shape[0]
        out = np.zeros((n, self.out_frame_bytes), np.uint8)
        threads = 1 if self.bounded_fifos or self.has_taps else max(1, min(threads or os.cpu_count() or 1, n))
        bounds = np.linspace(0, n, threads + 1).astype(int)

        def work(lo: int, hi: int) -> str | None:
            err = ctypes.create_string_buffer(512)
            rc = self._lib.fg_run(frames[lo:].ctypes.data, out[lo:].ctypes.data, hi - lo, err, len(err))
            return err.value.decode(errors="replace") if rc else None

        if threads == 1:
            errors = [work(0, n)]
        else:
            with ThreadPoolExecutor(threads) as pool:
                errors = list(pool.map(work, bounds[:-1], bounds[1:]))
        failed = [e for e in errors if e]
        if failed:
            raise CSimError(f"C-simulation failed: {failed[0]}", str(self.path),
                            "this is an fpgagen bug; please report it with the model")
        return out


def log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
