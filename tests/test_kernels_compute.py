"""Per-kernel g++ unit tests of the static MVAU and Threshold kernels (templates/hls/fg_mvau.h, fg_threshold.h):
each case is one layer's generated header driven by a tiny testbench, compiled with g++ against the ap_types
headers, and compared with the numpy reference (fpgagen/reference.py) by np.array_equal. All cases are compiled
into one binary per form (the C model and the synthesis form, two g++ runs side by side) to keep the test fast;
both forms must give the same output on every case, on random and extreme inputs."""

import copy
import shutil
import subprocess

import numpy as np
import pytest
from kernel_cases import mvau, sorted_thresholds
from qonnx.core.datatype import DataType

from fpgagen import codegen, csim, lint
from fpgagen.board import load_board
from fpgagen.ir import MVAU, Network, Threshold
from fpgagen.ir.network import InputSpec, OutputSpec
from fpgagen.reference import run_layer


def threshold(name, ch, pe, nt=3, pixels=7, seed=0):
    rng = np.random.default_rng(seed)
    return Threshold(name, (1, pixels, ch), (1, pixels, ch), "INT4", "UINT2", thresholds=sorted_thresholds(
        rng, ch, nt, -9, 9), negate=rng.integers(0, 2, size=ch).astype(bool), out_base=0, pe=pe)


def extreme(name, pattern, mw=32, simd=16):
    """Packed raw-accumulator layers whose weights sit at the INT4 extremes: all -8, all 7, or -8/7 by PE."""
    layer = mvau(name, mw=mw, mh=4, pe=4, simd=simd, nt=0, dsp_pe=4, acc="INT16")
    rows = {"min": [-8] * 4, "max": [7] * 4, "alternate": [-8, 7, -8, 7], "mixed": [7, -8, -8, 7]}[pattern]
    layer.weights = np.repeat(np.array(rows)[:, None], mw, axis=1)
    return layer


EXTREMES = [extreme(f"packed_extreme_{p}", p) for p in ("min", "max", "alternate", "mixed")]


def scaled(name, channel_scales, taps, mh, pe, simd, nt=15, seed=0, **styles):
    """An MVAU whose input channels sit on different grids (a Concat of two branches): column k = the channel's
    multiplier, repeated per tap (window order: tap major, channel minor); the accumulator type and thresholds
    are sized from the exact scaled sums, as streamline sizes them."""
    from fpgagen.quant import smallest_dtype

    k = np.tile(np.asarray(channel_scales, np.int64), taps)
    layer = mvau(name, mw=k.size, mh=mh, pe=pe, simd=simd, nt=0, seed=seed, **styles)
    bound = int((np.abs(layer.weights) * k).sum(axis=1).max()) * 15
    layer.in_scale, layer.acc_dtype = k, smallest_dtype(-bound, bound)
    if nt:
        rng = np.random.default_rng(seed)
        layer.thresholds = sorted_thresholds(rng, mh, nt, -bound // 4, bound // 4)
        layer.out_dtype = DataType["UINT4"]
    else:
        layer.out_dtype = layer.acc_dtype
    return layer


SCALED = [
    # two runs per tap (4 channels at k=3, 2 at k=2^20+7): SIMD=2 tiles never straddle them; KD=3 tiles repeat
    # per tap; wide thresholds (a 28-bit accumulator); LUT multipliers
    scaled("scaled_two_runs", [3] * 4 + [2**20 + 7] * 2, taps=3, mh=4, pe=2, simd=2, seed=12),
    # packed DSP pairs and one LUT PE, binary-search thresholds, k of 30 bits: a 40+-bit accumulator
    scaled("scaled_packed_search", [2**29 + 3] * 4 + [5] * 4, taps=2, mh=6, pe=3, simd=4, dsp_pe=2,
           thr_mode="search", seed=13),
    # k of 45 bits: a 55-bit accumulator and thresholds past 48 bits (native int64 ROM words in the C model)
    scaled("scaled_wide", [2**44 + 1] * 2 + [3] * 2, taps=2, mh=2, pe=1, simd=2, seed=15),
    # raw accumulators, one tile per output fold per run (SIMD = run length), one DSP PE
    scaled("scaled_raw", [7] * 3 + [1] * 3, taps=1, mh=2, pe=2, simd=3, nt=0, dsp_pe=1, seed=14),
]

CASES = [
    # SF == 1 (one tile per output fold), parallel thresholds, weights in LUTRAM
    mvau("sf1_parallel", mw=8, mh=6, pe=2, simd=8, nt=3, mem_style="lutram"),
    # SF > 1, binary search with negative thresholds, input buffer reused by NF = 4 folds
    mvau("sf4_search", mw=12, mh=4, pe=1, simd=3, nt=7, thr_mode="search", seed=1),
    # PE == MH (NF == 1): the input word is never re-read; DSP PEs beside LUT PEs; weights in BRAM
    mvau("nf1_dsp_mix", mw=6, mh=4, pe=4, simd=2, nt=15, thr_mode="search", dsp_pe=2, mem_style="bram", seed=2),
    # NF == SF == 1: weights and thresholds are constants (registers)
    mvau("single_tile", mw=4, mh=2, pe=2, simd=4, nt=3, seed=3),
    # 255 thresholds: the deep search stages in BRAM banks shared by two PEs (rom_2p), the shallow ones in
    # LUTRAM with one bank per PE; 8-bit output
    mvau("search255_bram", mw=16, mh=8, pe=4, simd=4, nt=255, thr_mode="search", thr_style="bram",
         abits=8, wbits=8, out="UINT8", acc="INT24", seed=4),
    # same thresholds compared in parallel, in BRAM
    mvau("parallel_bram", mw=16, mh=4, pe=2, simd=8, nt=15, thr_style="bram", seed=5),
    # raw accumulator output, SF > 1, one DSP PE of three
    mvau("raw_acc", mw=9, mh=3, pe=3, simd=3, nt=0, dsp_pe=1, seed=6),
    # an accumulator too narrow for the sums: it must wrap exactly as its declared INT8 register does
    mvau("wraps", mw=32, mh=4, pe=2, simd=8, nt=0, wbits=8, abits=8, acc="INT8", dsp_pe=1, seed=7),
    # DSP packing: two PEs per DSP48 chain (pre-adder w_hi * 2^K + w_lo), SF > 1
    mvau("packed_pairs", mw=18, mh=8, pe=4, simd=9, nt=15, dsp_pe=4, seed=8),
    # one packed pair, then a single DSP PE, raw accumulators
    mvau("packed_odd", mw=12, mh=6, pe=3, simd=4, nt=0, dsp_pe=3, seed=9),
    # signed 8-bit inputs on packed pairs, next to LUT PEs, binary-search thresholds
    mvau("packed_signed", mw=16, mh=8, pe=4, simd=8, nt=15, dsp_pe=2, abits=8, signed=True, acc="INT20",
         thr_mode="search", seed=10),
    threshold("thr_folded", ch=6, pe=2),
    *EXTREMES,
    threshold("thr_unfolded", ch=4, pe=4, nt=3, seed=1),
    *SCALED,
]

TB = """#include "top.h"
{includes}
#include <cstdio>
#include <cstring>
#include <iostream>

thread_local const char *fg::current_layer = "";

template <class C, unsigned IN, unsigned OUT, typename F>
static int drive(F kernel, unsigned words) {{
    hls::stream<fg::Vec<typename C::in_t, IN> > in;
    hls::stream<fg::Vec<typename C::out_t, OUT> > out;
    for (unsigned w = 0; w < words; w++) {{
        fg::Vec<typename C::in_t, IN> word;
        for (unsigned e = 0; e < IN; e++) {{
            long long v;
            std::cin >> v;
            word.v[e] = v;
        }}
        in.write(word);
    }}
    kernel(in, out);
    while (!out.empty()) {{
        const fg::Vec<typename C::out_t, OUT> word = out.read();
        for (unsigned e = 0; e < OUT; e++) std::printf("%lld\\n", (long long)word.v[e].to_int64());
    }}
    return in.empty() ? 0 : 3;
}}

int main(int argc, char **argv) {{
    if (argc != 2) return 2;
{dispatch}
    return 2;
}}
"""


def in_out_words(layer):
    return layer.in_word, layer.out_word


# The kernels' two forms (templates/hls/fg_common.h): the C model C-simulation runs, and the synthesis form Vitis
# HLS compiles (pipelined loops, DSP and packed-pair dot products, ap_int ROMs), built by g++ with
# FG_CSIM_SYNTHESIS_FORM. Every case runs through both, and both must equal the reference and each other.
FORMS = {"model": [], "synthesis": ["-DFG_CSIM_SYNTHESIS_FORM"]}


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    """({form: executable}, the generated HLS directory)."""
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    d = tmp_path_factory.mktemp("kernels")
    net = Network("kernels", InputSpec((1, 1, 1, 8), np.ones(1, np.float32), np.zeros(1, np.float32)),
                  OutputSpec("codes", (1, 1, 1, 8), np.ones(1, np.float32), np.zeros(1, np.float32)), CASES)
    for layer in CASES:
        layer.validate()
    hls = codegen.generate(net, d / "hls", load_board("pynq_z2"))
    dispatch = []
    for layer in CASES:
        i, o = in_out_words(layer)
        words = int(np.prod(layer.in_shape)) // i
        dispatch.append(f'    if (!std::strcmp(argv[1], "{layer.name}")) return drive<{layer.name}_config, {i}, {o}>'
                        f"({layer.name}, {words});")
    includes = "\n".join(f'#include "layers/{layer.name}.h"' for layer in CASES)
    (hls / "tb.cpp").write_text(TB.format(includes=includes, dispatch="\n".join(dispatch)))
    procs = {form: subprocess.Popen(["g++", "-O1", "-std=c++14", "-w", *flags, "-isystem",
                                     str(csim.ap_types_include()), "-I", str(hls), str(hls / "tb.cpp"), "-o",
                                     str(d / f"tb_{form}")], stderr=subprocess.PIPE, text=True)
             for form, flags in FORMS.items()}  # both forms compile side by side
    for form, proc in procs.items():
        _, err = proc.communicate()
        assert proc.returncode == 0, (form, err[-3000:])
    return {form: d / f"tb_{form}" for form in FORMS}, hls


def run_forms(exes, layer, x):
    """The case's output from every form; they must all be equal (returns the common output)."""
    got = {form: run_case(exe, layer, x) for form, exe in exes.items()}
    assert np.array_equal(got["model"], got["synthesis"]), (layer.name, "the C model differs from the synthesis form")
    return got["model"]


def run_case(exe, layer, x):
    proc = subprocess.run([str(exe), layer.name], input="\n".join(map(str, x.reshape(-1))) + "\n",
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (layer.name, proc.returncode, proc.stderr)
    return np.array([int(v) for v in proc.stdout.split()], np.int64).reshape(*x.shape[:-1], layer.out_shape[-1])


def wrap(values, dtype):
    bits = dtype.bitwidth()
    return (values + 2 ** (bits - 1)) % 2**bits - 2 ** (bits - 1)


@pytest.mark.parametrize("layer", CASES, ids=[c.name for c in CASES])
def test_kernel_equals_reference(binary, layer):
    exes, _ = binary
    rng = np.random.default_rng(11)
    dt = layer.idt
    x = rng.integers(int(dt.min()), int(dt.max()) + 1, size=(1, *layer.in_shape))
    got = run_forms(exes, layer, x)
    want = run_layer(layer, x)
    if isinstance(layer, MVAU) and layer.thresholds is None:
        want = wrap(want, layer.acc_dtype)  # the declared accumulator register wraps
    assert np.array_equal(got, want), (layer.name, got.reshape(-1)[:20], want.reshape(-1)[:20])
    if layer not in EXTREMES:
        assert len(np.unique(want)) > 1  # a constant output would prove little


@pytest.mark.parametrize("layer", CASES, ids=[c.name for c in CASES])
def test_forms_equal_at_the_extremes(binary, layer):
    """Every input code at its minimum or maximum (all minimum, all maximum, a random mix): accumulators at their
    extremes (wrapping where the declared register wraps), every threshold passed or missed. The C model and the
    synthesis form (DSP and fabric dot products, packed pairs, ap_int ROMs) agree, and equal the reference."""
    exes, _ = binary
    lo, hi = int(layer.idt.min()), int(layer.idt.max())
    shape = (1, *layer.in_shape)
    rng = np.random.default_rng(5)
    for x in (np.full(shape, lo), np.full(shape, hi), rng.choice([lo, hi], size=shape)):
        got = run_forms(exes, layer, x)
        want = run_layer(layer, x)
        if isinstance(layer, MVAU) and layer.thresholds is None:
            want = wrap(want, layer.acc_dtype)
        assert np.array_equal(got, want), (layer.name, x.reshape(-1)[:4], got.reshape(-1)[:8], want.reshape(-1)[:8])


def test_wrap_case_really_overflows():
    layer = next(c for c in CASES if c.name == "wraps")
    x = np.full((1, *layer.in_shape), 255)
    exact = run_layer(layer, x)
    assert (exact > 127).any() or (exact < -128).any()


def test_search_cases_use_shared_bram_stage_banks():
    layer = next(c for c in CASES if c.name == "search255_bram")
    stages = [m for m in layer.memories() if m.name.startswith("thr_stage")]
    assert len(stages) == 8 and {m.bind_type for m in stages if m.storage == "bram"} == {"rom_2p"}
    assert all(m.ports_ok() for m in layer.memories())


def test_packing_cases_are_packed():
    packed = [c for c in CASES if c.name.startswith("packed")]
    assert len(packed) == 7 and all(c.pack_shift > 0 for c in packed)
    assert [c.dsp_blocks() for c in packed[:3]] == [2 * 9, 2 * 4, 1 * 8]  # a pair shares one chain of SIMD blocks
    wide = next(c for c in CASES if c.name == "wraps")  # 8-bit x 8-bit: no room in 25 bits
    assert wide.pack_shift == 0 and wide.dsp_blocks() == wide.dsp_pe * wide.simd


def test_packed_split_is_exact_at_the_extremes(binary):
    """Weights and inputs at their extremes drive the packed low sum to the bound its shift K was chosen for."""
    exes, _ = binary
    for layer in EXTREMES:
        for value in (int(layer.idt.min()), int(layer.idt.max())):
            x = np.full((1, *layer.in_shape), value)
            got = run_forms(exes, layer, x)
            want = wrap(run_layer(layer, x), layer.acc_dtype)
            assert np.array_equal(got, want), (layer.name, value, got.reshape(-1)[:8], want.reshape(-1)[:8])
            if value == 15:  # the tile sums really reach the bound: |sum| = SIMD * |w| * 15 per tile
                assert np.abs(run_layer(layer, x)).max() >= layer.simd * 7 * 15


def test_generated_kernel_files_pass_the_lint(binary):
    _, hls = binary
    found = []
    for name in ("fg_mvau.h", "fg_arith.h", "fg_threshold.h"):
        found += lint.lint_text((hls / name).read_text(), name)
    for layer in CASES:
        text = (hls / "layers" / f"{layer.name}.h").read_text()
        found += lint.lint_text(text, layer.name) + lint.lint_memories(text, layer.memories(), layer.name)
    assert found == []


def test_code_prices_equal_the_declarations(binary):
    """Every case's emitted arrays, priced from the code alone, equal its declared memories and the BRAM18/LUTRAM
    its resources() charges (Threshold included, which no test network lowers to)."""
    from fpgagen.report import memory_figures

    _, hls = binary
    for layer in CASES:
        code = {"BRAM18": 0, "LUTRAM": 0}
        for a in lint.parse_arrays((hls / "layers" / f"{layer.name}.h").read_text()):
            for r, v in lint.price_array(a).items():
                code[r] += v
        declared = memory_figures(layer.memories())
        assert code == {r: declared[r] for r in code} == {r: layer.resources()[r] for r in code}, layer.name
    assert any(c.resources()["BRAM18"] for c in CASES) and any(c.resources()["LUTRAM"] for c in CASES)


def test_optimizer_steps_dsp_by_packed_pairs():
    from fpgagen.ir.layers import RESOURCES
    from fpgagen.optimize import _probe, layer_cores

    layer = next(c for c in CASES if c.name == "packed_pairs")
    cores = [c for c in layer_cores(layer, first=False) if c.attrs["pe"] == 4 and c.attrs["simd"] == 9]
    core = cores[0]
    assert core.dsp_step == 2 and core.dsp_max == 2
    base = _probe(layer, {**core.attrs, "dsp_pe": 0}).resources()
    for units in (1, 2):  # resources are linear in pairs, as the integer program assumes
        got = _probe(layer, {**core.attrs, "dsp_pe": 2 * units}).resources()
        assert all(got[r] == base[r] + units * core.dsp_unit[r] for r in RESOURCES)
    assert core.dsp_unit["DSP"] == 9  # one chain of SIMD blocks per pair


def test_scaled_cases_cross_runs_and_refuse_straddling_simd():
    """The scaled cases really carry several multipliers per fold, with SIMD > 1 tiles on both sides of a run
    boundary; a SIMD whose tiles would straddle a boundary is not offered and is refused with an FpgagenError."""
    from fpgagen.errors import FpgagenError

    two = next(c for c in SCALED if c.name == "scaled_two_runs")
    assert two.simd == 2 and len(set(two.tile_scales().tolist())) == 2 and two.scale_depth == 3
    assert two.simd_options() == [1, 2] and {c["simd"] for c in two.fold_cores()} == {1, 2}
    assert all(np.unique(two.in_scale.reshape(-1, o["simd"]), axis=1).shape[1] == 1 for o in two.fold_options())
    assert next(c for c in SCALED if c.name == "scaled_packed_search").pack_shift > 0
    wide = next(c for c in SCALED if c.name == "scaled_wide")
    assert wide.thr_bits > 48 and wide.acc_dtype.bitwidth() > 52
    probe = scaled("straddle", [3] * 4 + [5] * 2, taps=1, mh=2, pe=1, simd=2)
    with pytest.raises(FpgagenError, match="different scales"):
        probe.set_folding(simd=3)
    # the multipliers are priced: one LUT multiplier per LUT PE, DSP48E1s per DSP PE, and the ROM
    plain = copy.copy(two)
    plain.in_scale = None
    assert two.resources()["LUT"] > plain.resources()["LUT"] and "in_scale" in two.memory_dtypes()
    raw = next(c for c in SCALED if c.name == "scaled_raw")
    plain_raw = copy.copy(raw)
    plain_raw.in_scale = None
    assert raw.dsp_blocks() == plain_raw.dsp_blocks() + raw.dsp_pe * raw.scale_multiplier()[1]
