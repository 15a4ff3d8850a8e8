"""UCR/UEA time-series classification from `.ts` files (One Fits All's classification task).

    fpt train --task ucr --task-opt name=JapaneseVowels      # a set that ships inside sktime or aeon
    fpt train --task ucr --task-opt path=MySet_TRAIN.ts      # any .ts pair (MySet_TEST.ts beside it)

Files are read with the library's own loader (`sktime.datasets.load_from_tsfile`, else
aeon's `load_from_ts_file`): `pip install sktime` (or aeon). Series may differ in length
(padded on the right and masked) and hold several channels; each channel is standardised
with the training series' mean and std. The model patches each series (One Fits All's
classification setting: patch 32, stride 16, cut to the longest series when that is
shorter) with the channels of a patch side by side in one token. UCR/UEA files have no
validation split: `n_val` training series (default 10%) are held out, seeded by data_seed.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fpt.errors import FptError
from fpt.series import patch_count
from fpt.tasks.arrays import Arrays, ArrayTask, carve_validation
from fpt.tasks.base import TaskSpec, positive

INSTALL = "pip install sktime (or aeon), whose loader reads .ts files and whose wheel ships UCR/UEA sets"
PACKAGES = ("sktime", "aeon")  # where bundled sets are looked for, in this order


@dataclass(frozen=True)
class UcrOptions:
    name: str = ""          # a set bundled with sktime/aeon, e.g. JapaneseVowels, BasicMotions, GunPoint
    path: str = ""          # or a NAME_TRAIN.ts file (NAME_TEST.ts beside it)
    patch_len: int = 32
    stride: int = 16
    instance_norm: bool = False
    n_val: int = 0          # training series held out for validation; 0: 10%

    def __post_init__(self) -> None:
        positive(self, "patch_len", "stride")
        if self.name and self.path:
            raise ValueError("give name (a bundled set) or path (a _TRAIN.ts file), not both")
        if self.n_val < 0:
            raise ValueError(f"n_val must be >= 0 (0: 10% of train), got {self.n_val}")


def bundled_sets() -> dict[str, Path]:
    """Sets shipped inside the installed sktime/aeon wheels: name -> its _TRAIN.ts."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
        for train in sorted(data.glob("*/*_TRAIN.ts")):
            found.setdefault(train.parent.name, train)
    return found


def locate(options: UcrOptions) -> tuple[Path, Path]:
    """(train file, test file) that the options name."""
    if options.name:
        sets = bundled_sets()
        if options.name not in sets:
            have = ", ".join(sets) if sets else f"none: {INSTALL}"
            raise FptError(f"--task-opt name={options.name}: no such bundled UCR/UEA set; installed: {have} "
                           "(or give path=NAME_TRAIN.ts)")
        train = sets[options.name]
    elif options.path:
        train = Path(options.path).expanduser()
        if not train.name.endswith("_TRAIN.ts"):
            raise FptError(f"--task-opt path={options.path}: give the training file, named NAME_TRAIN.ts "
                           "(NAME_TEST.ts must sit beside it)")
    else:
        raise FptError("task ucr needs a data set: --task-opt name=JapaneseVowels (bundled with sktime) or "
                       "--task-opt path=NAME_TRAIN.ts")
    test = train.with_name(train.name.replace("_TRAIN.ts", "_TEST.ts"))
    for file in (train, test):
        if not file.is_file():
            raise FptError(f"task ucr: no such file '{file}'")
    return train, test


def read_ts(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """Series [(T_i, C)] and string labels (N,) of a .ts file, read by sktime's (or aeon's) loader."""
    try:
        if importlib.util.find_spec("sktime") is not None:
            from sktime.datasets import load_from_tsfile
            frame, labels = load_from_tsfile(str(path), return_data_type="nested_univ")
            series = [np.stack([np.asarray(frame.iloc[i, c], dtype=np.float64) for c in range(frame.shape[1])], 1)
                      for i in range(len(frame))]
        elif importlib.util.find_spec("aeon") is not None:
            from aeon.datasets import load_from_ts_file
            data, labels = load_from_ts_file(str(path))
            series = [np.asarray(x, dtype=np.float64).T for x in data]  # (C, T_i) -> (T_i, C)
        else:
            raise FptError(f"task ucr reads .ts files with sktime or aeon, and neither is installed: {INSTALL}")
    except FptError:
        raise
    except Exception as err:  # the loaders' own parse errors
        raise FptError(f"cannot read '{path}' as a .ts file ({str(err).splitlines()[0][:200]})") from None
    for i, s in enumerate(series):
        if s.size == 0 or not np.isfinite(s).all():
            raise FptError(f"'{path}': series {i} is empty or holds missing values (?/NaN); fpt reads "
                           "variable lengths but not gaps: impute them first")
    return series, np.asarray(labels).astype(str)


def pad(series: list[np.ndarray], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, length, C) float32 right-padded with zeros, lengths (N,)."""
    x = np.zeros((len(series), length, series[0].shape[1]), dtype=np.float32)
    for i, s in enumerate(series):
        x[i, :len(s)] = s
    return torch.from_numpy(x), torch.tensor([len(s) for s in series])


class Ucr(ArrayTask):
    """A UCR/UEA classification set as series tokens (see the module docstring)."""

    def __init__(self, options: UcrOptions, data_seed: int, data_dir: Path | None = None):
        train_file, test_file = locate(options)
        train, train_labels = read_ts(train_file)
        test, test_labels = read_ts(test_file)
        channels = {s.shape[1] for s in train + test}
        if len(channels) > 1:
            raise FptError(f"'{train_file}': series have different channel counts {sorted(channels)}")
        classes = sorted(set(train_labels))
        unseen = sorted(set(test_labels) - set(classes))
        if unseen:
            raise FptError(f"'{test_file}': labels {unseen} never occur in the training file")
        index = {c: i for i, c in enumerate(classes)}
        values = np.concatenate(train)                                     # (sum T_i, C)
        mean, std = values.mean(axis=0), values.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        longest = max(len(s) for s in train + test)
        x_train, n_train = pad([(s - mean) / std for s in train], longest)
        x_test, n_test = pad([(s - mean) / std for s in test], longest)
        name = train_file.name[:-len("_TRAIN.ts")]
        full = Arrays(x_train, torch.tensor([index[c] for c in train_labels]), n_train)
        n_val = options.n_val or max(1, len(full) // 10)
        fit, val = carve_validation(full, n_val, data_seed, name)
        test_arrays = Arrays(x_test, torch.tensor([index[c] for c in test_labels]), n_test)
        self.classes = classes
        super().__init__(self.make_spec(options, name, longest, len(mean), len(classes), mean, std, train_file),
                         fit, val, test_arrays)

    @classmethod
    def make_spec(cls, options: UcrOptions, name: str = "ucr", longest: int = 0, channels: int = 1,
                  classes: int = 2, mean: Any = (), std: Any = (), file: Path | None = None) -> TaskSpec:
        length = longest or options.patch_len
        patch = min(options.patch_len, length)  # a series shorter than a patch is one patch
        stride = min(options.stride, patch)
        return TaskSpec(
            name=name, seq_len=patch_count(length, patch, stride), objective="classification", n_outputs=classes,
            token_dim=patch * channels, description=f"UCR/UEA classification, {channels} channel(s), {classes} classes, "
                                                    f"series of up to {length} steps",
            source=f"file {file}" if file else "a .ts file (sktime/aeon)", series_len=length, channels=channels,
            patch_len=patch, patch_stride=stride, instance_norm=options.instance_norm,
            channel_mean=tuple(float(v) for v in mean), channel_std=tuple(float(v) for v in std))
