"""Loss and metrics for each objective.

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

`score` is the number that model selection and steps_to_threshold look at, higher is better:
accuracy, R^2 for regression, minus the MSE for forecasts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor



def loss_fn(objective: str, outputs: Tensor, y: Tensor) -> Tensor:
    if objective == "bits":
        return F.binary_cross_entropy_with_logits(outputs, y)
    if objective == "classification":
        return F.cross_entropy(outputs, y)
    return F.mse_loss(outputs.reshape(y.shape), y)


class Metrics:
    """Accumulates sums over batches, so a full pass gives exact dataset metrics.

    `state()` and `absorb()` let a caller combine the metrics of shards of one pass (the
    runner does so across data-parallel processes) into exactly the metrics of the whole."""

    SCALARS = ("examples", "loss_sum", "correct", "units", "all_correct", "targets", "sq_sum", "abs_sum")
    VECTORS = ("sq_err", "y_mean", "y_m2", "y_min", "y_max")  # regression, each (K,) float64

    def __init__(self, objective: str):
        self.objective = objective
        self.examples = 0
        self.loss_sum = 0.0
        self.correct = 0.0        # bits or examples
        self.units = 0            # bits or examples
        self.all_correct = 0      # bits: examples with every bit right
        # regression, per target in float64 (so R^2 does not mix targets' scales): squared error,
        # running mean, sum of squared deviations from it, and the range (to know a constant target)
        self.sq_err = self.y_mean = self.y_m2 = self.y_min = self.y_max = None
        self.targets = 0
        self.sq_sum = self.abs_sum = 0.0  # forecast: over `units` values, in float64

    @torch.no_grad()
    def update(self, outputs: Tensor, y: Tensor, loss: Tensor | None = None) -> None:
        outputs = outputs.float()
        n = y.shape[0]
        self.examples += n
        self.loss_sum += float(loss if loss is not None else loss_fn(self.objective, outputs, y)) * n
        if self.objective == "bits":
            right = (outputs > 0) == (y > 0.5)                              # (B, k, bits)
            self.correct += float(right.sum())
            self.units += right.numel()
            self.all_correct += int(right.flatten(1).all(dim=1).sum())
        elif self.objective == "classification":
            self.correct += float((outputs.argmax(dim=-1) == y).sum())
            self.units += n
        elif self.objective == "forecast":
            error = outputs.reshape(y.shape).double() - y.double()         # (B, horizon)
            self.sq_sum += float((error ** 2).sum())
            self.abs_sum += float(error.abs().sum())
            self.units += error.numel()
        elif n:
            y = y.reshape(n, -1).double()                                   # (B, K)
            outputs = outputs.reshape(y.shape).double()
            batch = Metrics(self.objective)
            batch.targets, batch.sq_err = n, ((outputs - y) ** 2).sum(0)
            batch.y_mean = y.mean(0)
            batch.y_m2 = ((y - batch.y_mean) ** 2).sum(0)
            batch.y_min, batch.y_max = y.min(0).values, y.max(0).values
            self._merge_regression(batch)

    def _merge_regression(self, other: "Metrics") -> None:
        """Chan et al.'s pairwise update of count, mean and centred sum of squares."""
        if other.targets == 0:
            return
        if self.targets == 0:
            self.targets = other.targets
            self.sq_err, self.y_mean, self.y_m2, self.y_min, self.y_max = (
                v.clone() for v in (other.sq_err, other.y_mean, other.y_m2, other.y_min, other.y_max))
            return
        n_a, n_b = self.targets, other.targets
        n = n_a + n_b
        delta = other.y_mean - self.y_mean                                  # (K,)
        self.y_mean = self.y_mean + delta * (n_b / n)
        self.y_m2 = self.y_m2 + other.y_m2 + delta ** 2 * (n_a * n_b / n)
        self.sq_err = self.sq_err + other.sq_err
        self.y_min, self.y_max = torch.minimum(self.y_min, other.y_min), torch.maximum(self.y_max, other.y_max)
        self.targets = n

    def absorb(self, other: "Metrics") -> "Metrics":
        """Add the counts of another shard of the same pass into this one."""
        self.examples += other.examples
        self.loss_sum += other.loss_sum
        self.correct += other.correct
        self.units += other.units
        self.all_correct += other.all_correct
        self.sq_sum += other.sq_sum
        self.abs_sum += other.abs_sum
        if self.objective == "regression":
            self._merge_regression(other)
        return self

    def state(self, n_targets: int) -> Tensor:
        """Every count as one float64 vector (6 + 5 * n_targets for regression, else 6)."""
        scalars = torch.tensor([float(getattr(self, k)) for k in self.SCALARS], dtype=torch.float64)
        if self.objective != "regression":
            return scalars
        vectors = [torch.zeros(n_targets, dtype=torch.float64) if getattr(self, k) is None
                   else getattr(self, k).cpu() for k in self.VECTORS]
        return torch.cat([scalars, *vectors])

    @classmethod
    def from_state(cls, objective: str, state: Tensor) -> "Metrics":
        metrics = cls(objective)
        scalars, rest = state[:len(cls.SCALARS)].tolist(), state[len(cls.SCALARS):].cpu()
        for key, value in zip(cls.SCALARS, scalars):
            setattr(metrics, key, value if key in ("loss_sum", "correct", "sq_sum", "abs_sum") else int(value))
        if objective == "regression" and metrics.targets:
            for key, value in zip(cls.VECTORS, rest.chunk(len(cls.VECTORS))):
                setattr(metrics, key, value.clone())
        return metrics

    def compute(self) -> dict[str, float]:
        result = {"loss": self.loss_sum / max(self.examples, 1)}
        if self.objective == "regression":
            if not self.targets:
                result.update(rmse=float("nan"), r2=float("nan"), score=float("nan"))
                return result
            result["rmse"] = math.sqrt(float(self.sq_err.mean() / self.targets))
            constant = self.y_min == self.y_max                              # (K,) exactly, not by rounding
            r2 = 1 - self.sq_err / torch.where(constant, torch.ones_like(self.y_m2), self.y_m2)
            r2 = torch.where(constant, (self.sq_err == 0).double(), r2)  # sklearn's force_finite
            result["r2"] = float(r2.mean())
            result["score"] = result["r2"]
            return result
        if self.objective == "forecast":
            units = max(self.units, 1)
            result.update(mse=self.sq_sum / units, mae=self.abs_sum / units)
            result["score"] = -result["mse"]
            return result
        result["accuracy"] = self.correct / max(self.units, 1)
        if self.objective == "bits":
            result["sequence_accuracy"] = self.all_correct / max(self.examples, 1)
        result["score"] = result["accuracy"]
        return result
