"""The shipped face detector under fpgagen explore, end to end at a small size (its own module: the explore starts
its own Ray, whose workers inherit the size settings below; make bench runs the larger one)."""

from __future__ import annotations

import pytest
from explore_tiny import check_marking

pytest.importorskip("ray")


@pytest.mark.slow
def test_face_explore_small(tmp_path, monkeypatch):
    from fpgagen.explore.run import ExploreConfig, explore

    monkeypatch.setenv("FPGAGEN_EXPLORE_FACE_ITERS", "5")
    monkeypatch.setenv("FPGAGEN_EXPLORE_FACE_EVAL_IMAGES", "16")
    monkeypatch.setenv("FPGAGEN_EXPLORE_FACE_TRAIN_IMAGES", "200")
    doc = explore(ExploreConfig(factory="face", out=str(tmp_path / "face"), weight_bits=[4, 8], act_bits=[4],
                                verify=1, fit_points=2, budgets=2, time_limit=30), log=lambda m: None)
    base = next(p for p in doc["points"] if "baseline" in p["role"])
    assert base["status"] == "verified" and base["accuracy_measured"] is not None
    assert base["weight_bits"] == [8] + [4] * 9 and base["act_bits"] == [4] * 9
    check_marking(doc["points"])
