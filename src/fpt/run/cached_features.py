"""Output-only training on cached features (the paper's frozen "reservoir").

When only the head trains, everything before it is a fixed function of the input.
For a task with a finite training set and no augmentation, fpt runs the frozen
part once over every split, keeps the read-out features, and trains the head on
them: an epoch then costs one small matrix product instead of a transformer pass.
Features are computed in eval mode (no dropout), so the reservoir is deterministic.

The swap is invisible to the training loop: a `FeatureTask` serves batches of
features with the same step -> examples order as the original task, and `HeadOnly`
holds the very same head module, so checkpoints name it `head.*` as usual and a
saved model loads into the full model.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Iterator

import torch
from torch import Tensor, nn
from tqdm import tqdm

from fpt.tasks.arrays import ArrayTask
from fpt.tasks.base import Batch, Task


def can_cache(built) -> bool:
    """Only the head trains, the training set is finite and not augmented, and the frozen
    weights are whole on this process (under --parallel fsdp they are gathered only inside
    the model's forward pass)."""
    sharded = built.world.parallel and built.config.parallel == "fsdp"
    return (built.config.train_groups == ["output"] and isinstance(built.task, ArrayTask)
            and built.task.augment is None and not sharded)


class HeadOnly(nn.Module):
    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, features: Tensor, mask: Tensor) -> Tensor:
        return self.head(features)


class FeatureTask(Task):
    def __init__(self, base: ArrayTask, features: dict[str, Tensor]):
        self.spec, self.base, self.features = base.spec, base, features
        self.pad_id = base.pad_id  # recorded in saved models, for `fpt predict`

    def _batch(self, split: str, index: Tensor) -> Batch:
        x = self.features[split][index]                       # (B, H) or (B, k, H)
        return Batch(x, self.base.splits[split].y[index], torch.ones(len(index), 1, dtype=torch.bool))

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        # Features carry no padding, so no length bucketing: the plain seeded epoch order.
        return self._batch("train", self.base.in_epoch_order(step * batch_size, (step + 1) * batch_size, seed))

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        n = len(self.features[split])
        for start in range(0, n, batch_size):
            yield self._batch(split, torch.arange(start, min(start + batch_size, n)))

    def split_size(self, split: str) -> int:
        return len(self.features[split])


@torch.no_grad()
def compute_features(built, batch_size: int, progress: bool = True) -> dict[str, Tensor]:
    """Read-out features of every example of every split, in split order."""
    model, task = built.model, built.task
    model.eval()
    features = {}
    for split in ("train", "val", "test"):
        # eval_batches, not the raw arrays: image tasks turn pixels into tokens there (no augmentation)
        batches = tqdm(task.eval_batches(split, batch_size), desc=f"features {split}",
                       disable=not (progress and built.world.is_main),
                       total=-(-task.split_size(split) // batch_size), file=sys.stderr)
        walked = torch.cat([model.features(b.x.to(built.device), b.mask.to(built.device)).float()
                            for b in batches])
        features[split] = torch.empty_like(walked)
        features[split][task.eval_order(split).to(walked.device)] = walked  # back to split order
    return features


def cached(built, batch_size: int):
    """A copy of `built` whose task serves cached features and whose model is the head alone."""
    features = compute_features(built, batch_size, built.config.progress)
    return dataclasses.replace(built, task=FeatureTask(built.task, features), model=HeadOnly(built.model.head))
