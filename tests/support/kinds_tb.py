"""g++ unit-test harness for the graph kinds' static kernels (templates/hls/fg_*.h).

One testbench per kind holds every instance the tests need (one compile per kind and form, cached by content hash);
a run feeds random frames on stdin and reads the output words back on stdout, port by port. Each testbench is built
in both forms of the kernels (templates/hls/fg_common.h): the C model C-simulation runs and the synthesis form Vitis
HLS compiles (FG_CSIM_SYNTHESIS_FORM: ap_int ROMs, the declared threshold types); every run goes through both, and
their outputs must be equal."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
from qonnx.core.datatype import BaseDataType, DataType

from fpgagen.csim import ap_types_include
from fpgagen.ir.kinds.base import (
    TEMPLATE_DIR,
    Cpp,
    GraphLayer,
    codes_of_stream,
    environment,
    render_instance,
    stream_codes,
)
from fpgagen.ir.network import layer_from_doc, layer_to_doc

CXX = ["g++", "-std=c++14", "-O1", "-Wall", "-Wextra", "-Wno-unused-label", "-Wno-unused-function",
       "-Wno-unknown-pragmas"]
FORMS = {"model": [], "synthesis": ["-DFG_CSIM_SYNTHESIS_FORM"]}


def _port_runner(layer: GraphLayer) -> str:
    g, name = Cpp(), layer.name
    ins = [(f"in{p}", g.ctype(layer.in_dtypes[p]), layer.in_words[p], layer.words_in(p))
           for p in range(len(layer.in_shapes))]
    outs = [(f"out{q}", g.ctype(layer.out_dtypes[q]), layer.out_words[q], layer.words_out(q))
            for q in range(len(layer.out_shapes))]
    lines = [f"static void run_{name}(unsigned frames) {{"]
    for var, t, n, _ in ins + outs:
        lines.append(f'    hls::stream<fg::Vec<{t}, {n}> > {var}("{var}");')
    lines.append("    for (unsigned f = 0; f < frames; f++) {")
    for var, t, n, words in ins:
        lines += [f"        for (unsigned i = 0; i < {words}; i++) {{",
                  f"            fg::Vec<{t}, {n}> w;",
                  f"            for (unsigned e = 0; e < {n}; e++) {{ long long v; std::cin >> v; w.v[e] = v; }}",
                  f"            {var}.write(w);", "        }"]
    lines.append(f'        fg::current_layer = "{name}";')
    lines.append(f"        {name}({', '.join(v for v, *_ in ins + outs)});")
    for var, *_ in ins:
        lines.append(f'        if (!{var}.empty()) throw fg::SimError("{name} left words on {var}");')
    for var, t, n, words in outs:
        lines += [f'        if ({var}.size() != {words}) throw fg::SimError("{name} wrote " + '
                  f'std::to_string({var}.size()) + " words on {var}, expected {words}");',
                  f"        for (unsigned i = 0; i < {words}; i++) {{",
                  f"            const fg::Vec<{t}, {n}> w = {var}.read();",
                  f"            for (unsigned e = 0; e < {n}; e++) std::cout << w.v[e].to_int64() << ' ';",
                  "        }", "        std::cout << '\\n';"]
    lines += ["    }", "}"]
    return "\n".join(lines)


def kernel_dir(workdir: Path) -> Path:
    """A directory holding every static kernel header (fg_common.h included)."""
    headers = sorted(TEMPLATE_DIR.glob("fg_*.h"))
    digest = hashlib.sha256()
    for h in headers:
        digest.update(h.name.encode() + h.read_bytes())
    path = Path(workdir) / ("headers-" + digest.hexdigest()[:16])
    if not (path / "fg_common.h").is_file():
        path.mkdir(parents=True, exist_ok=True)
        for h in headers:
            shutil.copyfile(h, path / h.name)
    return path


class KernelBench:
    def __init__(self, header: str, layers: list[GraphLayer], workdir: Path):
        env = environment()
        parts = [f'#include "{header}"', "#include <iostream>", "#include <string>",
                 "thread_local const char *fg::current_layer = \"\";"]
        for layer in layers:
            parts += [render_instance(layer, env), _port_runner(layer)]
        main = ["int main() {", "    std::string name; unsigned frames;",
                "    try {", "        while (std::cin >> name >> frames) {"]
        main += [f'            if (name == "{layer.name}") run_{layer.name}(frames);' for layer in layers]
        main += ["            std::cout << \"#end\" << std::endl;", "        }",
                 "    } catch (const std::exception &e) { std::cerr << e.what() << std::endl; return 1; }",
                 "    return 0;", "}"]
        source = "\n\n".join(parts) + "\n" + "\n".join(main) + "\n"
        headers = sorted(TEMPLATE_DIR.glob("fg_*.h"))
        digest = hashlib.sha256(source.encode() + " ".join(CXX).encode())
        for h in headers:
            digest.update(h.read_bytes())
        self.dir = Path(workdir) / digest.hexdigest()[:16]
        self.exes = {form: self.dir / f"tb_{form}" for form in FORMS}
        self.layers = {layer.name: layer for layer in layers}
        if not all(exe.is_file() for exe in self.exes.values()):
            self.dir.mkdir(parents=True, exist_ok=True)
            for h in headers:
                shutil.copyfile(h, self.dir / h.name)
            (self.dir / "tb.cpp").write_text(source)
            procs = {form: subprocess.Popen([*CXX, *flags, "-isystem", str(ap_types_include()), "-I", str(self.dir),
                                             str(self.dir / "tb.cpp"), "-o", str(self.dir / f"tb_{form}.tmp")],
                                            stderr=subprocess.PIPE, text=True)
                     for form, flags in FORMS.items()}  # both forms compile side by side
            for form, proc in procs.items():
                _, err = proc.communicate()
                if proc.returncode != 0:
                    raise RuntimeError(f"g++ failed ({form} form):\n" + err[-6000:])
                # our kernels and the generated code compile without warnings (the ap_types headers' own are theirs)
                ours = [line for line in err.splitlines() if "warning" in line and "ap_types" not in line]
                if ours:
                    raise RuntimeError(f"g++ warnings in the kernels ({form} form):\n" + "\n".join(ours))
            for form, exe in self.exes.items():
                os.replace(self.dir / f"tb_{form}.tmp", exe)

    def run(self, name: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Frames (N, H, W, C) per input port through the kernel; the output codes per output port."""
        layer = self.layers[name]
        n = inputs[0].shape[0]
        text = [f"{name} {n}"]
        for f in range(n):
            for dt, x in zip(layer.in_dtypes, inputs, strict=True):
                text.append(" ".join(str(int(v)) for v in stream_codes(dt, x[f]).reshape(-1)))
        stdout = {}
        for form, exe in self.exes.items():
            proc = subprocess.run([str(exe)], input="\n".join(text) + "\n", capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{name} ({form} form): {proc.stderr}")
            stdout[form] = proc.stdout
        if stdout["model"] != stdout["synthesis"]:
            raise AssertionError(f"{name}: the C model's output differs from the synthesis form's")
        lines = [line for line in stdout["model"].splitlines() if line != "#end"]
        ports = len(layer.out_shapes)
        outs = []
        for q in range(ports):
            rows = [np.array(lines[f * ports + q].split(), np.int64) for f in range(n)]
            outs.append(codes_of_stream(layer.out_dtypes[q], np.stack(rows).reshape(n, *layer.out_shapes[q])))
        return outs


def words(shape) -> int:
    return math.prod(shape)


TB_DIR = Path(__file__).resolve().parents[2] / "build" / ".cache" / "kinds_tb"


def codes(rng, dtype: DataType, shape, frames=2, lo=None, hi=None):
    lo = int(dtype.min()) if lo is None else lo
    hi = int(dtype.max()) if hi is None else hi
    return rng.integers(lo, hi + 1, size=(frames, *shape), dtype=np.int64)


def check_doc_roundtrip(layer):
    arrays, again_arrays = {}, {}
    doc = layer_to_doc(layer, "layer", arrays)
    again = layer_from_doc(json.loads(json.dumps(doc)), "layer", arrays)
    assert layer_to_doc(again, "layer", again_arrays) == doc
    assert arrays.keys() == again_arrays.keys() and all(np.array_equal(arrays[k], again_arrays[k]) for k in arrays)
    assert all(isinstance(d, BaseDataType) for d in (*again.in_dtypes, *again.out_dtypes))


def check_io_pattern(layer):
    reads, writes = layer.io_pattern()
    assert len(reads) == len(layer.in_shapes) and len(writes) == len(layer.out_shapes)
    for p, r in enumerate(reads):
        assert len(r) == layer.cycles() and r.sum() == layer.words_in(p)
    for q, w in enumerate(writes):
        assert len(w) == layer.cycles() and w.sum() == layer.words_out(q)
