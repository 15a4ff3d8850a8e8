"""Metrics over a whole pass: sums accumulated batch by batch, so a pass gives exact dataset metrics.

What is accumulated, and what the sums mean, is each objective's business (fpt.objectives):
`Metrics.update` and `Metrics.compute` hand the counts to the objective's entry. This module
holds the counts themselves, how shards of one pass combine (`state`, `absorb`), and the
pairwise merge of per-target statistics that regression uses.

`score` (in every computed record) is the number that model selection and steps_to_threshold
look at, higher is better: accuracy, R^2 for regression, minus the MSE for forecasts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from fpt.objectives import Objective


class Metrics:
    """Accumulates sums over batches for one objective.

    `state()` and `absorb()` let a caller combine the metrics of shards of one pass (the
    runner does so across data-parallel processes) into exactly the metrics of the whole."""

    SCALARS = ("examples", "loss_sum", "correct", "units", "all_correct", "targets", "sq_sum", "abs_sum", "smape_sum")
    FLOATS = ("loss_sum", "correct", "sq_sum", "abs_sum", "smape_sum")
    VECTORS = ("sq_err", "y_mean", "y_m2", "y_min", "y_max")  # per-target objectives, each (K,) float64

    def __init__(self, objective: "Objective"):
        self.objective = objective
        self.examples = 0
        self.loss_sum = 0.0
        self.correct = 0.0        # bits or examples
        self.units = 0            # bits, examples or forecast values
        self.all_correct = 0      # bits: examples with every bit right
        # per target in float64 (so R^2 does not mix targets' scales): squared error, running mean,
        # sum of squared deviations from it, and the range (to know a constant target)
        self.sq_err = self.y_mean = self.y_m2 = self.y_min = self.y_max = None
        self.targets = 0
        self.sq_sum = self.abs_sum = 0.0  # over `units` values, in float64
        self.smape_sum = 0.0              # sMAPE's per-value terms, in percent (short-term forecasting)

    @torch.no_grad()
    def update(self, outputs: Tensor, y: Tensor, loss: Tensor | None = None) -> None:
        outputs = outputs.float()
        n = y.shape[0]
        self.examples += n
        self.loss_sum += float(loss if loss is not None else self.objective.loss(outputs, y)) * n
        self.objective.accumulate(self, outputs, y)

    def compute(self) -> dict[str, float]:
        return {"loss": self.loss_sum / max(self.examples, 1), **self.objective.summarise(self)}

    def add_targets(self, outputs: Tensor, y: Tensor) -> None:
        """Per-target sums of one batch, outputs and y (B, K) float64, merged into these."""
        batch = Metrics(self.objective)
        batch.targets, batch.sq_err = y.shape[0], ((outputs - y) ** 2).sum(0)
        batch.y_mean = y.mean(0)
        batch.y_m2 = ((y - batch.y_mean) ** 2).sum(0)
        batch.y_min, batch.y_max = y.min(0).values, y.max(0).values
        self._merge_targets(batch)

    def _merge_targets(self, other: "Metrics") -> None:
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
        for key in ("examples", "loss_sum", "correct", "units", "all_correct", "sq_sum", "abs_sum", "smape_sum"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        if self.objective.per_target:
            self._merge_targets(other)
        return self

    def state(self, n_targets: int) -> Tensor:
        """Every count as one float64 vector (9 + 5 * n_targets for per-target objectives, else 9)."""
        scalars = torch.tensor([float(getattr(self, k)) for k in self.SCALARS], dtype=torch.float64)
        if not self.objective.per_target:
            return scalars
        vectors = [torch.zeros(n_targets, dtype=torch.float64) if getattr(self, k) is None
                   else getattr(self, k).cpu() for k in self.VECTORS]
        return torch.cat([scalars, *vectors])

    @classmethod
    def from_state(cls, objective: "Objective", state: Tensor) -> "Metrics":
        metrics = cls(objective)
        scalars, rest = state[:len(cls.SCALARS)].tolist(), state[len(cls.SCALARS):].cpu()
        for key, value in zip(cls.SCALARS, scalars):
            setattr(metrics, key, value if key in cls.FLOATS else int(value))
        if objective.per_target and metrics.targets:
            for key, value in zip(cls.VECTORS, rest.chunk(len(cls.VECTORS))):
                setattr(metrics, key, value.clone())
        return metrics
