"""Long-term forecasting of a CSV of numeric channels, with the benchmarks' protocol.

    fpt train --task forecast --task-opt path=ETTh1.csv --task-opt split=ett-hour

The CSV has a date column (named `date`, or the first column when it is not numeric) and
numeric channels. Protocol (Informer's, as PatchTST, DLinear and One Fits All use it):
  - splits by rows: `ett-hour` = 12/4/4 months of hourly rows, `ett-minute` the same in
    15-minute rows, or fractions `a,b,c` (Autoformer's custom loader: train int(n*a), test
    int(n*c), validation the rest); the validation and test windows reach back `seq_len`
    rows into the split before;
  - every channel standardised with the mean and std of the training rows;
  - channel independence: an example is one channel's window, `seq_len` values in, the next
    `horizon` out, so a split has channels x windows examples;
  - MSE and MAE on the standardised values over every window of the test split.
`train_fraction` < 1 keeps only the first training rows, cut as One Fits All's few-shot runs cut
them: `border2 = (border2 - seq_len) * percent // 100 + seq_len` (ETTh1 at 10%, horizon 96:
1,166 rows, 735 windows); the statistics still come from all training rows, as there.
Windows are views of one (channels, rows) tensor: a batch copies only its own windows.
`path` may also name a benchmark file (etth1, etth2, ettm1, ettm2), downloaded once. A file
named after a benchmark (ETTm1.csv, weather.csv, ...) brings its published split, window and
patching (PROTOCOLS) unless options say otherwise.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from fpt.errors import FptError
from fpt.series import patch_count
from fpt.storage.downloads import Remote, default_data_dir, fetch
from fpt.tasks.arrays import EpochOrder
from fpt.tasks.base import Batch, Quantiles, Task, TaskSpec, positive

ETT_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/{}.csv"
# sha256 and size where known (ETTh1: ../shared/data/README.md); the others are checked for
# being a CSV of the right columns, and their hash is printed on first download.
BENCHMARKS = {
    "etth1": Remote(ETT_URL.format("ETTh1"), "ETTh1.csv",
                    "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066", 2589657),
    "etth2": Remote(ETT_URL.format("ETTh2"), "ETTh2.csv",
                    "a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b", 2417960),
    "ettm1": Remote(ETT_URL.format("ETTm1"), "ETTm1.csv"),
    "ettm2": Remote(ETT_URL.format("ETTm2"), "ETTm2.csv"),
}
MONTH_ROWS = {"ett-hour": 30 * 24, "ett-minute": 30 * 24 * 4}


@dataclass(frozen=True)
class Benchmark:
    """A long-term forecasting data set as One Fits All runs it (their Long-term_Forecasting/scripts):
    its split, input window, patching and horizons."""

    split: str
    seq_len: int
    patch_len: int
    stride: int
    horizons: tuple[int, ...] = (96, 192, 336, 720)


# By the file's name, lower case, without its suffix: ETTh1.csv, data/ETTm2.csv, weather.csv, ...
# ETT: 12/4/4 months; the others: Autoformer's 0.7/0.1/0.2 of the rows.
PROTOCOLS = {
    "etth1": Benchmark("ett-hour", 336, 16, 8), "etth2": Benchmark("ett-hour", 336, 16, 8),
    "ettm1": Benchmark("ett-minute", 512, 16, 16), "ettm2": Benchmark("ett-minute", 512, 16, 16),
    "weather": Benchmark("0.7,0.1,0.2", 512, 16, 8), "electricity": Benchmark("0.7,0.1,0.2", 512, 16, 8),
    "traffic": Benchmark("0.7,0.1,0.2", 512, 16, 8),
    "national_illness": Benchmark("0.7,0.1,0.2", 104, 24, 2, (24, 36, 48, 60)),
}
GENERIC = Benchmark("0.7,0.1,0.2", 336, 16, 8)  # any other CSV
# The quantile levels Chronos' Benchmark II scores WQL on.
WQL_LEVELS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def pinball_loss(truth: Tensor, paths: Tensor, levels: Tensor) -> Tensor:
    """truth (B, H), quantile forecasts (B, Q, H) at levels (Q,) -> the pinball loss (B, Q, H):
    q (y - f) where y >= f, (1 - q) (f - y) where y < f."""
    error = truth[:, None] - paths                                        # (B, Q, H)
    q = levels[None, :, None]
    return torch.maximum(q * error, (q - 1) * error)


def levels_of(own: list[float], values: Tensor, levels: Tensor) -> Tensor:
    """An arm's quantile forecasts (B, Q', H) at its levels `own` -> those at `levels` (B, Q, H); every
    level must be among the arm's (Chronos-Bolt's are 0.1 .. 0.9)."""
    missing = [float(q) for q in levels if not any(abs(float(q) - k) < 1e-9 for k in own)]
    if missing:
        raise FptError(f"--task-opt wql: the arm forecasts the quantile levels {own}, not {missing}")
    index = [min(range(len(own)), key=lambda i: abs(own[i] - float(q))) for q in levels]
    return values[:, index]


AUTO = {"auto": "the benchmark's (by the file's name), else the generic"}  # an option's 0 means that


@dataclass(frozen=True)
class ForecastOptions:
    path: str = ""               # a CSV, or etth1 | etth2 | ettm1 | ettm2
    seq_len: int = field(default=0, metadata=AUTO)    # input window: 336 (ETTh), 512 (ETTm, weather, ...), 104 (ILI)
    horizon: int = field(default=0, metadata=AUTO)    # steps forecast: 96 (24 for ILI)
    patch_len: int = field(default=0, metadata=AUTO)  # 16 (24 for ILI)
    stride: int = field(default=0, metadata=AUTO)     # 8 (16 for ETTm, 2 for ILI)
    split: str = "auto"          # ett-hour | ett-minute | fractions a,b,c; auto: the benchmark's, else 0.7,0.1,0.2
    features: str = "all"        # all channels, or one column's name (univariate)
    instance_norm: bool = True
    train_fraction: float = 1.0  # keep the first training rows, One Fits All's few-shot cut (0.1, 0.05)
    test_path: str = ""          # transfer: test on this file's test split instead (a CSV or benchmark name)
    test_scale: str = "own"      # transfer: standardise it with its own training rows' statistics, or the source's
    val_stride: int = 8          # validate on every k-th window (adjacent windows share seq_len - 1 rows); test: all
    mase: bool = False           # also score MASE and its ratio to seasonal naive's (result.json `mase`)
    wql: bool = False            # also score WQL on 9 quantile levels and its ratio to seasonal naive's (`wql`)

    def __post_init__(self) -> None:
        protocol = self.benchmark or GENERIC
        for name, value in (("seq_len", protocol.seq_len), ("horizon", protocol.horizons[0]),
                            ("patch_len", protocol.patch_len), ("stride", protocol.stride)):
            if getattr(self, name) == 0:  # not given: the benchmark's own
                object.__setattr__(self, name, value)
        positive(self, "seq_len", "horizon", "patch_len", "stride", "val_stride")
        if self.patch_len > self.seq_len:
            raise ValueError(f"patch_len {self.patch_len} is longer than seq_len {self.seq_len}")
        if not 0 < self.train_fraction <= 1:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.test_scale not in ("own", "source"):
            raise ValueError(f"test_scale must be own or source, got {self.test_scale!r}")
        split_rows(self.split_name, 10 ** 9, self.seq_len)  # refuses an unknown split spelling

    @property
    def benchmark(self) -> Benchmark | None:
        return benchmark_of(self.path)

    @property
    def split_name(self) -> str:
        return split_for(self.path, self.split)


def benchmark_of(path: str) -> Benchmark | None:
    """The published protocol of the data set a file is named after (its folders do not count)."""
    return PROTOCOLS.get(Path(path).stem.lower()) if path else None


def split_for(path: str, split: str) -> str:
    """The split a `split` option means for the file at `path`: as given, else the benchmark's, else
    by the file's name (an ETT file by another name: ETTh1-copy.csv), else 0.7,0.1,0.2."""
    if split != "auto":
        return split
    bench = benchmark_of(path)
    if bench:
        return bench.split
    name = Path(path).name.lower()
    return "ett-hour" if name.startswith("etth") else "ett-minute" if name.startswith("ettm") else "0.7,0.1,0.2"


def split_rows(split: str, rows: int, seq_len: int) -> dict[str, tuple[int, int]]:
    """Row ranges [start, stop) of train/val/test; val and test start seq_len rows early."""
    if split in MONTH_ROWS:
        month = MONTH_ROWS[split]
        if rows < 20 * month:
            raise FptError(f"split {split} needs 20 months ({20 * month} rows) but the file has {rows}; "
                           "use fractions, e.g. --task-opt split=0.7,0.1,0.2")
        edges = (0, 12 * month, 16 * month, 20 * month)
    else:
        try:
            fractions = [float(f) for f in split.split(",")]
        except ValueError:
            fractions = []
        if len(fractions) != 3 or min(fractions) <= 0 or not math.isclose(sum(fractions), 1, abs_tol=1e-6):
            raise ValueError(f"split must be ett-hour, ett-minute, auto or three positive fractions summing to 1 "
                             f"(train,val,test), e.g. 0.7,0.1,0.2; got {split!r}")
        n_train, n_test = int(rows * fractions[0]), int(rows * fractions[2])
        edges = (0, n_train, rows - n_test, rows)
    return {"train": (edges[0], edges[1]), "val": (max(edges[1] - seq_len, 0), edges[2]),
            "test": (max(edges[2] - seq_len, 0), edges[3])}


def read_rows(path: Path) -> list[list[str]]:
    """A CSV's lines as fields: a header and at least one row, or an error that names the file."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as err:
        raise FptError(f"--task-opt path: cannot read '{path}' as a CSV ({err})") from None
    if len(rows) < 2:
        raise FptError(f"'{path}' has no data rows; it needs a header line and one row per time step")
    return rows


def read_csv(path: Path, features: str, gaps: bool = False,
             rows: list[list[str]] | None = None) -> tuple[list[str], np.ndarray, int]:
    """(channel names, values (rows, channels) float64, seasonal period) of a CSV; the date column
    gives the period (fpt.tasks.forecast.period) and is dropped. gaps=True (fpt predict of an
    imputation run): an empty cell (or NaN) is a gap, read as NaN. rows: the file's read_rows(),
    where the caller has them already."""
    rows = read_rows(path) if rows is None else rows
    header, body = [h.strip() for h in rows[0]], rows[1:]
    date = next((i for i, h in enumerate(header) if h.lower() == "date"), None)
    if date is None and not _is_number(body[0][0]) and not (gaps and not body[0][0].strip()):  # a gap is no date
        date = 0
    columns = [i for i in range(len(header)) if i != date]
    if features != "all":
        if features not in header or header.index(features) == date:
            raise FptError(f"--task-opt features={features!r}: '{path}' has no such channel; its channels: "
                           f"{', '.join(header[i] for i in columns)} (or features=all)")
        columns = [header.index(features)]
    values = np.empty((len(body), len(columns)))
    for r, row in enumerate(body):
        if len(row) != len(header):
            raise FptError(f"'{path}' line {r + 2} has {len(row)} fields but the header has {len(header)}")
        for j, c in enumerate(columns):
            try:
                values[r, j] = float("nan") if gaps and not row[c].strip() else float(row[c])
            except ValueError:
                raise FptError(f"'{path}' line {r + 2}, column {header[c]!r}: {row[c]!r} is not a number; "
                               "every column but the date must be numeric") from None
    if not np.isfinite(values[~np.isnan(values)] if gaps else values).all():
        r, j = np.argwhere(np.isinf(values) if gaps else ~np.isfinite(values))[0]
        raise FptError(f"'{path}' line {r + 2}, column {header[columns[j]]!r} is NaN or inf; impute or drop it")
    return [header[c] for c in columns], values, period([row[date] for row in body[:2]] if date is not None else [])


def period(dates: list[str]) -> int:
    """The seasonal period of a series from the step between its first two dates: the steps in a
    day for sub-daily data (hourly: 24, 15-minute: 96), 7 for daily, 52 for weekly, 12 for
    monthly, 4 for quarterly; 0 where the dates do not tell (no date column, unparseable dates)."""
    from datetime import datetime

    try:
        first, second = (datetime.fromisoformat(d.strip()) for d in dates[:2])
    except ValueError:
        return 0
    step = (second - first).total_seconds()
    day = 24 * 3600
    if 0 < step < day and day % step == 0:
        return int(day // step)
    days = step / day
    for span, steps in ((1, 7), (7, 52), (30.4, 12), (91.3, 4)):
        if abs(days - span) <= 0.1 * span:
            return steps
    return 0


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def locate(path: str, data_dir: Path | None) -> Path:
    """The CSV `path` names: a benchmark name (downloaded into the data cache once) or a file."""
    remote = BENCHMARKS.get(path.lower())
    if remote is not None:
        return fetch(remote, (data_dir or default_data_dir()) / "ett")
    file = Path(path).expanduser()
    if not file.is_file():
        raise FptError(f"--task-opt path: no such file '{path}'; give a CSV (date column + numeric channels) "
                       f"or one of {', '.join(BENCHMARKS)}")
    return file


class Forecast(Task):
    """Windows of a multichannel series, one channel per example (see the module docstring)."""

    def protocol(self) -> dict[str, Any]:
        """One Fits All's long-term setting: a benchmark file, all channels, its own input window,
        patching, split and horizons, every training row."""
        o, bench = self.options, self.options.benchmark
        setting = (bench is not None and (o.seq_len, o.patch_len, o.stride) == (bench.seq_len, bench.patch_len,
                                                                                 bench.stride)
                   and o.horizon in bench.horizons and o.split_name == bench.split and o.features == "all"
                   and not o.test_path)
        transfer = {"test_path": o.test_path, "test_scale": o.test_scale} if o.test_path else {}
        # One Fits All's few-shot columns (Table 5: 10%; 5% too): the same setting on its cut of the rows
        few_shot = {"few_shot": o.train_fraction} if setting and o.train_fraction < 1 else {}
        return {"name": "long-term forecasting (One Fits All, Table 3)", "published": setting and o.train_fraction == 1,
                **({"benchmark": Path(o.path).stem.lower(), "seq_len": o.seq_len, "patch_len": o.patch_len,
                    "stride": o.stride, "split": o.split_name} if bench else {}), **transfer, **few_shot}

    def __init__(self, options: ForecastOptions, data_seed: int, data_dir: Path | None = None):
        self.options = o = options
        file, names, values, season, bounds, mean, std, series = load_series("forecast", o.path, o.features,
                                                                              o.split_name, o.seq_len, data_dir)
        span = o.seq_len + o.horizon
        self.windows: dict[str, Tensor] = {}                              # split -> (C, W, span) views
        for split, (a, b) in bounds.items():
            if b - a < span:
                raise FptError(f"'{file}': the {split} split has {b - a} rows, fewer than seq_len + horizon = "
                               f"{span}; use a shorter seq_len or horizon, or another split")
            self.windows[split] = series[:, a:b].unfold(1, span, 1)
        if o.test_path:
            self.windows["test"] = self._transfer_test(names, mean, std, data_dir)
        self.spec = dataclasses.replace(self.make_spec(o, names, mean, std, file, len(values)), period=season)
        self.order = EpochOrder(self.spec.name, self.split_size("train"))
        if o.train_fraction < 1:
            self.keep_train_fraction(o.train_fraction, data_seed)

    def assess(self, rebuild: Callable[[Batch], Tensor], quantiles: Quantiles | None = None) -> dict[str, Any]:
        """With `mase=true`: result.json's `mase`, as the time-series foundation-model papers score forecasts
        (Chronos' Benchmark II): each test window's MAE over the mean absolute seasonal difference of its own
        input window (period m: the data's, from its dates, else 1), averaged over the windows; the same for
        seasonal naive (the window's last season repeated) on the same windows, and the model's ratio to it.
        Windows whose input does not change at lag m have no scale and are left out (counted).
        With `wql=true`: result.json's `wql`, Chronos' weighted quantile loss, sum over windows and steps
        of twice the pinball loss at each level over the sum of |y|, averaged over the levels 0.1 .. 0.9,
        on the standardised values every fpt metric uses; a probabilistic arm (`quantiles`: Chronos-Bolt)
        brings its own quantiles, a point forecast stands for every level (its WQL is then its summed
        absolute error over the summed |y|); seasonal naive's the same way, and the ratio of the two."""
        o = self.options
        if not (o.mase or o.wql):
            return {}
        steps = o.seq_len
        lag = self.spec.period if 0 < self.spec.period < steps else 1
        levels = torch.tensor(WQL_LEVELS, dtype=torch.float64)
        scaled, naive_scaled, skipped = [], [], 0                                   # MASE per window
        pinball, naive_pinball, magnitude = torch.zeros(len(levels), dtype=torch.float64), 0.0, 0.0
        probabilistic = False
        for batch in self.eval_batches("test", 256):
            context, truth = batch.x[..., 0].double(), batch.y.double()          # (B, T), (B, H)
            forecast = rebuild(batch).reshape(truth.shape).double()                # (B, H)
            horizon = truth.shape[1]
            repeated = context[:, steps - lag + torch.arange(horizon) % lag]      # (B, H): seasonal naive
            if o.mase:
                scale = (context[:, lag:] - context[:, :-lag]).abs().mean(dim=1)   # (B,)
                kept = scale > 0
                skipped += int((~kept).sum())
                scaled.append(((forecast - truth).abs().mean(dim=1) / scale)[kept])
                naive_scaled.append(((repeated - truth).abs().mean(dim=1) / scale)[kept])
            if o.wql:
                paths = forecast[:, None].expand(-1, len(levels), -1)              # (B, Q, H): a point forecast
                if quantiles is not None:
                    own, values = quantiles(batch)
                    paths = levels_of(own, values.double(), levels)                  # (B, Q, H)
                    probabilistic = True
                pinball += pinball_loss(truth, paths, levels).sum(dim=(0, 2))
                naive_pinball += float((repeated - truth).abs().sum())              # every level: |error| / 2 each
                magnitude += float(truth.abs().sum())
        result: dict[str, Any] = {}
        if o.mase and not any(len(m) for m in scaled):
            result["mase"] = {"period": lag, "windows": 0, "constant_windows_skipped": skipped}
        elif o.mase:
            ours, theirs = float(torch.cat(scaled).mean()), float(torch.cat(naive_scaled).mean())
            result["mase"] = {"model": ours, "seasonal_naive": theirs, "relative": ours / theirs, "period": lag,
                              "windows": int(sum(len(m) for m in scaled)), "constant_windows_skipped": skipped}
        if o.wql and magnitude > 0:
            ours = float((2 * pinball / magnitude).mean())
            theirs = naive_pinball / magnitude                   # 2 * (|e| / 2) per level, the same at each
            result["wql"] = {"model": ours, "seasonal_naive": theirs, "relative": ours / theirs, "period": lag,
                             "levels": WQL_LEVELS, "quantiles": "the arm's own" if probabilistic else
                             "the point forecast at every level"}
        elif o.wql:
            result["wql"] = {"period": lag, "levels": WQL_LEVELS, "zero_targets": True}  # sum |y| = 0: undefined
        return result

    def _transfer_test(self, names: list[str], mean: np.ndarray, std: np.ndarray, data_dir: Path | None) -> Tensor:
        """The test windows of another file (`test_path`): its own benchmark split, the same channels,
        standardised with its own training rows' statistics (`test_scale=own`, as One Fits All's and
        Time-LLM's transfer runs build the target's loader) or with the source's (`source`)."""
        o = self.options
        file = locate(o.test_path, data_dir)
        other_names, values, _ = read_csv(file, o.features)
        if other_names != names:
            raise FptError(f"--task-opt test_path: '{file}' has the channels {other_names}, the training file "
                           f"{names}; a transfer tests the same channels (features=COLUMN picks one)")
        target = dataclasses.replace(o, path=o.test_path, test_path="")  # its own split, by its own name
        bounds = split_rows(target.split_name, len(values), o.seq_len)
        if o.test_scale == "own":
            mean, std = train_statistics(values, bounds)
            std = np.where(std == 0, 1.0, std)
        a, b = bounds["test"]
        if b - a < o.seq_len + o.horizon:
            raise FptError(f"--task-opt test_path: the test split of '{file}' has {b - a} rows, fewer than seq_len + "
                           f"horizon = {o.seq_len + o.horizon}")
        return standardised(values[a:b], mean, std).unfold(1, o.seq_len + o.horizon, 1)

    @classmethod
    def make_spec(cls, options: ForecastOptions, names: list[str] | None = None, mean: np.ndarray | None = None,
                  std: np.ndarray | None = None, file: Path | None = None, rows: int = 0) -> TaskSpec:
        o = options
        tokens = patch_count(o.seq_len, o.patch_len, o.stride)
        channels = f"{len(names)} channel(s)" if names else "channels"
        return TaskSpec(
            name=file.stem if file else "forecast", seq_len=tokens, objective="forecast", n_outputs=o.horizon, token_dim=o.patch_len,
            description=f"forecast {o.horizon} steps from {o.seq_len} of {channels}, each on its own; "
                        f"split {o.split_name}{f', {rows} rows' if rows else ''}"
                        f"{f', first {o.train_fraction:.0%} of training rows (One Fits All cut)' if o.train_fraction < 1 else ''}",
            source=f"file {file}" if file else "a CSV (--task-opt path)",
            series_len=o.seq_len, channels=1, patch_len=o.patch_len, patch_stride=o.stride,
            instance_norm=o.instance_norm, channel_names=tuple(names or ()),
            channel_mean=tuple(float(v) for v in (mean if mean is not None else ())),
            channel_std=tuple(float(v) for v in (std if std is not None else ())))

    def keep_train_fraction(self, fraction: float, data_seed: int) -> None:
        """The first training rows in time (the task option train_fraction and --train-fraction alike),
        not a random subset: One Fits All's cut, rows = (rows - seq_len) * fraction + seq_len, floored
        (their percent // 100 on whole percents, exactly: 0.1 is read as 1/10), so the windows kept are
        those that fit in those rows."""
        view = self.windows["train"]                                       # (C, W, seq_len + horizon)
        rows = view.shape[1] + view.shape[2] - 1                           # the training rows
        kept_rows = int(Fraction(str(fraction)) * (rows - self.options.seq_len)) + self.options.seq_len
        windows = kept_rows - view.shape[2] + 1
        if windows < 1:
            raise FptError(f"train_fraction {fraction}: {kept_rows} training rows are left, fewer than seq_len + "
                           f"horizon = {view.shape[2]}; use a larger fraction or a shorter horizon")
        self.windows["train"] = view[:, :windows]
        self.order = EpochOrder(self.spec.name, self.split_size("train"))

    def _examples(self, split: str) -> Tensor:
        """Indices of the examples of `split` that are used (val: every val_stride-th window)."""
        channels, windows = self.windows[split].shape[:2]
        if split != "val" or self.options.val_stride == 1:
            return torch.arange(channels * windows)
        kept = torch.arange(0, windows, self.options.val_stride)
        return (torch.arange(channels)[:, None] * windows + kept[None, :]).flatten()

    def _batch(self, split: str, index: Tensor) -> Batch:
        view = self.windows[split]
        rows = view[index // view.shape[1], index % view.shape[1]]          # (B, seq_len + horizon): a copy
        x = rows[:, :self.options.seq_len, None]                            # (B, seq_len, 1)
        mask = torch.ones(x.shape[:2], dtype=torch.bool)
        return Batch(x, rows[:, self.options.seq_len:], mask)               # y (B, horizon)

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        return self._batch("train", self.order(step * batch_size, (step + 1) * batch_size, seed))

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        examples = self._examples(split)
        for start in range(0, len(examples), batch_size):
            yield self._batch(split, examples[start:start + batch_size])

    def split_size(self, split: str) -> int:
        return len(self._examples(split))


def load_series(task: str, path: str, features: str, split: str, seq_len: int, data_dir: Path | None) -> tuple[
        Path, list[str], np.ndarray, int, dict[str, tuple[int, int]], np.ndarray, np.ndarray, Tensor]:
    """A series task's CSV read, split and standardised: (file, channel names, values (rows, C), seasonal
    period, row bounds per split, training mean and std (C,), standardised series (C, rows))."""
    if not path:
        raise FptError(f"task {task} needs its data: --task-opt path=FILE.csv (a date column and numeric "
                       f"channels) or path=NAME for a benchmark ({', '.join(BENCHMARKS)})")
    file = locate(path, data_dir)
    names, values, season = read_csv(file, features)
    bounds = split_rows(split, len(values), seq_len)
    mean, std = train_statistics(values, bounds)
    if (std == 0).any():
        raise FptError(f"'{file}': channel {names[int(np.argmin(std))]!r} is constant over the training rows; "
                       "drop it (--task-opt features=COLUMN keeps one channel)")
    return file, names, values, season, bounds, mean, std, standardised(values, mean, std)


def train_statistics(values: np.ndarray, bounds: dict[str, tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Each channel's mean and std over the training rows, as StandardScaler computes them."""
    start, stop = bounds["train"]
    return values[start:stop].mean(axis=0), values[start:stop].std(axis=0)


def standardised(values: np.ndarray, mean: np.ndarray, std: np.ndarray) -> Tensor:
    """Rows (rows, C) standardised, as one contiguous float32 tensor (C, rows) for windows to view."""
    return torch.from_numpy(((values - mean) / std).T.astype(np.float32)).contiguous()


# fpt train's defaults for this task (flags and YAML override them): a step budget and
# early stopping that finish an ETTh-sized CSV at horizon 96 on 2 CPU cores within 20 minutes.
FORECAST_TRAINING: dict[str, dict[str, object]] = {
    # measured on ETTh1 (docs/TIMESERIES.md): FPT on MiniLM reaches its best validation MSE in 200-300
    # steps at lr 1e-3 (1e-4, One Fits All's, is slower to get there at this budget)
    "*": {"steps": 500, "batch_size": 64, "lr": 1e-3, "eval_every": 50, "patience": 3},
    # linear: lr 3e-4 over up to 4,000 steps (at 1e-3 early stopping caught a noisy validation MSE)
    "linear": {"steps": 4000, "lr": 3e-4, "eval_every": 200, "patience": 4},
    "dlinear": {"steps": 4000, "lr": 3e-4, "eval_every": 200, "patience": 4},  # the same kind of model
}
