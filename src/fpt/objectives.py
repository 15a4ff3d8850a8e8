"""Objectives: what a task's outputs mean, one registry entry each.

An entry owns everything that differs between objectives: the loss, what a pass accumulates
and the metrics it computes (fpt.metrics holds the counts), the headline score and its
direction, how a score is shown in the progress bar and in reports, and how raw outputs
become predictions. Nothing outside an entry compares an objective's name; code asks the
entry (`objective(spec.objective)`) instead.

    bits            logits (B, k, n) vs 0/1 targets: binary cross-entropy per bit;
                    `accuracy` per bit, `sequence_accuracy` for whole examples.
    classification  logits (B, C) vs class ids (B,): cross-entropy; `accuracy`.
    regression      outputs (B, K) vs targets (B, K): mean squared error; `rmse` over all targets,
                    `r2` computed per target and averaged, as sklearn's r2_score(multioutput=
                    "uniform_average") does: a target that never varies scores 1 if predicted
                    exactly, else 0 (sklearn's force_finite), instead of a division by zero.
                    Each target's variance is merged from centred per-batch sums (Chan et al.),
                    never as E[y^2] - E[y]^2, whose rounding noise made R^2 explode.
    forecast        forecasts (B, horizon) vs the true values (B, horizon): mean squared error;
                    `mse` and `mae` over every value of every window (the benchmarks' protocol).
    imputation      the window rebuilt (B, T, C) vs y (B, T, C, 2): the true values and, 1 or 0,
                    whether the point was hidden from the model; mean squared error over the
                    hidden points only, `mse` and `mae` over them (One Fits All's protocol).
    reconstruction  the same with every point scored (y[..., 1] all 1): anomaly detection's model
                    rebuilds the window it sees; its anomaly scores come after (fpt.tasks.anomaly).
    smape           forecasts (B, horizon) vs the true values, in the series' own units (short-term
                    forecasting, fpt.tasks.shortterm): sMAPE as Time-Series-Library trains M4 (200 |f - y| /
                    (|f| + |y|), the denominator not differentiated, 0 where it is 0); `smape` and `mae`.

`score` is the number that model selection and steps_to_threshold look at, higher is better:
accuracy, R^2 for regression, minus the MSE for forecasts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from fpt.metrics import Metrics
from fpt.registry import Registry


@dataclass(frozen=True)
class Objective:
    name: str
    metric: str                       # what `fpt tasks` lists, e.g. "accuracy"
    outputs: str                      # what the outputs are, for `fpt tasks`: classes, targets, ...
    headline: str                     # the metric reports quote, a key of the computed record
    loss: Callable[[Tensor, Tensor], Tensor]
    accumulate: Callable[[Metrics, Tensor, Tensor], None]   # one batch's outputs and targets into the counts
    summarise: Callable[[Metrics], dict[str, float]]        # the counts -> metrics, `score` among them
    predict: Callable[[Tensor, bool], Tensor]               # outputs -> predictions (probabilities when asked)
    lower_is_better: bool = False     # the headline (score = -headline when True)
    percent: bool = True              # shown as a percentage (accuracy, R^2 x 100), else as the value
    per_token: bool = False           # one output per read-out token (readout_tokens > 1 allowed)
    per_target: bool = False          # accumulates per-target vectors (their shards merge pairwise)
    probabilities: bool = True        # --probs gives class or bit probabilities
    horizon: bool = False             # outputs continue the input series, in each window's own scale
    reconstructs: bool = False        # outputs rebuild the input window (B, T, C), in its own scale
    perfect: float = 1.0              # the best `score` there is (accuracy 1, R^2 1, MSE 0): early stopping
                                      # ends a run whose validation reaches it, as nothing can beat it

    # -- showing scores (higher-is-better `score` values) in progress bars and reports ----------
    @property
    def unit(self) -> str:
        return " pts" if self.percent else f" {self.headline.upper()}"

    def value(self, score: float) -> float:
        """A score in the units it is shown in: percent, or the headline (MSE) itself."""
        return (100 * score) if self.percent else (-score if self.lower_is_better else score)

    def _digits(self) -> int:
        return 1 if self.percent else 4

    def show(self, score: float) -> str:
        """'85.0%' or '0.3970 MSE'."""
        text = f"{self.value(score):.{self._digits()}f}"
        return f"{text}%" if self.percent else f"{text} {self.headline.upper()}"

    def show_stats(self, mean: float, se: float) -> str:
        """A mean score and its standard error (nan: not shown)."""
        return self.show(mean) + ("" if math.isnan(se) else f" ± {abs(self.value(se)):.{self._digits()}f}")

    def show_gap(self, gap: float) -> str:
        """How far behind a score is (gap >= 0, in score units): '3.1 pts' or '0.0120 MSE'."""
        return f"{abs(self.value(gap)):.{self._digits()}f}{self.unit}"

    def show_interval(self, comparison: Any) -> str:
        """A paired comparison (fpt.experiments.stats.Paired: arm minus reference, in score units) in
        shown units: '+3.1 pts [1.2, 5.0] (n=3)', or '-0.0120 MSE [-0.0200, -0.0040] (n=3)' for
        an MSE that is lower, i.e. better."""
        d = self._digits()
        if math.isnan(comparison.low):
            return f"{self.value(comparison.mean):+.{d}f}{self.unit} (n={comparison.n})"
        low, high = sorted((self.value(comparison.low), self.value(comparison.high)))
        return f"{self.value(comparison.mean):+.{d}f}{self.unit} [{low:+.{d}f}, {high:+.{d}f}] (n={comparison.n})"

    def progress(self, val: dict[str, float]) -> dict[str, float]:
        """What the progress bar shows of a validation record."""
        return {f"val_{self.headline}": val[self.headline]} if self.lower_is_better else {"val": val["score"]}

    def curve(self, val: dict[str, float]) -> float:
        """The number learning curves plot for a validation record (MSE for forecasts, else score)."""
        return val[self.headline] if self.lower_is_better else val["score"]

    @property
    def axis(self) -> str:
        return self.headline.upper() if self.lower_is_better else "score"

    def headline_of(self, metrics: dict[str, float]) -> float:
        """The headline metric of a computed record (accuracy, R^2, MSE), nan where missing."""
        return metrics.get(self.headline, float("nan"))

    def describe_outputs(self, n_outputs: int, readout_tokens: int) -> str:
        """'3 classes', '20 x 1 bits', '96 steps ahead' for `fpt tasks`."""
        return f"{readout_tokens} x {n_outputs} {self.outputs}" if self.per_token else f"{n_outputs} {self.outputs}"


OBJECTIVES: Registry[Objective] = Registry("objective", "objective")
register = OBJECTIVES.register


def objective(name: str) -> Objective:
    """The registered objective called `name`, or one line naming the known ones."""
    return OBJECTIVES.find(name)


# -- the entries' functions -------------------------------------------------------------------

def _accuracy(metrics: Metrics) -> dict[str, float]:
    accuracy = metrics.correct / max(metrics.units, 1)
    return {"accuracy": accuracy, "score": accuracy}


def _bits_accumulate(m: Metrics, outputs: Tensor, y: Tensor) -> None:
    right = (outputs > 0) == (y > 0.5)                                     # (B, k, bits)
    m.correct += float(right.sum())
    m.units += right.numel()
    m.all_correct += int(right.flatten(1).all(dim=1).sum())


def _bits_summarise(m: Metrics) -> dict[str, float]:
    result = _accuracy(m)
    return {"accuracy": result["accuracy"], "sequence_accuracy": m.all_correct / max(m.examples, 1),
            "score": result["score"]}


def _classification_accumulate(m: Metrics, outputs: Tensor, y: Tensor) -> None:
    m.correct += float((outputs.argmax(dim=-1) == y).sum())
    m.units += y.shape[0]


def _mse(outputs: Tensor, y: Tensor) -> Tensor:
    return F.mse_loss(outputs.reshape(y.shape), y)


def _regression_accumulate(m: Metrics, outputs: Tensor, y: Tensor) -> None:
    n = y.shape[0]
    if n:
        y = y.reshape(n, -1).double()                                      # (B, K)
        m.add_targets(outputs.reshape(y.shape).double(), y)


def _regression_summarise(m: Metrics) -> dict[str, float]:
    if not m.targets:
        return {"rmse": float("nan"), "r2": float("nan"), "score": float("nan")}
    rmse = math.sqrt(float(m.sq_err.mean() / m.targets))
    constant = m.y_min == m.y_max                                          # (K,) exactly, not by rounding
    r2 = 1 - m.sq_err / torch.where(constant, torch.ones_like(m.y_m2), m.y_m2)
    r2 = torch.where(constant, (m.sq_err == 0).double(), r2)              # sklearn's force_finite
    return {"rmse": rmse, "r2": float(r2.mean()), "score": float(r2.mean())}


def _forecast_accumulate(m: Metrics, outputs: Tensor, y: Tensor) -> None:
    error = outputs.reshape(y.shape).double() - y.double()                 # (B, horizon)
    m.sq_sum += float((error ** 2).sum())
    m.abs_sum += float(error.abs().sum())
    m.units += error.numel()


def _forecast_summarise(m: Metrics) -> dict[str, float]:
    units = max(m.units, 1)
    mse = m.sq_sum / units
    return {"mse": mse, "mae": m.abs_sum / units, "score": -mse}


def _hidden_points(outputs: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """The errors (B, T, C) of a rebuilt window and which points count (1.0: hidden from the model)."""
    return outputs.reshape(y.shape[:-1]) - y[..., 0], y[..., 1]


def _masked_mse(outputs: Tensor, y: Tensor) -> Tensor:
    error, hidden = _hidden_points(outputs, y)
    return (error.square() * hidden).sum() / hidden.sum().clamp(min=1)


def _imputation_accumulate(m: Metrics, outputs: Tensor, y: Tensor) -> None:
    error, hidden = _hidden_points(outputs.double(), y.double())           # (B, T, C)
    m.sq_sum += float((error.square() * hidden).sum())
    m.abs_sum += float((error.abs() * hidden).sum())
    m.units += int(hidden.sum())


def _smape_terms(outputs: Tensor, y: Tensor) -> Tensor:
    """200 |f - y| / (|f| + |y|) per value (B, horizon), 0 where both are 0; the denominator is not
    differentiated (Time-Series-Library's smape_loss divides by .data)."""
    forecast = outputs.reshape(y.shape)
    denominator = (forecast.abs() + y.abs()).detach()
    return torch.where(denominator > 0, 200 * (forecast - y).abs() / denominator.clamp(min=1e-12), 0.0)


def _smape(outputs: Tensor, y: Tensor) -> Tensor:
    return _smape_terms(outputs, y).mean()


def _smape_accumulate(m: Metrics, outputs: Tensor, y: Tensor) -> None:
    m.smape_sum += float(_smape_terms(outputs.double(), y.double()).sum())
    m.abs_sum += float((outputs.reshape(y.shape).double() - y.double()).abs().sum())
    m.units += y.numel()


def _smape_summarise(m: Metrics) -> dict[str, float]:
    units = max(m.units, 1)
    value = m.smape_sum / units
    return {"smape": value, "mae": m.abs_sum / units, "score": -value}


def _values(outputs: Tensor, probs: bool) -> Tensor:
    return outputs.reshape(len(outputs), -1)                               # (B, K) or (B, horizon)


register(Objective(
    "bits", "per-bit accuracy", "bits", "accuracy", per_token=True,
    loss=F.binary_cross_entropy_with_logits, accumulate=_bits_accumulate, summarise=_bits_summarise,
    predict=lambda out, probs: out.sigmoid() if probs else (out > 0).to(torch.uint8)))
register(Objective(
    "classification", "accuracy", "classes", "accuracy",
    loss=F.cross_entropy, accumulate=_classification_accumulate, summarise=_accuracy,
    predict=lambda out, probs: out.softmax(dim=-1) if probs else out.argmax(dim=-1)))
register(Objective(
    "regression", "RMSE, R^2", "targets", "r2", per_target=True, probabilities=False,
    loss=_mse, accumulate=_regression_accumulate, summarise=_regression_summarise, predict=_values))
register(Objective(
    "forecast", "MSE, MAE", "steps ahead", "mse", lower_is_better=True, percent=False, probabilities=False, perfect=0.0,
    horizon=True, loss=_mse, accumulate=_forecast_accumulate, summarise=_forecast_summarise, predict=_values))
for _name, _metric in (("imputation", "masked MSE, MAE"), ("reconstruction", "MSE, MAE")):
    register(Objective(
        _name, _metric, "values", "mse", lower_is_better=True, percent=False, probabilities=False, perfect=0.0,
        per_token=True, reconstructs=True, loss=_masked_mse, accumulate=_imputation_accumulate,
        summarise=_forecast_summarise, predict=lambda out, probs: out))
register(Objective(
    "smape", "sMAPE, MAE", "steps ahead", "smape", lower_is_better=True, percent=False, probabilities=False,
    perfect=0.0, horizon=True, loss=_smape, accumulate=_smape_accumulate, summarise=_smape_summarise, predict=_values))
