"""Every user error is an FpgagenError naming what, where and what to do; the CLI prints it without a traceback."""

import json
import subprocess
import sys

import nets
import numpy as np
import pytest

import fpgagen
from fpgagen.errors import CSimError, FpgagenError


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
