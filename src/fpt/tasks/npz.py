"""Bring your own data: a task read from a NumPy .npz file (`--task path/to/data.npz`).

The file holds these arrays and no others (a misspelt name fails instead of being ignored):
    x_train, y_train, x_test, y_test   required
    x_val, y_val                       optional; without them, --task-opt n_val examples
                                       (default 10% of train) are carved out of train, seeded by data_seed
    pad_id                             optional integer scalar, for integer tokens only
Tokens   x float (N, L, D): L tokens of D features, every token real.
         x integer (N, L): token ids; with pad_id, tokens equal to it are padding and must sit
         at the right end of each row (they are masked out of attention and read-out).
         vocab_size = largest non-pad id + 1.
Targets  y integer (N,): class ids, exactly 0..K-1 over all splits -> classification (accuracy).
         y float (N,) or (N, K): K targets -> regression (MSE loss; RMSE and R^2). Float y is
         regression even when every value is whole: store class ids as integers.
Splits may differ in L (shorter ones are padded and masked), never in D or in token kind.
Arrays are read with allow_pickle=False: a file can only ever hold data, never code.
Write one with numpy.savez (see examples/make_npz_example.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fpt.errors import FptError
from fpt.tasks.arrays import Arrays, ArrayTask, carve_validation
from fpt.tasks.base import TaskSpec
from fpt.tasks.inputs import check_pad_id, check_tokens, first_bad, load_arrays, token_lengths

SPLITS = ("train", "val", "test")
ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "pad_id")
MAX_VOCAB = 2 ** 24  # an embedding table beyond this is a sign of unmapped ids (hashes, raw codes)


@dataclass(frozen=True)
class NpzOptions:
    n_val: int = 0  # examples carved out of train when the file has no x_val; 0: 10% of train

    def __post_init__(self) -> None:
        if self.n_val < 0:
            raise ValueError(f"n_val must be >= 0 (0: 10% of train), got {self.n_val}")


# -- the dataset ----------------------------------------------------------------

@dataclass
class NpzData:
    spec: TaskSpec
    splits: dict[str, Arrays]  # "val" only when the file has it
    pad_id: int | None


def read_dataset(path: str | Path) -> NpzData:
    """Read and check every array of a training file; raise FptError naming the file, array and fix."""
    path = Path(path)
    arrays, present = load_arrays(path, ARRAYS, "--task")
    unknown = [n for n in present if n not in ARRAYS]
    if unknown:
        raise FptError(f"'{path}' holds array(s) {', '.join(unknown)}, which fpt does not read; "
                       f"use only {', '.join(ARRAYS)}")
    missing = [n for n in ("x_train", "y_train", "x_test", "y_test") if n not in arrays]
    if ("x_val" in arrays) != ("y_val" in arrays):
        missing.append("y_val" if "x_val" in arrays else "x_val")
    if missing:
        raise FptError(f"'{path}' has no array {', '.join(missing)}; it needs x_train, y_train, x_test, "
                       "y_test (and x_val with y_val, or neither)")
    pad_id = check_pad_id(arrays.get("pad_id"), f"'{path}'")
    splits = [s for s in SPLITS if f"x_{s}" in arrays]
    xs = {s: check_tokens(arrays[f"x_{s}"], f"'{path}' array x_{s}") for s in splits}
    ys = {s: arrays[f"y_{s}"] for s in splits}

    kinds = {s: "ids" if x.ndim == 2 else f"{x.shape[2]} features" for s, x in xs.items()}
    if len(set(kinds.values())) > 1:
        raise FptError(f"'{path}': the splits disagree on their tokens ({_by_split(kinds)}); every x must be "
                       "integer ids, or floats with the same number of features D")
    ids = xs["train"].ndim == 2
    if pad_id is not None and not ids:
        raise FptError(f"'{path}': pad_id applies to integer token ids, but x holds float features; drop it")
    lengths = {}
    for s, x in xs.items():
        if len(ys[s]) != len(x):
            raise FptError(f"'{path}': x_{s} has {len(x)} examples but y_{s} has {len(ys[s])}; "
                           "they must pair up one to one")
        lengths[s] = token_lengths(x, pad_id, f"'{path}' array x_{s}") if ids else np.full(len(x), x.shape[1])
        if ids and pad_id is not None:
            x[x == pad_id] = 0  # any valid id: padding is masked, and pad_id need not be below vocab_size
    objective, n_outputs, ys = _targets(ys, path)

    seq_len = max(int(n.max()) for n in lengths.values())  # trailing all-padding columns are dropped
    data = {s: Arrays(torch.from_numpy(_pad(xs[s], seq_len)), torch.from_numpy(ys[s]),
                      torch.from_numpy(lengths[s].astype(np.int64))) for s in splits}
    vocab = max(int(x.max()) for x in xs.values()) + 1 if ids else None
    if vocab is not None and vocab > MAX_VOCAB:
        raise FptError(f"'{path}': the largest token id is {vocab - 1}; map ids to 0..V-1 "
                       "(np.unique(x, return_inverse=True)) so the embedding table stays small")
    sizes = ", ".join(f"{len(d)} {s}" for s, d in data.items())
    spec = TaskSpec(
        name=path.stem, seq_len=seq_len, objective=objective, n_outputs=n_outputs,
        token_dim=None if ids else xs["train"].shape[2], vocab_size=vocab,
        description=f"your data: {sizes} examples" + ("" if "val" in data else ", val carved from train"),
        source=f"file {path}")
    return NpzData(spec, data, pad_id)


def _targets(ys: dict[str, np.ndarray], path: Path) -> tuple[str, int, dict[str, np.ndarray]]:
    """Objective, number of outputs, and y as int64 class ids (N,) or float32 targets (N, K)."""
    kinds = {}
    for s, y in ys.items():
        where = f"'{path}' array y_{s}"
        if y.dtype.kind in "iub" and y.ndim == 1:
            kinds[s] = "class ids"
        elif y.dtype.kind == "f" and y.ndim in (1, 2) and y.size:
            if not np.isfinite(y).all():
                raise FptError(f"{where} holds NaN or inf (first at index {first_bad(y)}); remove those examples")
            kinds[s] = f"{1 if y.ndim == 1 else y.shape[1]} float targets"
        elif y.dtype.kind in "iufb":
            raise FptError(f"{where} has shape {y.shape}; y must be integer class ids (N,) or "
                           "float regression targets (N,) or (N, K)")
        else:
            raise FptError(f"{where} has dtype {y.dtype}; y must be integer class ids or float targets")
    if len(set(kinds.values())) > 1:
        raise FptError(f"'{path}': the splits disagree on their targets ({_by_split(kinds)}); store class ids "
                       "as integers and regression targets as floats, with the same K everywhere")
    if kinds["train"] != "class ids":
        targets = {s: y.reshape(len(y), -1).astype(np.float32) for s, y in ys.items()}
        return "regression", targets["train"].shape[1], targets

    labels = {s: y.astype(np.int64) for s, y in ys.items()}
    for s, y in labels.items():
        if (y < 0).any():
            raise FptError(f"'{path}' array y_{s} has negative label {int(y.min())}; class ids must be 0..K-1 "
                           "(remap with np.unique(y, return_inverse=True))")
    k = max(int(y.max()) for y in labels.values()) + 1
    seen = np.unique(np.concatenate(list(labels.values())))             # sorted, all in 0..k-1
    if len(seen) < k:
        gaps = seen != np.arange(len(seen))
        first = int(np.argmax(gaps)) if gaps.any() else len(seen)
        raise FptError(f"'{path}': class ids must be exactly 0..{k - 1}, but {k - len(seen)} of them are "
                       f"missing (the first is {first}); remap them with np.unique(y, return_inverse=True)")
    if k < 2:
        raise FptError(f"'{path}': every label is 0; classification needs at least two classes")
    return "classification", k, labels


def _pad(x: np.ndarray, width: int) -> np.ndarray:
    """Cut or right-pad the token axis to `width` (only padding is ever cut)."""
    if x.shape[1] >= width:
        return np.ascontiguousarray(x[:, :width])
    pad = [(0, 0), (0, width - x.shape[1])] + [(0, 0)] * (x.ndim - 2)
    return np.pad(x, pad)


def _by_split(kinds: dict[str, str]) -> str:
    return ", ".join(f"{s}: {k}" for s, k in kinds.items())


def npz_spec(path: str | Path) -> TaskSpec:
    """The spec of the dataset in `path` (K and vocab_size depend on the values, so it reads them)."""
    return read_dataset(path).spec


class NpzTask(ArrayTask):
    """Train / val / test from a user's .npz file."""

    def __init__(self, path: str | Path, options: NpzOptions, data_seed: int):
        data = read_dataset(path)
        train, test = data.splits["train"], data.splits["test"]
        if "val" in data.splits:
            if options.n_val:
                raise FptError(f"'{path}' has its own x_val and y_val, so --task-opt n_val does not apply; drop it")
            val = data.splits["val"]
        else:
            n_val = options.n_val or max(1, round(0.1 * len(train)))
            train, val = carve_validation(train, n_val, data_seed, data.spec.name)
        super().__init__(data.spec, train, val, test)
        self.pad_id = data.pad_id
