"""Imputation: rebuild the hidden points of a multichannel series, One Fits All's protocol (Table 1).

    fpt train --task impute --task-opt path=ETTh1.csv

The CSV is read as forecasting reads it (fpt.tasks.forecast: a date column and numeric
channels, the benchmark's split by the file's name, every channel standardised with the
training rows' mean and std). An example is a window of `seq_len` (96) steps of *every*
channel, x (96, C): each point is hidden with probability `mask_ratio` (One Fits All's table:
0.125, 0.25, 0.375, 0.5) and given to the model as NaN; the model rebuilds the window and is
scored on the hidden points alone, MSE and MAE of the standardised values. As there, each step
is one token (`patch_len` 1) and each window is normalised by its observed points' mean and
std (fpt.series).

Masks: a training batch draws its own from (seed, step), so every arm at one seed sees the same
ones. Validation and test masks are fixed by `mask_seed` and the window: one uniform draw u per
point, hidden where u < ratio, so every arm is scored on exactly the same points and the
masks of a larger ratio contain those of a smaller. After training, the test split is scored
again at each of the four published ratios (result.json's `test_variants`), whatever ratio
the model trained at.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor

from fpt.errors import FptError
from fpt.tasks.arrays import EpochOrder
from fpt.tasks.base import Batch, Task, TaskSpec, generator, positive, window_rebuild_spec
from fpt.tasks.forecast import benchmark_of, load_series, split_for, split_rows

RATIOS = (0.125, 0.25, 0.375, 0.5)  # One Fits All's Table 1: each trained and tested on its own
VARIANT = "test@"                   # test@0.25: the test split scored at another mask ratio


@dataclass(frozen=True)
class ImputeOptions:
    path: str = ""               # a CSV, or etth1 | etth2 | ettm1 | ettm2
    seq_len: int = 96            # window length (One Fits All's 96)
    patch_len: int = 1           # steps per token (1: one step of every channel, as One Fits All)
    mask_ratio: float = 0.125    # the share of points hidden in training and validation
    split: str = "auto"          # ett-hour | ett-minute | fractions a,b,c; auto: the benchmark's, else 0.7,0.1,0.2
    features: str = "all"        # all channels, or one column's name
    instance_norm: bool = True   # each window normalised by its observed points (One Fits All's)
    mask_seed: int = 2021        # draws the validation and test masks (the same for every arm and seed)
    val_stride: int = 4          # validate on every k-th window (adjacent windows share seq_len - 1 rows); test: all

    def __post_init__(self) -> None:
        positive(self, "seq_len", "patch_len", "val_stride")
        if self.seq_len % self.patch_len:
            raise ValueError(f"patch_len {self.patch_len} must divide seq_len {self.seq_len} (each token rebuilds "
                             "its own steps)")
        if not 0 < self.mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        split_rows(self.split_name, 10 ** 9, self.seq_len)  # refuses an unknown split spelling

    @property
    def split_name(self) -> str:
        return split_for(self.path, self.split)


class Impute(Task):
    """Windows of every channel with random points hidden (see the module docstring)."""

    def __init__(self, options: ImputeOptions, data_seed: int, data_dir: Path | None = None):
        self.options = o = options
        file, names, values, season, bounds, mean, std, series = load_series("impute", o.path, o.features,
                                                                              o.split_name, o.seq_len, data_dir)
        self.windows: dict[str, Tensor] = {}                              # split -> (C, W, seq_len) views
        for split, (a, b) in bounds.items():
            if b - a < o.seq_len:
                raise FptError(f"'{file}': the {split} split has {b - a} rows, fewer than seq_len = {o.seq_len}; "
                               "use a shorter seq_len or another split")
            self.windows[split] = series[:, a:b].unfold(1, o.seq_len, 1)
        # one uniform draw per point of every evaluated window: hidden where below the ratio
        self.draws = {split: torch.rand((self.windows[split].shape[1], o.seq_len, len(names)),
                                        generator=generator("impute-masks", o.mask_seed, split))
                      for split in ("val", "test")}                        # (W, seq_len, C)
        self.spec = self.make_spec(o, names, mean.tolist(), std.tolist(), file, len(values), season)
        self.order = EpochOrder(self.spec.name, self.split_size("train"))

    @classmethod
    def make_spec(cls, options: ImputeOptions, names: list[str] | None = None, mean: list[float] | None = None,
                  std: list[float] | None = None, file: Path | None = None, rows: int = 0,
                  season: int = 0) -> TaskSpec:
        o = options
        return window_rebuild_spec(
            name=f"{file.stem}-impute" if file else "impute", objective="imputation", window=o.seq_len,
            patch_len=o.patch_len, names=names, mean=mean, std=std, instance_norm=o.instance_norm,
            description=f"rebuild {o.mask_ratio:.1%} of points hidden at random in windows of {o.seq_len} steps of "
                        f"{f'{len(names)} channel(s)' if names else 'every channel'}; split {o.split_name}"
                        f"{f', {rows} rows' if rows else ''}",
            source=f"file {file}" if file else "a CSV (--task-opt path)", period=season)

    def protocol(self) -> dict[str, Any]:
        """One Fits All's imputation setting: a benchmark file, all channels, windows of 96 steps, one
        step a token, one of the four mask ratios."""
        o = self.options
        bench = benchmark_of(o.path)
        published = (bench is not None and o.seq_len == 96 and o.patch_len == 1 and o.mask_ratio in RATIOS
                     and o.features == "all" and o.split_name == bench.split)
        return {"name": "imputation (One Fits All, Table 1)", "published": published, "mask_ratio": o.mask_ratio,
                "mask_seed": o.mask_seed, **({"benchmark": Path(o.path).stem.lower()} if bench else {})}

    def test_variants(self) -> tuple[str, ...]:
        return tuple(f"{VARIANT}{r:g}" for r in RATIOS)

    def is_test_itself(self, variant: str) -> bool:
        return variant == f"{VARIANT}{self.options.mask_ratio:g}"

    def keep_train_fraction(self, fraction: float, data_seed: int) -> None:
        """The first training rows in time, as the forecasting task cuts them."""
        view = self.windows["train"]                                       # (C, W, seq_len)
        windows = int(view.shape[1] * fraction)
        if windows < 1:
            raise FptError(f"--train-fraction {fraction} leaves no training window of {view.shape[2]} steps")
        self.windows["train"] = view[:, :windows]
        self.order = EpochOrder(self.spec.name, self.split_size("train"))

    def _split_and_ratio(self, split: str) -> tuple[str, float]:
        if split.startswith(VARIANT):
            return "test", float(split[len(VARIANT):])
        if split not in self.windows:
            raise ValueError(f"unknown split {split!r}")
        return split, self.options.mask_ratio

    def _examples(self, split: str) -> Tensor:
        windows = self.windows[split].shape[1]
        return torch.arange(0, windows, self.options.val_stride if split == "val" else 1)

    def _batch(self, split: str, index: Tensor, draws: Tensor, ratio: float) -> Batch:
        values = self.windows[split][:, index].permute(1, 2, 0).contiguous()  # (B, seq_len, C)
        hidden = draws < ratio                                             # (B, seq_len, C)
        x = values.masked_fill(hidden, float("nan"))
        mask = torch.ones(x.shape[:2], dtype=torch.bool)
        return Batch(x, torch.stack([values, hidden.float()], dim=-1), mask)  # y (B, seq_len, C, 2)

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        index = self.order(step * batch_size, (step + 1) * batch_size, seed)
        c = self.windows["train"].shape[0]
        draws = torch.rand((len(index), self.options.seq_len, c), generator=generator("impute-train", seed, step))
        return self._batch("train", index, draws, self.options.mask_ratio)

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        split, ratio = self._split_and_ratio(split)
        examples = self._examples(split)
        for start in range(0, len(examples), batch_size):
            index = examples[start:start + batch_size]
            yield self._batch(split, index, self.draws[split][index], ratio)

    def split_size(self, split: str) -> int:
        return len(self._examples(self._split_and_ratio(split)[0]))


# fpt train's defaults for this task (flags and YAML override them): One Fits All's lr and patience
IMPUTE_TRAINING: dict[str, dict[str, object]] = {
    "*": {"steps": 1000, "batch_size": 32, "lr": 1e-3, "eval_every": 100, "patience": 3},
}
