"""--train-fraction: the same fixed subset of the training set for every arm and seed."""

from __future__ import annotations

import numpy as np
import pytest

from fpt.errors import FptError
from fpt.run.config import build_config
from fpt.run.setup import setup
from fpt.run.train import train


def write_npz(path, n: int = 200) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 6, 3)).astype(np.float32)
    y = (x.sum(axis=(1, 2)) > 0).astype(np.int64)
    np.savez(path, x_train=x[:150], y_train=y[:150], x_test=x[150:], y_test=y[150:])


def train_ids(cfg_overrides: dict, tiny_bert) -> tuple[int, set[bytes]]:
    cfg = build_config({"model": str(tiny_bert), "progress": False, **cfg_overrides})
    task = setup(cfg).task
    train_x = task.splits["train"].x
    return len(train_x), {row.numpy().tobytes() for row in train_x}


def test_a_fraction_is_one_subset_fixed_by_the_data_seed(tmp_path, tiny_bert):
    data = tmp_path / "d.npz"
    write_npz(data)
    n_all, everything = train_ids({"task": str(data)}, tiny_bert)
    n, tenth = train_ids({"task": str(data), "train_fraction": 0.1}, tiny_bert)
    assert n == round(0.1 * n_all) and tenth <= everything
    assert train_ids({"task": str(data), "train_fraction": 0.1, "seed": 7}, tiny_bert)[1] == tenth  # seeds share it
    assert train_ids({"task": str(data), "train_fraction": 0.1, "method": "full"}, tiny_bert)[1] == tenth  # arms too
    assert train_ids({"task": str(data), "train_fraction": 0.1, "data_seed": 1}, tiny_bert)[1] != tenth


def test_training_on_a_fraction_cycles_through_that_subset(tmp_path, tiny_bert):
    data = tmp_path / "d.npz"
    write_npz(data)
    result = train(build_config({"task": str(data), "model": str(tiny_bert), "train_fraction": 0.25, "steps": 6,
                                 "eval_every": 3, "batch_size": 8, "progress": False, "out": str(tmp_path / "run")}))
    assert result["config"]["train_fraction"] == 0.25 and result["steps_run"] == 6


def test_forecasting_keeps_the_first_rows_in_time(tmp_path, tiny_bert, write_series):
    csv = tmp_path / "s.csv"
    write_series(csv, 300)
    options = {"path": str(csv), "split": "0.7,0.1,0.2", "seq_len": 32, "horizon": 8, "patch_len": 8, "stride": 4}
    full = setup(build_config({"task": "forecast", "task_options": options, "model": str(tiny_bert)})).task
    part = setup(build_config({"task": "forecast", "task_options": options, "model": str(tiny_bert),
                               "train_fraction": 0.5})).task
    rows = full.windows["train"].shape[1] + 40 - 1                   # 40 = seq_len + horizon
    kept = (rows - 32) * 50 // 100 + 32 - 40 + 1                       # One Fits All's cut of the rows, as windows
    assert part.windows["train"].shape[1] == kept
    assert (part.windows["train"] == full.windows["train"][:, :kept]).all()


@pytest.mark.parametrize("fraction", [0, 1.5, -0.1])
def test_a_fraction_outside_0_1_is_one_error(fraction):
    with pytest.raises(FptError, match="--train-fraction must be in"):
        build_config({"task": "bit-xor", "train_fraction": fraction})


def test_generated_tasks_have_no_training_set_to_cut(tiny_bert):
    with pytest.raises(FptError, match="generates its training examples"):
        setup(build_config({"task": "bit-xor", "model": str(tiny_bert), "train_fraction": 0.5}))
