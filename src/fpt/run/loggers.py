"""Optional mirrors of metrics.jsonl for people who live in dashboards: TensorBoard and W&B.

`--log-to tensorboard,wandb`; each needs its own library (`pip install 'fpt[tensorboard]'` or
`'fpt[wandb]'`), and both are off by default. The result files stay the source of truth:
reports are built from them, never from a dashboard.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any, Protocol

from fpt.errors import FptError

PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


class Logger(Protocol):
    def log(self, step: int, record: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


def check_available(names: list[str]) -> None:
    """Fail at config time, before anything is written, if a requested logger is missing."""
    for name in names:
        if name not in PACKAGES:
            raise FptError(f"--log-to: unknown logger '{name}'; choose from {', '.join(PACKAGES)}")
        if importlib.util.find_spec(PACKAGES[name]) is None:
            raise FptError(f"--log-to {name} needs the {PACKAGES[name]} package: pip install 'fpt[{name}]'")


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """{'val': {'accuracy': 0.9}} -> {'val/accuracy': 0.9}, numbers only."""
    flat: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
            flat[name] = float(value)
    return flat


class TensorBoard:
    def __init__(self, out: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(out / "tensorboard"))

    def log(self, step: int, record: dict[str, Any]) -> None:
        for name, value in flatten(record).items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Wandb:
    def __init__(self, out: Path, config: dict[str, Any], project: str):
        import wandb

        # One W&B run per run directory, so a resumed fpt run continues the same W&B run.
        run_id = "fpt-" + hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:12]
        self.run = wandb.init(project=project, config=config, dir=str(out), id=run_id, resume="allow",
                              name=out.name)

    def log(self, step: int, record: dict[str, Any]) -> None:
        self.run.log(flatten(record), step=step)

    def close(self) -> None:
        self.run.finish()


def make_loggers(names: list[str], out: Path, config: dict[str, Any], project: str) -> list[Logger]:
    check_available(names)
    return [TensorBoard(out) if name == "tensorboard" else Wandb(out, config, project) for name in names]
