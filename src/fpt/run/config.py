"""The one typed schema for a training run.

Defaults live here, YAML files override them, command-line flags override YAML.
Every field's `help` is its `--help` text. Unknown keys and bad values raise an
`FptError` that names the flag (or YAML key) and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from fpt.errors import FptError
from fpt.options import DEFAULT_ARM, ModelOptions, canonical_backbone_dropout, check_device, is_count


# --lr-schedule: the multiplier of --lr at `progress`, the fraction of --steps done (0 at the first step).
LR_SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": lambda progress: 1.0,
    # half a cosine from --lr to 0 at --steps (One Fits All decays its forecasting lr by a cosine too)
    "cosine": lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress)),
}


# Keys added after runs were already being saved, with the behaviour those runs had: a config
# saved without the key is read with this value, not with today's default.
BEFORE_THE_KEY_EXISTED: dict[str, Any] = {"length_bucketing": False}


def saved_settings(saved: dict[str, Any]) -> dict[str, Any]:
    """A run's saved config, completed with what every key meant when the run was made, in
    today's canonical spelling (a backbone_dropout saved as "0" reads as 0.0)."""
    settings = {**TrainConfig().to_dict(), **BEFORE_THE_KEY_EXISTED, **saved}
    try:
        settings["backbone_dropout"] = canonical_backbone_dropout(settings["backbone_dropout"])
    except FptError:
        pass  # not a value this fpt accepts: it compares as different, which is the truth
    return settings


def resumable_fields() -> set[str]:
    """Config keys that may change when a run is resumed (marked `resumable` on the field)."""
    return {f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("resumable")}


def _is_probability(text: str) -> bool:
    try:
        return 0 <= float(text) < 1
    except ValueError:
        return False


def _f(default: Any, help: str, *, choices: tuple[str, ...] | None = None, flag: str | None = None,
       resumable: bool = False) -> Any:
    """A dataclass field whose metadata feeds argparse. resumable: may change on --resume (how
    the run is watched or how far it goes, never what it computes)."""
    meta = {"help": help, "choices": choices, "flag": flag, "resumable": resumable}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig(ModelOptions):
    """Everything that defines a training run (and nothing that does not): the model's options
    (fpt.options.ModelOptions, declared there once) and the run's own, below."""

    task: str = _f("", "task name (see `fpt tasks`) or path to an .npz dataset")
    task_options: dict = _f({}, "task options as KEY=VALUE, e.g. n_bits=100 (see `fpt tasks`)", flag="--task-opt")
    steps: int = _f(1000, "optimiser steps", resumable=True)
    batch_size: int = _f(16, "examples per optimiser step (the effective batch)")
    grad_accum: int = _f(1, "split each batch into this many micro-batches; the effective batch stays --batch-size")
    lr: float = _f(1e-3, "Adam learning rate (paper: 1e-3; remote homology 1e-4)")
    lr_schedule: str = _f("constant", "learning rate over the steps: constant (the paper's), or cosine (from --lr "
                          "down to 0 at --steps, which early stopping may not reach)", choices=tuple(LR_SCHEDULES))
    weight_decay: float = _f(0.0, "Adam weight decay (paper: 0)")
    clip: float = _f(1.0, "gradient-norm clipping threshold; 0 disables it")
    eval_every: int = _f(50, "validate every N steps (and at the last step)")
    patience: int = _f(0, "stop after this many evaluations without a better validation score, or at a perfect "
                          "one (100%% accuracy, R^2 1); 0: never")
    time_budget: float = _f(0.0, "stop after this many seconds of the training loop (evaluations included), with "
                            "a last evaluation; 0: no limit. With --steps as a cap: a sweep's same wall-clock "
                            "budget for every arm")
    prune_against: str = _f("", "run directories, comma-separated, finished or training: once past a third of "
                            "--steps, stop when this run's best validation score is below the best any of them had "
                            "reached by the same step (their metrics.jsonl, read at every evaluation; an lr "
                            "search's losers stop early; fpt compare sets it)", resumable=True)
    threshold: float = _f(0.99, "validation score (accuracy; per-bit for bit tasks; R^2 for regression) that "
                                "counts as converged, for steps_to_threshold")
    data_seed: int = _f(0, "seed that fixes the validation and test sets")
    train_fraction: float = _f(1.0, "train on this fraction of the training set (a subset fixed by --data-seed, the "
                               "same for every arm and seed; e.g. 0.1); dataset tasks only")
    nan_policy: str = _f("stop", "when the loss is NaN/inf: stop (keeping the last good checkpoint) or skip the step "
                         "and count it", choices=("stop", "skip"), resumable=True)
    cache_features: bool = _f(True, "with --train output on a dataset task: run the frozen model once "
                              "(eval mode, so without dropout) and train the head on its cached features")
    length_bucketing: bool = _f(True, "batch examples of similar length together (tasks whose lengths vary), "
                                "so little compute goes to padding")
    parallel: str = _f("ddp", "under torchrun: ddp (every process holds the whole model) or fsdp (frozen "
                        "weights sharded across processes, for backbones that do not fit one device)",
                        choices=("ddp", "fsdp"), resumable=True)
    device: str = _f("auto", "auto (cuda if available), cpu, cuda or cuda:N", resumable=True)
    log_to: str = _f("", "also log metrics to: tensorboard, wandb (comma-separated; each needs its package)", resumable=True)
    wandb_project: str = _f("fpt", "W&B project, with --log-to wandb", resumable=True)
    data_dir: str = _f("", "dataset cache directory (default: $FPT_DATA_DIR or ~/.cache/fpt)")
    out: str = _f("", "run directory (default: runs/TASK-MODEL-INIT-sSEED)", resumable=True)
    resume: bool = _f(False, "continue the run in --out from its last checkpoint", resumable=True)
    progress: bool = _f(True, "show a progress bar", resumable=True)

    # -- derived views -------------------------------------------------------
    @property
    def model_options(self) -> ModelOptions:
        """The fields that decide the model, as the library takes them."""
        return ModelOptions.of(self.to_dict())

    @property
    def loggers(self) -> list[str]:
        return [name.strip() for name in self.log_to.split(",") if name.strip()]

    @property
    def rivals(self) -> list[str]:
        """--prune-against's run directories."""
        return [d.strip() for d in self.prune_against.split(",") if d.strip()]

    @property
    def out_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        # Task, model, init and seed: the README's commands (bit-xor, then --init random) get a
        # directory each instead of "already holds a finished run".
        from fpt.tasks import task_label
        task = task_label(self.task)
        model = Path(self.model.rstrip("/")).name or self.model  # a directory or hub name: its last part
        method = "" if self.method == DEFAULT_ARM else f"-{self.method}"
        return Path("runs") / f"{task}-{model}{method}-{self.init}-s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # -- validation ----------------------------------------------------------
    def validate(self) -> "TrainConfig":
        """Raise FptError naming the flag for any value that cannot work."""
        if not self.task:
            raise FptError("no task given: pass --task NAME (see `fpt tasks`) or --task path/to/data.npz")
        from fpt.tasks import is_data_file, resolve
        data_file = resolve(self.task).data_file if is_data_file(self.task) else None
        if data_file is not None and data_file.is_file():
            # Absolute, so that `fpt predict` and --resume find the data from any directory.
            self.task = str(data_file.resolve())
        if not is_count(self.patience, 0):
            raise FptError(f"--patience must be a non-negative integer, got {self.patience!r}")
        for name in ("steps", "batch_size", "grad_accum", "eval_every"):
            value = getattr(self, name)
            if not is_count(value):
                raise FptError(f"--{_flag(name)} must be a positive integer, got {value!r}")
        for name in ("lr", "weight_decay", "clip", "threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise FptError(f"--{_flag(name)} must be a number, got {value!r}")
        if not self.lr > 0 or self.lr == float("inf"):
            raise FptError(f"--lr must be a positive finite number, got {self.lr!r}")
        if self.weight_decay < 0 or self.clip < 0:
            raise FptError("--weight-decay and --clip must be >= 0")
        if not 0 < self.threshold <= 1:
            raise FptError(f"--threshold must be in (0, 1], got {self.threshold!r}")
        if not (isinstance(self.time_budget, (int, float)) and math.isfinite(self.time_budget)
                and self.time_budget >= 0):
            raise FptError(f"--time-budget must be a number of seconds >= 0 (0: no limit), got {self.time_budget!r}")
        if not (isinstance(self.train_fraction, (int, float)) and 0 < self.train_fraction <= 1):
            raise FptError(f"--train-fraction must be in (0, 1], got {self.train_fraction!r}")
        task_fraction = (self.task_options or {}).get("train_fraction", 1) if isinstance(self.task_options, dict) else 1
        if self.train_fraction != 1 and str(task_fraction).strip() not in ("1", "1.0"):
            raise FptError(f"--train-fraction {self.train_fraction} and --task-opt train_fraction={task_fraction} "
                           "would multiply; give the fraction once (either one)")
        if not isinstance(self.prune_against, str):
            raise FptError(f"--prune-against must be run directories, comma-separated, got {self.prune_against!r}")
        for rival in self.rivals:
            if Path(rival).is_file():
                raise FptError(f"--prune-against: '{rival}' is a file; give run directories (their metrics.jsonl "
                               "holds the validation curve)")
        if self.batch_size % self.grad_accum:
            raise FptError(
                f"--batch-size {self.batch_size} is not divisible by --grad-accum {self.grad_accum}: "
                "the effective batch must split into equal micro-batches")
        for name in ("nan_policy", "parallel", "lr_schedule"):
            choices = TrainConfig.__dataclass_fields__[name].metadata["choices"]
            if getattr(self, name) not in choices:
                raise FptError(f"--{_flag(name)} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        # The model's own options: checked (and made canonical) where build_model checks them.
        canonical = self.model_options.validate()
        self.backbone_dropout, self.train, self.init = canonical.backbone_dropout, canonical.train, canonical.init
        check_device(self.device)
        from fpt.run.loggers import check_available
        check_available(self.loggers)
        if not isinstance(self.task_options, dict):
            raise FptError("task_options must be a mapping of option name to value")
        return self


def _flag(name: str) -> str:
    return name.replace("_", "-")


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def check_keys(keys: list[str], where: str) -> None:
    """Refuse unknown keys, suggesting the closest known one."""
    known = field_names()
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
            raise FptError(f"unknown key {key!r} in {where}{hint}")


def _coerce(name: str, value: Any, where: str) -> Any:
    """Convert a YAML or Python value to the field's type, or fail naming the key and where it came from."""
    default = TrainConfig.__dataclass_fields__[name].default
    if default is dataclasses.MISSING:  # task_options
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise FptError(f"'{name}' in {where} must be a mapping of option names to values, got {value!r}")
        return value
    if name == "backbone_dropout":  # config or a number, given as a number or a string: validate decides
        return value
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FptError(f"'{name}' in {where} must be {kind.__name__}, got {value!r}")
    return value


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict of validated field values."""
    path = Path(path)
    if not path.is_file():
        raise FptError(f"--config: no such file '{path}'")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise FptError(f"--config: cannot read '{path}' as YAML: {str(err).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FptError(f"--config: '{path}' must hold a mapping of keys to values, got {type(data).__name__}")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    check_keys(list(data), f"'{path}'")
    return {k: _coerce(k, v, f"'{path}'") for k, v in data.items()}


def build_config(overrides: dict[str, Any], config_file: str | None = None) -> TrainConfig:
    """Defaults <- the task's training defaults <- YAML file <- explicit overrides (CLI flags),
    then validate."""
    values: dict[str, Any] = load_yaml(config_file) if config_file else {}
    check_keys(list(overrides), "the overrides")
    overrides = {k: _coerce(k, v, "the overrides") for k, v in overrides.items()}
    task_options = {**values.get("task_options", {}), **overrides.pop("task_options", {})}
    values.update(overrides)
    values["task_options"] = task_options
    values = {**task_defaults(values.get("task", ""), values.get("model", ModelOptions().model)), **values}
    return TrainConfig(**values).validate()


def task_defaults(task: str, model: str) -> dict[str, Any]:
    """The training defaults a registered task sets for `model` (forecasting's step budget, lr, ...)."""
    from fpt.tasks import REGISTRY
    entry = REGISTRY.get(task) if isinstance(task, str) else None
    return entry.defaults_for(model) if entry is not None else {}
