"""The contract every task honours, and helpers shared by all of them.

A task says what its examples look like (`TaskSpec`), produces the training
batch for any step deterministically from (seed, step), so that a resumed run
sees exactly the batches it would have seen, and iterates over fixed
validation and test splits.
"""

from __future__ import annotations

import dataclasses
import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

from fpt.errors import FptError
from fpt.objectives import objective



@dataclass(frozen=True)
class TaskSpec:
    """The shape of a task's examples; enough to build a model for it."""

    name: str
    seq_len: int                  # tokens per example (the maximum, for variable length)
    objective: str                # a name in fpt.objectives.OBJECTIVES
    n_outputs: int                # classes | bits per read-out token | regression targets
    token_dim: int | None = None  # real-valued tokens of this many features ...
    vocab_size: int | None = None  # ... or integer token ids below this
    readout_tokens: int = 1       # >1: each of the last k real tokens is read out (per-element tasks)
    description: str = ""
    source: str = "generated"     # where the data comes from
    image_patch: int = 0          # image tasks: each token is a p x p patch (fpt.tasks.patches' layout)
    # Series tasks (fpt.series): x is raw windows (B, series_len, channels), patched by the model
    # into seq_len tokens of token_dim = patch_len * channels values.
    series_len: int = 0           # time steps per window (0: not a series task)
    channels: int = 0             # channels per model input (1: channel-independent forecasting)
    patch_len: int = 0
    patch_stride: int = 0
    patch_pad: bool = True        # append `patch_stride` copies of the last step before patching
    instance_norm: bool = False   # normalise each window by its own mean and std (and de-normalise forecasts)
    # Forecasting: the data's channels and their training mean and std, so that `fpt predict`
    # reads and writes original units.
    channel_names: tuple[str, ...] = ()
    channel_mean: tuple[float, ...] = ()
    channel_std: tuple[float, ...] = ()
    period: int = 0               # the seasonal period in steps (24 for hourly data), 0: unknown
    columns: tuple[str, ...] = () # a table's feature columns, one token each (fpt.tasks.table)
    table_encoding: str = ""      # ... and their encodings as JSON, so that `fpt predict` encodes new rows alike
    classes: tuple[str, ...] = () # a table's class labels, in class-id order

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TaskSpec":
        """A spec from its asdict() form (a saved header: JSON lists back into tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    @property
    def metric(self) -> str:
        return objective(self.objective).metric

    @property
    def shape(self) -> str:
        if self.series_len:
            return f"{self.series_len} steps x {self.channels} ch -> {self.seq_len} patches"
        per_token = f"{self.token_dim} values" if self.token_dim else f"ids < {self.vocab_size}"
        return f"{self.seq_len} tokens x {per_token}"


@dataclass
class Batch:
    """x: (B, L, D) float or (B, L) long; mask: (B, L) bool, True for real tokens
    (right-padded); y: bits (B, k, n_out) float 0/1 | classes (B,) long | targets (B, K) float
    | forecasts (B, horizon) float. Series tasks: x (B, T, C) raw windows, mask (B, T) over steps."""

    x: Tensor
    y: Tensor
    mask: Tensor

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.x.to(device), self.y.to(device), self.mask.to(device))

    def __len__(self) -> int:
        return self.x.shape[0]

    def split(self, parts: int) -> list["Batch"]:
        """Equal micro-batches for gradient accumulation."""
        size = len(self) // parts
        return [Batch(self.x[i:i + size], self.y[i:i + size], self.mask[i:i + size])
                for i in range(0, size * parts, size)]


# An arm's quantile forecasts of a batch: its levels and (B, Q, horizon) values (Task.assess).
Quantiles = Callable[[Batch], tuple[list[float], Tensor]]


class Task(ABC):
    """A task: a spec, a deterministic training stream, fixed evaluation splits.

    `make_spec(options)` describes a task from its options alone, touching no data (`fpt
    tasks` lists specs this way). `pad_id` is the token id that counts as padding in a
    user's new inputs (`fpt predict`); None for tasks of float tokens, or of ids without one.
    """

    spec: TaskSpec
    pad_id: int | None = None
    records_attention = False  # after training, the run saves its backbone's attention maps (attention.npy)

    @classmethod
    def make_spec(cls, options: Any) -> TaskSpec:
        """The spec of this task with these options, without loading any data."""
        raise NotImplementedError(f"{cls.__name__} does not describe itself without its data")

    def protocol(self) -> dict[str, Any]:
        """The published protocol this task's settings follow, recorded in result.json so that reports
        decide from the files alone: {"name": ..., "published": bool}; {} for tasks without one."""
        return {}

    def test_variants(self) -> tuple[str, ...]:
        """Further splits the finished model is tested on (eval_batches takes their names), each
        recorded in result.json's `test_variants`: imputation's other mask ratios. () for most tasks."""
        return ()

    def is_test_itself(self, variant: str) -> bool:
        """True for a test variant that is the test split exactly as `test` scores it (imputation at the
        run's own mask ratio): its numbers are the test's, not evaluated a second time."""
        return False

    def assess(self, rebuild: Callable[[Batch], Tensor], quantiles: Quantiles | None = None) -> dict[str, Any]:
        """Further results of the finished model (`rebuild` runs it on a batch), merged into result.json:
        anomaly detection's scores under every protocol. {} for most tasks. `quantiles`, for an arm that
        forecasts quantiles (Chronos-Bolt), gives its levels and (B, Q, H) forecasts of a batch."""
        return {}

    def keep_train_fraction(self, fraction: float, data_seed: int) -> None:
        """Train on a fixed random `fraction` of the training set from now on (--train-fraction)."""
        raise FptError(f"--train-fraction: task {self.spec.name} generates its training examples (every step "
                       "draws new ones), so there is no training set to take a fraction of; use fewer --steps")

    def fit_batches(self, batch_size: int, seed: int, limit: int) -> Iterator[Batch]:
        """Every training example once, unaugmented, for a model fitted in one go (fpt.arms.fitted:
        trees, MiniRocket). A task that generates its examples draws `limit` of them instead."""
        yield from self.eval_batches("train", batch_size)

    @abstractmethod
    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        """The training batch of optimiser step `step`; a pure function of its arguments."""

    @abstractmethod
    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        """The whole `split` ('val' or 'test'), in a fixed order."""

    @abstractmethod
    def split_size(self, split: str) -> int:
        """Number of examples in `split`."""


def packaged_file(package: str, inside: str, option: str) -> Path:
    """A data file that ships inside an installed wheel (aeon's, sktime's), found without importing the
    package; `option` (what the user wrote) names it in the errors."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FptError(f"{option} is a data set inside the {package} wheel: pip install {package}")
    file = Path(list(spec.submodule_search_locations)[0]) / inside
    if not file.is_file():
        raise FptError(f"{option}: the installed {package} has no {inside} (another version?)")
    return file


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any labels: stable across runs, platforms and Python versions."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(*parts: Any) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(*parts))


def parse_options(options_cls: type, given: dict[str, Any], task: str) -> Any:
    """Build a task's typed options dataclass from KEY=VALUE strings or YAML values."""
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    values = {}
    for key, raw in given.items():
        if key not in fields:
            known = ", ".join(fields) or "(none)"
            raise FptError(f"--task-opt: task '{task}' has no option '{key}'; its options: {known}")
        kind = type(fields[key].default)
        try:
            if kind is bool and isinstance(raw, str):
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(raw)
                value: Any = raw.lower() in ("true", "1", "yes")
            elif kind is int and isinstance(raw, float) and not raw.is_integer():
                raise ValueError(raw)
            else:
                value = kind(raw)
        except (TypeError, ValueError):
            raise FptError(f"--task-opt {key}={raw!r}: must be {kind.__name__}") from None
        values[key] = value
    try:
        return options_cls(**values)
    except ValueError as err:  # the dataclass's own __post_init__ checks
        raise FptError(f"--task-opt for task '{task}': {err}") from None


def positive(options: Any, *names: str) -> None:
    """Raise ValueError (turned into FptError by parse_options) for non-positive sizes."""
    for name in names:
        if getattr(options, name) <= 0:
            raise ValueError(f"{name} must be positive, got {getattr(options, name)}")


def window_rebuild_spec(*, name: str, objective: str, window: int, patch_len: int, names: list[str] | None,
                        mean: list[float] | None, std: list[float] | None, instance_norm: bool, description: str,
                        source: str, period: int = 0) -> TaskSpec:
    """The spec of a task whose model rebuilds windows of `window` steps, `patch_len` steps a token with
    every channel in each token (imputation, anomaly detection): one output per value of every token."""
    channels = len(names) if names else 1
    tokens = window // patch_len
    return TaskSpec(
        name=name, seq_len=tokens, objective=objective, n_outputs=patch_len * channels, token_dim=patch_len * channels,
        readout_tokens=tokens, description=description, source=source, series_len=window, channels=channels,
        patch_len=patch_len, patch_stride=patch_len, patch_pad=False, instance_norm=instance_norm,
        channel_names=tuple(names or ()), channel_mean=tuple(mean or ()), channel_std=tuple(std or ()), period=period)
