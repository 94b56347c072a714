"""fpgagen explore on a local 2-worker Ray cluster, a tiny network and a tiny data set (tests/support/
explore_tiny.py): the contract and its errors, the joint integer program against the layers' own models, the
Pareto marking, checkpoint and resume, and one verified build. The full face-detector explore is under -m slow."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from explore_tiny import check_marking

from fpgagen.errors import FpgagenError

pytest.importorskip("ray")
TINY = str(Path(__file__).parent / "support" / "explore_tiny.py")


@pytest.fixture(scope="module")
def ray_session():
    """One local 2-CPU Ray for the whole module (its start-up and the workers' torch import are paid once)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


def tiny_config(out, **kw):
    from fpgagen.explore.run import ExploreConfig

    base = {"factory": f"{TINY}:factory", "out": str(out), "finetune": f"{TINY}:finetune", "weight_bits": [2, 4],
            "act_bits": [4], "verify": 0, "fit_points": 2, "budgets": 3, "workers": 2, "baseline": False,
            "ceilings": {"LUT": 0.25, "DSP": 0.05}}  # tight: 4-bit weights fold, so FPS trades against accuracy
    base.update(kw)
    return ExploreConfig(**base)


@pytest.fixture(scope="module")
def tiny_run(ray_session, tmp_path_factory):
    from fpgagen.explore.run import explore

    out = tmp_path_factory.mktemp("explore") / "run"
    t0 = time.perf_counter()
    doc = explore(tiny_config(out), log=lambda m: None)
    return out, doc, time.perf_counter() - t0


def test_tiny_explore_writes_the_front(tiny_run):
    out, doc, _ = tiny_run
    on_disk = json.loads((out / "pareto.json").read_text())
    assert on_disk["points"] == json.loads(json.dumps(doc["points"]))
    assert (out / "pareto.md").read_text().startswith("# Explore")
    assert (out / "pareto.png").stat().st_size > 1000
    assert doc["engine"]["name"] == "ray" and doc["engine"]["workers"] == 2
    for p in doc["points"]:
        assert len(p["weight_bits"]) == 3 and len(p["act_bits"]) == 2
        assert set(p) >= {"fps", "lut", "bram18", "dsp", "accuracy_predicted", "accuracy_measured", "pareto",
                          "build", "status"}
        assert p["status"] == "predicted" and p["build"] is None  # nothing verified: no builds here
    front = [p for p in doc["points"] if "front" in p["role"]]
    assert front and all(p["fps"] > 0 and p["lut"] > 0 for p in front)
    fits = [p for p in doc["points"] if "fit" in p["role"]]
    assert len(fits) == 2 and all(p["accuracy_measured"] is not None and p["cost_s"]["finetune_s"] >= 0
                                  for p in fits)
    pred = doc["predictor"]
    assert pred["fitted_on"] == 2 and set(pred) >= {"spearman", "mae", "held_out"}
    sens = doc["sensitivity"]
    assert all(s["4"] == 0.0 and s["2"] > 0 for s in sens["weight"])  # widest = the reference; narrower hurts
    check_marking(doc["points"])


def test_tiny_branched_explore(ray_session, tmp_path):
    """A branched network (tests/support/explore_tiny.py's BranchedNet: fork, Concat, upsample, Add on a shared
    quantizer) through the whole explore on Ray: its shared quantizer is one width, each node's dependence comes
    from the probe lowerings, and the front's points carry the program's figures."""
    from fpgagen.explore.run import explore

    doc = explore(tiny_config(tmp_path / "run", factory=f"{TINY}:branched_factory", fit_points=1, budgets=1),
                  log=lambda m: None)
    assert doc["shape"]["act_quants"] == ["r0", "r1", "r2", "q4"] and doc["shape"]["shared"] == {"r0": ["r3"]}
    assert sorted(p.name for p in (tmp_path / "run" / "ir").iterdir()) == sorted(
        ["ir-w2_2_2_2_2-a4_4_4_4", "ir-w4_4_4_4_4-a4_4_4_4"] +
        [f"probe-w{'_'.join('4' if j == i else '2' for j in range(5))}-a4_4_4_4" for i in range(5)])
    front = [p for p in doc["points"] if "front" in p["role"]]
    assert front and all(len(p["weight_bits"]) == 5 and len(p["act_bits"]) == 4 and p["fps"] > 0 for p in front)
    check_marking(doc["points"])


@pytest.mark.slow
def test_tiny_verification_builds_the_baseline(ray_session, tiny_run, tmp_path):
    """The same explore resumed with verification on (a copy of the run folder): only the builds run, and the
    verified points carry the build report's own figures."""
    import shutil

    from fpgagen.explore.run import explore

    out = tmp_path / "run"
    shutil.copytree(tiny_run[0], out)
    doc = explore(tiny_config(out, verify=1, baseline=None), log=lambda m: None)
    base = next(p for p in doc["points"] if "baseline" in p["role"])
    assert (base["weight_bits"], base["act_bits"]) == ([4, 4, 4], [4, 4])
    assert base["status"] == "verified", base["status"]
    report = json.loads((Path(base["build"]) / "report.json").read_text())
    assert base["fps"] == report["fps_estimated"] and base["lut"] == report["budget"]["LUT"]["used"]
    assert base["accuracy_measured"] is not None and base["cost_s"]["build_s"] > 0
    assert sum(p["status"] == "verified" for p in doc["points"]) >= 1
    check_marking(doc["points"])


def test_matched_build_at_the_baseline_fps(ray_session, tiny_run, tmp_path):
    """The tiny run resumed with verification on (a copy of its folder; under its ceilings the 2-bit point is
    faster than the 4W4A baseline): a verified point at least as fast as the baseline is built again at the
    baseline's verified FPS (its report's target), C-sim checked, and ``dominates_baseline`` applies the rule to
    those figures; a resumed explore reads every build back instead of redoing it."""
    import shutil

    from fpgagen.explore.run import explore

    out = tmp_path / "run"
    shutil.copytree(tiny_run[0], out)
    cfg = {"verify": 2, "baseline": None}
    doc = explore(tiny_config(out, **cfg), log=lambda m: None)
    base = next(p for p in doc["points"] if "baseline" in p["role"])
    assert base["status"] == "verified" and "at_baseline_fps" not in base
    fast = [p for p in doc["points"] if p["status"] == "verified" and p is not base and p["fps"] >= base["fps"]]
    assert fast, [(p["role"], p["status"], p["fps"]) for p in doc["points"]]
    for p in fast:
        m = p["at_baseline_fps"]
        assert m["status"] == "verified" and m["target_fps"] == base["fps"] and m["build"] != p["build"]
        report = json.loads((Path(m["build"]) / "report.json").read_text())
        assert report["folding"]["target_fps"] == base["fps"]
        assert (m["fps"], m["lut"], m["bram18"], m["dsp"]) == (
            report["fps_estimated"], *(report["budget"][r]["used"] for r in ("LUT", "BRAM18", "DSP")))
        assert m["fps"] >= base["fps"] and p["cost_s"]["matched_build_s"] > 0
    want = [(p["weight_bits"], p["act_bits"]) for p in fast if p["accuracy_measured"] >= base["accuracy_measured"]
            and p["at_baseline_fps"]["lut"] < base["lut"]]
    assert [(w["weight_bits"], w["act_bits"]) for w in doc["dominates_baseline"]] == want
    assert json.loads((out / "pareto.json").read_text())["dominates_baseline"] == doc["dominates_baseline"]
    assert "Dominance: " in (out / "pareto.md").read_text()
    stamps = {f.name: f.stat().st_mtime_ns for f in (out / "tasks").glob("*.json")}
    assert any(n.startswith("match-") for n in stamps)
    explore(tiny_config(out, **cfg), log=lambda m: None)
    assert {f.name: f.stat().st_mtime_ns for f in (out / "tasks").glob("*.json")} == stamps


def test_dominates_baseline_follows_the_rule():
    from fpgagen.explore.run import dominates_baseline

    def pt(acc, fps, lut, role="front", status="verified", matched=None):
        p = {"weight_bits": [len(role), int(fps)], "act_bits": [lut], "role": role, "status": status,
             "accuracy_measured": acc, "fps": fps, "lut": lut}
        if matched is not None:
            p["at_baseline_fps"] = {"status": "verified", "fps": matched[0], "lut": matched[1]}
        return p

    base = pt(0.70, 100.0, 1000, role="baseline")
    points = [base,
              pt(0.70, 120.0, 1200, matched=(100.0, 999)),  # equal accuracy, equal FPS, one LUT fewer: dominates
              pt(0.80, 150.0, 1100, matched=(101.0, 900)),  # better on all three: dominates
              pt(0.69, 150.0, 1100, matched=(100.0, 500)),  # less accurate
              pt(0.90, 150.0, 1100, matched=(100.0, 1000)),  # as many LUTs
              pt(0.90, 150.0, 1100, matched=(99.9, 500)),  # the matched build falls short of the baseline's FPS
              pt(0.90, 150.0, 900),  # no matched build: max-FPS LUTs decide nothing
              pt(0.90, 150.0, 900, matched=(100.0, 500)) | {"accuracy_measured": None}]
    points[-2]["at_baseline_fps"] = None
    bad = pt(0.90, 150.0, 1100, matched=(100.0, 500))
    bad["at_baseline_fps"]["status"] = "failed: g++"
    points.append(bad)
    wins = dominates_baseline(points)
    assert [(w["accuracy_measured"], w["fps"], w["lut"]) for w in wins] == [(0.70, 100.0, 999), (0.80, 101.0, 900)]
    assert wins[0]["baseline"] == {"accuracy_measured": 0.70, "fps": 100.0, "lut": 1000}
    assert dominates_baseline([dict(base, status="failed: g++")] + points[1:]) == []
    assert dominates_baseline(points[1:]) == []


def test_mark_pareto_exactly_the_non_dominated():
    from fpgagen.explore.run import mark_pareto

    def pt(acc, fps, status="predicted", measured=None):
        return {"accuracy_predicted": acc, "accuracy_measured": measured, "fps": fps, "status": status}

    points = [pt(0.5, 10), pt(0.6, 5), pt(0.4, 10), pt(0.9, 1, measured=0.3), pt(0.6, 5),
              pt(0.99, 99, status="failed: g++"), pt(0.7, 2), pt(0.55, 8)]
    mark_pareto(points)
    assert [p["pareto"] for p in points] == [True, True, False, False, True, False, True, True]


def test_predictor_fit_and_quality():
    from fpgagen.explore.predictor import fit, quality

    lin = fit([0.0, 1.0, 2.0], [-1.0, -2.0, -3.0])  # negative scores (e.g. -MSE): the linear form
    assert lin.form == "linear" and abs(lin.alpha - 1) < 1e-9 and abs(lin.accuracy(3.0) + 4) < 1e-9
    expo = fit([0.0, 0.2, 0.576], [0.76, 0.306, 0.049])  # an AP collapsing: the exponential fits better
    assert expo.form == "exponential" and expo.alpha > 0
    assert abs(expo.accuracy(0.576) - 0.049) < 0.01
    assert fit([0.1, 0.3], [0.2, 0.5]).alpha == 0  # more perturbation never predicts more accuracy
    q = quality([1.0, 2.0, 3.0, 4.0], [1.1, 2.5, 2.9, 4.2])
    assert q["spearman"] == 1.0 and abs(q["mae"] - 0.225) < 1e-12 and q["held_out"] == 4
    assert quality([1.0, 2.0], [2.0, 1.0])["spearman"] is None  # too few to rank


def test_perturbation_leaves_out_each_channels_mean_shift():
    import torch

    from fpgagen.explore.predictor import perturbation

    g = torch.Generator().manual_seed(0)
    y_ref = torch.randn(8, 3, 4, 4, generator=g)
    shift = torch.tensor([0.5, -1.0, 2.0]).reshape(1, 3, 1, 1)
    assert perturbation(y_ref + shift, y_ref) < 1e-12  # a per-channel offset: what a bias absorbs
    noise = 0.1 * torch.randn(8, 3, 4, 4, generator=g)
    centred = noise - noise.mean(dim=(0, 2, 3), keepdim=True)
    want = float((centred ** 2).mean() / (y_ref ** 2).mean())
    assert abs(perturbation(y_ref + noise + shift, y_ref) - want) < 1e-6 and want > 0
    flat = torch.randn(16, generator=g)  # a 1-D output: one channel
    assert perturbation(flat + 3.0, flat) < 1e-12 and perturbation(2 * flat, flat) > 0.9


def test_resume_redoes_only_what_is_missing(ray_session, tiny_run):
    from fpgagen.explore.run import explore

    out, doc, _ = tiny_run
    tasks = sorted((out / "tasks").glob("*.json"))
    stamps = {p.name: p.stat().st_mtime_ns for p in tasks}
    victim = next(p for p in tasks if p.name.startswith("sens-"))
    victim.unlink()  # as if the run had been killed before this task finished
    doc2 = explore(tiny_config(out), log=lambda m: None)
    again = {p.name: p.stat().st_mtime_ns for p in (out / "tasks").glob("*.json")}
    assert set(again) == set(stamps)
    assert [n for n in again if again[n] != stamps[n]] == [victim.name]
    assert [(p["weight_bits"], p["act_bits"], p["status"]) for p in doc2["points"]] == \
        [(p["weight_bits"], p["act_bits"], p["status"]) for p in doc["points"]]


def test_run_folder_of_another_explore_is_refused(ray_session, tiny_run):
    from fpgagen.explore.run import explore

    out, _, _ = tiny_run
    with pytest.raises(FpgagenError, match="different explore .*weight_bits"):
        explore(tiny_config(out, weight_bits=[3, 4]), log=lambda m: None)


def test_program_figures_are_the_layers_own(tiny_run, tmp_path):
    """The program's choice applied to the IR lowered at the chosen widths: every layer's cycles and resources
    (plus its 2-deep output FIFO) and the width converter between a window and its MVAU where their words differ,
    as their own models price them, add up to what the program counted."""
    from explore_tiny import layers_own_figures

    from fpgagen.board import load_board
    from fpgagen.explore import program, tasks
    from fpgagen.explore.run import point_id
    from fpgagen.ir import Network

    out, doc, _ = tiny_run

    def lowered(kind, wb, ab):
        return Network.load(out / "ir" / point_id(kind, wb, ab))

    base, probes = program.probe_configs([2, 4], [4], 3, 2)
    units = program.units_of(lowered("ir", *base))
    depends = program.dependence(units, program.signatures(lowered("ir", *base)),
                                 {v: program.signatures(lowered("probe", *p)) for v, p in probes.items()}, "test")
    # a chain: each unit's cost moves with its own layer's weights only (the act grid has one width)
    assert [d for d in depends if d] == [[("w", 0)], [("w", 1)], [("w", 2)]]
    configs = program.covering_configs(depends, [2, 4], [4], 3, 2)
    assert len(configs) == 2
    tables = {(tuple(wb), tuple(ab)): program.unit_tables(lowered("ir", wb, ab)) for wb, ab in configs}
    sens_w = [{2: 1.0, 4: 0.0}, {2: 0.0, 4: 0.0}, {2: 0.0, 4: 0.0}]  # only layer 0 at 2 bits costs loss
    prog = program.joint_program(tables, units, depends, [2, 4], [4], 3, 2, load_board("pynq_z2"), sens_w,
                                 [{4: 0.0}] * 2)
    specs = {"factory": f"{TINY}:factory", "evaluate": None, "finetune": None, "calibration": None}
    for budget in (0.0, float("inf")):
        choice = prog.solve(budget)
        assert choice is not None and (budget or choice.weight_bits[0] == 4)
        ir = tmp_path / f"ir{budget}"
        tasks.lower_task(specs, choice.weight_bits, choice.act_bits, (1, 3, 8, 8), str(ir), tables=False)
        assert layers_own_figures(Network.load(ir), choice.attrs) == (choice.resources, choice.cycles)


# --- errors ------------------------------------------------------------------------------------------------
def test_factory_missing_or_raising(tmp_path):
    from fpgagen.explore import contract

    with pytest.raises(FpgagenError, match="no such file"):
        contract.resolve(str(tmp_path / "nope.py") + ":make")
    with pytest.raises(FpgagenError, match="defines no function 'make'"):
        contract.resolve(f"{TINY}:make")
    bad = tmp_path / "bad.py"
    bad.write_text("def make(weight_bits, act_bits):\n    raise ValueError('no such width')\n"
                   "def evaluate(m):\n    return 1.0\ndef calibration():\n    import torch\n"
                   "    return torch.zeros(2, 3, 8, 8)\n")
    c = contract.resolve(f"{bad}:make")
    with pytest.raises(FpgagenError, match="factory raised ValueError: no such width") as exc:
        contract.discover(c, contract.calibration_data(c))
    assert exc.value.where == f"{bad}:make"
    ignoring = tmp_path / "ignoring.py"
    ignoring.write_text(f"import sys\nsys.path.insert(0, {str(Path(TINY).parent)!r})\nimport explore_tiny\n"
                        "def make(weight_bits, act_bits):\n    return explore_tiny.factory(4, 4)\n"
                        "evaluate, calibration = explore_tiny.evaluate, explore_tiny.calibration\n")
    c = contract.resolve(f"{ignoring}:make")
    with pytest.raises(FpgagenError, match="does not apply per-layer bit widths"):
        contract.discover(c, contract.calibration_data(c))


def test_factory_settings_are_part_of_the_identity(tmp_path, monkeypatch):
    """A factory module's settings() (the face detector's sizes, read from the environment) goes into the run
    folder's identity: resuming under other settings is refused instead of mixing fine-tunes of both."""
    from fpgagen.explore import contract
    from fpgagen.explore.run import identity, open_run_folder

    mod = tmp_path / "sized.py"
    mod.write_text(f"import os, sys\nsys.path.insert(0, {str(Path(TINY).parent)!r})\n"
                   "from explore_tiny import factory, evaluate, calibration\n"
                   "def settings():\n    return {'ITERS': int(os.environ.get('SIZED_ITERS', 30))}\n")
    specs = {"factory": f"{mod}:factory"}
    cfg = tiny_config(tmp_path / "run")
    assert contract.resolve(f"{TINY}:factory").settings is None
    settings = contract.resolve(f"{mod}:factory").settings
    assert settings == {"ITERS": 30}
    open_run_folder(tmp_path / "run", identity(cfg, specs, settings))
    open_run_folder(tmp_path / "run", identity(cfg, specs, settings))  # the same: resumed
    monkeypatch.setenv("SIZED_ITERS", "150")
    with pytest.raises(FpgagenError, match="different explore .*settings"):
        open_run_folder(tmp_path / "run", identity(cfg, specs, contract.resolve(f"{mod}:factory").settings))


def test_discovered_lengths():
    from fpgagen.explore import contract

    c = contract.resolve(f"{TINY}:factory")
    shape = contract.discover(c, contract.calibration_data(c))
    assert len(shape.weight_layers) == 3 and len(shape.act_quants) == 2 and len(shape.excluded) == 2


def test_evaluate_nan_stops_the_explore(ray_session, tmp_path):
    from fpgagen.explore.run import explore

    nan = tmp_path / "nan_eval.py"
    nan.write_text("def evaluate(model):\n    return float('nan')\n")
    with pytest.raises(FpgagenError, match="evaluate function returned nan") as exc:
        explore(tiny_config(tmp_path / "run", evaluate=f"{nan}:evaluate", act_bits=[4], weight_bits=[4],
                            fit_points=1), log=lambda m: None)
    assert str(nan) in exc.value.where


@pytest.mark.parametrize("grid, option", [([1, 4], "--weight-bits"), ([4, 17], "--act-bits")])
def test_bit_widths_out_of_range(tmp_path, grid, option):
    from fpgagen.explore.run import explore

    kw = {"weight_bits": grid} if option == "--weight-bits" else {"act_bits": grid}
    with pytest.raises(FpgagenError, match="out of range") as exc:
        explore(tiny_config(tmp_path / "run", **kw), log=lambda m: None)
    assert exc.value.where == option


def test_unreachable_address(tmp_path):
    from fpgagen.explore.run import explore

    t0 = time.perf_counter()
    with pytest.raises(FpgagenError, match="cannot reach the Ray cluster at 127.0.0.1:9") as exc:
        explore(tiny_config(tmp_path / "run", address="127.0.0.1:9"), log=lambda m: None)
    assert exc.value.where == "--address" and time.perf_counter() - t0 < 10


def test_cli_error_format(tmp_path, capsys):
    from fpgagen.cli import main

    assert main(["explore", str(tmp_path / "missing.py") + ":make", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fpgagen: error: no such file") and "Traceback" not in err


@pytest.mark.slow
def test_worker_failure_is_retried_once_then_recorded(ray_session, tmp_path):
    """A worker killed mid-task: once, and the retry finishes the point; every time, and the point is recorded
    as failed with the reason while the explore goes on."""
    from fpgagen.explore.run import explore

    crash = tmp_path / "crash.py"
    crash.write_text(f"import os, sys\nsys.path.insert(0, {str(Path(TINY).parent)!r})\nimport explore_tiny\n"
                     "def once(model):\n"
                     f"    marker = {str(tmp_path / 'crashed')!r}\n"
                     "    if not os.path.exists(marker):\n        open(marker, 'w').close()\n        os._exit(1)\n"
                     "    return explore_tiny.finetune(model)\n"
                     "def always(model):\n    os._exit(1)\n")
    doc = explore(tiny_config(tmp_path / "once", finetune=f"{crash}:once", weight_bits=[4], fit_points=1,
                              baseline=False), log=lambda m: None)
    fit = next(p for p in doc["points"] if "fit" in p["role"])
    assert (tmp_path / "crashed").exists() and fit["accuracy_measured"] is not None
    doc = explore(tiny_config(tmp_path / "always", finetune=f"{crash}:always", weight_bits=[4], fit_points=1,
                              baseline=False), log=lambda m: None)
    fit = next(p for p in doc["points"] if "fit" in p["role"])
    assert fit["status"].startswith("failed: ") and "Worker" in fit["status"], fit["status"]
    assert fit["accuracy_measured"] is None and not fit["pareto"]
