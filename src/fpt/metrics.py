"""Loss and metrics for each objective.

bits            logits (B, k, n) vs 0/1 targets: binary cross-entropy per bit;
                `accuracy` per bit, `sequence_accuracy` for whole examples.
classification  logits (B, C) vs class ids (B,): cross-entropy; `accuracy`.
regression      outputs (B, K) vs targets (B, K): mean squared error; `rmse` over all targets,
                `r2` computed per target and averaged (like sklearn's uniform_average).

`score` is the number that model selection and steps_to_threshold look at:
accuracy, or R^2 for regression.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from fpt.distributed import World, sum_across


def loss_fn(objective: str, outputs: Tensor, y: Tensor) -> Tensor:
    if objective == "bits":
        return F.binary_cross_entropy_with_logits(outputs, y)
    if objective == "classification":
        return F.cross_entropy(outputs, y)
    return F.mse_loss(outputs.reshape(y.shape), y)


class Metrics:
    """Accumulates sums over batches, so a full pass gives exact dataset metrics."""

    def __init__(self, objective: str):
        self.objective = objective
        self.examples = 0
        self.loss_sum = 0.0
        self.correct = 0.0        # bits or examples
        self.units = 0            # bits or examples
        self.all_correct = 0      # bits: examples with every bit right
        # regression: per-target sums in float64, so R^2 does not mix targets' scales
        self.sq_err = self.y_sum = self.y_sq_sum = None
        self.targets = 0

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
        else:
            y = y.reshape(n, -1).double()                                   # (B, K)
            outputs = outputs.reshape(y.shape).double()
            sums = ((outputs - y) ** 2).sum(0), y.sum(0), (y ** 2).sum(0)   # each (K,)
            if self.sq_err is None:
                self.sq_err, self.y_sum, self.y_sq_sum = (s.clone() for s in sums)
            else:
                self.sq_err += sums[0]
                self.y_sum += sums[1]
                self.y_sq_sum += sums[2]
            self.targets += n

    def merge_across(self, world: World, device: torch.device, n_targets: int) -> "Metrics":
        """Sum every rank's counts into this one (each rank saw a shard of the data)."""
        if not world.parallel:
            return self
        zeros = torch.zeros(n_targets if self.objective == "regression" else 0, dtype=torch.float64)
        scalars = torch.tensor([self.examples, self.loss_sum, self.correct, self.units, self.all_correct,
                                self.targets], dtype=torch.float64)
        vectors = [zeros if v is None else v.cpu() for v in (self.sq_err, self.y_sum, self.y_sq_sum)]
        total = sum_across(torch.cat([scalars, *vectors]).to(device), world).cpu()
        (examples, self.loss_sum, self.correct, units, all_correct, targets), rest = total[:6].tolist(), total[6:]
        self.examples, self.units, self.all_correct, self.targets = int(examples), int(units), int(all_correct), int(targets)
        if self.objective == "regression":
            self.sq_err, self.y_sum, self.y_sq_sum = rest.split(n_targets)
        return self

    def compute(self) -> dict[str, float]:
        result = {"loss": self.loss_sum / max(self.examples, 1)}
        if self.objective == "regression":
            count = max(self.targets, 1)
            mse = self.sq_err / count                                       # (K,)
            variance = self.y_sq_sum / count - (self.y_sum / count) ** 2    # (K,)
            result["rmse"] = math.sqrt(float(mse.mean()))
            r2 = 1 - mse / variance
            result["r2"] = float(r2[variance > 0].mean()) if bool((variance > 0).any()) else float("nan")
            result["score"] = result["r2"]
            return result
        result["accuracy"] = self.correct / max(self.units, 1)
        if self.objective == "bits":
            result["sequence_accuracy"] = self.all_correct / max(self.examples, 1)
        result["score"] = result["accuracy"]
        return result
