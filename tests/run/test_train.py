"""Training end to end on tiny backbones: results, freezing, resume, accumulation, saved models."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from fpt.run.config import build_config
from fpt.errors import FptError
from fpt.run.setup import load_run, setup
from fpt.run.train import evaluate, train

XOR = {"task": "bit-xor", "steps": 40, "eval_every": 10, "batch_size": 8, "progress": False}


def run(tmp_path, name, model, **overrides):
    cfg = build_config({**XOR, "model": str(model), "out": str(tmp_path / name), **overrides})
    return train(cfg)


def test_result_file_has_the_contract(tmp_path, tiny_gpt2):
    result = run(tmp_path, "a", tiny_gpt2)
    on_disk = json.loads((tmp_path / "a" / "result.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    for key in ("task", "model", "init", "train_groups", "seed", "steps", "trainable_params", "total_params",
                "test", "best_val", "steps_to_threshold", "wall_seconds", "config", "versions"):
        assert key in result, key
    assert set(result["test"]) >= {"accuracy", "sequence_accuracy"}
    assert result["trainable_params"] == 64 + 33 + 320 + 2048  # input, head, layer norms, positions
    assert result["dropout_masks"] == "fpt"  # on a CPU
    choices = result["speed_choices"]  # why precision, attention kernel and masks are what they are
    assert choices["precision"].startswith("auto: ") and result["precision"] in choices["precision"]
    assert choices["attention_kernel"] and choices["dropout_masks"].startswith("fpt.dropout")
    assert choices["attention_with_dropout"].startswith("bf16 products" if result["precision"] == "bf16" else "the math")
    assert choices["gelu"].startswith("erf GELU" if result["precision"] == "bf16" else "the backbone's tanh")  # GPT-2
    lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["step"] for l in lines] == [10, 20, 30, 40]
    # The saved model holds only trained parameters.
    saved = load_file(tmp_path / "a" / "model.safetensors")
    assert sum(t.numel() for t in saved.values()) == result["trainable_params"]


def test_frozen_weights_stay_bit_identical(tmp_path, tiny_bert):
    cfg = build_config({**XOR, "model": str(tiny_bert), "out": str(tmp_path / "f")})
    before = setup(cfg)
    frozen = {n: p.detach().clone() for n, p in before.model.named_parameters() if not p.requires_grad}
    trained_before = before.trained_state()
    run(tmp_path, "f", tiny_bert)
    after = load_run(tmp_path / "f")
    params = dict(after.model.named_parameters())
    for name, value in frozen.items():
        assert torch.equal(params[name], value), name
    assert any(not torch.equal(params[n], v) for n, v in trained_before.items())


def test_resume_after_interruption_equals_uninterrupted(tmp_path, tiny_gpt2, monkeypatch):
    whole = run(tmp_path, "whole", tiny_gpt2, dropout=0.1)

    import fpt.run.train as train_module
    calls = {"n": 0}
    real_evaluate = train_module.evaluate

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # after the checkpoints of steps 10 and 20
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "cut", tiny_gpt2, dropout=0.1)
    monkeypatch.setattr(train_module, "evaluate", real_evaluate)
    with pytest.raises(FptError, match="unfinished run; pass --resume"):
        run(tmp_path, "cut", tiny_gpt2, dropout=0.1)
    resumed = run(tmp_path, "cut", tiny_gpt2, dropout=0.1, resume=True)
    assert resumed["test"] == whole["test"]
    assert resumed["best_val"] == whole["best_val"]
    cut_lines = [json.loads(l) for l in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    whole_lines = [json.loads(l) for l in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_seconds"} for r in rows]
    assert strip(cut_lines) == strip(whole_lines)
    assert load_file(tmp_path / "cut" / "model.safetensors").keys() == \
        load_file(tmp_path / "whole" / "model.safetensors").keys()
    for k, v in load_file(tmp_path / "whole" / "last.safetensors").items():
        assert torch.equal(v, load_file(tmp_path / "cut" / "last.safetensors")[k]), k


def test_resume_can_extend_a_finished_run(tmp_path, tiny_gpt2):
    whole = run(tmp_path, "whole", tiny_gpt2)
    run(tmp_path, "short", tiny_gpt2, steps=20)
    extended = run(tmp_path, "short", tiny_gpt2, resume=True)
    assert extended["test"] == whole["test"]
    assert run(tmp_path, "short", tiny_gpt2, resume=True) == extended  # finished: returned as is


def test_resume_refuses_changed_settings(tmp_path, tiny_gpt2):
    run(tmp_path, "r", tiny_gpt2, steps=20)
    with pytest.raises(FptError, match="other settings .*lr"):
        run(tmp_path, "r", tiny_gpt2, lr=0.01, resume=True)


def test_gradient_accumulation_keeps_the_effective_batch(tmp_path, tiny_gpt2):
    # fp32: exact arithmetic identity; bf16 rounds each micro-batch's sums differently
    one = run(tmp_path, "one", tiny_gpt2, dropout=0.0, steps=10, precision="fp32")
    two = run(tmp_path, "two", tiny_gpt2, dropout=0.0, steps=10, grad_accum=4, precision="fp32")
    a = load_file(tmp_path / "one" / "last.safetensors")
    b = load_file(tmp_path / "two" / "last.safetensors")
    for k in a:
        if k.startswith("param/"):
            torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)
    assert one["test"]["accuracy"] == pytest.approx(two["test"]["accuracy"], abs=0.02)


def test_saved_model_reloads_and_refuses_another_backbone(tmp_path, tiny_gpt2):
    backbone = tmp_path / "backbone"
    shutil.copytree(tiny_gpt2, backbone)
    result = run(tmp_path, "m", backbone)
    loaded = load_run(tmp_path / "m")
    assert evaluate(loaded, "test", 64)["accuracy"] == pytest.approx(result["test"]["accuracy"])

    from transformers import GPT2Model
    other = GPT2Model.from_pretrained(backbone)
    with torch.no_grad():
        other.h[0].attn.c_attn.weight.add_(0.01)
    other.save_pretrained(backbone)
    with pytest.raises(FptError, match="weights hash"):
        load_run(tmp_path / "m")


def test_corrupt_checkpoint_is_named(tmp_path, tiny_gpt2):
    run(tmp_path, "c", tiny_gpt2, steps=10)
    path = tmp_path / "c" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(FptError, match="model.safetensors' is corrupted or truncated"):
        load_run(tmp_path / "c")


def test_bundled_minilm_trains(tmp_path):
    result = train(build_config({**XOR, "out": str(tmp_path / "minilm"), "steps": 20}))
    assert result["model"] == "minilm" and result["backbone"]["model_type"] == "bert"
    assert result["total_params"] == 22_566_529  # 22.7M minus the pooler fpt drops, plus input and head
    assert 0.0 < result["test"]["accuracy"] <= 1.0


def test_finished_run_with_other_settings_is_not_returned_as_done(tmp_path, tiny_gpt2):
    run(tmp_path, "f", tiny_gpt2, steps=10)
    with pytest.raises(FptError, match="other settings .*lr"):
        run(tmp_path, "f", tiny_gpt2, steps=10, lr=0.01, resume=True)


def test_resume_refuses_fewer_steps_than_already_run(tmp_path, tiny_gpt2, monkeypatch):
    import fpt.run.train as train_module
    real = train_module.evaluate
    calls = {"n": 0}

    def cut(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", cut)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "r", tiny_gpt2)
    monkeypatch.setattr(train_module, "evaluate", real)
    with pytest.raises(FptError, match="already at step 20, past --steps 10"):
        run(tmp_path, "r", tiny_gpt2, steps=10, resume=True)


def test_time_budget_stops_with_a_last_evaluation(tmp_path, tiny_gpt2, monkeypatch):
    import fpt.run.train as train_module

    clock = iter(range(0, 10_000, 1))  # each reading of the clock: one more second
    monkeypatch.setattr(train_module.time, "perf_counter", lambda: float(next(clock)))
    result = run(tmp_path, "budget", tiny_gpt2, steps=1000, eval_every=100, time_budget=7)
    assert result["out_of_time"] and not result["stopped_early"]
    assert 0 < result["steps_run"] < 100  # stopped long before the first scheduled evaluation ...
    lines = [json.loads(line) for line in (tmp_path / "budget" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [result["steps_run"]]  # ... after evaluating where it stopped
    assert result["best_val"]["step"] == result["steps_run"] and "accuracy" in result["test"]


def test_time_budget_must_be_seconds():
    with pytest.raises(FptError, match="--time-budget must be a number of seconds"):
        build_config({"task": "bit-xor", "time_budget": -1})


def _rival(path, curve: list[tuple[int, float]]):
    """A run directory holding only a validation curve, as --prune-against reads it."""
    path.mkdir()
    (path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "val": {"score": v}}) + "\n" for s, v in curve))
    return str(path)


def test_a_run_behind_its_rival_past_a_third_of_its_steps_stops_pruned(tmp_path, tiny_gpt2):
    ahead = _rival(tmp_path / "ahead", [(10, 0.9), (20, 1.0)])  # perfect by step 20: nothing can beat it
    result = run(tmp_path, "behind", tiny_gpt2, steps=60, prune_against=ahead)
    assert result["pruned"] and result["steps_run"] == 20  # 20 >= 60 / 3: the first evaluation that may prune
    assert not result["stopped_early"] and "accuracy" in result["test"]  # tested as usual
    lines = (tmp_path / "behind" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [10, 20]


def test_a_run_ahead_of_its_rivals_or_without_any_is_not_pruned(tmp_path, tiny_gpt2):
    behind = _rival(tmp_path / "behind", [(10, 0.0)])
    missing = str(tmp_path / "not-started")  # a sibling that has not evaluated yet: no curve, no pruning
    result = run(tmp_path, "ahead", tiny_gpt2, prune_against=f"{behind},{missing}")
    assert not result["pruned"] and result["steps_run"] == 40
    assert not run(tmp_path, "alone", tiny_gpt2)["pruned"]


def test_a_rivals_best_is_read_as_of_the_same_step():
    from fpt.run.train import _best_by

    curve = [(10, 0.5), (20, 0.7), (30, 0.7)]
    assert _best_by(curve, 5) == float("-inf")    # nothing reached yet: never prunes
    assert _best_by(curve, 15) == 0.5 and _best_by(curve, 20) == 0.7
    assert _best_by(curve, 500) == 0.7            # a rival that stopped keeps its best


def test_a_rivals_curve_is_its_running_best_and_skips_nan(tmp_path):
    from fpt.run.rundir import best_so_far

    _rival(tmp_path / "r", [(10, 0.5), (20, float("nan")), (30, 0.4), (40, 0.8)])
    assert best_so_far(tmp_path / "r") == [(10, 0.5), (30, 0.5), (40, 0.8)]
    assert best_so_far(tmp_path / "none") == []
    with pytest.raises(FptError, match="--prune-against: .* is a file"):
        build_config({"task": "bit-xor", "prune_against": str(tmp_path / "r" / "metrics.jsonl")})


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_the_lr_schedule_sets_each_steps_lr(tmp_path, tiny_gpt2, monkeypatch, schedule):
    import math

    seen = []
    step = torch.optim.Adam.step

    def recording(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording)
    result = run(tmp_path, schedule, tiny_gpt2, lr=2e-3, lr_schedule=schedule)
    expected = [2e-3 * (1.0 if schedule == "constant" else 0.5 * (1 + math.cos(math.pi * i / 40))) for i in range(40)]
    assert seen == pytest.approx(expected, rel=1e-12, abs=0)
    assert result["config"]["lr_schedule"] == schedule


def test_an_unknown_lr_schedule_is_named():
    with pytest.raises(FptError, match="--lr-schedule must be one of constant, cosine"):
        build_config({**XOR, "lr_schedule": "linear"})
