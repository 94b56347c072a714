"""Every user error is an FpgagenError naming what, where and what to do; the CLI prints it without a traceback."""

import json
import subprocess
import sys
from pathlib import Path

import nets
import numpy as np
import pytest

import fpgagen
from fpgagen.errors import CSimError, FpgagenError
from fpgagen.geometry import stream_geometry


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fpgagen.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def assert_clean_cli_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]  # progress lines may precede the error
    assert last.startswith("fpgagen: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in last, proc.stderr


@pytest.fixture(scope="module")
def small_model():
    return nets.conv_net(4, 4, seed=1)


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory, small_model):
    d = tmp_path_factory.mktemp("small")
    return fpgagen.export(small_model, d / "small.onnx")


def test_unsupported_op_names_node_and_type(tmp_path, quiet):
    path = fpgagen.export(nets.unsupported_op_net(), tmp_path / "bad.onnx")
    with pytest.raises(FpgagenError) as info:
        fpgagen.build(path, out_dir=tmp_path / "b", log=quiet)
    msg = str(info.value)
    assert "unsupported op type" in msg and "node '" in msg and "fpgagen supports" in msg
    proc = cli("build", path, "-o", tmp_path / "b2")
    assert_clean_cli_error(proc, "unsupported op type")


def test_float_layer_is_refused(tmp_path, quiet):
    path = fpgagen.export(nets.float_layer_net(), tmp_path / "float.onnx")
    with pytest.raises(FpgagenError, match="float"):
        fpgagen.build(path, out_dir=tmp_path / "b", log=quiet)


@pytest.mark.parametrize("content", [b"", b"this is not a protobuf \x00\xff\x12garbage" * 10])
def test_corrupt_onnx_file(tmp_path, content):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(content)
    assert_clean_cli_error(cli("build", path, "-o", tmp_path / "b"), str(path))


def test_truncated_onnx_file(tmp_path, small_onnx):
    path = tmp_path / "truncated.onnx"
    path.write_bytes(small_onnx.read_bytes()[: small_onnx.stat().st_size // 2])
    assert_clean_cli_error(cli("build", path, "-o", tmp_path / "b"), "truncated.onnx")


def test_missing_file(tmp_path):
    assert_clean_cli_error(cli("build", tmp_path / "nope.onnx"), "not found")


def test_unknown_board(small_onnx, tmp_path):
    assert_clean_cli_error(cli("build", small_onnx, "--board", "zcu999", "-o", tmp_path / "b"), "unknown board",
                           "pynq_z2")


def test_folding_divisibility_error_names_layer(small_onnx, tmp_path, quiet):
    bad = tmp_path / "fold.json"
    bad.write_text(json.dumps({"conv_0": {"pe": 3, "simd": 1}}))  # MH = 8 is not divisible by 3
    with pytest.raises(FpgagenError) as info:
        fpgagen.build(small_onnx, out_dir=tmp_path / "b", folding=bad, log=quiet)
    assert "PE=3 does not divide MH=8" in str(info.value) and "conv_0" in str(info.value)
    assert_clean_cli_error(cli("build", small_onnx, "--folding", bad, "-o", tmp_path / "c"), "PE=3", "conv_0",
                           "choose PE from")


def test_folding_window_simd_error(small_onnx, tmp_path, quiet):
    with pytest.raises(FpgagenError, match="SIMD=2 must divide the channels"):
        fpgagen.build(small_onnx, out_dir=tmp_path / "b", folding={"conv_0_window": {"simd": 2}}, log=quiet)


def test_folding_unknown_layer_and_attribute(small_onnx, tmp_path, quiet):
    with pytest.raises(FpgagenError, match="unknown layer 'conv_99'"):
        fpgagen.build(small_onnx, out_dir=tmp_path / "b", folding={"conv_99": {"pe": 1}}, log=quiet)
    with pytest.raises(FpgagenError, match="unknown folding attribute 'lanes'"):
        fpgagen.build(small_onnx, out_dir=tmp_path / "b", folding={"conv_0": {"lanes": 1}}, log=quiet)
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    assert_clean_cli_error(cli("build", small_onnx, "--folding", bad, "-o", tmp_path / "c"), "folding")


def test_wrong_input_shape(small_onnx, tmp_path, quiet):
    acc = fpgagen.build(small_onnx, out_dir=tmp_path / "b", log=quiet)
    with pytest.raises(FpgagenError, match="input of shape"):
        acc.run(np.zeros((1, 3, 31, 32), np.float32))


def _tamper(acc, layer_name, old, new):
    path = acc.hls_dir / "layers" / f"{layer_name}.h"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    acc._lib = None  # recompile the tampered project


def test_csim_stream_underflow_fails_loudly(small_onnx, tmp_path, quiet):
    acc = fpgagen.build(small_onnx, out_dir=tmp_path / "b", log=quiet)
    pool = next(lay for lay in acc.net.layers if lay.kind == "MaxPool")
    h = pool.in_shape[0]
    _tamper(acc, pool.name, f"IH = {h},", f"IH = {h + 2},")  # reads two rows more than arrive
    with pytest.raises(CSimError, match=f"read while empty in layer {pool.name}"):
        acc.verify()


def test_csim_leftover_data_fails_loudly(small_onnx, tmp_path, quiet):
    acc = fpgagen.build(small_onnx, out_dir=tmp_path / "b", log=quiet)
    pool = next(lay for lay in acc.net.layers if lay.kind == "MaxPool")
    h = pool.in_shape[0]
    _tamper(acc, pool.name, f"IH = {h},", f"IH = {h - 2},")  # leaves two rows unread, emits fewer outputs
    with pytest.raises(CSimError, match="still holds|read while empty"):
        acc.verify()


def test_cli_build_csim_report_roundtrip(small_onnx, small_model, tmp_path):
    out = tmp_path / "cli_build"
    proc = cli("build", small_onnx, "--board", "pynq_z2", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "FPS estimated" in proc.stderr
    for name in ("report.json", "report.md", "network.json", "folding.json", "hls/top.cpp", "hls/run_hls.tcl",
                 "hls/testbench.cpp", "hls/csim_bridge.cpp", "hls/tb_input.bin"):
        assert (out / name).is_file(), name
    x = nets.net_input(small_model, 5, shape=(2, 3, 32, 32))
    np.save(tmp_path / "x.npy", x)
    proc = cli("csim", out, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy", "--codes")
    assert proc.returncode == 0, proc.stderr
    y = np.load(tmp_path / "y.npy")
    assert np.array_equal(y, nets.exact_codes(small_model, x))
    report = cli("report", out)
    assert report.returncode == 0 and "Estimated throughput" in report.stdout
    assert_clean_cli_error(cli("csim", out, "--input", tmp_path / "missing.npy", "--output", tmp_path / "z.npy"),
                           "missing.npy")
    help_text = cli("build", "--help").stdout
    assert "--folding" in help_text and "--board" in help_text


# --- issue 10: start-up, validation where input enters, damaged build directories, the C-sim cache -------------
HEAVY = ("torch", "brevitas", "qonnx", "onnx", "numpy", "scipy", "onnxruntime")


def test_cli_help_imports_nothing_heavy():
    """Building the parser and printing every --help imports neither torch nor brevitas (nor qonnx, onnx, numpy)."""
    code = ("import contextlib, io, json, sys\n"
            "from fpgagen.cli import _parser, main\n"
            "_parser()\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    codes = [main(args) for args in (['--help'], *([c, '--help'] for c in "
            "('build', 'csim', 'report', 'train', 'eval', 'bitstream')))]\n"
            "import fpgagen\n"
            f"print(json.dumps({{'codes': codes, 'heavy': sorted(m for m in {HEAVY!r} if m in sys.modules)}}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"codes": [0] * 7, "heavy": []}, result
    assert cli("--help").returncode == 0


def test_lazy_package_attributes_still_work():
    assert callable(fpgagen.build) and callable(fpgagen.load) and fpgagen.Accelerator.__name__ == "Accelerator"
    assert issubclass(fpgagen.FpgagenError, Exception)
    with pytest.raises(AttributeError):
        fpgagen.no_such_name  # noqa: B018


def test_torch_free_defaults_match_the_trainer():
    from fpgagen.train.cli import TRAIN_DEFAULTS
    from fpgagen.train.trainer import TrainConfig

    config = TrainConfig()
    assert TRAIN_DEFAULTS == {**{k: getattr(config, k) for k in TRAIN_DEFAULTS if k != "train_images"},
                              "train_images": config.synthetic.n_train}


def test_validate_resources_match_the_ir():
    from fpgagen.ir.layers import RESOURCES
    from fpgagen.validate import RESOURCES as VALIDATE_RESOURCES

    assert tuple(VALIDATE_RESOURCES) == tuple(RESOURCES)


def main_cli(*args):
    """fpgagen ARGS in process: (exit status, stderr)."""
    import contextlib
    import io

    from fpgagen.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main([str(a) for a in args])
    return rc, err.getvalue()


def assert_clean(rc_err, *fragments):
    rc, err = rc_err
    assert rc == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("fpgagen: error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in last, err


@pytest.mark.parametrize("args,fragment", [
    (["--target-fps", "0"], "--target-fps"), (["--target-fps", "-5"], "--target-fps"),
    (["--target-fps", "nan"], "--target-fps"), (["--target-fps", "inf"], "--target-fps"),
    (["--target-fps", "fast"], "--target-fps"), (["--ceiling", "LUT=0"], "LUT=0"),
    (["--ceiling", "LUT=1.5"], "LUT=1.5"), (["--ceiling", "FOO=0.5"], "unknown resource 'FOO'"),
    (["--ceiling", "LUT=nan"], "LUT=nan"), (["--ceiling", "LUT"], "--ceiling"),
    (["--optimizer", "magic"], "--optimizer")])
def test_numeric_build_options(small_onnx, tmp_path, args, fragment):
    assert_clean(main_cli("build", small_onnx, "-o", tmp_path / "b", *args), fragment)
    assert not (tmp_path / "b").exists()


def test_api_options_are_validated(small_onnx, tmp_path, quiet):
    for kwargs in ({"target_fps": 0}, {"target_fps": float("nan")}, {"ceilings": {"LUT": -1}},
                   {"ceilings": [0.5]}, {"optimizer": "magic"}, {"folding": [1, 2]},
                   {"folding": {"layers": [1]}}, {"folding": {"conv_0": {"pe": [2]}}}):
        with pytest.raises(FpgagenError):
            fpgagen.build(small_onnx, out_dir=tmp_path / "b", log=quiet, **kwargs)


@pytest.mark.parametrize("folding,fragment", [
    ([{"conv_0": {"pe": 2}}], "JSON array"), ({"layers": "conv_0"}, "JSON string"), ({"conv_0": 4}, "JSON number"),
    ({"conv_0": {"pe": None}}, "null"), ({"conv_0": {"pe": 2.5}}, "2.5"), ({"conv_0": {"pe": 0}}, "pe=0"),
    ({"conv_0": {"lanes": 1}}, "lanes"), ({"conv_7": {"pe": 1}}, "conv_7"),
    ({"conv_0": {"mem_style": "magic"}}, "magic")])
def test_folding_schema(small_onnx, tmp_path, folding, fragment):
    path = tmp_path / "fold.json"
    path.write_text(json.dumps(folding))
    assert_clean(main_cli("build", small_onnx, "--folding", path, "-o", tmp_path / "b"), fragment)


def test_out_naming_a_file(small_onnx, tmp_path):
    f = tmp_path / "a_file"
    f.write_text("mine")
    assert_clean(main_cli("build", small_onnx, "-o", f), "not a directory")
    assert_clean(main_cli("build", small_onnx, "-o", f / "sub"), "is a file")
    assert f.read_text() == "mine"


def test_board_file_schema(small_onnx, tmp_path, monkeypatch):
    from fpgagen import board as board_module

    monkeypatch.setattr(board_module, "BOARDS_DIR", tmp_path)
    good = (Path(__file__).resolve().parent.parent / "boards" / "pynq_z2" / "board.yaml").read_text()
    for name, text, fragment in (("broken", "name: [unclosed\n", "cannot read the board file"),
                                 ("listy", "- 1\n- 2\n", "not a mapping"),
                                 ("noclock", good.replace("clock_mhz: 100", "clock_mhz: 0"), "clock_mhz"),
                                 ("nolut", good.replace("LUT: 53200", "LUT: many"), "resources.LUT"),
                                 ("ceil", good.replace("LUT: 0.80", "LUT: 7"), "ceilings.LUT")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "board.yaml").write_text(text)
        assert_clean(main_cli("build", small_onnx, "--board", name, "-o", tmp_path / "b"), fragment)


def _mutated(small_onnx, tmp_path, mutate):
    import onnx

    proto = onnx.load(str(small_onnx))
    mutate(proto)
    path = tmp_path / "mutated.onnx"
    onnx.save(proto, str(path))
    return path


def _set_quant_param(proto, which, index, value):
    """Give the ``which``-th Quant node its own initializer for input ``index`` (1 scale, 2 zero point, 3 bits)."""
    from onnx import numpy_helper

    node = [n for n in proto.graph.node if n.op_type == "Quant"][which]
    name = f"mutated_{which}_{index}"
    node.input[index] = name
    proto.graph.initializer.append(numpy_helper.from_array(np.asarray(value, np.float32), name))


def _rename_conv_attribute(old, new):
    def mutate(proto):
        conv = next(n for n in proto.graph.node if n.op_type == "Conv")
        next(a for a in conv.attribute if a.name == old).name = new
    return mutate


# Quant 0 is the input quantizer, 1 the first weight quantizer, 2 the first activation quantizer (conv_net)
@pytest.mark.parametrize("mutate,fragment", [
    (lambda p: _set_quant_param(p, 1, 1, 0.0), "weight/bias scale 0 is not a finite number > 0"),
    (lambda p: _set_quant_param(p, 1, 1, float("nan")), "weight/bias scale nan"),
    (lambda p: _set_quant_param(p, 1, 1, float("inf")), "weight/bias scale inf"),
    (lambda p: _set_quant_param(p, 2, 1, -0.5), "activation scale -0.5"),
    (lambda p: _set_quant_param(p, 2, 2, 0.5), "zero point is not an integer"),
    (lambda p: _set_quant_param(p, 0, 2, 300.0), "outside the code range"),
    (lambda p: _set_quant_param(p, 2, 3, 32.0), "activation bit width 32 is not supported"),
    (lambda p: _set_quant_param(p, 2, 3, 2.5), "bit width 2.5"),
    (lambda p: _set_quant_param(p, 1, 3, 1.0), "1-bit signed weight/bias Quant"),
    (lambda p: _set_quant_param(p, 1, 3, 0.0), "weight/bias bit width 0"),
    (lambda p: _set_quant_param(p, 2, 1, np.ones(5, np.float32)), "does not broadcast"),
    (_rename_conv_attribute("dilations", "dilationz"), "Unrecognized attribute: dilationz"),
    (_rename_conv_attribute("kernel_shape", "ke2nel_shape"), "ke2nel_shape")])
def test_model_validation_names_the_real_problem(small_onnx, tmp_path, mutate, fragment):
    path = _mutated(small_onnx, tmp_path, mutate)
    assert_clean(main_cli("build", path, "-o", tmp_path / "b"), fragment)


def test_validation_holds_under_python_O(tiny_onnx, tmp_path):
    path = _mutated(tiny_onnx, tmp_path, lambda p: _set_quant_param(p, 1, 1, 0.0))
    proc = subprocess.run([sys.executable, "-O", "-m", "fpgagen.cli", "build", path, "-o", tmp_path / "b"],
                          capture_output=True, text=True)
    assert_clean_cli_error(proc, "weight/bias scale 0")


@pytest.fixture(scope="module")
def small_build(tiny_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("sb") / "build"
    fpgagen.build(tiny_onnx, out_dir=out, log=lambda m: None)
    return out


def test_csim_inputs_are_validated(small_build, tmp_path):
    cases = {"nan": np.full((1, 3, 8, 8), np.nan, np.float32), "empty": np.zeros((0, 3, 8, 8), np.float32),
             "shape": np.zeros((1, 3, 4, 8), np.float32), "rank": np.zeros((3, 8, 8), np.float32),
             "complex": np.zeros((1, 3, 8, 8), np.complex64), "strings": np.full((1, 3, 8, 8), "a")}
    fragments = {"nan": "NaN", "empty": "empty", "shape": "input of shape", "rank": "input of shape",
                 "complex": "dtype complex64", "strings": "dtype <U1"}
    for name, x in cases.items():
        np.save(tmp_path / f"{name}.npy", x)
        assert_clean(main_cli("csim", small_build, "--input", tmp_path / f"{name}.npy", "--output",
                              tmp_path / "y.npy"), fragments[name])
    np.save(tmp_path / "obj.npy", np.array([object()], dtype=object), allow_pickle=True)
    assert_clean(main_cli("csim", small_build, "--input", tmp_path / "obj.npy", "--output", tmp_path / "y.npy"),
                 "cannot read input array")
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((1, 3, 8, 8), np.float32))
    assert main_cli("csim", small_build, "--input", good, "--output", tmp_path / "new" / "dir" / "y.npy")[0] == 0
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    assert_clean(main_cli("csim", small_build, "--input", good, "--output", blocker / "y.npy"),
                 "cannot write the output array")
    assert_clean(main_cli("csim", small_build, "--input", good, "--output", tmp_path), "cannot write the output")


@pytest.mark.parametrize("damage,fragment", [
    (lambda d: (d / "network.json").write_text("{}"), "network.json"),
    (lambda d: (d / "network.json").write_text("[1, 2"), "network.json"),
    (lambda d: (d / "network.npz").write_bytes(b"garbage" * 100), "network.npz"),
    (lambda d: (d / "network.npz").unlink(), "network.npz is missing"),
    (lambda d: __import__("shutil").rmtree(d / "hls"), "hls/top.cpp is missing"),
    (lambda d: (d / "build.json").write_text('{"board": 7}'), "build.json"),
    (lambda d: (d / "build.json").write_text('{"board": "zcu999"}'), "cannot be used")])
def test_damaged_build_directory(small_build, tmp_path, damage, fragment):
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(small_build, d)
    damage(d)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), np.float32))
    assert_clean(main_cli("csim", d, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"), "damaged",
                 fragment, "rebuild")


@pytest.mark.parametrize("text", ["{}", "[]", '{"layers": 5}', "not json"])
def test_damaged_report(small_build, tmp_path, text):
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(small_build, d)
    (d / "report.json").write_text(text)
    assert_clean(main_cli("report", d), "rebuild")


@pytest.mark.parametrize("args,fragment", [
    (["eval", "--limit", "-1"], "--limit"), (["eval", "--limit", "0"], "--limit"), (["eval", "--size", "100"], "32"),
    (["train", "--weight-bits", "0"], "--weight-bits"), (["train", "--act-bits", "9"], "--act-bits"),
    (["train", "--size", "100"], "--size"), (["train", "--batch", "0"], "--batch"),
    (["train", "--lr-float", "nan"], "--lr-float"), (["train", "--lr-qat", "-1"], "--lr-qat"),
    (["train", "--anchors", "1,2,3"], "--anchors"), (["train", "--threads", "0"], "--threads")])
def test_train_eval_arguments(args, fragment):
    assert_clean(main_cli(*args), fragment)


def test_stale_lock_is_recovered(small_onnx, tmp_path, quiet):
    out = tmp_path / "b"
    (tmp_path / ".b.lock").write_text("999999999\n")  # left by a build that died; no process holds it
    fpgagen.build(small_onnx, out_dir=out, verify=False, log=quiet)
    assert (out / "network.json").is_file() and not (tmp_path / ".b.lock").exists()


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return fpgagen.export(nets.tiny_net(seed=5), tmp_path_factory.mktemp("tiny") / "tiny.onnx")


def test_csim_cache_heals_damaged_entries(tiny_onnx, tmp_path, monkeypatch, quiet):
    from fpgagen.csim import CSimLibrary, compile_library

    monkeypatch.setenv("FPGAGEN_CACHE", str(tmp_path / "cache"))
    acc = fpgagen.build(tiny_onnx, out_dir=tmp_path / "b", verify=False, log=quiet)  # nothing loaded yet
    lib = compile_library(acc.hls_dir, log=quiet)
    good = lib.read_bytes()
    data = acc.random_stream_input(2)
    for damage in (lambda: lib.write_bytes(good[: len(good) // 3]),  # truncated: SIGBUS if it were loaded
                   lambda: (lib.write_bytes(b"\x7fELF garbage" * 50),  # garbage: invalid ELF header, and
                            lib.with_name(lib.name + ".sha256").unlink())):  # no record: a foreign file
        damage()
        logs = []
        assert compile_library(acc.hls_dir, log=logs.append) == lib
        assert any("damaged" in m and "rebuilding" in m for m in logs), logs
        assert lib.read_bytes() != b"" and lib.with_name(lib.name + ".sha256").is_file()
    from fpgagen import packing

    out = CSimLibrary(lib).run(packing.frames_to_bytes(data, stream_geometry(acc.net)))
    got = packing.bytes_to_frames(out, stream_geometry(acc.net), acc.net.layers[-1].out_shape,
                                  acc.net.layers[-1].odt.signed())
    assert np.array_equal(got, acc.reference_stream(data))


def test_build_never_replaces_a_folder_of_user_files(tiny_onnx, tmp_path, quiet):
    """A build replaces its directory whole, so it must refuse a folder that is not an earlier build."""
    mine = tmp_path / "my_project"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    assert_clean(main_cli("build", tiny_onnx, "-o", mine, "--no-verify"), "not an fpgagen build directory")
    assert (mine / "thesis.tex").read_text() == "precious"
    empty = tmp_path / "empty"
    empty.mkdir()
    fpgagen.build(tiny_onnx, out_dir=empty, verify=False, log=quiet)  # an empty folder is fine
    assert (empty / "build.json").is_file()


def test_csim_input_files_are_named_for_what_they_are(small_build, tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "photo.png"), np.zeros((8, 8, 3), np.uint8))
    assert_clean(main_cli("csim", small_build, "--input", tmp_path / "photo.png", "--output", tmp_path / "y.npy"),
                 "the input is a PNG image", "fpgagen detect")
    x = np.zeros((1, 3, 8, 8), np.float32)
    np.savez(tmp_path / "two.npz", a=x, b=x)
    assert_clean(main_cli("csim", small_build, "--input", tmp_path / "two.npz", "--output", tmp_path / "y.npy"),
                 "an .npz archive of 2 arrays (a, b)")
    np.savez(tmp_path / "one.npz", x=x)  # one array: taken
    assert main_cli("csim", small_build, "--input", tmp_path / "one.npz", "--output", tmp_path / "y1.npy")[0] == 0
    # integers are never silently read as floats (an int64 0..255 image would saturate): refused, with the fix
    np.save(tmp_path / "ints.npy", np.arange(192, dtype=np.int64).reshape(1, 3, 8, 8))
    assert_clean(main_cli("csim", small_build, "--input", tmp_path / "ints.npy", "--output", tmp_path / "y.npy"),
                 "an integer array (int64)", "float")
    # --output without .npy: the path printed is the file written
    np.save(tmp_path / "x.npy", x)
    import contextlib
    import io

    from fpgagen.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(["csim", str(small_build), "--input", str(tmp_path / "x.npy"), "--output",
                     str(tmp_path / "res" / "noext")]) == 0
    assert f"wrote {tmp_path / 'res' / 'noext.npy'} " in out.getvalue() and (tmp_path / "res" / "noext.npy").is_file()


def test_tampered_or_incomplete_network_npz_is_named_for_csim_and_reference(small_build, tmp_path):
    import shutil

    d = tmp_path / "swapped"
    shutil.copytree(small_build, d)
    arrays = dict(np.load(d / "network.npz"))
    same = [(a, b) for a in arrays for b in arrays if a < b and arrays[a].shape == arrays[b].shape
            and not np.array_equal(arrays[a], arrays[b])]
    a, b = same[0]
    arrays[a], arrays[b] = arrays[b], arrays[a]
    np.savez_compressed(d / "network.npz", **arrays)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), np.float32))
    for extra in ((), ("--reference",)):
        assert_clean(main_cli("csim", d, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy", *extra),
                     "network.npz changed since the build", "rebuild")
    d = tmp_path / "lacking"
    shutil.copytree(small_build, d)
    arrays = dict(np.load(d / "network.npz"))
    dropped = sorted(arrays)[-1]
    del arrays[dropped]
    np.savez_compressed(d / "network.npz", **arrays)
    doc = json.loads((d / "build.json").read_text())
    del doc["sha256"]  # an older build without digests: Network.load names what is missing
    (d / "build.json").write_text(json.dumps(doc))
    assert_clean(main_cli("csim", d, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy", "--reference"),
                 f"network.npz lacks the array '{dropped}' that network.json names")


def test_checker_message_keeps_the_node_name(small_onnx, tmp_path):
    """onnx.checker's message runs over several lines and names the node only on the later ones."""
    import onnx

    proto = onnx.load(str(small_onnx))
    conv = next(n for n in proto.graph.node if n.op_type == "Conv")
    conv.input[0] = "X_from_nowhere"
    path = tmp_path / "unsorted.onnx"
    onnx.save(proto, str(path))
    assert_clean(main_cli("build", path, "-o", tmp_path / "b"), "input 'X_from_nowhere' of node", conv.name)


@pytest.mark.parametrize("args,fragments", [
    (["--optimizer", "greedy", "--target-fps", "1e12"], ["greedy folding for --target-fps 1e+12 (unreachable",
                                                         "lower --target-fps"]),
    (["--ceiling", "LUT=0.01"], ["the LUT ceiling 0.01 allows 532 LUT, less than the platform shell", "LUT=0.8"])])
def test_budget_errors_name_the_target_and_the_ceiling(small_onnx, tmp_path, args, fragments):
    code, err = main_cli("build", small_onnx, "-o", tmp_path / "b", *args)
    assert_clean((code, err), *fragments)
    assert "of -" not in err  # never "at least N of -2,947 available"


def test_folding_errors_name_the_fifo_and_a_style_value(small_onnx, tmp_path):
    path = tmp_path / "fold.json"
    path.write_text(json.dumps({"conv_0": {"fifo_depth": 10 ** 12}}))
    assert_clean(main_cli("build", small_onnx, "--folding", path, "-o", tmp_path / "b"),
                 "conv_0's output FIFO (fifo_depth 1,000,000,000,000)", "lower a fifo_depth")
    path.write_text(json.dumps({"conv_0": {"mem_style": 1.5}}))
    code, err = main_cli("build", small_onnx, "--folding", path, "-o", tmp_path / "b")
    assert_clean((code, err), '"mem_style": "bram"')
    assert '"mem_style": 2' not in err


def test_zero_sized_dimension_is_refused_where_it_enters(small_onnx, tmp_path):
    def zero_height(proto):
        proto.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 0

    path = _mutated(small_onnx, tmp_path, zero_height)
    assert_clean(main_cli("build", path, "-o", tmp_path / "b"), "has a zero-sized dimension [1, 3, 0,",
                 "every axis >= 1")


def test_version_starts_without_heavy_imports():
    code = ("import contextlib, io, json, sys\n"
            "from fpgagen.cli import main\n"
            "out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n"
            "    code = main(['--version'])\n"
            f"print(json.dumps({{'code': code, 'out': out.getvalue(), 'heavy': sorted(m for m in {HEAVY!r} "
            "if m in sys.modules)}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"code": 0, "out": f"fpgagen {fpgagen.__version__}\n",
                                                                 "heavy": []}
