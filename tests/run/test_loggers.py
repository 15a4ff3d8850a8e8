"""Optional dashboards: off by default, refused clearly when missing, fed every evaluation when on."""

from __future__ import annotations

import sys
import types

import pytest

from fpt.run.config import build_config
from fpt.errors import FptError
from fpt.run.loggers import flatten
from fpt.run.train import train


def test_flatten_keeps_numbers_only():
    record = {"step": 5, "train": {"loss": 0.5}, "val": {"accuracy": 0.9, "note": "x"}, "ok": True}
    assert flatten(record) == {"train/loss": 0.5, "val/accuracy": 0.9}


def test_unknown_or_missing_logger_is_refused_before_anything_runs(monkeypatch):
    with pytest.raises(FptError, match="unknown logger 'mlflow'"):
        build_config({"task": "bit-xor", "log_to": "mlflow"})
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(FptError, match=r"pip install 'fpt\[wandb\]'"):
        build_config({"task": "bit-xor", "log_to": "wandb"})


def test_wandb_receives_every_evaluation(tmp_path, tiny_gpt2, monkeypatch):
    logged, finished = [], []

    class FakeRun:
        def log(self, data, step):
            logged.append((step, data))

        def finish(self):
            finished.append(True)

    fake = types.ModuleType("wandb")
    fake.init = lambda **kwargs: FakeRun()
    fake.__spec__ = types.SimpleNamespace(name="wandb")
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())
    train(build_config({"task": "bit-xor", "model": str(tiny_gpt2), "steps": 6, "eval_every": 3,
                        "log_to": "wandb", "out": str(tmp_path / "r"), "progress": False}))
    assert [step for step, _ in logged] == [3, 6] and finished == [True]
    assert "val/accuracy" in logged[0][1] and "train/loss" in logged[0][1]
