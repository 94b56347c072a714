"""``fpgagen.trace(acc)``: tap every stream of a C-simulated accelerator while it runs, then compare the taps with
the numpy reference, QONNX or Brevitas, and write the report.

    with fpgagen.trace(acc) as t:
        acc.run(x)
    t.compare("reference")            # and/or "qonnx", "brevitas" (model=the torch model)
    t.report("debug/")                # debug.json, debug.md, PNGs
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from ..errors import FpgagenError
from . import taps as T
from .compare import SQNR_FLAG_DB, compare_codes, health

SOURCES = ("csim", "reference", "qonnx", "brevitas", "board")
FLOAT_SOURCES = ("qonnx", "brevitas")


def hls_changes(build_dir: Path) -> tuple[list[str], str | None]:
    """The hls/ sources that differ from what the build wrote (build.json's ``hls_sha256``): changed, added or
    removed files; and a note when the build recorded no digests."""
    from ..accelerator import hls_digests

    try:
        recorded = json.loads((Path(build_dir) / "build.json").read_text()).get("hls_sha256")
    except (OSError, ValueError):
        recorded = None
    if not isinstance(recorded, dict):
        return [], "the build recorded no digests of its hls/ sources (built before fpgagen debug): hand edits " \
                   "cannot be told apart"
    now = hls_digests(Path(build_dir) / "hls")
    changed = sorted(name for name in set(recorded) | set(now) if recorded.get(name) != now.get(name))
    return changed, None


def load_callable(spec: str, where: str = "--model"):
    """``file.py:make`` -> what ``make()`` returns (a torch model)."""
    path, _, name = str(spec).rpartition(":")
    if not path or not name:
        raise FpgagenError(f"'{spec}' is not FILE.py:FUNCTION", where, "pass e.g. --model my_model.py:make")
    if not Path(path).is_file():
        raise FpgagenError("no such file", path, "pass the Python file that builds the model")
    module_spec = importlib.util.spec_from_file_location(f"fpgagen_debug_model_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
        make = getattr(module, name)
    except AttributeError:
        raise FpgagenError(f"the file defines no '{name}'", path, "name the function that returns the model") \
            from None
    except Exception as exc:
        raise FpgagenError(f"importing it failed ({type(exc).__name__}: {str(exc)[:160]})", path,
                           "fix the file so that 'python FILE' runs") from None
    try:
        return make()
    except Exception as exc:
        raise FpgagenError(f"{name}() failed ({type(exc).__name__}: {str(exc)[:160]})", spec,
                           "make it return the Brevitas model the build was exported from") from None


class Trace:
    """The taps of one or more ``acc.run``/``acc.run_stream`` calls and what they were compared with."""

    def __init__(self, acc, log=lambda m: None):
        self.acc, self.net, self.log = acc, acc.net, log
        self.taps = T.taps_of(acc.net)
        self.sources: dict[str, dict[str, np.ndarray]] = {}
        self.pre: dict[str, dict[str, np.ndarray]] = {}  # float source -> tap -> float32 pre-rounding t
        self.sqnr: dict[str, float] = {}
        self.sqnr_float: dict[str, float] = {}  # against the float twin (compare("brevitas", float_model=...))
        self.problems: list[str] = []  # checks that failed outside the per-layer comparison
        self.warnings: list[str] = []
        self.preprocess_checks: list[dict] = []
        self.postprocess_checks: list[dict] = []
        self.images: dict[str, str] = {}
        self.deployed_effect: dict | None = None  # the deployed frame's output against the reference frame's
        self._codes: list[np.ndarray] = []
        self._floats: list[np.ndarray] = []
        self.hls_edited, note = hls_changes(acc.build_dir)
        if note:
            self.warnings.append(note)
        if self.hls_edited:
            self.warnings.append(f"hls/ differs from what the build wrote ({', '.join(self.hls_edited[:6])}"
                                 f"{' ...' if len(self.hls_edited) > 6 else ''}): the C-sim taps are of the edited "
                                 "sources")

    # --- recording --------------------------------------------------------------------------------------------
    def __enter__(self) -> Trace:
        acc = self.acc
        self._lib = T.compile_tap_library(acc, self.log)
        T.clear_taps(self._lib)
        self._saved_lib = acc._lib
        acc._lib = self._lib
        run_stream, quantize_input = acc.run_stream, acc.quantize_input

        def recording_run_stream(codes, bounded_fifos=False):
            self._codes.append(np.asarray(codes))
            return run_stream(codes)

        def recording_quantize_input(x):
            self._floats.append(np.array(x, np.float32))
            return quantize_input(x)

        acc.run_stream, acc.quantize_input = recording_run_stream, recording_quantize_input
        return self

    @property
    def tap_library(self):
        """The C-sim library with the recording streams (its outputs are the project's own)."""
        return self._lib

    def __exit__(self, *exc) -> None:
        acc = self.acc
        del acc.run_stream, acc.quantize_input  # the instance attributes: the class's methods again
        acc._lib = self._saved_lib
        if exc[0] is not None:
            return
        if not self._codes:
            raise FpgagenError("nothing ran inside the trace", "fpgagen.trace", "call acc.run(x) inside the with")
        self.codes = np.concatenate(self._codes)
        recorded = T.read_taps(self._lib)
        self.sources["csim"], problems = T.csim_taps(self.taps, recorded, self.codes.shape[0])
        self.problems += problems
        T.clear_taps(self._lib)  # copied out: free the recording

    def use_input(self, codes: np.ndarray) -> Trace:
        """Trace without the C-sim: the stream codes (N, H, W, C) another source (the board) ran on."""
        self.codes = np.asarray(codes)
        return self

    # --- the float input the torch model and QONNX take -------------------------------------------------------
    def float_input(self) -> np.ndarray:
        """The float input the model takes (torch layout), as recorded, or made from the codes when the input code
        is the uint8 pixel; a --camera build's is the letterbox's output."""
        net = self.net
        if net.input.preprocess:
            lb = self.taps[1]
            codes = self.sources.get("reference", {}).get(lb.key)
            if codes is None:
                codes = self.sources["csim"][lb.key]
            return codes.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
        if self._floats and sum(len(f) for f in self._floats) == self.codes.shape[0]:
            return np.concatenate(self._floats)
        if self.acc.pixels_are_codes:
            return self.codes.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
        raise FpgagenError("the trace holds input codes only (acc.run_stream) and the input quantizer does not map "
                           "pixels to codes", "Trace.compare", "run acc.run(x) with the float input instead")

    def onnx_model(self, model=None):
        from ..frontend import load_qonnx

        key = str(model) if model is not None and str(model).endswith(".onnx") else None
        if key in getattr(self, "_onnx", {}):  # cleanup and shape inference take seconds on a large model
            return self._onnx[key]
        if model is None or not str(model).endswith(".onnx"):
            try:
                model = json.loads((Path(self.acc.build_dir) / "build.json").read_text())["model"]
            except (OSError, ValueError, KeyError):
                model = None
        if model is None or not Path(model).is_file():
            raise FpgagenError(f"the QONNX model the build was made from is not at {model}",
                               str(self.acc.build_dir), "pass its path: t.compare('qonnx', model='net.onnx') or "
                               "fpgagen debug --onnx net.onnx")
        self._onnx = {key: load_qonnx(Path(model))}
        return self._onnx[key]

    # --- comparing --------------------------------------------------------------------------------------------
    def compare(self, source: str = "reference", model=None, float_model=None) -> Trace:
        """Add a source to compare the C-sim's taps with: "reference" (the IR's numpy), "qonnx" (``model``: the
        .onnx, default the build's), "brevitas" (``model``: the torch model, or "file.py:make"), "board"
        (``model``: the extra outputs of a --debug-outputs build, fpgagen.debug.board). With "brevitas",
        ``float_model`` (the float twin, or "file.py:make") adds each layer's SQNR against the float model."""
        if source not in SOURCES[1:]:
            raise FpgagenError(f"unknown source '{source}'", "Trace.compare", f"choose one of {SOURCES[1:]}")
        if not hasattr(self, "codes"):
            raise FpgagenError("the trace has not run", "Trace.compare", "compare after the with block")
        if source == "reference":
            self.sources["reference"] = {k: v for k, v in T.reference_taps(self.net, self.codes).items()}
        elif source == "qonnx":
            onnx_model = self.onnx_model(model)
            self.sources["qonnx"], self.pre["qonnx"] = T.qonnx_taps(self.taps, onnx_model, self.float_input())
        elif source == "brevitas":
            if model is None:
                raise FpgagenError("no Brevitas model given", "Trace.compare('brevitas')",
                                   "pass model=the torch model (or 'file.py:make')")
            torch_model = load_callable(model) if isinstance(model, str | Path) else model
            if isinstance(float_model, str | Path):
                float_model = load_callable(float_model, "--float-model")
            codes, pre, sqnr, sqnr_float = T.brevitas_taps(self.taps, torch_model, self.onnx_model(),
                                                            self.float_input(), float_model)
            self.sources["brevitas"], self.pre["brevitas"] = codes, pre
            self.sqnr.update(sqnr)
            if "__unpaired__" in sqnr_float:
                self.warnings.append("the float model's activations do not pair with the quantized model's "
                                     "activation quantizers (different counts): no SQNR against it")
            self.sqnr_float = {k: v for k, v in sqnr_float.items() if k != "__unpaired__"}
        else:
            board = dict(model)
            for key, codes in board.items():
                want = next((t.shape for t in self.taps if t.key == key), None)
                if want is None or codes.shape != (self.codes.shape[0], *want):
                    raise FpgagenError(f"the board's stream {key} has shape {list(codes.shape)}, the trace ran "
                                       f"{self.codes.shape[0]} frame(s) of {list(want or [])}", "board outputs",
                                       "pass the outputs of the same frames, from the same --debug-outputs build")
            self.sources["board"] = board
        return self

    def _pairs(self) -> list[tuple[str, str]]:
        base = "reference" if "reference" in self.sources else "csim"
        return [(base, s) for s in SOURCES if s in self.sources and s != base]

    def layers(self) -> list[dict]:
        """One entry per tap: its comparisons (reference against every other source), the worst of them and the
        quantization health of the reference's (else the C-sim's) codes."""
        out = []
        pairs = self._pairs()
        for tap in self.taps:
            entry = {"name": tap.name, "kind": tap.kind, "stream": tap.stream, "shape": list(tap.shape),
                     "onnx_tensor": tap.onnx_tensor, "onnx_node": tap.onnx_node, "comparisons": []}
            for a, b in pairs:
                if tap.key not in self.sources[a] or tap.key not in self.sources[b]:
                    if b in tap.no_counterpart:
                        entry.setdefault("no_counterpart", {})[b] = tap.no_counterpart[b]
                    continue
                t = self.pre.get(b, {}).get(tap.key)
                doc = compare_codes(self.sources[a][tap.key], self.sources[b][tap.key], tap.lo, tap.hi, t)
                entry["comparisons"].append({"a": a, "b": b, **doc})
            cmp = entry["comparisons"]
            entry["differing"] = max((c["differing"] for c in cmp), default=0)
            entry["max_abs_diff"] = max((c["max_abs_diff"] or 0 for c in cmp), default=0)
            codes = self.sources.get("reference", self.sources.get("csim", {})).get(tap.key)
            if codes is not None:
                entry.update(health(codes, tap.lo, tap.hi))
                if not tap.quantizes:  # a window, pool, fork or converter moves its producer's codes: no new flags
                    entry["flags"] = []
            if tap.key in self.sqnr:
                entry["sqnr_db"] = round(self.sqnr[tap.key], 3)
                if self.sqnr[tap.key] < SQNR_FLAG_DB:
                    entry.setdefault("flags", []).append(
                        f"SQNR {self.sqnr[tap.key]:.1f} dB against the float activation it quantizes (the range or "
                        "bit width loses much of the signal)")
            if tap.key in self.sqnr_float:
                entry["sqnr_float_db"] = round(self.sqnr_float[tap.key], 3)
            out.append(entry)
        return out

    def summary(self) -> dict:
        """debug.json's content."""
        layers = self.layers()
        first = None
        explained = set()  # pairs that first differ by float32 k - 1/2 cases: later layers inherit those flips
        for entry in layers:
            for c in entry["comparisons"]:
                pair = (c["a"], c["b"])
                if c["differing"] and pair in explained:
                    c["after_boundary_case"] = True
                    continue
                if c["differing"] and c["all_boundary"]:
                    explained.add(pair)
                    continue
                if c["differing"] and first is None:
                    first = {"layer": entry["name"], "kind": entry["kind"], "a": c["a"], "b": c["b"],
                             "index": c["first_index"], "differing": c["differing"],
                             "max_abs_diff": c["max_abs_diff"]}
        boundary = [{"layer": e["name"], "a": c["a"], "b": c["b"], "differing": c["differing"]}
                    for e in layers for c in e["comparisons"] if c["differing"] and c["all_boundary"]]
        flagged = [{"layer": e["name"], "flags": e["flags"]} for e in layers if e.get("flags")]
        failed_pre = [c for c in self.preprocess_checks + self.postprocess_checks if not c["ok"]]
        doc = {"network": self.net.name, "build": str(self.acc.build_dir), "frames": int(self.codes.shape[0]),
               "sources": [s for s in SOURCES if s in self.sources], "first_divergence": first,
               "float32_boundary_cases": boundary,
               "hls_edited": self.hls_edited, "warnings": self.warnings, "problems": self.problems,
               "quant_flags": flagged, "layers": layers, "preprocess_checks": self.preprocess_checks,
               "postprocess_checks": self.postprocess_checks, "deployed_effect": self.deployed_effect,
               "ok": first is None and not self.problems and not failed_pre}
        return doc

    def report(self, out_dir, plots: bool = True) -> dict:
        """Write debug.json, debug.md and the PNGs into ``out_dir``; returns debug.json's content."""
        from .report import write_report

        return write_report(self, Path(out_dir), plots=plots)


def trace(acc, log=lambda m: None) -> Trace:
    """A context manager that taps every stream of ``acc``'s C-simulation while it runs (see the module doc)."""
    return Trace(acc, log=log)
