"""Report parsers (fpgagen/synth/reports.py) on FIXTURES: tests/data/synth_fixtures/ holds hand-written files in
the layouts Vitis HLS and Vivado document (no Xilinx tool exists here; the numbers are made up)."""

from pathlib import Path

import pytest

from fpgagen.errors import FpgagenError
from fpgagen.synth import reports

FIXTURES = Path(__file__).parent / "data" / "synth_fixtures"


def test_csynth_fixture_top_and_modules():
    parsed = reports.parse_csynth_dir(FIXTURES)
    top = parsed["top"]
    assert top["name"] == "fixture_top" and top["part"] == "xc7z020-clg400-1"
    assert top["target_ns"] == 10.0 and top["estimated_ns"] == 7.264
    assert top["latency"] == [4120, 4120] and top["interval"] == [1030, 1030]
    assert top["resources"] == {"LUT": 4410, "FF": 3120, "BRAM18": 6, "DSP": 4, "URAM": 0}
    assert top["available"]["LUT"] == 53200
    assert set(parsed["modules"]) == {"conv_0", "pool_0"}
    conv = parsed["modules"]["conv_0"]
    assert conv["loops"] == [{"name": "conv_0_fold", "trip_count": 1024, "latency": 1025, "ii": 1, "depth": 3}]
    pool = parsed["modules"]["pool_0"]
    assert [lp["name"] for lp in pool["loops"]] == ["pool_0_rows", "pool_0_rows/pool_0_cols"]
    assert pool["loops"][0]["latency"] == [512, 532] and pool["loops"][1]["ii"] == 2
    assert pool["interval"] == [521, 541]


def test_csynth_missing_is_a_user_error(tmp_path):
    with pytest.raises(FpgagenError, match="no csynth.xml"):
        reports.parse_csynth_dir(tmp_path)
    (tmp_path / "csynth.xml").write_text("<profile>")
    with pytest.raises(FpgagenError, match="cannot read the HLS report"):
        reports.parse_csynth_dir(tmp_path)


def fixture_text(name, **subs):
    text = (FIXTURES / name).read_text()
    for key, value in subs.items():
        text = text.replace(f"@{key}@", value)
    return text


def test_utilization_fixture():
    util = reports.parse_utilization(fixture_text("utilization.rpt", LUT="20000"))
    assert util["LUT"] == {"used": 20000, "available": 53200}
    assert util["LUTRAM"] == {"used": 2655, "available": 17400}
    assert util["FF"] == {"used": 24810, "available": 106400}
    assert util["BRAM36"] == {"used": 98.5, "available": 140} and util["BRAM18"] == {"used": 197.0, "available": 280}
    assert util["DSP"] == {"used": 64, "available": 220}
    with pytest.raises(FpgagenError, match="not a Vivado utilization report"):
        reports.parse_utilization("nothing here")


def test_timing_fixture_met_and_not_met():
    met = reports.parse_timing_summary(fixture_text("timing_summary.rpt", WNS="1.250"))
    assert met == {"wns": 1.25, "tns": 0.0, "whs": 0.021, "ths": 0.0, "met": True}
    failed = reports.parse_timing_summary(fixture_text("timing_summary.rpt", WNS="-0.412"))
    assert failed["wns"] == -0.412 and failed["met"] is False
    with pytest.raises(FpgagenError, match="not a Vivado timing summary"):
        reports.parse_timing_summary("WNS(ns) only a header")


def test_implementation_problems_against_the_board():
    board = {"clock_mhz": 100, "resources": {"LUT": 53200, "FF": 106400, "BRAM18": 280, "DSP": 220}}
    util = reports.parse_utilization(fixture_text("utilization.rpt", LUT="20000"))
    timing = reports.parse_timing_summary(fixture_text("timing_summary.rpt", WNS="0.100"))
    assert reports.implementation_problems(util, timing, board) == []
    util = reports.parse_utilization(fixture_text("utilization.rpt", LUT="53201"))
    timing = reports.parse_timing_summary(fixture_text("timing_summary.rpt", WNS="-0.010"))
    assert reports.implementation_problems(util, timing, board) == [
        "timing not met: WNS -0.01 ns at 100 MHz", "LUT 53201 exceeds the part's 53200"]


def test_synthesis_report_sets_hls_beside_estimates_with_error_per_layer():
    estimates = {"network": "fixture", "board": "pynq_z2", "fps_estimated": 97087.4,
                 "budget": {"LUT": {"used": 4000}},
                 "layers": [
                     {"name": "conv_0", "kind": "MVAU", "cycles": 1024,
                      "resources": {"LUT": 1500, "FF": 1100, "BRAM18": 2, "DSP": 4, "LUTRAM": 0}},
                     {"name": "pool_0", "kind": "MaxPool", "cycles": 512,
                      "resources": {"LUT": 600, "FF": 300, "BRAM18": 0, "DSP": 0, "LUTRAM": 0}},
                     {"name": "conv_1", "kind": "MVAU", "cycles": 256,
                      "resources": {"LUT": 900, "FF": 700, "BRAM18": 1, "DSP": 0, "LUTRAM": 0}}]}
    doc = reports.synthesis_report(estimates, reports.parse_csynth_dir(FIXTURES))
    conv, pool, missing = doc["layers"]
    assert conv["hls"] == {"LUT": 1650, "FF": 1210, "BRAM18": 2, "DSP": 4, "cycles": 1028}
    assert conv["error"]["LUT"] == pytest.approx(0.1) and conv["error"]["BRAM18"] == 0.0
    assert conv["error"]["cycles"] == pytest.approx(4 / 1024)
    assert pool["error"]["LUT"] == pytest.approx(-0.3) and pool["error"]["BRAM18"] == float("inf")
    assert pool["hls"]["cycles"] == 541  # the worst-case interval
    assert missing["hls"] is None  # no module report for it
    assert doc["hls_total"]["LUT"] == 4410
    md = reports.synthesis_markdown(doc)
    assert "| conv_0 | MVAU | 1,500 / 1,650 (+10%)" in md
    assert "Loops that missed II = 1: pool_0/pool_0_rows (II 2), pool_0/pool_0_rows/pool_0_cols (II 2)" in md


def test_loops_above_the_assumed_ii_are_refused_by_name(tmp_path):
    """`fpgagen bitstream` stops after csynth when any loop's II is above the cycle model's (II = 1), naming it."""
    bad = reports.parse_csynth_dir(FIXTURES / "bad_ii")
    assert reports.slow_loops(bad) == ["conv_0/conv_0_fold (II 2)"]
    with pytest.raises(FpgagenError, match=r"1 loop\(s\) above the II = 1 .*: conv_0/conv_0_fold \(II 2\)"):
        reports.check_initiation_intervals(bad, FIXTURES / "bad_ii")
    # the nested pool loops at II 2 (the top fixture set) are named too, each once
    assert reports.slow_loops(reports.parse_csynth_dir(FIXTURES)) == [
        "pool_0/pool_0_rows (II 2)", "pool_0/pool_0_rows/pool_0_cols (II 2)"]
    # a synthesis at II = 1 everywhere passes
    for name in ("csynth.xml", "conv_0_csynth.xml"):
        (tmp_path / name).write_text((FIXTURES / name).read_text())
    good = reports.parse_csynth_dir(tmp_path)
    assert reports.slow_loops(good) == []
    reports.check_initiation_intervals(good, tmp_path)
