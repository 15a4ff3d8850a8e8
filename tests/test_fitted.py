"""Baselines that are fitted, not trained (fpt.arms.fitted: trees, MiniRocket), the parameter-free
seasonal naive forecast, Tan et al.'s PAttn, and the stop at a perfect validation score."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from fpt.arms import fitted
from fpt.cli import main
from fpt.errors import FptError
from fpt.tasks.forecast import period


def _train(*args: str) -> dict:
    out = args[args.index("--out") + 1]
    assert main(["train", "--no-progress", *args]) == 0
    return json.loads((Path(out) / "result.json").read_text())


def _npz(path: Path, x_train, y_train, x_test, y_test) -> Path:
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def _series(n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two classes of noisy series (N, length, 2): a sine, or a square wave, at random phase."""
    t = np.arange(length)[None, :] / 6 + rng.uniform(0, 6, (n, 1))
    y = rng.integers(0, 2, n)
    wave = np.where(y[:, None] == 0, np.sin(t), np.sign(np.sin(t)))
    x = np.stack([wave, wave[:, ::-1]], axis=-1) + 0.3 * rng.standard_normal((n, length, 2))
    return x.astype(np.float32), y


def test_trees_fit_once_on_a_table_of_float_tokens(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 4, 3)).astype(np.float32)
    y = (x[:, 0, 0] * x[:, 1, 1] > 0).astype(np.int64)  # an interaction no linear model finds
    data = _npz(tmp_path / "t.npz", x[:500], y[:500], x[500:], y[500:])
    result = _train("--task", str(data), "--method", "trees", "--out", str(tmp_path / "run"))
    assert result["fitted"] and result["trainable_params"] == 0 and result["steps_run"] == 0
    assert result["test"]["accuracy"] > 0.85
    assert result["wall_seconds"] > 0


def test_trees_regress_every_target_and_read_integer_ids(tmp_path):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 9, (400, 6))
    y = np.stack([ids[:, 0] * 1.0, (ids[:, 1] > 4) * 2.0], axis=1)       # two targets from two positions
    data = _npz(tmp_path / "ids.npz", ids[:300], y[:300], ids[300:], y[300:])
    result = _train("--task", str(data), "--method", "trees", "--out", str(tmp_path / "run"))
    assert result["test"]["r2"] > 0.9


def test_trees_on_generated_bits_draw_from_the_training_stream(tmp_path, monkeypatch):
    monkeypatch.setattr(fitted, "GENERATED_EXAMPLES", 3000)
    result = _train("--task", "bit-xor", "--task-opt", "n_bits=4", "--task-opt", "n_val=32", "--task-opt", "n_test=32",
                    "--method", "trees",
                    "--out", str(tmp_path / "run"))
    assert result["test"]["accuracy"] == 1.0


def test_minirocket_classifies_series(tmp_path):
    pytest.importorskip("numba")
    pytest.importorskip("sktime")
    rng = np.random.default_rng(2)
    x, y = _series(160, 40, rng)
    data = _npz(tmp_path / "s.npz", x[:100], y[:100], x[100:], y[100:])
    result = _train("--task", str(data), "--method", "minirocket", "--out", str(tmp_path / "run"))
    assert result["fitted"] and result["test"]["accuracy"] > 0.9


@pytest.mark.parametrize("x, y, message", [
    (np.zeros((20, 12), dtype=np.int64), np.arange(20) % 2, "integer ids"),
    (np.zeros((20, 12, 1), dtype=np.float32), np.linspace(0, 1, 20), "classifies series; .* is regression"),
    (np.zeros((20, 5, 1), dtype=np.float32), np.arange(20) % 2, "9 steps at least"),
])
def test_minirocket_refuses_what_it_cannot_classify(tmp_path, capsys, x, y, message):
    data = _npz(tmp_path / "bad.npz", x, y, x, y)
    assert main(["train", "--task", str(data), "--method", "minirocket", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "run").exists()


def test_an_unfitted_model_says_how_to_fit_it():
    import fpt
    import torch

    model = fpt.build_model("minilm", token_dim=2, n_outputs=3, seq_len=4, method="trees")
    with pytest.raises(FptError, match="has not been fitted"):
        model(torch.zeros(1, 4, 2))


@pytest.mark.parametrize("dates, expected", [
    (["2016-07-01 00:00:00", "2016-07-01 01:00:00"], 24), (["2016-07-01 00:00", "2016-07-01 00:15"], 96),
    (["2020-01-01", "2020-01-02"], 7), (["2020-01-01", "2020-02-01"], 12), (["2020-01-06", "2020-01-13"], 52),
    (["step 1", "step 2"], 0), ([], 0)])
def test_the_seasonal_period_comes_from_the_dates(dates, expected):
    assert period(dates) == expected


def test_seasonal_naive_repeats_the_last_season(tmp_path):
    rows = 24 * 60
    t = np.arange(rows)
    start = np.datetime64("2020-01-01T00:00")
    lines = ["date,load"] + [f"{start + np.timedelta64(int(i), 'h')},{np.sin(2 * np.pi * i / 24):.6f}" for i in t]
    (tmp_path / "daily.csv").write_text("\n".join(lines) + "\n")
    opts = ["--task", "forecast", "--task-opt", f"path={tmp_path / 'daily.csv'}", "--task-opt", "seq_len=48",
            "--task-opt", "horizon=30"]
    result = _train(*opts, "--model", "seasonal-naive", "--out", str(tmp_path / "naive"))
    assert result["test"]["mse"] < 1e-8 and result["trainable_params"] == 0
    off = _train(*opts, "--model", "seasonal-naive-7", "--out", str(tmp_path / "off"))
    assert off["test"]["mse"] > 0.1
    assert main(["train", *opts, "--model", "seasonal-naive-96", "--out", str(tmp_path / "long")]) == 2


def test_seasonal_naive_asks_for_a_period_the_dates_do_not_give(tmp_path, capsys):
    lines = ["t,v"] + [f"{i},{np.sin(i / 3):.4f}" for i in range(600)]
    (tmp_path / "plain.csv").write_text("\n".join(lines) + "\n")
    assert main(["train", "--task", "forecast", "--task-opt", f"path={tmp_path / 'plain.csv'}", "--task-opt",
                 "seq_len=48", "--task-opt", "horizon=8", "--model", "seasonal-naive",
                 "--out", str(tmp_path / "run")]) == 2
    assert "seasonal-naive-24" in capsys.readouterr().err


def test_pattn_has_one_attention_layer_and_no_positions(tiny_gpt2):
    import fpt

    model = fpt.build_model(str(tiny_gpt2), token_dim=4, n_outputs=3, seq_len=10, method="pattn")
    groups = set(model.group_of.values())
    assert "position" not in groups and {"attention", "layernorm"} <= groups
    assert model.info.position == "none" and model.info.layers == 1


def test_patience_stops_a_run_at_a_perfect_validation_score(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 2, 2)).astype(np.float32)
    y = (x[:, 0, 0] > 0).astype(np.int64) * 1
    x[:, 0, 0] += np.where(y == 1, 3.0, -3.0)  # separable by a wide margin
    data = _npz(tmp_path / "easy.npz", x[:200], y[:200], x[200:], y[200:])
    result = _train("--task", str(data), "--method", "logistic", "--lr", "0.05", "--steps", "2000",
                    "--eval-every", "10", "--patience", "50", "--out", str(tmp_path / "run"))
    assert result["best_val"]["score"] == 1.0
    assert result["stopped_early"] and result["steps_run"] < 2000
