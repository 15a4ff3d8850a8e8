"""Anomaly detection by reconstruction, One Fits All's protocol (Table 2), every metric side by side.

    fpt train --task anomaly --task-opt path=labelled.csv

The model rebuilds windows of `win_size` (100) steps of every channel, trained on the training
rows (assumed normal, labels unused) with the MSE over every point; a point's anomaly score is
its squared reconstruction error averaged over the channels, in windows laid back to back over
each split (the last one ending at the split's last row). After training, result.json's
`detection` holds fpt.detection's metrics for the model and, on the same points, for three
baselines: random scores (what the protocol alone gives), an isolation forest and a PCA
reconstruction (scikit-learn, on each point's last 16 steps of every channel).

Data (`path`, its format found from the name):
  - a CSV with a 0/1 label column (`label`: auto finds label, is_anomaly, anomaly, attack) and
    numeric channels (a date or timestamp column is dropped): rows split by `split`
    (train,val,test fractions, default 0.5,0.1,0.4);
  - the UCR anomaly archive: `NNN_UCR_Anomaly_NAME_TRAINEND_BEGIN_END.txt` (one series, the
    training part and the anomaly's position in the name), or aeon's copy of it, a
    `..._TRAIN.csv` / `..._TEST.csv` pair (timestamp, value, is_anomaly);
  - a directory laid out as the benchmarks' public releases (the Anomaly Transformer release
    that Time-Series-Library and One Fits All read): SMD, MSL, SMAP (`NAME_train.npy`,
    `NAME_test.npy`, `NAME_test_label.npy`), PSM (`train.csv`, `test.csv`, `test_label.csv`),
    SWaT (`swat_train2.csv`, `swat2.csv`, the label last). These come from a Google Drive
    folder without checksums, so fpt does not download them: the error names the files.
`path` may also name a labelled series inside an installed wheel: kdd-tsad-135 (aeon: a UCR
archive series) and daphnet-s06r02e0 (aeon; it has no labelled anomaly), yahoo and mitdb (sktime).
A benchmark or UCR file's training rows are split 80/20 into training and validation (the
validation rows early-stop the training and, with the training rows, set the honest threshold);
every channel is standardised with the whole training file's mean and std, as Time-Series-Library
fits its scaler (a constant channel: std 1). A CSV's own split standardises with its training rows.

Where fpt differs from One Fits All's anomaly model: it normalises each window as a whole (their
GPT4TS normalises each 25-step segment of the 100-step window) and embeds each step with fpt's
input layer (theirs zero-pads the channels to GPT-2's width); their scripts use GPT-2's first 6
blocks, lr 1e-4 (5e-4 for SMAP), and train only the layer norms and positions (no --mlp).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from fpt.errors import FptError
from fpt.series import window_starts
from fpt.tasks.arrays import EpochOrder
from fpt.tasks.base import (Batch, Quantiles, Task, TaskSpec, derive_seed, packaged_file, positive,
                            window_rebuild_spec)
from fpt.tasks.forecast import read_rows

UCR_ARCHIVE = re.compile(r"^(\d+)_UCR_Anomaly_(.+?)_(\d+)_(\d+)_(\d+)\.txt$", re.IGNORECASE)
LABEL_COLUMNS = ("label", "is_anomaly", "anomaly", "attack", "normal/attack")
DROPPED_COLUMNS = ("date", "timestamp", "time", "timestamp_(min)")
# The benchmarks' files (the Anomaly Transformer release) and One Fits All's anomaly_ratio (percent, their
# Anomaly_Detection/scripts: SMD 0.5, MSL 2, SMAP, PSM and SWaT 1)
BENCHMARK_FILES = {
    "smd": (("SMD_train.npy", "SMD_test.npy", "SMD_test_label.npy"), 0.5),
    "msl": (("MSL_train.npy", "MSL_test.npy", "MSL_test_label.npy"), 2.0),
    "smap": (("SMAP_train.npy", "SMAP_test.npy", "SMAP_test_label.npy"), 1.0),
    "psm": (("train.csv", "test.csv", "test_label.csv"), 1.0),
    "swat": (("swat_train2.csv", "swat2.csv"), 1.0),
}
RELEASE = ("the Anomaly Transformer release (github.com/thuml/Anomaly-Transformer, its data link; "
           "Time-Series-Library's anomaly_detection folders hold the same files)")
DEFAULT_RATIO = 1.0          # percent of points flagged where no benchmark says otherwise
FEATURE_STEPS = 16           # the isolation forest's and PCA's view of a point: its last 16 steps
FIT_POINTS = 20_000          # the most training points the baselines are fitted on (evenly spaced)


@dataclass(frozen=True)
class AnomalyOptions:
    path: str = ""               # a labelled CSV, a UCR anomaly archive file, a benchmark's directory, or yahoo, mitdb, ...
    label: str = "auto"          # a CSV's 0/1 label column (auto: label, is_anomaly, anomaly or attack)
    win_size: int = 100          # steps per window (One Fits All's 100)
    patch_len: int = 1           # steps per token (1: one step of every channel)
    split: str = "0.5,0.1,0.4"   # a single labelled CSV: train,val,test fractions of its rows
    anomaly_ratio: float = field(default=0.0, metadata={"auto": "the benchmark's (SMD 0.5, MSL 2), else 1"})
    train_stride: int = 1        # training windows start every k rows

    def __post_init__(self) -> None:
        positive(self, "win_size", "patch_len", "train_stride")
        if self.win_size % self.patch_len:
            raise ValueError(f"patch_len {self.patch_len} must divide win_size {self.win_size}")
        if not 0 <= self.anomaly_ratio < 50:
            raise ValueError(f"anomaly_ratio is a percentage of points, in [0, 50); got {self.anomaly_ratio}")
        fractions = _fractions(self.split)
        if fractions is None:
            raise ValueError(f"split must be three positive fractions summing to 1 (train,val,test), got {self.split!r}")


def _fractions(split: str) -> tuple[float, float, float] | None:
    try:
        a, b, c = (float(f) for f in split.split(","))
    except ValueError:
        return None
    return (a, b, c) if min(a, b, c) > 0 and abs(a + b + c - 1) < 1e-6 else None


@dataclass
class Series:
    """What a reader found: channel names, training rows (N, C), test rows (M, C) and their labels (M,);
    validation rows (V, C) where the data comes split three ways, else None."""

    source: str
    names: list[str]
    train: np.ndarray
    test: np.ndarray
    labels: np.ndarray
    val: np.ndarray | None = None
    benchmark: str = ""


# Labelled series that ship inside installed wheels, by a short name: (package, path inside it)
BUNDLED = {
    "kdd-tsad-135": ("aeon", "datasets/data/KDD-TSAD_135/135_UCR_Anomaly_InternalBleeding16_TEST.csv"),
    "daphnet-s06r02e0": ("aeon", "datasets/data/Daphnet_S06R02E0/S06R02E0.csv"),
    "yahoo": ("sktime", "datasets/data/yahoo/yahoo.csv"),
    "mitdb": ("sktime", "datasets/data/mitdb/mitdb.csv"),
}


def bundled(name: str) -> Path:
    """The file of a bundled series (BUNDLED), found without importing its package."""
    return packaged_file(*BUNDLED[name], option=f"--task-opt path={name}")


def read_anomaly_data(options: AnomalyOptions) -> Series:
    """The series at options.path in whichever layout it has (see the module docstring)."""
    path = bundled(options.path.lower()) if options.path.lower() in BUNDLED else Path(options.path).expanduser()
    if path.is_dir():
        return _read_benchmark(path)
    if not path.is_file():
        raise FptError(f"--task-opt path: no such file or directory '{options.path}'; give a CSV with a 0/1 label "
                       "column, a UCR anomaly archive file (NNN_UCR_Anomaly_NAME_TRAINEND_BEGIN_END.txt) or a "
                       f"benchmark's directory ({', '.join(BENCHMARK_FILES)})")
    match = UCR_ARCHIVE.match(path.name)
    if match:
        values = _read_numbers(path)
        train_end, begin, end = (int(g) for g in match.groups()[2:])
        labels = np.zeros(len(values), dtype=np.int8)
        labels[begin:end] = 1
        return Series(f"UCR anomaly archive {path.name}", ["value"], values[:train_end, None], values[train_end:, None],
                      labels[train_end:], benchmark="ucr")
    if re.search(r"_(TRAIN|TEST)\.csv$", path.name, re.IGNORECASE):
        return _read_aeon_pair(path)
    names, values, labels = _read_labelled_csv(path, options.label)
    a, b, _ = _fractions(options.split) or (0.5, 0.1, 0.4)
    n_train, n_val = int(len(values) * a), int(len(values) * b)
    return Series(f"file {path}", names, values[:n_train], values[n_train + n_val:], labels[n_train + n_val:],
                  val=values[n_train:n_train + n_val])


def _read_numbers(path: Path) -> np.ndarray:
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except (OSError, ValueError) as err:
        raise FptError(f"'{path}': a UCR anomaly archive file holds one number per line ({err})") from None
    if not np.isfinite(values).all() or len(values) == 0:
        raise FptError(f"'{path}' holds no numbers, or NaN or inf; a UCR anomaly archive file is one finite series")
    return values


def _read_labelled_csv(path: Path, label: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(channel names, values (rows, C), labels (rows,)) of a CSV with a label column."""
    rows = read_rows(path)
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    if label == "auto":
        found = next((i for i, h in enumerate(lower) if h in LABEL_COLUMNS), None)
        if found is None:
            raise FptError(f"'{path}' has no label column ({', '.join(LABEL_COLUMNS)}); name it: --task-opt "
                           f"label=COLUMN (its columns: {', '.join(header)})")
    elif label in header:
        found = header.index(label)
    else:
        raise FptError(f"--task-opt label={label!r}: '{path}' has no such column; its columns: {', '.join(header)}")
    channels = [i for i, h in enumerate(lower) if i != found and h not in DROPPED_COLUMNS]
    if not channels:
        raise FptError(f"'{path}' has no channel besides its label and dates")
    values = np.empty((len(rows) - 1, len(channels)))
    labels = np.empty(len(rows) - 1)
    for r, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise FptError(f"'{path}' line {r + 2} has {len(row)} fields but the header has {len(header)}")
        try:
            values[r] = [float(row[c]) for c in channels]
            labels[r] = float(row[found])
        except ValueError:
            raise FptError(f"'{path}' line {r + 2}: a channel or the label is not a number; every column but the "
                           "date must be numeric, the label 0 or 1") from None
    if not np.isin(labels, (0, 1)).all():
        raise FptError(f"'{path}': the label column {header[found]!r} must hold 0 (normal) or 1 (anomaly) only")
    if not np.isfinite(values).all():
        r, j = np.argwhere(~np.isfinite(values))[0]
        raise FptError(f"'{path}' line {r + 2}, column {header[channels[j]]!r} is NaN or inf; impute or drop it")
    return [header[c] for c in channels], values, labels.astype(np.int8)


def _read_aeon_pair(path: Path) -> Series:
    """aeon's copy of a UCR anomaly archive series: NAME_TRAIN.csv (the training rows) and NAME_TEST.csv
    (the whole series, or what follows the training rows)."""
    stem = re.sub(r"_(TRAIN|TEST)\.csv$", "", path.name, flags=re.IGNORECASE)
    train_file, test_file = path.with_name(f"{stem}_TRAIN.csv"), path.with_name(f"{stem}_TEST.csv")
    for file in (train_file, test_file):
        if not file.is_file():
            raise FptError(f"'{path}' is half of a TRAIN/TEST pair, but '{file}' is not there; put both side by side")
    names, train, _ = _read_labelled_csv(train_file, "auto")
    test_names, test, labels = _read_labelled_csv(test_file, "auto")
    if test_names != names:
        raise FptError(f"'{test_file}' has the channels {test_names}, '{train_file}' {names}")
    if len(test) > len(train) and np.array_equal(test[:len(train)], train):  # the whole series: test follows training
        test, labels = test[len(train):], labels[len(train):]
    return Series(f"files {train_file.name}, {test_file.name}", names, train, test, labels, benchmark="ucr")


def _read_benchmark(directory: Path) -> Series:
    for name, (files, _) in BENCHMARK_FILES.items():
        if (directory / files[0]).is_file():
            missing = [f for f in files if not (directory / f).is_file()]
            if missing:
                raise FptError(f"'{directory}' looks like {name.upper()} but lacks {', '.join(missing)}; the files "
                               f"come from {RELEASE}")
            train, test, labels = _BENCHMARK_READERS[name](directory, files)
            names = [f"c{j}" for j in range(train.shape[1])]
            if test.shape[1] != train.shape[1] or len(labels) != len(test):
                raise FptError(f"'{directory}': {name.upper()}'s files disagree: train {train.shape}, test {test.shape}, "
                               f"labels ({len(labels)},)")
            return Series(f"{name.upper()} in {directory}", names, np.nan_to_num(train), np.nan_to_num(test),
                          (np.asarray(labels).reshape(-1) > 0).astype(np.int8), benchmark=name)
    expected = "; ".join(f"{n.upper()}: {', '.join(f)}" for n, (f, _) in BENCHMARK_FILES.items())
    raise FptError(f"'{directory}' holds none of the benchmarks' layouts ({expected}); they come from {RELEASE}")


def _npy(directory: Path, files: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    train, test, labels = (np.load(directory / f, allow_pickle=False) for f in files)
    return train.astype(np.float64), test.astype(np.float64), labels


def _psm(directory: Path, files: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import pandas as pd

    train, test, labels = (pd.read_csv(directory / f).to_numpy()[:, 1:] for f in files)  # first: the timestamp
    return train.astype(np.float64), test.astype(np.float64), labels.astype(np.float64)


def _swat(directory: Path, files: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import pandas as pd

    train, test = (pd.read_csv(directory / f).to_numpy() for f in files)               # the label: last column
    return train[:, :-1].astype(np.float64), test[:, :-1].astype(np.float64), test[:, -1].astype(np.float64)


_BENCHMARK_READERS: dict[str, Callable[[Path, tuple[str, ...]], tuple[np.ndarray, np.ndarray, np.ndarray]]] = {
    "smd": _npy, "msl": _npy, "smap": _npy, "psm": _psm, "swat": _swat}


class Anomaly(Task):
    """Windows of every channel, rebuilt; anomaly scores assessed after training (module docstring)."""

    def __init__(self, options: AnomalyOptions, data_seed: int, data_dir: Path | None = None):
        self.options = o = options
        if not o.path:
            raise FptError("task anomaly needs its data: --task-opt path=FILE.csv (numeric channels and a 0/1 label "
                           "column), a UCR anomaly archive file, or a benchmark's directory")
        data = read_anomaly_data(o)
        if not data.labels.any():
            raise FptError(f"{data.source}: the test rows hold no labelled anomaly, so no detection metric is defined; "
                           "use a series whose test part has one (a CSV: move the split, --task-opt split=...)")
        train, val = data.train, data.val
        mean, std = train.mean(axis=0), train.std(axis=0)                  # the whole training file's
        if val is None:  # the training rows' last fifth validates
            cut = int(len(train) * 0.8)
            train, val = train[:cut], train[cut:]
        std = np.where(std == 0, 1.0, std)
        for split, rows in (("train", train), ("val", val), ("test", data.test)):
            if len(rows) < o.win_size:
                raise FptError(f"{data.source}: the {split} rows are {len(rows)}, fewer than win_size = {o.win_size}; "
                               "use a smaller --task-opt win_size (or another split)")
        self.series = {split: torch.from_numpy(((rows - mean) / std).astype(np.float32)).contiguous()
                       for split, rows in (("train", train), ("val", val), ("test", data.test))}  # (rows, C)
        self.labels = data.labels
        self.source, self.benchmark, self.seed = data.source, data.benchmark, data_seed
        self.ratio = o.anomaly_ratio or BENCHMARK_FILES.get(data.benchmark, ((), DEFAULT_RATIO))[1]
        self.starts = {"train": torch.arange(0, len(train) - o.win_size + 1, o.train_stride),
                       **{s: torch.tensor(window_starts(len(self.series[s]), o.win_size)) for s in ("val", "test")}}
        self.spec = self.make_spec(o, data.names, mean.tolist(), std.tolist(), data.source)
        self.order = EpochOrder(self.spec.name, self.split_size("train"))

    @classmethod
    def make_spec(cls, options: AnomalyOptions, names: list[str] | None = None, mean: list[float] | None = None,
                  std: list[float] | None = None, source: str = "") -> TaskSpec:
        o = options
        return window_rebuild_spec(
            name=f"{Path(o.path).stem}-anomaly" if o.path else "anomaly", objective="reconstruction",
            window=o.win_size, patch_len=o.patch_len, names=names, mean=mean, std=std, instance_norm=True,
            description=f"rebuild windows of {o.win_size} steps of {f'{len(names)} channel(s)' if names else 'every channel'}; "
                        "a point's anomaly score is its reconstruction error",
            source=source or "a labelled CSV, a UCR anomaly archive file or a benchmark directory (--task-opt path)")

    def protocol(self) -> dict[str, Any]:
        """One Fits All's setting: one of its five benchmarks, windows of 100, one step a token, every
        training window, the benchmark's own anomaly ratio."""
        o = self.options
        published = (self.benchmark in BENCHMARK_FILES and o.win_size == 100 and o.patch_len == 1
                     and o.train_stride == 1 and self.ratio == BENCHMARK_FILES[self.benchmark][1])
        return {"name": "anomaly detection (One Fits All, Table 2)", "published": published,
                "anomaly_ratio": self.ratio, **({"benchmark": self.benchmark} if self.benchmark else {})}

    def _batch(self, split: str, starts: Tensor) -> Batch:
        steps = self.options.win_size
        x = self.series[split][starts[:, None] + torch.arange(steps)]     # (B, win, C)
        mask = torch.ones(x.shape[:2], dtype=torch.bool)
        return Batch(x, torch.stack([x, torch.ones_like(x)], dim=-1), mask)  # every point scored

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        return self._batch("train", self.starts["train"][self.order(step * batch_size, (step + 1) * batch_size, seed)])

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        starts = self.starts[split]
        for i in range(0, len(starts), batch_size):
            yield self._batch(split, starts[i:i + batch_size])

    def split_size(self, split: str) -> int:
        return len(self.starts[split])

    def keep_train_fraction(self, fraction: float, data_seed: int) -> None:
        kept = int(len(self.starts["train"]) * fraction)
        if kept < 1:
            raise FptError(f"--train-fraction {fraction} leaves no training window")
        self.starts["train"] = self.starts["train"][:kept]
        self.order = EpochOrder(self.spec.name, kept)

    # -- after training: anomaly scores and the detection metrics ----------------------------------
    def point_scores(self, split: str, rebuild: Callable[[Batch], Tensor], batch_size: int = 256) -> np.ndarray:
        """Each row's anomaly score (rows,): its squared reconstruction error, mean over channels, from
        windows laid back to back (the last one ending at the split's last row)."""
        rows = self.series[split]
        scores = np.full(len(rows), np.nan)
        starts = window_starts(len(rows), self.options.win_size)
        for i in range(0, len(starts), batch_size):
            chunk = torch.tensor(starts[i:i + batch_size])
            batch = self._batch(split, chunk)
            error = (rebuild(batch).float() - batch.x).square().mean(dim=-1).numpy()  # (B, win)
            for start, row in zip(chunk.tolist(), error):
                span = scores[start:start + len(row)]
                span[np.isnan(span)] = row[np.isnan(span)]
        return scores

    def assess(self, rebuild: Callable[[Batch], Tensor], quantiles: Quantiles | None = None) -> dict[str, Any]:
        """result.json's `detection`: the model's scores and the baselines' under every metric."""
        from fpt.detection import detection_metrics, random_baseline

        scores = {split: self.point_scores(split, rebuild) for split in ("train", "val", "test")}
        fit = np.concatenate([scores["train"], scores["val"]])  # the training file (or a CSV's train + val rows)
        labels = self.labels
        segments = int(np.count_nonzero(np.diff(np.concatenate([[0], labels, [0]])) == 1))
        baselines = {name: detection_metrics(*self._baseline_scores(name), labels, self.ratio)
                     for name in ("isolation-forest", "pca")}
        return {"detection": {
            "anomaly_ratio": self.ratio, "test_points": len(labels), "anomalies": int(labels.sum()),
            "segments": segments, "source": self.source,
            "model": detection_metrics(fit, fit, scores["test"], labels, self.ratio),
            "random": random_baseline(len(fit), len(fit), labels, self.ratio, derive_seed("anomaly-random", self.seed)),
            **baselines}}

    def _features(self, split: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows start..stop's last FEATURE_STEPS steps of every channel, (rows, C * k) float32 (before
        the first row, the first step repeated)."""
        rows = self.series[split].numpy()                                  # (N, C)
        stop = len(rows) if stop is None else stop
        k = min(FEATURE_STEPS, self.options.win_size)
        index = np.clip(np.arange(start, stop)[:, None] - np.arange(k - 1, -1, -1)[None, :], 0, None)  # (n, k)
        return rows[index].reshape(stop - start, -1)

    def _baseline_scores(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(train+val, train+val, test) scores of a scikit-learn baseline fitted on (at most FIT_POINTS of)
        the training rows, scored in chunks (a benchmark's test split holds ~10^5-10^6 rows)."""
        from sklearn.decomposition import PCA
        from sklearn.ensemble import IsolationForest

        n_train = len(self.series["train"])
        fit_rows = self._features("train")[np.linspace(0, n_train - 1, min(n_train, FIT_POINTS)).astype(int)]
        seed = derive_seed("anomaly-baseline", name, self.seed) % 2 ** 32
        if name == "isolation-forest":
            forest = IsolationForest(random_state=seed).fit(fit_rows)
            score = lambda f: -forest.score_samples(f)  # noqa: E731 (higher: more anomalous)
        else:
            pca = PCA(n_components=0.9, svd_solver="full", random_state=seed).fit(fit_rows)
            score = lambda f: ((pca.inverse_transform(pca.transform(f)) - f) ** 2).mean(axis=1)  # noqa: E731

        def scored(split: str, chunk: int = 50_000) -> np.ndarray:
            n = len(self.series[split])
            return np.concatenate([score(self._features(split, a, min(a + chunk, n))) for a in range(0, n, chunk)])

        fit = np.concatenate([scored("train"), scored("val")])
        return fit, fit, scored("test")


# fpt train's defaults for this task: One Fits All's lr (1e-4, their run.py's default and most scripts'), and
# early stopping on the validation rows
ANOMALY_TRAINING: dict[str, dict[str, object]] = {
    "*": {"steps": 1000, "batch_size": 32, "lr": 1e-4, "eval_every": 100, "patience": 3},
}
