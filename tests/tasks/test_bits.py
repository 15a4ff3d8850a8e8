"""bit-xor and bit-memory follow the paper's definitions; splits are fixed and disjoint."""

from __future__ import annotations

import pytest
import torch

from fpt.errors import FptError
from fpt.tasks import build_task


def test_bit_xor_targets_are_xor():
    task = build_task("bit-xor", {}, data_seed=0)
    batch = task.train_batch(step=3, batch_size=64, seed=1)
    assert batch.x.shape == (64, 10, 1) and batch.y.shape == (64, 5, 1) and batch.mask.all()
    a, b = batch.x[:, :5, 0] > 0, batch.x[:, 5:, 0] > 0
    assert torch.equal(batch.y[..., 0].bool(), a ^ b)
    assert set(batch.x.unique().tolist()) == {-1.0, 1.0}


def test_bit_xor_training_never_sees_held_out_inputs():
    task = build_task("bit-xor", {}, data_seed=0)
    held_out = {tuple(row) for split in ("val", "test") for row in task.split(split).x[..., 0].tolist()}
    assert len(held_out) == 256  # 128 + 128 distinct inputs
    for step in range(50):
        for row in task.train_batch(step, 32, seed=0).x[..., 0].tolist():
            assert tuple(row) not in held_out


def test_batches_are_a_pure_function_of_seed_and_step():
    task = build_task("bit-memory", {"n_bits": 100, "token_dim": 10}, data_seed=0)
    a, b = task.train_batch(7, 4, seed=2), task.train_batch(7, 4, seed=2)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, task.train_batch(8, 4, seed=2).x)
    assert not torch.equal(a.x, task.train_batch(7, 4, seed=3).x)


def test_bit_memory_layout_and_copy_baseline():
    task = build_task("bit-memory", {}, data_seed=0)
    spec = task.spec
    assert (spec.seq_len, spec.token_dim, spec.readout_tokens, spec.n_outputs) == (120, 50, 20, 50)
    batch = task.train_batch(0, 64, seed=0)
    flat = batch.x.reshape(64, 6, 1000)
    patterns, query = flat[:, :5], flat[:, 5]
    target = batch.y.reshape(64, 1000) * 2 - 1
    # The target is one of the five patterns, and the query agrees with it wherever unmasked.
    assert all(any(torch.equal(target[i], patterns[i, j]) for j in range(5)) for i in range(64))
    visible = query != 0
    assert torch.equal(query[visible], target[visible])
    assert 0.45 < 1 - visible.float().mean() < 0.55  # mask_prob 0.5
    # Copying the visible bits and guessing the rest scores about 75%.
    guess = torch.where(visible, query, torch.ones_like(query))
    assert 0.72 < (guess == target).float().mean() < 0.78


def test_bit_memory_splits_are_fixed_by_data_seed():
    make = lambda s: build_task("bit-memory", {"n_bits": 100, "token_dim": 10, "n_val": 8}, data_seed=s)
    assert torch.equal(make(0).split("val").x, make(0).split("val").x)
    assert not torch.equal(make(0).split("val").x, make(1).split("val").x)
    assert make(0).split_size("val") == 8


@pytest.mark.parametrize("options,message", [
    ({"n_bits": 0}, "n_bits must be positive"),
    ({"n_bits": 100, "token_dim": 30}, "multiple of token_dim"),
    ({"mask_prob": 1.5}, "mask_prob"),
    ({"colour": 3}, "has no option 'colour'"),
    ({"n_bits": "many"}, "must be int"),
])
def test_bad_task_options(options, message):
    with pytest.raises(FptError, match=message):
        build_task("bit-memory", options, data_seed=0)


def test_bit_xor_refuses_holding_out_most_inputs():
    with pytest.raises(FptError, match="more than half"):
        build_task("bit-xor", {"n_bits": 2, "n_val": 8, "n_test": 8}, data_seed=0)


def test_wide_bit_xor_splits_are_unbiased_and_complete():
    task = build_task("bit-xor", {"n_bits": 16, "n_val": 200, "n_test": 200}, data_seed=0)
    for split in ("val", "test"):
        x = task.split(split).x[..., 0]
        assert len(x) == 200 and len({tuple(r) for r in x.tolist()}) == 200
        top_bit_set = (x[:, -1] > 0).float().mean()   # sorted codes would make this ~0
        assert 0.35 < top_bit_set < 0.65
