"""Tasks whose examples sit in memory as tensors: every dataset-backed task builds on this.

A split is an `Arrays`: x (N, L, D) float or (N, L) long, right-padded to L;
lengths (N,) real tokens per example; y (N,) class ids or (N, K) targets.
Training walks through seeded per-epoch permutations, so the batch of step t is
a pure function of (seed, t), like the generated tasks. Each batch is cut to
its longest example, so short sequences cost short compute.

Length bucketing (on by default when lengths vary): the examples of every
BUCKET_POOL consecutive steps (fewer if an epoch is shorter) are sorted by length
within each epoch and cut into batches, which those steps then take in a seeded
random order. Training still sees the examples of each epoch once, batches stay
a pure function of (seed, step), and a batch holds examples of similar length,
so little of what the model processes is padding.
Evaluation walks each split shortest first, for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor

from fpt.errors import FptError
from fpt.tasks.base import Batch, Task, TaskSpec, generator

# Optional training-time transform (augmentation): (x, generator) -> x, on a batch.
Augment = Callable[[Tensor, torch.Generator], Tensor]

BUCKET_POOL = 50  # steps whose examples are sorted together (the "megabatch" of HF's length grouping)


@dataclass
class Arrays:
    x: Tensor
    y: Tensor
    lengths: Tensor

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if self.y.shape[0] != n or self.lengths.shape[0] != n:
            raise ValueError(f"x, y and lengths disagree on the number of examples: "
                             f"{n}, {self.y.shape[0]}, {self.lengths.shape[0]}")

    @classmethod
    def full_length(cls, x: Tensor, y: Tensor) -> "Arrays":
        """Arrays whose every example fills all L tokens (images, fixed-length data)."""
        return cls(x, y, torch.full((x.shape[0],), x.shape[1], dtype=torch.long))

    def __len__(self) -> int:
        return self.x.shape[0]

    def take(self, index: Tensor) -> "Arrays":
        return Arrays(self.x[index], self.y[index], self.lengths[index])

    def batch(self, index: Tensor) -> Batch:
        """Examples `index` as a Batch cut to the longest of them."""
        lengths = self.lengths[index]
        longest = int(lengths.max()) if len(index) else 0
        x = self.x[index, :longest]
        mask = torch.arange(longest)[None, :] < lengths[:, None]    # (B, L_batch)
        return Batch(x, self.y[index], mask)


class EpochOrder:
    """The endless sequence of seeded permutations of n training examples, one per epoch:
    `order(start, stop, seed)` is which examples positions start..stop-1 of it are."""

    def __init__(self, name: str, n: int):
        self.name, self.n = name, n
        self._cache: dict[tuple[int, int], Tensor] = {}

    def permutation(self, seed: int, epoch: int) -> Tensor:
        key = (seed, epoch)
        if key not in self._cache:
            if len(self._cache) > 4:
                self._cache.clear()
            self._cache[key] = torch.randperm(self.n, generator=generator(self.name, "epoch", seed, epoch))
        return self._cache[key]

    def __call__(self, start: int, stop: int, seed: int) -> Tensor:
        positions = torch.arange(start, stop)
        epochs, offsets = positions // self.n, positions % self.n
        if epochs[0] == epochs[-1]:
            return self.permutation(seed, int(epochs[0]))[offsets]
        return torch.stack([self.permutation(seed, int(e))[int(o)] for e, o in zip(epochs, offsets)])


def carve_validation(train: Arrays, n_val: int, data_seed: int, name: str) -> tuple[Arrays, Arrays]:
    """Split a seeded validation set off a training set that came without one."""
    if not 0 < n_val < len(train):
        raise FptError(f"task {name}: cannot carve {n_val} validation examples out of {len(train)} "
                       "training examples; set --task-opt n_val to a smaller positive number")
    order = torch.randperm(len(train), generator=generator(name, "carve-val", data_seed))
    return train.take(order[n_val:]), train.take(order[:n_val])


class ArrayTask(Task):
    """A task over in-memory train / val / test `Arrays`."""

    def __init__(self, spec: TaskSpec, train: Arrays, val: Arrays, test: Arrays,
                 augment: Augment | None = None):
        for split, data in (("train", train), ("val", val), ("test", test)):
            if len(data) == 0:
                raise FptError(f"task {spec.name}: the {split} split is empty")
        self.spec = spec
        self.splits = {"train": train, "val": val, "test": test}
        self.augment = augment
        self.bucketing = True  # set by the training config (--no-length-bucketing)
        self.order = EpochOrder(spec.name, len(train))
        self._pool_cache: dict[tuple[int, int, int], Tensor] = {}

    def keep_train_fraction(self, fraction: float, data_seed: int) -> None:
        """A random subset of round(fraction * N) training examples (at least one), chosen by
        the task and data seed alone, so every arm and training seed sees the same subset."""
        train = self.splits["train"]
        n = max(1, round(fraction * len(train)))
        chosen = torch.randperm(len(train), generator=generator("train-fraction", self.spec.name, data_seed))[:n]
        self.splits["train"] = train.take(chosen.sort().values)
        self.order = EpochOrder(self.spec.name, n)
        self._pool_cache.clear()

    def varies_in_length(self, split: str = "train") -> bool:
        lengths = self.splits[split].lengths
        return bool((lengths != lengths[0]).any())

    def train_indices(self, step: int, batch_size: int, seed: int) -> Tensor:
        """Which training examples step `step` uses."""
        if not (self.bucketing and self.varies_in_length()):
            return self.in_epoch_order(step * batch_size, (step + 1) * batch_size, seed)
        pool_steps = self._pool_steps(batch_size)
        pool, slot = divmod(step, pool_steps)
        return self._bucketed_pool(pool, pool_steps, batch_size, seed)[slot]

    def in_epoch_order(self, start: int, stop: int, seed: int) -> Tensor:
        """Positions start..stop-1 of the endless sequence of seeded epoch permutations."""
        return self.order(start, stop, seed)

    def _pool_steps(self, batch_size: int) -> int:
        """Steps per pool: BUCKET_POOL, or fewer when an epoch holds fewer batches (a pool then
        spans at most two epochs, and no example can meet its own copy in a batch)."""
        return max(1, min(BUCKET_POOL, len(self.splits["train"]) // batch_size))

    def _bucketed_pool(self, pool: int, pool_steps: int, batch_size: int, seed: int) -> Tensor:
        """(pool_steps, B): the pool's examples sorted by length within each epoch, as batches in
        a seeded order."""
        key = (seed, pool, batch_size)
        if key not in self._pool_cache:
            if len(self._pool_cache) > 4:
                self._pool_cache.clear()
            first = pool * pool_steps * batch_size
            members = self.in_epoch_order(first, first + pool_steps * batch_size, seed)  # random order
            epoch = torch.arange(first, first + pool_steps * batch_size) // len(self.splits["train"])
            lengths = self.splits["train"].lengths[members]
            by_length = torch.sort(epoch * (int(lengths.max()) + 1) + lengths, stable=True).indices  # ties stay random
            batches = members[by_length].view(pool_steps, batch_size)
            order = torch.randperm(pool_steps, generator=generator(self.spec.name, "buckets", seed, pool))
            self._pool_cache[key] = batches[order]
        return self._pool_cache[key]

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        batch = self.splits["train"].batch(self.train_indices(step, batch_size, seed))
        if self.augment is not None:
            batch.x = self.augment(batch.x, generator(self.spec.name, "augment", seed, step))
        return batch

    def eval_order(self, split: str) -> Tensor:
        """The order eval_batches walks `split` in: shortest first when lengths vary (metrics don't
        depend on order), else as stored."""
        lengths = self.splits[split].lengths
        if self.bucketing and self.varies_in_length(split):
            return torch.sort(lengths, stable=True).indices
        return torch.arange(len(lengths))

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        data, order = self.splits[split], self.eval_order(split)
        for start in range(0, len(data), batch_size):
            yield data.batch(order[start:start + batch_size])

    def split_size(self, split: str) -> int:
        return len(self.splits[split])
