"""Length bucketing: same examples per epoch, deterministic batches, little padding."""

from __future__ import annotations

import torch

from fpt.run.config import build_config
from fpt.tasks.arrays import BUCKET_POOL, Arrays, ArrayTask
from fpt.tasks.base import TaskSpec, generator
from fpt.run.train import evaluate


def varied_task(n: int = 4000, longest: int = 100, seed: int = 0) -> ArrayTask:
    """Token ids with lengths spread evenly over 5..longest, as in ListOps or protein data."""
    gen = generator("varied", seed)
    lengths = torch.randint(5, longest + 1, (n,), generator=gen)
    x = torch.randint(1, 20, (n, longest), generator=gen)
    x[torch.arange(longest)[None, :] >= lengths[:, None]] = 0
    data = Arrays(x, torch.randint(0, 3, (n,), generator=gen), lengths)
    spec = TaskSpec(name="varied", seq_len=longest, objective="classification", n_outputs=3, vocab_size=20)
    return ArrayTask(spec, data, data.take(torch.arange(300)), data.take(torch.arange(300, 600)))


def padding(task: ArrayTask, steps: int, batch_size: int = 16) -> float:
    masks = [task.train_batch(step, batch_size, seed=0).mask for step in range(steps)]
    return float(sum((~m).sum() for m in masks) / sum(m.numel() for m in masks))


def test_bucketing_cuts_padding_below_ten_percent():
    task = varied_task()
    task.bucketing = False
    before = padding(task, 2 * BUCKET_POOL)
    task.bucketing = True
    after = padding(task, 2 * BUCKET_POOL)
    assert before > 0.3 and after < 0.1, (before, after)


def test_a_pool_holds_exactly_the_examples_of_its_steps_without_bucketing():
    task, steps, batch = varied_task(n=1000), BUCKET_POOL * 3, 16  # pools cross epoch boundaries
    task.bucketing = False
    plain = [task.train_indices(s, batch, seed=3) for s in range(steps)]
    task.bucketing = True
    bucketed = [task.train_indices(s, batch, seed=3) for s in range(steps)]
    for pool in range(3):
        part = slice(pool * BUCKET_POOL, (pool + 1) * BUCKET_POOL)
        assert sorted(torch.cat(plain[part]).tolist()) == sorted(torch.cat(bucketed[part]).tolist())
    assert any(not torch.equal(a, b) for a, b in zip(plain, bucketed))


def test_bucketed_batches_are_a_pure_function_of_seed_and_step():
    one, two = varied_task(), varied_task()
    later_first = [two.train_indices(s, 16, seed=1) for s in (170, 3, 51)]  # any order, fresh caches
    assert all(torch.equal(one.train_indices(s, 16, seed=1), b) for s, b in zip((170, 3, 51), later_first))
    assert not torch.equal(one.train_indices(3, 16, seed=1), one.train_indices(3, 16, seed=2))


def test_fixed_length_tasks_are_left_in_epoch_order():
    task = varied_task()
    task.splits["train"].lengths.fill_(100)
    task.bucketing = False
    plain = task.train_indices(7, 16, seed=0)
    task.bucketing = True
    assert torch.equal(task.train_indices(7, 16, seed=0), plain)


def test_evaluation_is_shortest_first_and_scores_the_same(tiny_bert):
    from fpt.run.setup import setup

    built = setup(build_config({"task": "bit-xor", "model": str(tiny_bert), "precision": "fp32"}))
    task = varied_task(n=800, longest=40)
    order = task.eval_order("val")
    assert (task.splits["val"].lengths[order].diff() >= 0).all()
    from fpt.model import FPTModel
    torch.manual_seed(0)
    model = FPTModel(task.spec, built.model.backbone, built.info, precision="fp32")
    scores = []
    for bucketing in (True, False):
        task.bucketing = bucketing
        scores.append(evaluate(type(built)(**{**vars(built), "task": task, "model": model}), "val", 64))
    assert scores[0]["accuracy"] == scores[1]["accuracy"]
    torch.testing.assert_close(scores[0]["loss"], scores[1]["loss"], rtol=1e-5, atol=1e-6)


def test_training_reports_its_padding(tmp_path, tiny_bert):
    from fpt.tasks.lra_listops import generate_listops
    from fpt.run.train import train

    generate_listops(tmp_path / "listops", n_train=400, n_val=16, n_test=16, min_length=10, max_length=60,
                     max_depth=3, seed=0, progress=False)
    cfg = {"task": "listops", "model": str(tiny_bert), "steps": 4, "eval_every": 4, "batch_size": 8,
           "progress": False, "task_options": {"data": str(tmp_path / "listops"), "max_length": 64}}
    on = train(build_config({**cfg, "out": str(tmp_path / "on")}))
    off = train(build_config({**cfg, "out": str(tmp_path / "off"), "length_bucketing": False}))
    assert 0 <= on["padding_fraction"] < off["padding_fraction"]


def test_a_small_training_set_never_fills_a_batch_with_copies():
    """Fewer examples than a pool: pools shrink to an epoch, so copies don't sort into one batch."""
    task = varied_task(n=600)
    distinct = [len(set(task.train_indices(step, 32, seed=0).tolist())) for step in range(100)]
    assert min(distinct) >= 31 and sum(distinct) / len(distinct) > 31.9, distinct
    epoch_steps = 600 // 32
    seen = torch.cat([task.train_indices(s, 32, seed=0) for s in range(epoch_steps)])
    assert len(set(seen.tolist())) == len(seen)  # the first epoch's batches: all different examples
