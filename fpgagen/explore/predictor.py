"""The accuracy predictor: per-layer sensitivity on calibration data, combined additively, fitted on fine-tunes.

Sensitivity of variable v (a weight layer's or an activation quantizer's width) at b bits: the output perturbation
when only v runs at b bits and every other at the grid's widest, relative to the model at the widest widths,
``mean(e^2) / mean(y_ref^2)`` on the calibration batch with ``e = y_b - y_ref`` less each output channel's mean
shift, which a fine-tune absorbs at once (``perturbation``; HAWQ's idea, measured instead of a Hessian trace).
A point's score is the sum over its variables; the predicted accuracy is ``a0 - alpha * score`` or, when every
accuracy measured is positive (an AP collapses rather than falls linearly), ``a0 * exp(-alpha * score)``,
whichever fits the fine-tuned points better, with ``alpha >= 0`` (least squares; the exponential on log accuracy).
Either way the ranking is the score's, so the front the program traces does not depend on the fit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Sensitivity:
    """``weight[i][b]`` and ``act[k][b]``: the output perturbation with only that variable at b bits."""

    weight: list[dict[int, float]]
    act: list[dict[int, float]]

    def score(self, weight_bits: list[int], act_bits: list[int]) -> float:
        return float(sum(s[b] for s, b in zip(self.weight, weight_bits, strict=True)) +
                     sum(s[b] for s, b in zip(self.act, act_bits, strict=True)))

    def to_json(self) -> dict:
        return {"weight": [{str(b): v for b, v in s.items()} for s in self.weight],
                "act": [{str(b): v for b, v in s.items()} for s in self.act]}

    @staticmethod
    def from_json(d: dict) -> Sensitivity:
        return Sensitivity([{int(b): float(v) for b, v in s.items()} for s in d["weight"]],
                           [{int(b): float(v) for b, v in s.items()} for s in d["act"]])


def output_of(model, x):
    """The model's output as a float tensor (a QuantTensor's value; the first of a tuple)."""
    import torch

    with torch.no_grad():
        y = model(x)
    if isinstance(y, tuple | list):
        y = y[0]
    return (y.value if hasattr(y, "value") else y).detach().float()


def perturbation(y, y_ref) -> float:
    """``mean(e^2) / mean(y_ref^2)`` with ``e = y - y_ref`` less its mean over each output channel (axis 1; over
    everything for a 1-D output): a quantizer's shift of a channel's mean is what bias correction, or the first steps
    of a fine-tune (a bias, a BatchNorm's beta), takes away, so it is not counted as damage. Re-scored on an earlier
    face explore's fine-tunes (3 fitted + 6 held out) it ranked the held-out points at Spearman 0.829 (MAE 0.122)
    where the raw output error gave 0.771 (MAE 0.125); the fresh run in docs/explore/face_pareto.json gives 0.829
    (MAE 0.170)."""
    e = y - y_ref
    dims = [d for d in range(e.ndim) if d != 1] if e.ndim > 1 else [0]
    e = e - e.mean(dim=dims, keepdim=True)
    return float((e ** 2).mean() / max(float((y_ref ** 2).mean()), 1e-12))


@dataclass
class Predictor:
    """``accuracy = a0 - alpha * score`` (``form`` "linear") or ``a0 * exp(-alpha * score)`` ("exponential");
    ``fitted_on`` how many fine-tuned points it was fitted on."""

    a0: float
    alpha: float
    fitted_on: int
    form: str = "linear"

    def accuracy(self, score: float) -> float:
        if self.form == "exponential":
            return float(self.a0 * np.exp(-self.alpha * score))
        return self.a0 - self.alpha * score

    def to_json(self) -> dict:
        return {"a0": self.a0, "alpha": self.alpha, "form": self.form, "fitted_on": self.fitted_on}


def fit(scores: list[float], accuracies: list[float]) -> Predictor:
    """Least squares with ``alpha >= 0`` (more perturbation never predicts more accuracy); one point (or scores all
    equal) gives ``alpha = 0``: the mean accuracy."""
    s, a = np.asarray(scores, float), np.asarray(accuracies, float)
    if len(s) == 0:
        return Predictor(0.0, 0.0, 0)
    if len(s) < 2 or np.ptp(s) == 0:
        return Predictor(float(a.mean()), 0.0, len(s))
    slope, intercept = np.polyfit(s, a, 1)
    if slope > 0:  # the data say more perturbation helps: no trend to use
        return Predictor(float(a.mean()), 0.0, len(s))
    best = Predictor(float(intercept), float(-slope), len(s))
    if np.all(a > 0):
        lslope, lintercept = np.polyfit(s, np.log(a), 1)
        if lslope <= 0:
            expo = Predictor(float(np.exp(lintercept)), float(-lslope), len(s), "exponential")
            if _sse(expo, s, a) < _sse(best, s, a):
                best = expo
    return best


def _sse(p: Predictor, s: np.ndarray, a: np.ndarray) -> float:
    return float(sum((p.accuracy(float(x)) - y) ** 2 for x, y in zip(s, a, strict=True)))


def quality(predicted: list[float], measured: list[float]) -> dict:
    """Spearman rank correlation and mean absolute error of predictions on points the fit did not see."""
    from scipy.stats import spearmanr

    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    out = {"spearman": None, "mae": None, "held_out": len(p)}
    if len(p):
        out["mae"] = float(np.mean(np.abs(p - m)))
    if len(p) >= 3 and np.ptp(p) > 0 and np.ptp(m) > 0:
        out["spearman"] = float(spearmanr(p, m).statistic)
    return out
