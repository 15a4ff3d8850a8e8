"""A table of numeric and categorical columns: `--task data.csv --task-opt target=COLUMN`.

    fpt train   --task adult.csv --task-opt target=income
    fpt compare --task prices.parquet --task-opt target=price --task-opt drop=id

Each row is an example, each column but the target one token (a feature tokenizer, as in
FT-Transformer): a token holds one value in a slot of its own, so fpt's input layer (one
Linear over the slots) gives every numeric column a learned projection of its value and
every category a learned embedding. The slots of a token (D of them, the same for every
column):

    numeric column j      its standardised value at slot j, and 1 at its missing-value slot
                          when the cell is empty (the value is then 0: the training mean)
    categorical column j  1 at the slot of its category; an empty cell is a category of its
                          own ("(missing)"), and past `max_categories` (32) the rarest share one
                          ("(other)"), as does a category first seen outside the training rows

A column is categorical when its cells are not numbers (or booleans). A column whose cells are
nearly all numbers but a few is an error naming the first bad cell, never a silent category.
The target decides the objective (`objective=auto`): text or booleans, or whole numbers with at
most MAX_CLASSES distinct values, are classes; other numbers are regression (or say
objective=classification|regression); a regression target is standardised with the training
rows' mean and standard deviation (the spec keeps both), so RMSE is in those units. Rows are split at random by the data seed (test_fraction,
val_fraction), or by a column of train/val/test (split_column). Means and standard deviations
come from the training rows alone.

Plain baselines read the same tokens flattened: for a linear model that is exactly the usual
encoding (standardised numbers, one-hot categories, missing indicators).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fpt.errors import FptError
from fpt.tasks.arrays import Arrays, ArrayTask
from fpt.tasks.base import TaskSpec, generator, positive

TABLE_SUFFIXES = (".csv", ".parquet")
MAX_CLASSES = 20         # whole-number targets with at most this many values are classes (objective=auto)
MAX_TOKEN_BYTES = 4 * 2 ** 30  # the encoded tokens (rows x columns x slots, float32) held in memory at most
NUMERIC_SHARE = 0.9      # a column this numeric is numbers with typos, not categories: an error
MISSING, OTHER = "(missing)", "(other)"


@dataclass(frozen=True)
class TableOptions:
    target: str = ""               # the column to predict (required)
    objective: str = "auto"        # auto | classification | regression
    drop: str = ""                 # columns to ignore, comma-separated (ids, leaks)
    split_column: str = ""         # a column of train / val / test; else a seeded random split
    max_categories: int = 32       # categories kept per column (the most frequent); the rest share "(other)"
    test_fraction: float = 0.2
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.objective not in ("auto", "classification", "regression"):
            raise ValueError(f"objective must be auto, classification or regression, got {self.objective!r}")
        for name in ("test_fraction", "val_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if self.test_fraction + self.val_fraction >= 1:
            raise ValueError("test_fraction + val_fraction must leave rows to train on")
        positive(self, "max_categories")


def is_table(path: str) -> bool:
    return path.lower().endswith(TABLE_SUFFIXES)


def read_table(path: Path) -> Any:
    """The file as a pandas DataFrame of strings and numbers, its column names as strings, or one line
    saying why not."""
    import pandas as pd

    if not path.is_file():
        raise FptError(f"--task: no such file '{path}'; give a CSV or Parquet table with a header row")
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path, skipinitialspace=True)
        frame.columns = [str(c) for c in frame.columns]
        return frame
    except ImportError:
        raise FptError(f"--task {path}: reading Parquet needs pyarrow: pip install pyarrow") from None
    except (ValueError, OSError, UnicodeDecodeError) as err:  # pandas' ParserError is a ValueError
        raise FptError(f"--task: cannot read '{path}' as a table ({str(err).splitlines()[0]})") from None


class Column:
    """One feature column's encoding, learned on the training rows (or read back from a run's spec)."""

    name: str
    numeric: bool
    mean: float
    std: float
    has_missing: bool
    categories: list[str]
    slots: int
    values: np.ndarray

    def __init__(self, name: str, values: Any, train: np.ndarray, path: Path, max_categories: int):
        self.name = name
        numbers, bad = _as_numbers(values)
        present = values.notna().to_numpy()
        self.numeric = bool(present.any()) and not bad[present].any()
        if not self.numeric and present.any() and (~bad[present]).mean() >= NUMERIC_SHARE:
            row = int(np.flatnonzero(bad & present)[0])
            raise FptError(f"'{path}' row {row + 1}, column {name!r}: {values.iloc[row]!r} is not a number, but "
                           f"{int((~bad[present]).sum())} of its {int(present.sum())} filled cells are; fix the cell "
                           "or empty it (empty = missing)")
        if self.numeric:
            if np.isinf(numbers).any():
                row = int(np.flatnonzero(np.isinf(numbers))[0])
                raise FptError(f"'{path}' row {row + 1}, column {name!r} is infinite; empty the cell (missing) or fix it")
            seen = numbers[train][~np.isnan(numbers[train])]
            if len(np.unique(numbers[~np.isnan(numbers)])) < 2:
                raise FptError(f"'{path}': column {name!r} is constant; it tells nothing, drop it: "
                               f"--task-opt drop={name}")
            self.mean = float(seen.mean()) if len(seen) else 0.0
            self.std = float(seen.std()) or 1.0
            self.has_missing = bool(np.isnan(numbers).any())
            self.slots = 1 + self.has_missing
            self.values = numbers
        else:
            text = _as_text(values)
            if len(set(text)) < 2:
                raise FptError(f"'{path}': column {name!r} is constant; it tells nothing, drop it: "
                               f"--task-opt drop={name}")
            kept, counts = np.unique(text[train], return_counts=True)
            order = np.argsort(-counts, kind="stable")[:max_categories]
            self.categories = [str(kept[i]) for i in order] + [OTHER]
            self.slots = len(self.categories)
            self.values = text

    def describe(self) -> dict[str, Any]:
        """The encoding as data (TaskSpec.table_encoding holds the list of them)."""
        if self.numeric:
            return {"name": self.name, "numeric": True, "mean": self.mean, "std": self.std,
                    "has_missing": self.has_missing}
        return {"name": self.name, "numeric": False, "categories": self.categories}

    @classmethod
    def described(cls, d: dict[str, Any], values: Any, path: Path) -> "Column":
        """The column `d` describes, holding `values` (new rows) encoded as in training."""
        column = cls.__new__(cls)
        column.name, column.numeric = d["name"], d["numeric"]
        if column.numeric:
            column.mean, column.std, column.has_missing = d["mean"], d["std"], d["has_missing"]
            column.slots = 1 + column.has_missing
            numbers, bad = _as_numbers(values)
            wrong = bad | np.isinf(numbers)
            if wrong.any():
                row = int(np.flatnonzero(wrong)[0])
                raise FptError(f"'{path}' row {row + 1}, column {column.name!r}: {values.iloc[row]!r} is not a "
                               "finite number, and the run learned this column as numbers; fix the cell or empty it")
            column.values = numbers  # an empty cell: 0 (the training mean), its missing slot set if it has one
        else:
            column.categories = list(d["categories"])
            column.slots = len(column.categories)
            column.values = _as_text(values)
        return column

    def encode(self, tokens: np.ndarray, column: int, offset: int) -> None:
        """Write this column's slots (from `offset`) into tokens[:, column, :]."""
        if self.numeric:
            missing = np.isnan(self.values)
            tokens[:, column, offset] = np.where(missing, 0.0, (self.values - self.mean) / self.std)
            if self.has_missing:
                tokens[:, column, offset + 1] = missing
        else:
            index = {c: i for i, c in enumerate(self.categories)}
            other = index[OTHER]
            slots = np.array([index.get(v, other) for v in self.values])
            tokens[np.arange(len(slots)), column, offset + slots] = 1.0


def _as_text(values: Any) -> np.ndarray:
    """A categorical column's cells as stripped strings, an empty cell as "(missing)"."""
    return values.astype("string").fillna(MISSING).str.strip().to_numpy(dtype=object)


def _as_numbers(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """(float values with NaN where empty, True where a non-empty cell is not a number)."""
    import pandas as pd

    if values.dtype == bool:
        return values.astype(float).to_numpy(), np.zeros(len(values), dtype=bool)
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    return numbers, np.isnan(numbers) & values.notna().to_numpy()


class Table(ArrayTask):
    """A table read once; rows split into train / val / test; one token per feature column."""

    def __init__(self, path: Path, options: TableOptions, data_seed: int):
        o = options
        frame = read_table(path)
        columns = list(frame.columns)
        if not o.target:
            raise FptError(f"--task {path.name}: name the column to predict: --task-opt target=COLUMN "
                           f"(columns: {_list(columns)})")
        dropped = [c.strip() for c in o.drop.split(",") if c.strip()]
        for name in [o.target, *dropped, *([o.split_column] if o.split_column else [])]:
            if name not in columns:
                raise FptError(f"--task-opt: '{path.name}' has no column {name!r}; its columns: {_list(columns)}")
        if len(frame) < 10:
            raise FptError(f"'{path}' has {len(frame)} rows; a table needs 10 at least to split and learn from")
        split = self._split(frame, o, data_seed, path)
        y, objective, classes = self._target(frame[o.target], o, path, split)
        n_outputs = len(classes) or 1
        features = [c for c in columns if c not in {o.target, o.split_column, *dropped}]
        if not features:
            raise FptError(f"'{path}': no columns left to learn from besides the target {o.target!r}")
        train = split == 0
        encoded = [Column(name, frame[name], train, path, o.max_categories) for name in features]
        width = sum(c.slots for c in encoded)
        size = len(frame) * len(encoded) * width * 4
        if size > MAX_TOKEN_BYTES:
            raise FptError(f"'{path}': {len(frame):,} rows x {len(encoded)} columns x {width} slots would take "
                           f"{size / 2 ** 30:.1f} GiB as tokens; lower --task-opt max_categories "
                           f"(now {o.max_categories}) or drop wide categorical columns (--task-opt drop=...)")
        tokens = _tokens(encoded, len(frame), width)
        numeric = sum(c.numeric for c in encoded)
        self.columns = encoded
        scale: dict[str, Any] = {}
        if objective == "regression":  # standardised on the training rows: RMSE in their standard deviations
            fit = y[torch.from_numpy(train)]
            mean, std = float(fit.mean()), float(fit.std(unbiased=False)) or 1.0
            y = ((y - mean) / std).float()
            scale = {"channel_names": (o.target,), "channel_mean": (mean,), "channel_std": (std,)}
        spec = TaskSpec(
            name=path.stem, seq_len=len(encoded), objective=objective, n_outputs=n_outputs, token_dim=width,
            description=(f"table of {len(frame):,} rows: {numeric} numeric and {len(encoded) - numeric} categorical "
                         f"column(s), one token each; target {o.target!r} ({objective}"
                         f"{f', {n_outputs} classes' if objective == 'classification' else ''})"),
            source=f"file {path}", columns=tuple(features),
            table_encoding=json.dumps([c.describe() for c in encoded]), classes=classes, **scale)
        x = torch.from_numpy(tokens)
        parts = [Arrays.full_length(x[torch.from_numpy(split == s)], y[torch.from_numpy(split == s)]) for s in range(3)]
        super().__init__(spec, *parts)

    @staticmethod
    def _split(frame: Any, o: TableOptions, data_seed: int, path: Path) -> np.ndarray:
        """Per row 0 (train), 1 (val) or 2 (test)."""
        if o.split_column:
            names = frame[o.split_column].astype("string").str.strip().str.lower().to_numpy(dtype=object)
            codes = {"train": 0, "val": 1, "validation": 1, "test": 2}
            unknown = sorted({str(v) for v in names} - set(codes))
            if unknown:
                raise FptError(f"'{path}': column {o.split_column!r} holds {unknown[0]!r}; a split column holds "
                               "train, val (or validation) and test")
            split = np.array([codes[v] for v in names])
            for s, name in enumerate(("train", "val", "test")):
                if not (split == s).any():
                    raise FptError(f"'{path}': column {o.split_column!r} has no {name} rows")
            return split
        n = len(frame)
        order = torch.randperm(n, generator=generator("table-split", path.stem, data_seed)).numpy()
        n_test, n_val = max(1, round(n * o.test_fraction)), max(1, round(n * o.val_fraction))
        split = np.zeros(n, dtype=np.int64)
        split[order[:n_test]] = 2
        split[order[n_test:n_test + n_val]] = 1
        return split

    @staticmethod
    def _target(values: Any, o: TableOptions, path: Path, split: np.ndarray
                ) -> tuple[torch.Tensor, str, tuple[str, ...]]:
        """(targets, objective, class labels in id order: () for regression)."""
        missing = values.isna().to_numpy()
        if missing.any():
            raise FptError(f"'{path}': {int(missing.sum())} row(s) have no {o.target!r} (row {int(np.argmax(missing)) + 1} "
                           "first); drop them or fill the target in")
        numbers, bad = _as_numbers(values)
        numeric = not bad.any() and values.dtype != bool
        whole = numeric and bool(np.all(numbers == np.round(numbers)))
        objective = o.objective
        if objective == "auto":
            objective = ("regression" if numeric and not (whole and len(np.unique(numbers)) <= MAX_CLASSES)
                         else "classification")
        if objective == "regression":
            if not numeric:
                raise FptError(f"'{path}': objective=regression needs a numeric target; {o.target!r} holds "
                               f"{values[bad].iloc[0]!r}")
            if np.isinf(numbers).any():
                raise FptError(f"'{path}': the target {o.target!r} holds an infinite value; fix or drop that row")
            if len(np.unique(numbers)) < 2:
                raise FptError(f"'{path}': the target {o.target!r} is constant; there is nothing to predict")
            return torch.from_numpy(numbers[:, None].copy()), "regression", ()
        labels = values.astype("string").str.strip().to_numpy(dtype=object)
        classes = sorted(set(labels), key=lambda v: (float(v) if numeric else math.inf, str(v)))
        if len(classes) < 2:
            raise FptError(f"'{path}': the target {o.target!r} has one class ({classes[0]!r}); a classifier needs "
                           "two at least")
        index = {c: i for i, c in enumerate(classes)}
        y = torch.tensor([index[v] for v in labels], dtype=torch.long)
        if len(set(labels[split == 0])) < 2:
            raise FptError(f"'{path}': the training rows of {o.target!r} hold one class; use more rows or "
                           "another split")
        return y, "classification", tuple(str(c) for c in classes)


def _tokens(columns: list[Column], rows: int, width: int) -> np.ndarray:
    """The rows as tokens (N, columns, slots): one token per column, its value in its own slots."""
    tokens = np.zeros((rows, len(columns), width), dtype=np.float32)
    offset = 0
    for j, column in enumerate(columns):
        column.encode(tokens, j, offset)
        offset += column.slots
    return tokens


def encode_rows(spec: TaskSpec, path: Path) -> np.ndarray:
    """New rows of a table (CSV or Parquet) encoded as the run's training rows were: tokens
    (N, columns, slots) for `fpt predict`. The run's feature columns must all be there; other
    columns (the target, ids) are ignored."""
    if not spec.table_encoding:
        raise FptError(f"--input '{path}': a table is read by runs trained on a table; this run's task "
                       f"{spec.name} takes arrays (.npz / .npy)")
    frame = read_table(path)
    described = json.loads(spec.table_encoding)
    missing = [d["name"] for d in described if d["name"] not in frame.columns]
    if missing:
        raise FptError(f"--input '{path}' lacks the column(s) {_list(missing)} that the run was trained on; "
                       f"it needs {_list([d['name'] for d in described])}")
    if not len(frame):
        raise FptError(f"--input '{path}' has no rows")
    columns = [Column.described(d, frame[d["name"]], path) for d in described]
    return _tokens(columns, len(frame), spec.token_dim or 0)


def _list(columns: list[str]) -> str:
    return ", ".join(columns[:20]) + (f", ... ({len(columns)} in all)" if len(columns) > 20 else "")
