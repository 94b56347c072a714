"""The generated HLS project beyond the C-sim library: the Vitis HLS Tcl script (under tclsh with checking
stubs) and the csim testbench (compiled with g++ against the ap_types headers, run on fpgagen's vectors)."""

import os
import shutil
import subprocess
from pathlib import Path

import nets
import pytest

import fpgagen
from fpgagen.csim import ap_types_include

STUBS = Path(__file__).parent / "data" / "vitis_hls_stubs.tcl"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    d = tmp_path_factory.mktemp("hlsproj")
    path = fpgagen.export(nets.conv_net(4, 4, seed=8), d / "proj.onnx")
    return fpgagen.build(path, out_dir=d / "b", log=lambda m: None)


@pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh not installed")
def test_tcl_script_runs_against_checking_stubs(project):
    proc = subprocess.run(["tclsh", str(STUBS), str(project.hls_dir)], capture_output=True, text=True,
                          env={**os.environ, "XILINX_HLS": "/tools/Xilinx/Vitis_HLS/2022.1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("CALL")]
    assert calls[:2] == ["open_project", "set_top"]
    assert calls[-4:] == ["csim_design", "csynth_design", "cosim_design", "export_design"]  # small net: cosim on
    assert f"DONE top=proj_top part={project.board['part']} period=10" in proc.stdout


@pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh not installed")
def test_tcl_stubs_catch_a_missing_file(project, tmp_path):
    broken = tmp_path / "hls"
    shutil.copytree(project.hls_dir, broken)
    (broken / "tb_input.bin").unlink()
    proc = subprocess.run(["tclsh", str(STUBS), str(broken)], capture_output=True, text=True,
                          env={**os.environ, "XILINX_HLS": "/tools/Xilinx/Vitis_HLS/2022.1"})
    assert proc.returncode != 0 and "tb_input.bin does not exist" in proc.stderr


def test_testbench_compiles_and_passes_then_catches_a_wrong_byte(project, tmp_path):
    exe = tmp_path / "tb"
    subprocess.run(["g++", "-O1", "-std=c++14", "-w", "-isystem", str(ap_types_include()), "-I",
                    str(project.hls_dir), str(project.hls_dir / "testbench.cpp"), str(project.hls_dir / "top.cpp"),
                    "-o", str(exe)], check=True)
    ok = subprocess.run([str(exe)], cwd=project.hls_dir, capture_output=True, text=True)
    assert ok.returncode == 0 and "0 mismatching bytes" in ok.stdout, ok.stdout
    work = tmp_path / "vectors"
    work.mkdir()
    shutil.copy(project.hls_dir / "tb_input.bin", work)
    expected = bytearray((project.hls_dir / "tb_expected.bin").read_bytes())
    expected[len(expected) // 2 + 3] ^= 0x01  # in frame 1 (frame 0 is replayed by the TLAST checks)
    (work / "tb_expected.bin").write_bytes(bytes(expected))
    bad = subprocess.run([str(exe)], cwd=work, capture_output=True, text=True)
    assert bad.returncode == 1 and "1 mismatching bytes" in bad.stdout, bad.stdout


def test_bounded_fifo_csim_passes_with_the_chosen_depths(project):
    depths = [int(line.split("depth=")[1]) for line in (project.hls_dir / "top.cpp").read_text().splitlines()
              if line.startswith("#pragma HLS STREAM") and "_bounded" not in line]
    assert depths and all(d >= 1 for d in depths)
    project.verify(frames=1, bounded_fifos=True)  # one thread per process, every stream at its depth


def test_bounded_fifo_csim_reports_a_starved_process(project, tmp_path):
    from fpgagen.errors import CSimError

    hls = tmp_path / "hls"
    shutil.copytree(project.hls_dir, hls)
    acc = fpgagen.Accelerator(project.net, tmp_path, project.board, log=lambda m: None)
    pool = next(layer for layer in project.net.layers if layer.kind == "MaxPool")
    header = hls / "layers" / f"{pool.name}.h"
    h = pool.in_shape[0]
    header.write_text(header.read_text().replace(f"IH = {h},", f"IH = {h + 2},"))  # waits for rows never sent
    with pytest.raises(CSimError, match="deadlock with bounded FIFOs: .* waits on an empty stream"):
        acc.verify(frames=1, bounded_fifos=True)
