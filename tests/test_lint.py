"""The generated-code lint (fpgagen/lint.py): it fails on bad snippets, and passes on the code fpgagen emits for every
test network (the MVAU and Threshold kernels strictly; the whole project once every kind is converted)."""

import nets
import pytest

import fpgagen
from fpgagen import lint
from fpgagen.ir.layers import Layer
from fpgagen.ir.memory import Memory

GOOD = """
template <class C>
void k(hls::stream<int> &in, hls::stream<int> &out) {
    unsigned cw = 0;
k_loop:
    for (unsigned i = 0; i < C::N; i++) {
#pragma HLS PIPELINE II=1
        int y = 0;
    k_lanes:
        for (unsigned p = 0; p < C::PE; p++) {
#pragma HLS UNROLL
            y += table[p / C::LANES][cw][p % 2] >> (i % 8);
        }
        out.write(y / 4);
        cw = (cw == C::CW - 1) ? 0 : cw + 1;  // a counter, not i % CW
    }
}
"""


def test_good_snippet_passes():
    assert lint.lint_text(GOOD) == []


@pytest.mark.parametrize("bad,what", [
    (GOOD.replace("#pragma HLS PIPELINE II=1",
                  "#pragma HLS PIPELINE II=1\n#pragma HLS DEPENDENCE variable=t inter false"), "DEPENDENCE"),
    (GOOD.replace("out.write(y / 4)", "out.write(y / 3)"), "divider"),
    (GOOD.replace("out.write(y / 4)", "out.write(i % C::CW)"), "divider"),
    (GOOD.replace("out.write(y / 4)", "out.write(y / (i + 1))"), "divider"),
    (GOOD.replace("k_loop:\n", ""), "label"),
    (GOOD.replace("    k_lanes:\n", ""), "label"),
    (GOOD.replace("unsigned cw = 0;", "unsigned cw = 0;\n    while (in.empty()) {}"), "label"),
])
def test_bad_snippets_fail(bad, what):
    found = lint.lint_text(bad, "bad.h")
    assert found and all(f.startswith("bad.h:") for f in found)
    assert any(what in f for f in found), found


def test_simulation_only_code_is_not_linted():
    sim = "#ifndef __SYNTHESIS__\nvoid f() { for (int i = 0; i < n; i++) x += i / 3; }\n#endif\n"
    syn = sim.replace("#ifndef", "#ifdef")
    assert lint.lint_text(sim) == [] and len(lint.lint_text(syn)) == 1
    # the kernels' C model (#ifndef FG_STREAM_LOOPS) is simulation only; their synthesis form is linted
    for macro in ("FG_SYNTHESIS_FORM", "FG_STREAM_LOOPS"):
        model = sim.replace("__SYNTHESIS__", macro)
        assert lint.lint_text(model) == [] and len(lint.lint_text(model.replace("#ifndef", "#ifdef"))) == 1
        assert len(lint.lint_text(model.replace("#ifndef", "#ifdef").replace("#endif", "#else\n#endif"))) == 1


ROM = Memory("weights", 1, 64, 8, 4, "bram")
RAM = Memory("inbuf", 1, 16, 4, 8, "lutram", reads=1, writes=1)
DECL = """
    static const FG_ROM_TYPE(ap_int<4>, int8_t) weights[1][64][8] = {{0}};
#pragma HLS ARRAY_PARTITION variable=weights complete dim=1
#pragma HLS ARRAY_RESHAPE variable=weights complete dim=3
#pragma HLS BIND_STORAGE variable=weights type=rom_1p impl=bram
    ap_uint<8> inbuf[1][16][4];
#pragma HLS ARRAY_PARTITION variable=inbuf complete dim=1
#pragma HLS ARRAY_RESHAPE variable=inbuf complete dim=3
#pragma HLS BIND_STORAGE variable=inbuf type=ram_s2p impl=lutram
"""


def test_memory_declarations_match():
    assert lint.lint_memories(DECL, [ROM, RAM]) == []
    arrays = {a.name: a for a in lint.parse_arrays(DECL)}
    assert (arrays["weights"].banks, arrays["weights"].depth, arrays["weights"].width) == (1, 64, 32)
    assert (arrays["inbuf"].bind_type, arrays["inbuf"].impl, arrays["inbuf"].width) == ("ram_s2p", "lutram", 32)


@pytest.mark.parametrize("code,mems,what", [
    (DECL.replace("impl=bram", "impl=lutram"), [ROM, RAM], "bound to"),
    (DECL.replace("type=ram_s2p", "type=ram_1p"), [ROM, RAM], "bound to"),
    (DECL, [ROM, Memory("inbuf", 1, 16, 4, 8, "lutram", reads=3, writes=1)], "reads"),  # more ports than exist
    (DECL, [ROM, Memory("inbuf", 1, 16, 4, 8, "bram", reads=1, writes=1)], "bound to"),
    (DECL.replace("[1][64][8]", "[1][32][8]"), [ROM, RAM], "declared"),
    (DECL, [ROM], "not one of"),
    (DECL, [ROM, RAM, Memory("acc", 1, 1, 2, 16, "registers", 1, 1)], "not emitted"),
])
def test_memory_mismatches_fail(code, mems, what):
    found = lint.lint_memories(code, mems, "x.h")
    assert any(what in f for f in found), found


NETS = {"conv_w4a4": lambda: nets.conv_net(4, 4, seed=4), "fc": lambda: nets.fc_net(seed=0),
        "conv1x1_stride2": lambda: nets.conv1x1_stride2_net(seed=0), "acc_output": lambda: nets.acc_output_net(seed=0),
        "pow2": lambda: nets.pow2_net(seed=0)}


@pytest.fixture(scope="module", params=list(NETS))
def built(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    path = fpgagen.export(NETS[request.param](), d / "m.onnx")
    return fpgagen.build(path, out_dir=d / "b", verify=False, log=lambda msg: None)


MINE = ("MVAU", "Threshold")


def test_mvau_and_threshold_code_passes_the_lint(built):
    hls = built.build_dir / "hls"
    found = []
    for name in ("fg_mvau.h", "fg_arith.h", "fg_threshold.h"):
        found += lint.lint_text((hls / name).read_text(), name)
    for layer in built.net.layers:
        if layer.kind in MINE:
            text = (hls / "layers" / f"{layer.name}.h").read_text()
            found += lint.lint_text(text, layer.name) + lint.lint_memories(text, layer.memories(), layer.name)
    assert found == []


def test_whole_project_passes_the_lint(built):
    assert not [lay.kind for lay in built.net.layers if type(lay).memories is Layer.memories]
    assert lint.lint_project(built.build_dir / "hls", built.net) == []


def test_every_build_runs_the_lint(tmp_path, monkeypatch):
    """A build whose generated C++ the lint flags stops with an error (fpgagen's own bug), leaving no build."""
    onnx_path = fpgagen.export(nets.tiny_net(seed=5), tmp_path / "tiny.onnx")
    monkeypatch.setattr(lint, "lint_text", lambda text, filename="<code>": [f"{filename}:1: a finding"])
    with pytest.raises(fpgagen.FpgagenError, match="fails fpgagen's lint"):
        fpgagen.build(onnx_path, out_dir=tmp_path / "b", verify=False, log=lambda m: None)
    assert not (tmp_path / "b").exists()
