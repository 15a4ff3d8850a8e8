"""Task registry: one line per task, names refused if registered twice.

A task module provides an options dataclass (its `--task-opt` keys, checked in
`__post_init__`) and a Task class with
  - `make_spec(options) -> TaskSpec`, cheap, touching no data (used by `fpt tasks`);
  - a constructor `TaskClass(options, data_seed)`, or `TaskClass(options, data_seed,
    data_dir=...)` when registered with needs_data_dir=True (downloaded datasets).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

from fpt.errors import FptError
from fpt.tasks.base import Batch, Task, TaskSpec, parse_options
from fpt.tasks.bits import BitMemory, BitMemoryOptions, BitXor, BitXorOptions
from fpt.tasks.cifar import Cifar10, Cifar10Lra, Cifar10LraOptions, Cifar10Options
from fpt.tasks.homology import RemoteHomology, RemoteHomologyOptions
from fpt.tasks.listops import ListOps, ListOpsOptions
from fpt.tasks.mnist import Mnist, MnistOptions


@dataclass(frozen=True)
class TaskEntry:
    name: str
    options: type
    build: Callable[..., Task]
    needs_data_dir: bool = False


REGISTRY: dict[str, TaskEntry] = {}


def register(name: str, options: type, build: Callable[..., Task], needs_data_dir: bool = False) -> None:
    if name in REGISTRY:
        raise ValueError(f"task '{name}' is registered twice")
    REGISTRY[name] = TaskEntry(name, options, build, needs_data_dir)


register("bit-xor", BitXorOptions, BitXor)
register("bit-memory", BitMemoryOptions, BitMemory)
register("listops", ListOpsOptions, ListOps, needs_data_dir=True)
register("mnist", MnistOptions, Mnist, needs_data_dir=True)
register("cifar10", Cifar10Options, Cifar10, needs_data_dir=True)
register("cifar10-lra", Cifar10LraOptions, Cifar10Lra, needs_data_dir=True)
register("remote-homology", RemoteHomologyOptions, RemoteHomology, needs_data_dir=True)


def build_task(name: str, options: dict[str, Any], data_seed: int, data_dir: Path | None = None) -> Task:
    """The task called `name` (or the .npz file at `name`) with its options parsed and checked."""
    if name.endswith(".npz"):
        from fpt.tasks.npz import build_npz_task
        return build_npz_task(name, options, data_seed)
    entry = REGISTRY.get(name)
    if entry is None:
        raise FptError(f"--task: unknown task '{name}'; choose from {', '.join(REGISTRY)} "
                       "(see `fpt tasks`)")
    parsed = parse_options(entry.options, options, name)
    if entry.needs_data_dir:
        return entry.build(parsed, data_seed, data_dir=data_dir)
    return entry.build(parsed, data_seed)


def describe_task(name: str) -> TaskSpec:
    """The spec of `name` with default options, without loading any data."""
    entry = REGISTRY[name]
    return entry.build.make_spec(parse_options(entry.options, {}, name))


def option_help(name: str) -> str:
    """'key=default, ...' for `fpt tasks`."""
    return ", ".join(f"{f.name}={f.default}" for f in fields(REGISTRY[name].options))


__all__ = ["Batch", "Task", "TaskSpec", "TaskEntry", "REGISTRY", "register", "build_task", "describe_task", "option_help"]
