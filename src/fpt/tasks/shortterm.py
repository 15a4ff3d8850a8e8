"""Short-term forecasting: many short series, each forecast once past its end (M4, Monash), with the
M4 competition's measures (sMAPE, MASE, OWA against Naive2; fpt.m4).

    fpt train --task short-term --task-opt path=m1-yearly        # M1's 181 yearly series (aeon's wheel)
    fpt train --task short-term --task-opt path=m4-monthly       # M4, downloaded once
    fpt train --task short-term --task-opt path=tourism_yearly_dataset.tsf   # any Monash .tsf file

Data (`path`):
  - `m4-yearly` .. `m4-hourly`: the competition's Train/Test CSVs (Mcompetitions/M4-methods,
    Dataset/Train and Dataset/Test), downloaded into the data cache once; their sha256 is printed on
    the first download (not pinned: no copy here to take it from). A directory holding
    `Yearly-train.csv` and `Yearly-test.csv` (and so on) works too: `path=DIR/Yearly`.
  - a Monash `.tsf` file (Godahewa et al. 2021): the last `horizon` values of each series are its
    test (the archive's protocol), the horizon from the file's `@horizon` unless given.
  - `m1-yearly`: the Monash copy of M1's yearly series that ships inside aeon's wheel (offline).

Protocol (Time-Series-Library's short-term setting, which One Fits All's M4 table uses): horizons
Yearly 6, Quarterly 8, Monthly 18, Weekly 13, Daily 14, Hourly 48; the input is the last 2 x horizon
values (shorter series left-padded with gaps, NaN, which the model's normalisation skips); training
windows end within the last `history` x horizon values of each series (1.5 for yearly, quarterly and
monthly, 10 otherwise); values in the series' own units, each window normalised by the model; the
loss sMAPE. One difference, on purpose: Time-Series-Library validates on the test values; fpt holds
out the last horizon of every training series for validation (early stopping and lr choice) and
trains on what comes before it, then forecasts the test from the whole training series.

After training `result.json`'s `short_term` holds fpt.m4's sMAPE, MASE and OWA on the test values,
beside Naive2's on the same series. Seasonal periods (MASE's lag, Naive2's season): M4's, yearly 1,
quarterly 4, monthly 12, weekly 1, daily 1, hourly 24; a .tsf file's by its @frequency the same way.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from fpt.errors import FptError
from fpt.series import patch_count
from fpt.storage.downloads import Remote, default_data_dir, fetch
from fpt.tasks.arrays import EpochOrder
from fpt.tasks.base import Batch, Quantiles, Task, TaskSpec, packaged_file, positive

M4_URL = "https://raw.githubusercontent.com/Mcompetitions/M4-methods/master/Dataset/{}/{}-{}.csv"
# frequency -> (horizon, seasonal period, history: training windows end within the last history x horizon values)
FREQUENCIES = {"yearly": (6, 1, 1.5), "quarterly": (8, 4, 1.5), "monthly": (18, 12, 1.5), "weekly": (13, 1, 10.0),
               "daily": (14, 1, 10.0), "hourly": (48, 24, 10.0)}
BUNDLED = {"m1-yearly": ("aeon", "datasets/data/m1_yearly_dataset/m1_yearly_dataset.tsf")}
AUTO = {"auto": "the data set's (M4's per frequency; a .tsf file's @horizon)"}


@dataclass(frozen=True)
class ShortTermOptions:
    path: str = ""               # m4-yearly .. m4-hourly, m1-yearly, a .tsf file, or DIR/Yearly (an M4 CSV pair)
    horizon: int = field(default=0, metadata=AUTO)    # values forecast: M4's per frequency, a .tsf file's @horizon
    seq_len: int = field(default=0, metadata={"auto": "2 x horizon (Time-Series-Library's)"})
    period: int = field(default=0, metadata={"auto": "M4's per frequency (yearly 1 ... hourly 24)"})
    history: float = field(default=0.0, metadata={"auto": "1.5 (yearly, quarterly, monthly), else 10"})
    patch_len: int = 1           # values per token (One Fits All's short-term runs: one)
    stride: int = 1

    def __post_init__(self) -> None:
        for name in ("horizon", "seq_len", "period"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be positive (0: auto), got {getattr(self, name)}")
        if self.history < 0:
            raise ValueError(f"history must be positive (0: auto), got {self.history}")
        positive(self, "patch_len", "stride")


@dataclass
class Collection:
    """What a reader found: each series' training values and its test values (S, horizon)."""

    source: str
    frequency: str                # yearly, ..., or "" where the data does not say
    train: list[np.ndarray]
    test: np.ndarray
    horizon: int


def read_collection(path: str, horizon: int, data_dir: Path | None) -> Collection:
    """The series at `path` in whichever layout it has (see the module docstring)."""
    name = path.lower()
    if name in BUNDLED:
        return _read_tsf(packaged_file(*BUNDLED[name], option=f"--task-opt path={name}"), horizon)
    if name.startswith("m4-") and name[3:] in FREQUENCIES:
        frequency = name[3:].capitalize()
        directory = (data_dir or default_data_dir()) / "m4"
        files = [fetch(Remote(M4_URL.format(part, frequency, part.lower()), f"{frequency}-{part.lower()}.csv"),
                       directory) for part in ("Train", "Test")]
        return _read_m4(files[0], files[1], name[3:])
    file = Path(path).expanduser()
    if file.suffix.lower() == ".tsf":
        if not file.is_file():
            raise FptError(f"--task-opt path: no such file '{path}'")
        return _read_tsf(file, horizon)
    pair = (file.with_name(f"{file.name}-train.csv"), file.with_name(f"{file.name}-test.csv"))
    if all(p.is_file() for p in pair):
        return _read_m4(*pair, file.name.lower())
    raise FptError(f"--task-opt path: '{path}' is none of m4-yearly .. m4-hourly, m1-yearly, a .tsf file, or "
                   "DIR/Yearly for an M4 pair DIR/Yearly-train.csv and DIR/Yearly-test.csv")


def _read_m4(train_file: Path, test_file: Path, frequency: str) -> Collection:
    """The competition's CSVs: a header (V1, V2, ...), then one series a row, its id first; training rows
    end where their values do."""
    def rows(file: Path) -> dict[str, np.ndarray]:
        series = {}
        with open(file, newline="") as f:
            for number, row in enumerate(csv.reader(f)):
                if number == 0:
                    continue
                values = [v for v in row[1:] if v.strip()]
                try:
                    series[row[0]] = np.array(values, dtype=np.float64)
                except ValueError:
                    raise FptError(f"'{file}' line {number + 1}: a value of series {row[0]!r} is not a number") from None
        return series

    train, test = rows(train_file), rows(test_file)
    if set(train) != set(test):
        raise FptError(f"'{train_file}' and '{test_file}' hold different series ({len(train)} and {len(test)})")
    lengths = {len(v) for v in test.values()}
    if len(lengths) != 1:
        raise FptError(f"'{test_file}': every series needs the same number of test values, found {sorted(lengths)}")
    ids = list(train)
    return Collection(f"M4 {train_file.name}, {test_file.name}", frequency if frequency in FREQUENCIES else "",
                      [train[i] for i in ids], np.stack([test[i] for i in ids]), lengths.pop())


def _read_tsf(file: Path, horizon: int) -> Collection:
    """A Monash .tsf file: @-headers, then `name:...:v1,v2,...` per series (the values last, `?` a gap)."""
    frequency, given, series = "", 0, []
    with open(file, encoding="latin-1") as f:
        in_data = False
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                words = line.split()
                if words[0].lower() == "@frequency" and len(words) > 1:
                    frequency = words[1].lower()
                elif words[0].lower() == "@horizon" and len(words) > 1:
                    given = int(words[1])
                elif words[0].lower() == "@data":
                    in_data = True
                continue
            values = line.rsplit(":", 1)[-1].split(",")
            if "?" in values:
                raise FptError(f"'{file}' line {number}: a series has missing values ('?'); fpt's short-term task "
                               "needs complete series")
            try:
                series.append(np.array(values, dtype=np.float64))
            except ValueError:
                raise FptError(f"'{file}' line {number}: the values after the last ':' are not numbers") from None
    horizon = horizon or given or FREQUENCIES.get(frequency, (0, 0, 0))[0]
    if not series or horizon <= 0:
        raise FptError(f"'{file}': {'no series' if not series else 'no @horizon'}; give --task-opt horizon=N")
    short = sum(len(s) <= horizon for s in series)
    if short:
        raise FptError(f"'{file}': {short} series have no more values than the horizon ({horizon}); use a shorter "
                       "--task-opt horizon")
    return Collection(f"file {file}", frequency if frequency in FREQUENCIES else "",
                      [s[:-horizon] for s in series], np.stack([s[-horizon:] for s in series]), horizon)


class ShortTerm(Task):
    """One forecast per series past its end (see the module docstring)."""

    def __init__(self, options: ShortTermOptions, data_seed: int, data_dir: Path | None = None):
        if not options.path:
            raise FptError("task short-term needs its data: --task-opt path=m4-yearly (.. m4-hourly), m1-yearly, or "
                           "a Monash .tsf file")
        data = read_collection(options.path, options.horizon, data_dir)
        _, period, history = FREQUENCIES.get(data.frequency, (0, 1, 10.0))
        if options.horizon and options.horizon != data.test.shape[1]:  # a .tsf file takes any horizon; M4 not
            raise FptError(f"--task-opt horizon={options.horizon}: {data.source} has {data.test.shape[1]} test "
                           "values a series; leave horizon to it")
        self.horizon = h = data.test.shape[1]
        self.seq_len = options.seq_len or 2 * h
        self.period = options.period or period
        self.history = options.history or history
        self.options, self.source, self.frequency = options, data.source, data.frequency
        self.insample = data.train                                        # S series, each (n_s,)
        self.test_truth = data.test                                       # (S, H)
        fitting = [s[:-h] for s in data.train]                            # the last horizon: validation
        limit = max(1, int(math.ceil(self.history * h)))
        self.windows = np.array([(i, cut) for i, s in enumerate(fitting)
                                 for cut in range(max(1, len(s) - limit), len(s) - h + 1)], dtype=np.int64)
        if len(self.windows) == 0:
            raise FptError(f"{data.source}: no series is long enough to train on (each needs more than "
                           f"2 x horizon = {2 * h} values); use a shorter --task-opt horizon")
        self.fitting = fitting
        self.validated = np.array([i for i, s in enumerate(data.train) if len(s) > h], dtype=np.int64)
        self.spec = self.make_spec(options, h, self.seq_len, self.period, data.source)
        self.order = EpochOrder(self.spec.name, len(self.windows))

    @classmethod
    def make_spec(cls, options: ShortTermOptions, horizon: int = 0, seq_len: int = 0, period: int = 0,
                  source: str = "") -> TaskSpec:
        o = options
        horizon = horizon or o.horizon or 6
        seq_len = seq_len or o.seq_len or 2 * horizon
        stem = Path(o.path).stem.lower() if o.path else "short-term"
        return TaskSpec(
            name=stem, seq_len=patch_count(seq_len, o.patch_len, o.stride), objective="smape", n_outputs=horizon,
            token_dim=o.patch_len, description=f"forecast {horizon} values of each series from its last {seq_len}",
            source=source or "M4, a Monash .tsf file or m1-yearly (--task-opt path)", series_len=seq_len, channels=1,
            patch_len=o.patch_len, patch_stride=o.stride, instance_norm=True, period=period or o.period)

    def protocol(self) -> dict[str, Any]:
        """Time-Series-Library's short-term setting: an M4 frequency, its horizon, input 2 x horizon."""
        published = (self.source.startswith("M4") and self.seq_len == 2 * self.horizon
                     and self.period == FREQUENCIES[self.frequency][1])
        return {"name": "short-term forecasting (M4)", "published": published, "frequency": self.frequency,
                "horizon": self.horizon, "seq_len": self.seq_len, "period": self.period, "history": self.history}

    def _context(self, series: np.ndarray) -> np.ndarray:
        """The last seq_len values, left-padded with NaN (gaps the model's normalisation skips)."""
        tail = series[-self.seq_len:]
        return np.concatenate([np.full(self.seq_len - len(tail), np.nan), tail])

    def _batch(self, contexts: list[np.ndarray], targets: list[np.ndarray]) -> Batch:
        x = torch.from_numpy(np.stack(contexts)).float().unsqueeze(-1)    # (B, seq_len, 1), NaN: before the series
        y = torch.from_numpy(np.stack(targets)).float()                   # (B, horizon)
        return Batch(x, y, torch.ones(x.shape[:2], dtype=torch.bool))

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        chosen = self.windows[self.order(step * batch_size, (step + 1) * batch_size, seed).numpy()]
        h = self.horizon
        return self._batch([self._context(self.fitting[i][:cut]) for i, cut in chosen],
                           [self.fitting[i][cut:cut + h] for i, cut in chosen])

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        h = self.horizon
        if split == "train":
            for start in range(0, len(self.windows), batch_size):
                chosen = self.windows[start:start + batch_size]
                yield self._batch([self._context(self.fitting[i][:cut]) for i, cut in chosen],
                                  [self.fitting[i][cut:cut + h] for i, cut in chosen])
        elif split == "val":
            for start in range(0, len(self.validated), batch_size):
                chosen = self.validated[start:start + batch_size]
                yield self._batch([self._context(self.insample[i][:-h]) for i in chosen],
                                  [self.insample[i][-h:] for i in chosen])
        elif split == "test":
            for start in range(0, len(self.insample), batch_size):
                chosen = range(start, min(start + batch_size, len(self.insample)))
                yield self._batch([self._context(self.insample[i]) for i in chosen], [self.test_truth[i] for i in chosen])
        else:
            raise ValueError(f"unknown split {split!r}")

    def split_size(self, split: str) -> int:
        return {"train": len(self.windows), "val": len(self.validated), "test": len(self.insample)}[split]

    def assess(self, rebuild: Callable[[Batch], Tensor], quantiles: Quantiles | None = None) -> dict[str, Any]:
        """result.json's `short_term`: sMAPE, MASE and OWA of the test forecasts beside Naive2's (fpt.m4)."""
        from fpt.m4 import m4_scores

        forecasts = np.concatenate([rebuild(batch).reshape(batch.y.shape).double().numpy()
                                    for batch in self.eval_batches("test", 256)])
        return {"short_term": {"source": self.source, **m4_scores(self.insample, self.test_truth, forecasts,
                                                                   self.period)}}


# fpt train's defaults for this task: Time-Series-Library's M4 lr (1e-3) and patience (3)
SHORT_TERM_TRAINING: dict[str, dict[str, object]] = {
    "*": {"steps": 1000, "batch_size": 64, "lr": 1e-3, "eval_every": 100, "patience": 3},
}
