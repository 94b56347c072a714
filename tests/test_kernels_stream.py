"""The streaming kernels of the static library (templates/hls/fg_sliding_window.h, fg_maxpool.h,
fg_width_converter.h), each compiled with g++ on its own against the ap_types headers and compared with its numpy
reference (fpgagen.reference) on edge cases; and the cycle model against the loops as written: every loop
iteration's pops and pushes, traced from the C++, must equal the layer's ``stream_pattern()``.

All cases share one g++ build per form (one translation unit, a case per layer): the synthesis form (the pipelined
loops Vitis HLS compiles, built with FG_CSIM_SYNTHESIS_FORM, traced) and the C model that C-simulation runs; both
must give the reference's output on every case, on random and extreme codes. Each case runs two frames, so state
that leaks from one frame into the next shows up too.
"""

import math
import subprocess
import zlib

import numpy as np
import pytest
from kernel_cases import mvau
from stream_bench import TESTBENCH

from fpgagen import codegen
from fpgagen.csim import ap_types_include
from fpgagen.ir import MaxPool, SlidingWindow, WidthConverter
from fpgagen.reference import run_layer

FRAMES = 2


def window(name, shape, kernel, stride=(1, 1), pads=(0, 0, 0, 0), simd=1, ifm_word=1, dtype="UINT4",
           pad_value=0, mem_style="bram"):
    (ih, iw, c), (kh, kw), (sh, sw) = shape, kernel, stride
    oh, ow = (ih + pads[0] + pads[2] - kh) // sh + 1, (iw + pads[1] + pads[3] - kw) // sw + 1
    layer = SlidingWindow(name, shape, (oh, ow, kh * kw * c), dtype, dtype, kernel=kernel, stride=stride, pads=pads,
                          pad_value=pad_value, simd=simd, ifm_word=ifm_word, mem_style=mem_style)
    layer.validate()
    return layer


def pool(name, shape, kernel, pe, dtype="UINT4", mem_style="lutram"):
    (ih, iw, c), (kh, kw) = shape, kernel
    layer = MaxPool(name, shape, (ih // kh, iw // kw, c), dtype, dtype, kernel=kernel, pe=pe, mem_style=mem_style)
    layer.validate()
    return layer


def converter(name, shape, n_in, n_out, dtype="INT4"):
    layer = WidthConverter(name, shape, shape, dtype, dtype, in_elems=n_in, out_elems=n_out)
    layer.validate()
    return layer


CASES = [
    window("w_simd_eq_c", (5, 6, 4), (3, 3), pads=(1, 1, 1, 1), simd=4, ifm_word=4),
    window("w_simd_gt_c_row", (5, 7, 3), (3, 3), pads=(1, 1, 1, 1), simd=9, ifm_word=3),  # one window row/word
    window("w_simd_gt_c_all", (6, 5, 2), (3, 3), pads=(1, 1, 1, 1), simd=18, ifm_word=1),  # whole window, IN<C
    window("w_simd_lt_c", (4, 5, 8), (3, 3), pads=(1, 1, 1, 1), simd=2, ifm_word=4, mem_style="lutram"),
    window("w_valid", (7, 6, 2), (3, 3), simd=2, ifm_word=2),
    window("w_stride2_pad", (7, 7, 2), (3, 3), stride=(2, 2), pads=(1, 1, 1, 1), simd=6, ifm_word=1),
    window("w_stride2_wide", (6, 6, 3), (3, 3), stride=(2, 2), simd=27, ifm_word=3),
    window("w_single_row", (1, 5, 2), (3, 3), pads=(1, 1, 1, 1), simd=2, ifm_word=2),
    window("w_1x1", (3, 4, 4), (1, 1), simd=2, ifm_word=4),
    window("w_1x1_stride2", (5, 5, 2), (1, 1), stride=(2, 2), simd=2, ifm_word=1),
    window("w_2x2_pad_br", (4, 4, 2), (2, 2), pads=(0, 0, 1, 1), simd=8, ifm_word=2),  # TinyYOLO's padded pool
    window("w_odd_padcode", (5, 3, 3), (3, 3), pads=(1, 1, 1, 1), simd=3, ifm_word=1, dtype="INT4", pad_value=-3),
    window("w_3x2_rows", (5, 4, 1), (3, 2), pads=(1, 0, 1, 1), simd=3, ifm_word=1),  # words straddle rows
    window("w_2x2_s2_wide", (6, 6, 2), (2, 2), stride=(2, 2), simd=8, ifm_word=2),
    window("w_5x5", (7, 8, 2), (5, 5), pads=(2, 2, 2, 2), simd=10, ifm_word=2),
    pool("p_cw1", (4, 6, 4), (2, 2), pe=4),
    pool("p_cw3", (4, 6, 6), (2, 2), pe=2, mem_style="bram"),
    pool("p_floor_odd", (5, 7, 2), (2, 2), pe=1),
    pool("p_3x3", (7, 6, 4), (3, 3), pe=2),
    pool("p_signed", (4, 4, 3), (2, 2), pe=3, dtype="INT4"),
    pool("p_1x2", (3, 4, 2), (1, 2), pe=1),
    pool("p_2x1", (4, 3, 2), (2, 1), pe=2),
    converter("c_up_1_4", (2, 3, 4), 1, 4),
    converter("c_up_2_6", (2, 3, 6), 2, 6),
    converter("c_down_6_2", (2, 3, 6), 6, 2),
    converter("c_down_4_1", (2, 3, 4), 4, 1),
    converter("c_odd_3_2", (2, 3, 6), 3, 2),
    converter("c_odd_2_3", (2, 3, 6), 2, 3),
    converter("c_odd_4_6", (2, 2, 12), 4, 6),
    converter("c_odd_6_4", (2, 2, 12), 6, 4),
]
# The MVAU's loop (its arithmetic: tests/test_kernels_compute.py): reads during the first neuron fold, writes every
# SF-th tile, then its pipeline depth.
TRACED = CASES + [
    mvau("m_folded", mw=12, mh=4, pe=2, simd=3, pixels=3, nt=7, thr_mode="search"),
    mvau("m_packed_raw", mw=8, mh=4, pe=4, simd=8, pixels=2, nt=0, dsp_pe=4, seed=1),
]



@pytest.fixture(scope="module")
def kernel_bench(tmp_path_factory):
    """One g++ build holding every case's layer header and a dispatcher by case name."""
    root = tmp_path_factory.mktemp("kernels_stream")
    env, g = codegen._environment(), codegen.Cpp()
    for header in codegen.TEMPLATE_DIR.glob("fg_*.h"):
        (root / header.name).write_text(header.read_text())
    includes, dispatch = [], []
    for layer in TRACED:
        codegen._write_layer(env, layer, root / f"{layer.name}.h")
        includes.append(f'#include "{layer.name}.h"')
        ti, to = g.ctype(layer.in_dtype), g.ctype(layer.out_dtype)
        dispatch.append(f'    if (name == "{layer.name}") return run<{ti}, {layer.in_word}, {to}, {layer.out_word}>'
                        f'(&{layer.name}, f);')
    source = TESTBENCH.replace("%INCLUDES%", "\n".join(includes)).replace("%DISPATCH%", "\n".join(dispatch))
    (root / "bench.cpp").write_text(source)
    cmd = ["g++", "-O1", "-std=c++14", "-Wall", "-Wno-unknown-pragmas", "-Werror=array-bounds", "-isystem",
           str(ap_types_include()), "-I", str(root), str(root / "bench.cpp")]
    # the synthesis form is the traced one; the C model pops and pushes the same words, whole frames at a time
    procs = {form: subprocess.Popen([*cmd, *flags, "-o", str(root / f"bench_{form}")], stderr=subprocess.PIPE,
                                    text=True) for form, flags in FORMS.items()}
    for form, proc in procs.items():
        _, err = proc.communicate()
        assert proc.returncode == 0, (form, err[-3000:])
    return root, {form: root / f"bench_{form}" for form in FORMS}


FORMS = {"synthesis": ["-DFG_CSIM_SYNTHESIS_FORM"], "model": []}


def _run(exe, layer, x, root, tag=""):
    """(per-frame traces, per-frame outputs) of the case on frames x."""
    words = x.reshape(x.shape[0], -1, layer.in_word)
    data = root / f"{layer.name}{tag}.in"
    data.write_text(f"{words.shape[1]} {x.shape[0]}\n" + " ".join(map(str, words.reshape(-1).tolist())))
    proc = subprocess.run([str(exe), layer.name, str(data)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    lines = proc.stdout.split("\n")
    return ([np.array(lines[2 * f].split()[1:], int) for f in range(x.shape[0])],
            [np.array(lines[2 * f + 1].split()[1:], np.int64) for f in range(x.shape[0])])


def _random_codes(layer, rng, frames):
    lo, hi = int(layer.idt.min()), int(layer.idt.max())
    return rng.integers(lo, hi + 1, (frames, *layer.in_shape))


@pytest.mark.parametrize("layer", TRACED, ids=[c.name for c in TRACED])
def test_kernel_matches_reference_and_io_pattern(layer, kernel_bench):
    root, exes = kernel_bench
    x = _random_codes(layer, np.random.default_rng(zlib.crc32(layer.name.encode())), FRAMES)
    traces, outs = _run(exes["synthesis"], layer, x, root)
    _, model_outs = _run(exes["model"], layer, x, root, "_model")
    reads, writes = layer.stream_pattern()
    loop, depth = layer.iterations(), layer.PIPELINE_DEPTH
    assert layer.cycles() == len(reads) == loop + depth
    # pops in the first pipeline stage, pushes in the last (depth - 1 cycles later), then the pipeline drains
    assert not reads[loop:].any() and not writes[:depth - 1].any() and not writes[-1]
    writes = writes[depth - 1:depth - 1 + loop]
    expect = run_layer(layer, x)
    for frame in range(FRAMES):
        trace = traces[frame]
        assert np.array_equal(trace & 1, reads[:loop]), "the loop pops other than stream_pattern() says"
        assert np.array_equal(trace >> 1, writes[:loop]), "the loop pushes other than stream_pattern() says"
        assert np.array_equal(outs[frame], expect[frame].reshape(-1)), f"frame {frame} differs from the reference"
        assert np.array_equal(model_outs[frame], outs[frame]), f"frame {frame}: the C model differs from the loops"


@pytest.mark.parametrize("layer", CASES, ids=[c.name for c in CASES])
def test_forms_equal_at_the_extreme_codes(layer, kernel_bench):
    """Frames of all-minimum, all-maximum and mixed extreme codes (the pad code among them for signed windows):
    the synthesis loops and the C model both give the reference's output."""
    root, exes = kernel_bench
    lo, hi = int(layer.idt.min()), int(layer.idt.max())
    x = np.stack([np.full(layer.in_shape, lo), np.full(layer.in_shape, hi),
                  np.random.default_rng(3).choice([lo, hi], size=layer.in_shape)])
    expect = run_layer(layer, x)
    for form, exe in exes.items():
        _, outs = _run(exe, layer, x, root, f"_extreme_{form}")
        for frame in range(len(x)):
            assert np.array_equal(outs[frame], expect[frame].reshape(-1)), (form, frame)


def test_cases_cover_the_edge_cases():
    """The brief's edge cases are all present (so a case list edit cannot silently drop one)."""
    windows = [c for c in CASES if isinstance(c, SlidingWindow)]
    assert any(w.simd == w.channels for w in windows)
    assert any(w.simd > w.channels and w.split > 1 for w in windows)
    assert any(w.simd < w.channels for w in windows)
    assert any(w.ifm_word < w.channels for w in windows)
    assert any(w.pads == (0, 0, 0, 0) for w in windows)
    assert any(w.stride == (2, 2) for w in windows)
    assert any(w.out_shape[0] == 1 for w in windows)
    assert any(w.in_shape[0] % 2 and w.in_shape[1] % 2 for w in windows)
    pools = [c for c in CASES if isinstance(c, MaxPool)]
    assert any(p.in_shape[2] == p.pe for p in pools) and any(p.in_shape[2] > p.pe for p in pools)
    convs = [c for c in CASES if isinstance(c, WidthConverter)]
    ratios = {(c.in_elems % c.out_elems == 0, c.out_elems % c.in_elems == 0) for c in convs}
    assert ratios == {(True, False), (False, True), (False, False)}


def test_window_with_simd_above_c_reads_each_bank_once():
    """SIMD > C: the line buffer is split by KW, so the KW columns of a word come from different memories, and
    every bank needs one read and one write port per cycle (simple dual port), as emitted."""
    layer = window("w", (416, 416, 3), (3, 3), pads=(1, 1, 1, 1), simd=27, ifm_word=3, dtype="UINT8")
    lb = layer.memories()[0]
    assert (lb.banks, lb.depth, lb.width) == (4 * 3, math.ceil(416 / 3), 24)
    assert lb.bind_type == "ram_s2p" and lb.ports_ok()
    text = codegen._environment().get_template("sliding_window.h.j2").module.instance(layer, codegen.Cpp())
    assert f"{lb.name}[12][139][3]" in text and f"variable={lb.name} type=ram_s2p impl=bram" in text


@pytest.mark.parametrize("layer", CASES, ids=[c.name for c in CASES])
def test_memories_are_emitted_as_declared_and_priced_from_the_declaration(layer):
    """Every memory of the layer appears in its generated header exactly as declared (shape, partitioning,
    BIND_STORAGE with the declared storage), needs no more ports than one bank has, and its price is part of the
    layer's resources (BRAM18 and LUTRAM come from the memories alone)."""
    text = layer.render_instance(codegen._environment())
    total = {"BRAM18": 0, "LUTRAM": 0}
    for m in layer.memories():
        assert m.ports_ok()
        assert f"{m.name}[{m.banks}][{m.depth}][{m.elems}];" in text
        if m.storage == "registers":
            assert f"variable={m.name} complete dim=0" in text
        else:
            assert f"BIND_STORAGE variable={m.name} type={m.bind_type} impl={m.storage}" in text
            assert m.bind_type == "ram_s2p"  # one read and one write per bank and cycle
        for r in total:
            total[r] += m.resources()[r]
    assert "DEPENDENCE" not in text
    assert {r: layer.resources()[r] for r in total} == total


def test_fifo_declaration_prices_the_reported_fifo():
    """A layer's output FIFO is declared once (fifo.fifo_memory) and fifo_resources prices that declaration."""
    from fpgagen import fifo
    from fpgagen.ir import Network

    layer = converter("c", (2, 3, 4), 1, 4)
    net = Network("n", None, None, [layer])
    out = net.edges[-1]
    for depth, style in ((2, "srl"), (100, "srl"), (2048, "bram")):
        out.depth, out.storage = depth, style
        m = fifo.fifo_memory(net, out)
        assert (m.depth, m.width, m.storage, m.bind_type) == (depth, 4 * layer.out_bits, style, "fifo")
        priced = fifo.fifo_resources(depth, m.width, style)
        assert all(priced[r] == m.resources()[r] for r in ("BRAM18", "LUTRAM"))
    assert priced["BRAM18"] > 0
    assert not any("DEPENDENCE" in h.read_text() for h in codegen.TEMPLATE_DIR.glob("fg_*.h"))
