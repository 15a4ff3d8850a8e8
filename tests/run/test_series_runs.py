"""Series tasks through fpt train and fpt predict: forecasts recorded as MSE/MAE, predictions in
the data's own units, the baselines as runs, UCR classification end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fpt.errors import FptError
from fpt.run.config import build_config
from fpt.run.predict import predict, predict_cli
from fpt.run.setup import load_run
from fpt.run.train import evaluate, train
from fpt.tasks.forecast import FORECAST_TRAINING, read_csv

OPTIONS = {"seq_len": 48, "horizon": 12, "patch_len": 8, "stride": 4}
QUICK = {"steps": 30, "eval_every": 10, "batch_size": 16, "progress": False}


@pytest.fixture(scope="module")
def series_csv(tmp_path_factory, write_series) -> Path:
    path = tmp_path_factory.mktemp("data") / "series.csv"
    write_series(path, 400)
    return path


def run(tmp: Path, name: str, csv: Path, **flags) -> Path:
    out = tmp / name
    train(build_config({**QUICK, "task": "forecast", "task_options": {"path": str(csv), **OPTIONS},
                        "out": str(out), **flags}))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, series_csv, tiny_bert) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("runs")
    return {"fpt": run(tmp, "fpt", series_csv, model=str(tiny_bert)),
            "linear": run(tmp, "linear", series_csv, model="linear", steps=200, eval_every=50),
            "repeat-last": run(tmp, "repeat", series_csv, model="repeat-last")}


def test_forecast_results_record_mse_and_mae(runs):
    results = {k: json.loads((v / "result.json").read_text()) for k, v in runs.items()}
    for name, result in results.items():
        assert set(result["test"]) >= {"mse", "mae"} and result["test"]["score"] == -result["test"]["mse"]
        assert result["task_spec"]["objective"] == "forecast"
    assert results["repeat-last"]["trainable_params"] == 0 and results["repeat-last"]["steps_run"] == 0
    assert results["linear"]["trainable_params"] == 48 * 12 + 12
    # the sinusoids are predictable: a trained linear map beats repeating the last value
    assert results["linear"]["test"]["mse"] < 0.5 * results["repeat-last"]["test"]["mse"]


def test_test_metric_is_a_full_pass(runs):
    built = load_run(runs["linear"])
    test = evaluate(built, "test", 7)  # any batch size: no last batch dropped
    assert test["mse"] == pytest.approx(json.loads((runs["linear"] / "result.json").read_text())["test"]["mse"],
                                        rel=1e-6)
    assert test["mse"] == pytest.approx(evaluate(built, "test", 1000)["mse"], rel=1e-6)


def test_predict_writes_forecasts_in_original_units(runs, series_csv, tmp_path):
    names, values, _ = read_csv(series_csv, "all")
    window = values[-60:-12]                                               # (48, 3), the data's units
    forecast = predict(runs["repeat-last"], window[None])
    assert forecast.shape == (1, 12, 3)
    assert np.allclose(forecast[0], np.repeat(window[-1:], 12, axis=0), atol=1e-3)  # back in original units
    # a CSV in, a CSV out: its last 48 rows
    out = tmp_path / "forecast.csv"
    predict_cli(str(runs["linear"]), str(series_csv), str(out))
    lines = out.read_text().splitlines()
    assert lines[0] == "step," + ",".join(names) and len(lines) == 13
    expected = predict(runs["linear"], values[-48:][None])[0]
    assert np.allclose(np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]]), expected, rtol=1e-4)
    with pytest.raises(FptError, match=r"shape \(N, T, 3\)"):
        predict(runs["linear"], window[None, :, :2])
    with pytest.raises(FptError, match="exactly 48 steps"):
        predict(runs["linear"], window[None, :40])


def test_forecast_training_defaults_apply_unless_given(series_csv):
    cfg = build_config({"task": "forecast", "task_options": {"path": str(series_csv)}})
    assert cfg.lr == FORECAST_TRAINING["*"]["lr"] and cfg.batch_size == FORECAST_TRAINING["*"]["batch_size"]
    linear = build_config({"task": "forecast", "model": "linear"})
    assert linear.steps == FORECAST_TRAINING["linear"]["steps"] and linear.lr == FORECAST_TRAINING["linear"]["lr"]
    assert linear.batch_size == FORECAST_TRAINING["*"]["batch_size"]  # "*" applies under the model's own
    assert build_config({"task": "forecast", "lr": 0.5}).lr == 0.5
    assert build_config({"task": "bit-xor"}).lr == 1e-3  # other tasks keep fpt's own defaults


def test_ucr_classification_end_to_end(tmp_path, tiny_bert):
    pytest.importorskip("sktime")
    out = tmp_path / "jv"
    result = train(build_config({**QUICK, "task": "ucr", "task_options": {"name": "JapaneseVowels"},
                                 "model": str(tiny_bert), "out": str(out)}))
    assert result["test"]["accuracy"] > 1 / 9  # better than chance after 30 steps
    built = load_run(out)
    x = built.task.splits["test"].x[:5].numpy()
    mean, std = np.array(built.task.spec.channel_mean), np.array(built.task.spec.channel_std)
    classes = predict(out, x * std + mean)  # the data's own units in
    assert classes.shape == (5,) and classes.dtype == np.int64


def test_dlinears_decomposition_is_its_moving_average_and_remainder():
    import torch

    from fpt.baselines import Decomposition

    torch.manual_seed(0)
    x = torch.randn(3, 48, 2)                                               # (B, T, C)
    # DLinear's own moving_avg: the ends padded with the first and last steps, then AvgPool1d(25, stride 1)
    front, end = x[:, :1].repeat(1, 12, 1), x[:, -1:].repeat(1, 12, 1)
    pooled = torch.nn.AvgPool1d(25, stride=1)(torch.cat([front, x, end], dim=1).permute(0, 2, 1)).permute(0, 2, 1)
    out = Decomposition(48, 2)(x.flatten(1).unsqueeze(1)).last_hidden_state  # (B, 1, 2 * 48 * 2), step-major
    seasonal, trend = out[:, 0].split(96, dim=1)
    assert torch.allclose(trend.reshape(3, 48, 2), pooled, atol=1e-6)
    assert torch.allclose(seasonal.reshape(3, 48, 2), x - pooled, atol=1e-6)


def test_dlinear_trains_as_a_forecasting_run(tmp_path, series_csv):
    out = run(tmp_path, "dlinear", series_csv, model="dlinear", steps=200, eval_every=50)
    result = json.loads((out / "result.json").read_text())
    assert result["trainable_params"] == 2 * 48 * 12 + 12                  # a map each from remainder and trend
    assert result["config"]["lr"] == FORECAST_TRAINING["dlinear"]["lr"] and result["test"]["mse"] < 1.0
    assert predict(out, np.zeros((2, 48, 3), dtype=np.float32)).shape == (2, 12, 3)
