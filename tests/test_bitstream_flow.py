"""The bitstream flow without Xilinx tools: every generated Tcl script runs under tclsh against stub sets of the
Vitis HLS and Vivado commands (tests/data/*_stubs.tcl: they check argument shapes, record the calls, fail on
commands the tools lack and write STUB placeholder files inside the test's temp dir), the version gates, the
timing/utilization refusals, and `fpgagen bitstream` end to end: exit 2 with the message when no tool exists, and
the whole driver with the stubs standing in for the tools."""

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import nets
import numpy as np
import pytest

import fpgagen
from fpgagen import codegen
from fpgagen.board import load_board
from fpgagen.cli import main
from fpgagen.geometry import stream_geometry
from fpgagen.packing import StreamGeometry
from fpgagen.runtime.dma import transfer_bytes
from fpgagen.synth import flow

DATA = Path(__file__).parent / "data"
HLS_STUBS, VIVADO_STUBS = DATA / "vitis_hls_stubs.tcl", DATA / "vivado_stubs.tcl"
pytestmark = pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh not installed")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("bitstream")
    path = fpgagen.export(nets.conv_net(4, 4, seed=8), d / "flownet.onnx")
    acc = fpgagen.build(path, out_dir=d / "b", log=lambda m: None)
    lines = []
    flow.testbench_check(acc.hls_dir, lines.append)  # once: the copies below carry its stamp
    assert lines == ["[testbench] testbench: 2 frames, 0 mismatching bytes, 0 wrong status words (g++, "
                     + lines[0].rsplit("(g++, ", 1)[1]]
    return acc


def tcl(stubs: Path, workdir: Path, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("XILINX_", "STUB_", "FPGAGEN_"))}
    return subprocess.run(["tclsh", str(stubs), str(workdir)], capture_output=True, text=True, env={**clean, **env})


def calls(proc) -> list[list[str]]:
    return [line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("CALL")]


@pytest.fixture
def project(built, tmp_path):
    """A copy of the build with the Vivado Tcl written, so each test's stub files stay in its own temp dir."""
    build = tmp_path / "b"
    shutil.copytree(built.build_dir, build)
    top = codegen.top_name(built.net)
    ip_repo = os.path.relpath(flow.hls_ip_dir(build / "hls", top), build / "vivado")
    flow.render_block_design(build / "vivado", top, stream_geometry(built.net), built.board, ip_repo)
    return build


HLS_ENV = {"XILINX_HLS": "/tools/Xilinx/Vitis_HLS/2022.1"}


def test_hls_tcl_sequence_part_clock_top_and_files(built, project):
    proc = tcl(HLS_STUBS, project / "hls", **HLS_ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seq = calls(proc)
    names = [c[0] for c in seq]
    assert names == ["open_project", "set_top", "add_files", "add_files", "add_files", "add_files", "open_solution",
                     "set_part", "create_clock", "csim_design", "csynth_design", "cosim_design", "export_design"]
    top = codegen.top_name(built.net)
    assert seq[1] == ["set_top", top]
    assert seq[7] == ["set_part", built.board["part"]] and "-period 10" in " ".join(seq[8])
    assert [c[-1] for c in seq[2:6]] != [] and {"tb_input.bin", "tb_expected.bin"} <= {c[-1] for c in seq[2:6]}
    assert "-flow_target vivado" in " ".join(seq[6])
    assert "-format ip_catalog" in " ".join(seq[-1]) and f"-ipname {top}" in " ".join(seq[-1])
    ip = flow.hls_ip_dir(project / "hls", top)
    assert (ip / "component.xml").is_file() and "STUB" in (ip / "component.xml").read_text()


def test_hls_tcl_cosim_can_be_turned_off(project):
    proc = tcl(HLS_STUBS, project / "hls", FPGAGEN_COSIM="0", **HLS_ENV)
    assert proc.returncode == 0, proc.stderr
    assert "cosim_design" not in [c[0] for c in calls(proc)]


@pytest.mark.parametrize("release,message", [
    ("2019.2", "is Vivado HLS, which fpgagen does not support"),
    ("2020.1", "is Vivado HLS, which fpgagen does not support"),
    ("2021.2", "older than 2022.1"),
])
def test_hls_tcl_refuses_old_tools_via_version(project, release, message):
    proc = tcl(HLS_STUBS, project / "hls", STUB_HLS_VERSION_CMD=release)
    assert proc.returncode != 0 and message in proc.stderr
    assert "open_project" not in proc.stdout  # refused before touching the project


def test_hls_tcl_accepts_a_newer_release_and_needs_some_version(project):
    assert tcl(HLS_STUBS, project / "hls", STUB_HLS_VERSION_CMD="2024.2").returncode == 0
    proc = tcl(HLS_STUBS, project / "hls")  # no `version`, no XILINX_HLS
    assert proc.returncode != 0 and "cannot tell which Vitis HLS release" in proc.stderr


def test_stubs_fail_on_a_command_the_tool_lacks(project):
    hls = project / "hls"
    script = hls / "run_hls.tcl"
    script.write_text(script.read_text().replace("\ncsynth_design\n", "\ncsynth_design\nconfig_rtl -reset_level low\n"
                                                  "set_directive_bogus top\n", 1))
    proc = tcl(HLS_STUBS, hls, **HLS_ENV)
    assert proc.returncode != 0 and "'config_rtl' is not a command of Vitis HLS" in proc.stderr


def test_hls_stub_catches_a_testbench_that_reads_other_vectors(project):
    tb = project / "hls" / "testbench.cpp"
    tb.write_text(tb.read_text().replace('"tb_expected.bin"', '"expected.bin"'))
    proc = tcl(HLS_STUBS, project / "hls", **HLS_ENV)
    assert proc.returncode != 0 and "testbench does not read tb_expected.bin" in proc.stderr


def vivado_run(project, **env):
    assert tcl(HLS_STUBS, project / "hls", **HLS_ENV).returncode == 0
    return tcl(VIVADO_STUBS, project / "vivado", **env)


def cells(proc) -> dict:
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("CELL "):
            parts = line.split()
            out[parts[1]] = {"vlnv": parts[2], **dict(zip(parts[3::2], parts[4::2], strict=True))}
    return out


def test_block_design_sequence_widths_and_length_register(built, project):
    proc = vivado_run(project)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    names = [c[0] for c in calls(proc)]
    order = ["create_project", "update_ip_catalog", "create_bd_design", "assign_bd_address", "validate_bd_design",
             "make_wrapper", "launch_runs", "wait_on_run", "open_run", "report_timing_summary", "report_utilization"]
    assert [n for n in names if n in order] == order
    launch = next(c for c in calls(proc) if c[0] == "launch_runs")
    assert launch[1] == "impl_1" and "write_bitstream" in launch
    io = stream_geometry(built.net)
    bd = cells(proc)
    assert bd["/dma"]["c_m_axis_mm2s_tdata_width"] == str(io.in_axi_bits)
    assert bd["/dma"]["c_s_axis_s2mm_tdata_width"] == str(io.out_axi_bits)
    assert bd["/dma"]["c_sg_length_width"] == str(flow.dma_length_width(transfer_bytes(io.in_frame_bytes,
                                                                                       io.out_frame_bytes)))
    assert bd["/dma"]["c_include_sg"] == "0"
    assert bd["/ps7"]["PCW_FPGA0_PERIPHERAL_FREQMHZ"] == str(built.board["clock_mhz"])
    assert bd["/ps7"]["PCW_USE_S_AXI_HP0"] == "1" and bd["/ps7"]["PCW_S_AXI_HP0_DATA_WIDTH"] == "64"
    assert bd["/accel"]["vlnv"] == f"fpgagen:hls:{codegen.top_name(built.net)}:1.0"
    assert f"DONE part={built.board['part']}" in proc.stdout
    for link in ("AXI /dma/M_AXI_MM2S -> /ps7/S_AXI_HP0", "AXI /dma/M_AXI_S2MM -> /ps7/S_AXI_HP0",
                 "AXIS /dma/M_AXIS_MM2S -> /accel/in_axis", "AXIS /accel/out_axis -> /dma/S_AXIS_S2MM"):
        assert link in proc.stdout
    # both DMA masters share one SmartConnect into HP0; both DMA interrupts reach the PS
    for net in ("/dma/M_AXI_MM2S -- /axi_smc/S00_AXI", "/axi_smc/M00_AXI -- /ps7/S_AXI_HP0",
                "/dma/M_AXI_S2MM -- /axi_smc/S01_AXI", "/ps7_0_axi_periph/M01_AXI -- /status_fifo/S_AXI"):
        assert f"NET {net}" in proc.stdout
    assert "IRQ /dma/mm2s_introut -> /ps7/IRQ_F2P" in proc.stdout
    assert "IRQ /dma/s2mm_introut -> /ps7/IRQ_F2P" in proc.stdout
    assert bd["/ps7"]["PCW_USE_FABRIC_INTERRUPT"] == "1" and bd["/irq_concat"]["NUM_PORTS"] == "2"
    out = project / "vivado" / "output"
    assert "STUB" in (out / "fpgagen.bit").read_text() and "STUB" in (out / "fpgagen.hwh").read_text()


@pytest.mark.parametrize("old,new,message", [
    # the form before the HLS review: the second HP0 call on the slave pin the first call already connected
    ("fg_axi_automation /dma/M_AXI_S2MM /ps7/S_AXI_${fg_hp_port} /dma/M_AXI_S2MM $fg_hp_intc",
     "fg_axi_automation /dma/M_AXI_S2MM /ps7/S_AXI_${fg_hp_port} /ps7/S_AXI_${fg_hp_port} {Auto}",
     "apply_bd_automation on /ps7/S_AXI_HP0, which is already connected"),
    ("fg_axi_automation /dma/M_AXI_S2MM /ps7/S_AXI_${fg_hp_port} /dma/M_AXI_S2MM $fg_hp_intc",
     "fg_axi_automation /dma/M_AXI_S2MM /ps7/S_AXI_${fg_hp_port} /dma/M_AXI_S2MM {Auto}",
     "intc_ip 'Auto' is not /axi_smc, the interconnect already in front of /ps7/S_AXI_HP0"),
    ("    CONFIG.PCW_USE_FABRIC_INTERRUPT {1} \\\n", "",
     "IRQ_F2P connected without PCW_USE_FABRIC_INTERRUPT"),
    ("connect_bd_net [get_bd_pins dma/s2mm_introut] [get_bd_pins irq_concat/In1]\n", "",
     "/dma/s2mm_introut does not reach /ps7/IRQ_F2P"),
])
def test_vivado_stub_refuses_a_wrong_block_design(project, old, new, message):
    """The stubs model Vivado's AXI automation (no automation on a connected pin; the second master joins the
    existing interconnect by name) and the interrupt path, so the forms the HLS review found wrong fail here."""
    bd = project / "vivado" / "block_design.tcl"
    text = bd.read_text()
    assert old in text
    bd.write_text(text.replace(old, new, 1))
    proc = vivado_run(project)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize("env,message", [
    ({"STUB_WNS": "-0.412"}, "timing not met: WNS = -0.412 ns"),
    ({"STUB_LUT": "60000"}, "Slice LUTs 60000 exceeds the part's 53200"),
    ({"STUB_VIVADO_VERSION": "2021.2"}, "Vivado 2021.2 is older than 2022.1"),
    ({"STUB_NO_BOARD_FILES": "1"}, "the PYNQ-Z2 board files"),
])
def test_block_design_refuses(project, env, message):
    proc = vivado_run(project, **env)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert not (project / "vivado" / "output" / "fpgagen.bit").exists()


def test_block_design_needs_the_hls_export(project):
    proc = tcl(VIVADO_STUBS, project / "vivado")
    assert proc.returncode != 0 and "no exported HLS IP" in proc.stderr


def test_vivado_stub_checks_the_dma_width_against_the_ip(project):
    bd = project / "vivado" / "block_design.tcl"
    bd.write_text(bd.read_text().replace("CONFIG.c_m_axis_mm2s_tdata_width $fg_in_bits",
                                         "CONFIG.c_m_axis_mm2s_tdata_width 8"))
    proc = vivado_run(project)
    assert proc.returncode != 0 and "DMA c_m_axis_mm2s_tdata_width != width of /accel/in_axis" in proc.stderr


def test_dma_length_register_fits_the_lpyolo_frame():
    assert flow.dma_length_width(416 * 416 * 3) == 19  # 2^19 - 1 = 524,287 >= 519,168 bytes
    assert flow.dma_length_width(100) == 14  # never below the IP's default
    with pytest.raises(fpgagen.FpgagenError, match="exceeds the AXI DMA"):
        flow.dma_length_width(1 << 26)


def test_block_design_for_an_lpyolo_geometry(tmp_path):
    io = StreamGeometry(in_word=3, in_bits=8, in_elems=416 * 416 * 3, in_axi_bits=32, out_word=18, out_bits=8,
                        out_elems=13 * 13 * 18, out_axi_bits=64)
    text = flow.render_block_design(tmp_path, "lpyolo_top", io, load_board("pynq_z2"), "../hls/ip").read_text()
    # four frames per transfer (fpgagen.runtime.dma): 4 x 519,168 = 2,076,672 bytes need 21 bits
    assert "set fg_in_bits 32" in text and "set fg_out_bits 64" in text and "set fg_length_width 21" in text
    assert "519,168 bytes" in text


def no_tools(monkeypatch, tmp_path):
    """No Xilinx tools on PATH or in the install globs, and first on PATH a `docker` client without an engine."""
    if shutil.which("vitis_hls") or shutil.which("vivado"):
        pytest.skip("a Xilinx tool is installed here")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_docker = bin_dir / "docker"
    fake_docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    fake_docker.chmod(fake_docker.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for var in ("XILINX_HLS", "XILINX_VIVADO", "XILINX_VITIS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(flow, "HLS_INSTALL_GLOBS", [])
    monkeypatch.setattr(flow, "VIVADO_INSTALL_GLOBS", [])
    return bin_dir



def stub_tools(monkeypatch, tmp_path):
    """vitis_hls and vivado on PATH as the tclsh stubs (and no other Xilinx tool), as an installed 2022.1."""
    bin_dir = no_tools(monkeypatch, tmp_path)
    for name, stubs in (("vitis_hls", HLS_STUBS), ("vivado", VIVADO_STUBS)):
        exe = bin_dir / name
        exe.write_text(f"#!/bin/sh\nexec tclsh {stubs} .\n")
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("XILINX_HLS", "/tools/Xilinx/Vitis_HLS/2022.1")
    return bin_dir

def test_bitstream_without_tools_stops_with_the_message_and_no_bit(built, tmp_path, monkeypatch, capsys):
    build = tmp_path / "b"
    shutil.copytree(built.build_dir, build)
    no_tools(monkeypatch, tmp_path)
    rc = main(["bitstream", str(build)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "fpgagen: error: no Vitis HLS/Vivado found (looked in PATH" in err
    assert f"the HLS project is ready at {build / 'hls'}" in err and "; to finish: " in err
    assert "docker: a docker client but no engine" in err
    assert "installer.bin" not in err and "full-product .tar.gz" in err  # the web installer cannot be used
    assert "[testbench] passed before on these sources" in err
    assert (build / "vivado" / "block_design.tcl").is_file() and (build / "hls" / "run_hls.tcl").is_file()
    assert not list(build.rglob("*.bit")) and not (build / "deploy").exists()
    assert "Traceback" not in err


def test_bitstream_docker_without_engine(built, tmp_path, monkeypatch, capsys):
    build = tmp_path / "b"
    shutil.copytree(built.build_dir, build)
    no_tools(monkeypatch, tmp_path)
    assert main(["bitstream", str(build), "--docker"]) == 2
    assert "--docker: a docker client but no engine" in capsys.readouterr().err


def test_bitstream_driver_end_to_end_with_stub_tools(built, tmp_path, monkeypatch, capsys):
    """The stubs stand in for vitis_hls and vivado: the driver runs both, parses the reports, writes deploy/
    (with the stubs' placeholder .bit inside this temp dir), and a second run reuses the HLS export."""
    build = tmp_path / "b"
    shutil.copytree(built.build_dir, build)
    stub_tools(monkeypatch, tmp_path)
    assert main(["bitstream", str(build), "--no-cosim"]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "csynth_design" in err and "collecting fpgagen.bit" in err  # the tools' phase lines are shown
    log = (build / "logs" / "vitis_hls.log").read_text()
    assert "CALL csynth_design" in log and "CALL cosim_design" not in log  # --no-cosim reached the Tcl
    deploy = build / "deploy"
    assert {"fpgagen.bit", "fpgagen.hwh", "report.md", "README.md", "stream_geometry.json", "runtime.json"} <= {
        p.name for p in deploy.iterdir()}
    assert "STUB" in (deploy / "fpgagen.bit").read_text()
    synth = json.loads((build / "synth_report.json").read_text())
    assert synth["vivado"]["timing"]["wns"] == 1.25 and synth["vivado"]["utilization"]["LUT"]["used"] == 20000
    assert "Synthesis results beside the estimates" in (deploy / "report.md").read_text()
    assert main(["bitstream", str(build), "--no-cosim"]) == 0
    assert "the IP exported before from these sources is reused" in capsys.readouterr().err


def test_bitstream_driver_refuses_failed_timing(built, tmp_path, monkeypatch, capsys):
    build = tmp_path / "b"
    shutil.copytree(built.build_dir, build)
    stub_tools(monkeypatch, tmp_path)
    monkeypatch.setenv("STUB_WNS", "-0.2")
    assert main(["bitstream", str(build), "--no-cosim"]) == 2
    err = capsys.readouterr().err
    assert "vivado failed" in err and not (build / "deploy").exists()


def test_bitstream_driver_refuses_a_loop_above_the_assumed_ii(built, tmp_path, monkeypatch, capsys):
    """csynth scheduled a layer's loop at II 2: the driver stops before Vivado, naming the loop."""
    build = tmp_path / "b"
    shutil.copytree(built.build_dir, build)
    stub_tools(monkeypatch, tmp_path)
    layer = built.net.layers[1].name
    monkeypatch.setenv("STUB_II", f"{layer}=2")
    assert main(["bitstream", str(build), "--no-cosim"]) == 2
    err = capsys.readouterr().err
    assert "fpgagen: error: Vitis HLS scheduled 1 loop(s) above the II = 1" in err
    assert f"{layer}/{layer}_loop (II 2)" in err and "Traceback" not in err
    assert not (build / "logs" / "vivado.log").exists() and not (build / "deploy").exists()
    assert "Loops that missed II = 1" in (build / "synth_report.md").read_text()


def test_cosim_runs_on_a_reduced_resolution_copy(built, tmp_path, monkeypatch, capsys):
    """A network too large to co-simulate at full size (here: the cycle limit lowered below this one's testbench)
    gets a copy at half the resolution, with the same layers, weights and folding, built and C-sim verified into
    build/cosim; run_hls.tcl co-simulates that copy in a project of its own, then synthesizes and exports the
    design without co-simulating it; --no-cosim skips it. Checked through the driver with the stub tools."""
    build = tmp_path / "b"
    shutil.copytree(built.build_dir, build)
    stub_tools(monkeypatch, tmp_path)
    cycles = built.net.bottleneck().cycles()
    monkeypatch.setattr(codegen, "COSIM_CYCLE_LIMIT", cycles * codegen.TESTBENCH_CALLS - 1)
    assert main(["bitstream", str(build)]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "[cosim] reduced copy at 16x16 (from 32x32), same layers and folding, C-sim verified" in err
    copy = fpgagen.load(build / "cosim", log=lambda m: None)
    assert copy.net.input.shape == (1, 3, 16, 16) and copy.net.name == built.net.name
    assert [(a.name, a.kind, a.folding(), a.styles()) for a in copy.net.layers] == [
        (b.name, b.kind, b.folding(), b.styles()) for b in built.net.layers]
    for a, b in zip(copy.net.layers, built.net.layers, strict=True):  # the same weights
        if hasattr(b, "weights"):
            assert np.array_equal(a.weights, b.weights)
    frame = stream_geometry(copy.net).in_frame_bytes
    assert (build / "cosim" / "hls" / "tb_input.bin").stat().st_size == codegen.TESTBENCH_FRAMES * frame
    seq = [c for c in (line.split()[1:] for line in (build / "logs" / "vitis_hls.log").read_text().splitlines()
                       if line.startswith("CALL"))]
    names = [c[0] for c in seq]
    top = codegen.top_name(built.net)
    assert names == ["open_project", "set_top", "add_files", "add_files", "add_files", "add_files", "open_solution",
                     "set_part", "create_clock", "csynth_design", "cosim_design", "close_project",
                     "open_project", "set_top", "add_files", "add_files", "add_files", "add_files", "open_solution",
                     "set_part", "create_clock", "csim_design", "csynth_design", "export_design"]
    assert seq[0] == ["open_project", "-reset", f"{top}_cosim"] and seq[12] == ["open_project", "-reset", f"{top}_hls"]
    log = (build / "logs" / "vitis_hls.log").read_text()
    for line in ("CALL add_files ../cosim/hls/top.cpp", "CALL add_files -tb ../cosim/hls/testbench.cpp",
                 "CALL add_files -tb ../cosim/hls/tb_input.bin", "CALL add_files -tb ../cosim/hls/tb_expected.bin"):
        assert line in log
    assert (build / "deploy" / "fpgagen.bit").is_file()
    # the copy is reused by the next run; --no-cosim co-simulates nothing
    assert main(["bitstream", str(build), "--no-cosim"]) == 0
    assert "reduced copy at" not in capsys.readouterr().err
    assert main(["bitstream", str(build)]) == 0
    assert "[cosim] reusing the reduced-resolution copy" in capsys.readouterr().err


def test_hls_tcl_frame_count_matches_the_testbench_vectors(built):
    """run_hls.tcl's comment gives the frames of tb_input.bin, and the calls the testbench makes."""
    text = (built.hls_dir / "run_hls.tcl").read_text()
    frame = stream_geometry(built.net).in_frame_bytes
    frames = (built.hls_dir / "tb_input.bin").stat().st_size // frame
    assert f"streams the {frames} frames of tb_input.bin ({frame:,} bytes each)" in text
    assert f"{frames + 4} calls at {built.net.bottleneck().cycles():,} cycles each" in text


def test_hls_tcl_refuses_reduced_cosim_without_a_copy(project):
    proc = tcl(HLS_STUBS, project / "hls", FPGAGEN_COSIM="reduced", **HLS_ENV)
    assert proc.returncode != 0 and "no reduced-resolution copy at ../cosim/hls" in proc.stderr


def test_missing_anchors_hint_names_no_anchors_the_model_was_not_trained_with(built, tmp_path):
    from fpgagen.runtime.model import load_face_detector

    with pytest.raises(fpgagen.FpgagenError, match="--anchors") as err:
        load_face_detector(built.build_dir, "reference")
    assert "10,14" not in str(err.value) and "paper" not in str(err.value)


def test_make_bitstream_of_the_face_detector_deploys_its_anchors(built, tmp_path, monkeypatch, capsys):
    """`make bitstream` (no MODEL) takes the one verified build of the shipped face detector (the one `fpgagen
    detect` caches; a stand-in here), copied, not built again: its build and deploy/ carry detector.json with the
    checkpoint's anchors, so `fpgagen detect --accelerator build/...` decodes the boxes it was trained for."""
    from fpgagen.runtime import model as runtime_model
    from fpgagen.runtime.backends import write_runtime_spec
    from fpgagen.synth import cli as synth_cli

    anchors = [[16.0, 19.0], [40.0, 47.0], [100.0, 118.0]]
    cached = tmp_path / "cache" / "lpyolo_w4a4_face-0123"
    shutil.copytree(built.build_dir, cached)
    runtime_model.write_detector_json(cached, anchors, 416)
    write_runtime_spec(fpgagen.load(cached, log=lambda m: None))
    runtime_model.write_manifest(cached)
    monkeypatch.setattr(runtime_model, "shipped_face_build", lambda board, log, camera=None: cached)
    monkeypatch.setattr(fpgagen, "build", lambda *a, **k: pytest.fail("the detector was built again"))
    stub_tools(monkeypatch, tmp_path)
    out = tmp_path / "build"
    assert synth_cli.make_main(["--out", str(out), "--no-cosim"]) == 0, capsys.readouterr().err
    face = out / f"{synth_cli.FACE_NAME}_640x480"  # the default: the 640x480 camera build
    for where in (face, face / "deploy"):
        assert json.loads((where / "detector.json").read_text())["anchors"] == anchors
    assert synth_cli.make_main(["--out", str(out), "--no-cosim"]) == 0  # again: the copy is reused
    assert "reusing" in capsys.readouterr().err and (face / "deploy" / "fpgagen.bit").is_file()
    # MODEL=my_net.onnx is not a detector: no anchors are made up for it
    shutil.copytree(built.build_dir, out / "net")
    (out / "net.onnx").write_bytes(b"older than the build")
    os.utime(out / "net.onnx", (0, 0))
    assert synth_cli.make_main(["--out", str(out), "--no-cosim", "--model", str(out / "net.onnx")]) == 0
    assert not (out / "net" / "detector.json").exists() and not (out / "net" / "deploy" / "detector.json").exists()


def test_pynq_z1_block_design_under_the_stubs(built, project):
    """PYNQ-Z1: the same xc7z020clg400-1, Digilent's board part (its PS7 preset comes from those board files) and
    its own FCLK0; missing board files are named as the Z1's."""
    z1 = load_board("pynq_z1")
    assert z1["part"] == built.board["part"] and z1["title"] == "PYNQ-Z1"
    top = codegen.top_name(built.net)
    ip_repo = os.path.relpath(flow.hls_ip_dir(project / "hls", top), project / "vivado")
    text = flow.render_block_design(project / "vivado", top, codegen.stream_geometry(built.net), z1, ip_repo) \
        .read_text()
    assert "PYNQ-Z2" not in text and "pynq-z2" not in text and "PYNQ-Z1 board preset" in text
    proc = vivado_run(project)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    seq = calls(proc)
    assert ["set_property", "board_part", "www.digilentinc.com:pynq-z1:part0:1.0"] == seq[
        next(i for i, c in enumerate(seq) if c[:2] == ["set_property", "board_part"])][:3]
    assert cells(proc)["/ps7"]["PCW_FPGA0_PERIPHERAL_FREQMHZ"] == str(z1["clock_mhz"])
    assert f"DONE part={z1['part']}" in proc.stdout
    proc = vivado_run(project, STUB_NO_BOARD_FILES="1")
    assert proc.returncode != 0 and "the PYNQ-Z1 board files (www.digilentinc.com:pynq-z1:part0:*)" in proc.stderr


def test_pynq_z1_bitstream_deploy_and_runtime(built, tmp_path, monkeypatch, capsys):
    """`fpgagen bitstream --board pynq_z1` with the stub tools: deploy/ says PYNQ-Z1 and where it goes on the
    board, and the board's runtime (a stand-in pynq whose DMA feeds the C-simulation) runs it bit-exact."""
    import sys

    import numpy as np
    from test_runtime import fake_pynq

    from fpgagen.runtime.backends import PynqBackend, ReferenceBackend

    onnx = built.build_dir.parent / "flownet.onnx"
    build = tmp_path / "b"
    assert main(["build", str(onnx), "--board", "pynq_z1", "-o", str(build)]) == 0  # C-sim verified (cached)
    assert json.loads((build / "build.json").read_text())["board"] == "pynq_z1"
    assert json.loads((build / "folding.json").read_text()) == json.loads((built.build_dir / "folding.json")
                                                                          .read_text())  # the same PL as the Z2
    stamp = built.hls_dir / ".testbench_passed"  # the g++ testbench passed on these very sources (same C++)
    shutil.copy2(stamp, build / "hls" / stamp.name)
    stub_tools(monkeypatch, tmp_path)
    assert main(["bitstream", str(build), "--no-cosim"]) == 0, capsys.readouterr().err
    assert "www.digilentinc.com:pynq-z1:part0:1.0" in (build / "logs" / "vivado.log").read_text()
    deploy = build / "deploy"
    readme = (deploy / "README.md").read_text()
    assert "Copy this folder to the PYNQ-Z1" in readme and "/home/xilinx/jupyter_notebooks" in readme
    assert (deploy / "face_detect.ipynb").is_file() and (deploy / "runtime.json").is_file()
    import cv2

    assert cv2.imread(str(deploy / "sample.jpg")).shape == (512, 512, 3)  # the notebook's frame without a camera
    monkeypatch.setitem(sys.modules, "pynq", fake_pynq(built.lib))
    frames = built.random_stream_input(2, seed=3)
    board = PynqBackend(deploy)  # runtime.json and fpgagen.bit only: no IR on the board
    x = frames.astype(np.uint8) if board.pixels_are_codes else frames
    assert np.array_equal(board.infer(x), ReferenceBackend(built).infer(x))
    board.close()
