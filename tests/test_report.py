"""Reports: report.json/report.md with per-layer folding, cycles and resources against the budget; PNG plots."""

import json
import subprocess
import sys

import nets
import pytest

import fpgagen
from fpgagen.ir.layers import RESOURCES


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    path = fpgagen.export(nets.conv_net(4, 4, seed=7), d / "m.onnx")
    acc = fpgagen.build(path, out_dir=d / "b", verify=False, log=lambda msg: None, ceilings={"LUT": 0.25})
    return acc.build_dir


def test_report_json_has_everything(built):
    doc = json.loads((built / "report.json").read_text())
    assert "estimated (model)" in doc["note"]
    assert doc["fits"] and doc["folding"]["optimizer"] == "ilp"
    work = doc["folding"]["milp"]  # what the solver did, and its log kept in the build
    assert work["optimal"] and work["solves"] >= 1
    assert (built / "logs" / "fold_milp.log").read_text().count("Running HiGHS") == work["solves"]
    assert doc["fps_estimated"] == pytest.approx(100e6 / doc["bottleneck_cycles"])
    assert doc["latency_cycles_estimated"] >= doc["bottleneck_cycles"]
    for r in RESOURCES:
        b = doc["budget"][r]
        assert b["used"] <= b["cap"] <= b["device"]
        total = b["shell"] + sum(lay["resources"][r] + lay["fifo"]["resources"][r] for lay in doc["layers"])
        assert b["used"] == total
    assert doc["budget"]["LUT"]["cap"] == int(0.25 * 53200)
    for lay in doc["layers"]:
        assert lay["resources"]["LUT"] > 0, lay["name"]  # every layer costed
        assert lay["cycles"] > 0 and lay["fifo"]["depth"] >= 2
        if lay["kind"] == "MVAU":
            assert {"pe", "simd"} <= set(lay["folding"]) and {"mem_style", "dsp_pe"} <= set(lay["styles"])


def test_report_command_prints_table_and_writes_plots(built):
    proc = subprocess.run([sys.executable, "-m", "fpgagen.cli", "report", str(built)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Estimated throughput" in out and "Resources against the budget (estimated)" in out
    assert "| LUT |" in out and "(bottleneck)" in out and "| **total** (with shell)" in out
    for name in ("cycles.png", "resources.png"):
        data = (built / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        assert f"]({name})" in (built / "report.md").read_text()


def test_greedy_baseline_is_reported_as_such(tmp_path, quiet):
    path = fpgagen.export(nets.conv_net(4, 4, seed=8), tmp_path / "m.onnx")
    acc = fpgagen.build(path, out_dir=tmp_path / "b", verify=False, log=quiet, optimizer="greedy", target_fps=500)
    doc = json.loads((acc.build_dir / "report.json").read_text())
    assert doc["folding"] == {"optimizer": "greedy", "target_fps": 500}
    assert "greedy FINN-style baseline" in (acc.build_dir / "report.md").read_text()
    assert all(lay["styles"].get("dsp_pe", 0) == 0 for lay in doc["layers"])  # FINN uses no DSPs


def test_report_on_a_build_it_cannot_write(built, tmp_path, capsys):
    """report.md is a directory (or the build is read-only): a clean error naming the file, no traceback."""
    import shutil

    from fpgagen.cli import main

    copy = tmp_path / "b"
    shutil.copytree(built, copy)
    (copy / "report.md").unlink()
    (copy / "report.md").mkdir()
    assert main(["report", str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fpgagen: error: cannot write the report (Is a directory), {copy / 'report.md'}"), err
    assert not [p.name for p in copy.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_report_styles_say_where_the_code_holds_the_arrays():
    """thr_style=bram on a binary-search threshold unit whose stages are too shallow for a BRAM: the C++ holds
    them in LUTRAM (and registers), and the report says that, not 'thr=bram'."""
    import numpy as np

    from fpgagen.ir import MVAU
    from fpgagen.report import _styles, memory_figures

    rng = np.random.default_rng(0)
    m = MVAU("c0", (10, 10, 36), (10, 10, 8), "UINT2", "UINT2", weights=rng.integers(-8, 8, (8, 36)),
             thresholds=np.sort(rng.integers(-40, 40, (8, 3)), axis=1), weight_dtype="INT4", acc_dtype="INT10")
    m.pe, m.simd, m.mem_style, m.thr_style, m.thr_mode = 2, 4, "bram", "bram", "search"
    figures = memory_figures(m.memories())
    held = sorted({a["storage"] for a in figures["arrays"] if a["name"].startswith("thr")})
    assert "bram" not in held
    text = _styles({"styles": m.styles(), "memories": figures})
    assert f"thr={'+'.join(held)}" in text and "thr=bram" not in text and "mem=bram" in text
