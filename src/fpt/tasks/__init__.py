"""Task registry: one line per task, names refused if registered twice.

A task module provides an options dataclass (its `--task-opt` keys, checked in
`__post_init__`) and a Task class (the contract is `fpt.tasks.base.Task`) with
  - `make_spec(options) -> TaskSpec`, cheap, touching no data (used by `fpt tasks`);
  - a constructor `TaskClass(options, data_seed)`, or `TaskClass(options, data_seed,
    data_dir=...)` when registered with needs_data_dir=True (downloaded datasets).

`--task` is a registered name or the path of a user's data file (`.npz` arrays, a `.csv` or
`.parquet` table); `resolve` is the one place that tells them apart, for training, sweeps and
run-directory names alike.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

from fpt.errors import FptError
from fpt.registry import Registry
from fpt.tasks.base import Batch, Task, TaskSpec, parse_options
from fpt.tasks.anomaly import ANOMALY_TRAINING, Anomaly, AnomalyOptions
from fpt.tasks.bits import BitMemory, BitMemoryOptions, BitXor, BitXorOptions
from fpt.tasks.cifar import Cifar10, Cifar10Lra, Cifar10LraOptions, Cifar10Options
from fpt.tasks.forecast import FORECAST_TRAINING, Forecast, ForecastOptions
from fpt.tasks.homology import RemoteHomology, RemoteHomologyOptions
from fpt.tasks.impute import IMPUTE_TRAINING, Impute, ImputeOptions
from fpt.tasks.shortterm import SHORT_TERM_TRAINING, ShortTerm, ShortTermOptions
from fpt.tasks.listops import ListOps, ListOpsOptions
from fpt.tasks.mnist import Mnist, MnistOptions
from fpt.tasks.npz import NpzOptions, NpzTask
from fpt.tasks.table import TABLE_SUFFIXES, Table, TableOptions
from fpt.tasks.ucr import Ucr, UcrOptions

DATA_FILE_SUFFIX = ".npz"  # --task PATH.npz: the user's own arrays (see fpt.tasks.npz)
# --task PATH: a user's data file, by its suffix -> (options, task class)
DATA_FILES: dict[str, tuple[type, Callable[..., Task]]] = {
    DATA_FILE_SUFFIX: (NpzOptions, NpzTask), **{suffix: (TableOptions, Table) for suffix in TABLE_SUFFIXES}}


@dataclass(frozen=True)
class TaskEntry:
    name: str
    options: type
    build: Callable[..., Task]
    needs_data_dir: bool = False
    data_file: Path | None = None  # a user's data file (the task is built from it), else None
    # Training defaults of this task where fpt train's own do not suit it (model -> {key: value};
    # "*" for every model); a YAML file and flags still override them.
    train_defaults: dict[str, dict[str, Any]] | None = None

    def defaults_for(self, model: str) -> dict[str, Any]:
        table = self.train_defaults or {}
        return {**table.get("*", {}), **table.get(model, {})}


REGISTRY: Registry[TaskEntry] = Registry("task", "--task", hint="see `fpt tasks`")


def register(name: str, options: type, build: Callable[..., Task], needs_data_dir: bool = False,
             train_defaults: dict[str, dict[str, Any]] | None = None) -> None:
    REGISTRY.register(TaskEntry(name, options, build, needs_data_dir, train_defaults=train_defaults))


register("bit-xor", BitXorOptions, BitXor)
register("bit-memory", BitMemoryOptions, BitMemory)
register("listops", ListOpsOptions, ListOps, needs_data_dir=True)
register("mnist", MnistOptions, Mnist, needs_data_dir=True)
register("cifar10", Cifar10Options, Cifar10, needs_data_dir=True)
register("cifar10-lra", Cifar10LraOptions, Cifar10Lra, needs_data_dir=True)
register("remote-homology", RemoteHomologyOptions, RemoteHomology, needs_data_dir=True)
register("forecast", ForecastOptions, Forecast, needs_data_dir=True, train_defaults=FORECAST_TRAINING)
register("impute", ImputeOptions, Impute, needs_data_dir=True, train_defaults=IMPUTE_TRAINING)
register("anomaly", AnomalyOptions, Anomaly, needs_data_dir=True, train_defaults=ANOMALY_TRAINING)
register("short-term", ShortTermOptions, ShortTerm, needs_data_dir=True, train_defaults=SHORT_TERM_TRAINING)
register("ucr", UcrOptions, Ucr, needs_data_dir=True, train_defaults={"*": {"lr": 5e-4}})  # One Fits All's


def is_data_file(name: str) -> bool:
    """Whether --task names a user's data file rather than a registered task."""
    return Path(name).suffix.lower() in DATA_FILES


def resolve(name: str) -> TaskEntry:
    """The registered task called `name`, or an entry for the user's data file at `name`."""
    if is_data_file(name):
        path = Path(name).expanduser()
        options, task = DATA_FILES[path.suffix.lower()]
        return TaskEntry(path.stem, options, lambda parsed, data_seed: task(path, parsed, data_seed), data_file=path)
    entry = REGISTRY.get(name)
    if entry is None:
        raise FptError(f"--task: unknown task '{name}'; choose from {', '.join(REGISTRY)} "
                       "(see `fpt tasks`)")
    return entry


def task_label(name: str) -> str:
    """A short name for --task: the registered name, or a data file's stem (run-directory names)."""
    return Path(name).stem if is_data_file(name) else name


def build_task(name: str, options: dict[str, Any], data_seed: int, data_dir: Path | None = None) -> Task:
    """The task called `name` (or the data file at `name`) with its options parsed and checked."""
    entry = resolve(name)
    parsed = parse_options(entry.options, options, entry.data_file.name if entry.data_file else name)
    if entry.needs_data_dir:
        return entry.build(parsed, data_seed, data_dir=data_dir)
    return entry.build(parsed, data_seed)


def describe_task(name: str) -> TaskSpec:
    """The spec of `name` with default options, without loading any data."""
    entry = REGISTRY[name]
    return entry.build.make_spec(parse_options(entry.options, {}, name))


def option_help(name: str) -> str:
    """'key=default, ...' for `fpt tasks`."""
    return ", ".join(f"{f.name}={'auto' if f.metadata.get('auto') else f.default}"
                     for f in fields(REGISTRY[name].options))


__all__ = ["Batch", "Task", "TaskSpec", "TaskEntry", "REGISTRY", "register", "resolve", "is_data_file", "task_label",
           "build_task", "describe_task", "option_help"]
