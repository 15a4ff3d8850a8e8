"""Chronos-Bolt as a forecasting arm (fpt.tsfm), on a tiny random checkpoint written with the package's
own classes: no hub is reachable here, so the real weights are never loaded in the tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("chronos")

from fpt.errors import FptError  # noqa: E402
from fpt.run.config import build_config  # noqa: E402
from fpt.run.train import train  # noqa: E402

PREDICTION_LENGTH = 8  # the tiny model's block: horizons beyond it are unrolled


@pytest.fixture(scope="module")
def tiny_chronos(tmp_path_factory) -> Path:
    from chronos.chronos_bolt import ChronosBoltModelForForecasting
    from transformers import T5Config

    config = T5Config(d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2, d_kv=16,
                      dropout_rate=0.0, feed_forward_proj="relu", decoder_start_token_id=0, pad_token_id=0,
                      architectures=["ChronosBoltModelForForecasting"],
                      chronos_config={"context_length": 64, "prediction_length": PREDICTION_LENGTH,
                                      "input_patch_size": 8, "input_patch_stride": 8, "use_reg_token": True,
                                      "quantiles": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]})
    torch.manual_seed(123)
    path = tmp_path_factory.mktemp("chronos") / "tiny-chronos-bolt"
    ChronosBoltModelForForecasting(config).save_pretrained(path)
    return path


@pytest.fixture()
def series_csv(tmp_path, write_series) -> Path:
    csv = tmp_path / "series.csv"
    write_series(csv, 400)
    return csv


def run(series_csv: Path, out: Path, model: Path, **changes) -> dict:
    config = {"task": "forecast", "model": str(model), "out": str(out), "progress": False, "steps": 3,
              "eval_every": 1, "lr": 1e-3,
              "task_options": {"path": str(series_csv), "split": "0.7,0.1,0.2", "seq_len": 48, "horizon": 20},
              **changes}
    return train(build_config(config))


def test_zero_shot_is_the_pipelines_median_forecast_and_trains_nothing(tiny_chronos, series_csv, tmp_path):
    from chronos import ChronosBoltPipeline

    from fpt.model import assemble_model
    from fpt.options import ModelOptions
    from fpt.tasks import build_task

    result = run(series_csv, tmp_path / "zero", tiny_chronos)
    assert result["steps_run"] == 0 and result["trainable_params"] == 0
    assert result["test"]["mse"] > 0

    task = build_task("forecast", {"path": str(series_csv), "split": "0.7,0.1,0.2", "seq_len": 48, "horizon": 20},
                      0, None)
    model = assemble_model(task.spec, ModelOptions(model=str(tiny_chronos)).validate()).eval()
    batch = next(task.eval_batches("test", 16))
    with torch.no_grad():
        ours = model(batch.x, batch.mask).reshape(len(batch.x), -1)           # (B, H)
    pipeline = ChronosBoltPipeline.from_pretrained(tiny_chronos)
    with pytest.warns(UserWarning):  # 20 steps > the model's 8: the pipeline unrolls, and says so
        theirs = pipeline.predict(batch.x.reshape(len(batch.x), -1), prediction_length=20)[:, 4]  # the median
    assert ours.shape == theirs.shape == (16, 20)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_its_quantiles_score_wql_and_their_median_is_the_forecast(tiny_chronos, series_csv, tmp_path):
    from fpt.model import assemble_model
    from fpt.options import ModelOptions
    from fpt.tasks import build_task

    options = {"path": str(series_csv), "split": "0.7,0.1,0.2", "seq_len": 48, "horizon": 20}
    task = build_task("forecast", options, 0, None)
    model = assemble_model(task.spec, ModelOptions(model=str(tiny_chronos)).validate()).eval()
    batch = next(task.eval_batches("test", 16))
    with torch.no_grad():
        levels, paths = model.forecast_quantiles(batch.x, batch.mask)            # (B, Q, H)
        point = model(batch.x, batch.mask).reshape(len(batch.x), -1)
    assert levels == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]) and paths.shape == (16, 9, 20)
    torch.testing.assert_close(paths[:, 4], point)                             # the median is the forecast
    assert (paths[:, -1] - paths[:, 0]).mean() > 0                             # 0.9 above 0.1 on average
    result = run(series_csv, tmp_path / "wql", tiny_chronos, task_options={**options, "wql": True})
    assert result["wql"]["quantiles"] == "the arm's own" and result["wql"]["model"] > 0
    linear = run(series_csv, tmp_path / "linear", "linear", task_options={**options, "wql": True})
    assert linear["wql"]["quantiles"] == "the point forecast at every level"
    assert linear["wql"]["seasonal_naive"] == pytest.approx(result["wql"]["seasonal_naive"])  # the same windows


def test_fine_tuning_trains_the_groups_asked_for(tiny_chronos, series_csv, tmp_path):
    recipe = run(series_csv, tmp_path / "recipe", tiny_chronos, train="input,output,layernorm,position")
    everything = run(series_csv, tmp_path / "all", tiny_chronos, train="all")
    counts = json.loads((tmp_path / "recipe" / "result.json").read_text())["params_by_group"]
    assert counts["attention"]["trainable"] == 0 and counts["feedforward"]["trainable"] == 0
    assert counts["input"]["trainable"] > 0 and counts["layernorm"]["trainable"] > 0
    assert 0 < recipe["trainable_params"] < everything["trainable_params"] == counts["total"]["total"]
    assert recipe["steps_run"] == everything["steps_run"] == 3
    zero = run(series_csv, tmp_path / "zero", tiny_chronos)
    assert everything["test"]["mse"] != zero["test"]["mse"]  # training changed the forecasts


def test_random_init_twin_has_other_weights(tiny_chronos, series_csv, tmp_path):
    pretrained = run(series_csv, tmp_path / "pre", tiny_chronos)
    random = run(series_csv, tmp_path / "rand", tiny_chronos, init="random", seed=5)
    assert random["init"] == "random"
    assert random["backbone"]["hash"] != pretrained["backbone"]["hash"]


def test_misuse_is_refused_with_the_fix(tiny_chronos, series_csv, tmp_path, monkeypatch, write_series):
    with pytest.raises(FptError, match="runs whole"):
        run(series_csv, tmp_path / "a", tiny_chronos, layers=1)
    with pytest.raises(FptError, match="model of its own"):
        run(series_csv, tmp_path / "b", tiny_chronos, method="lora")
    with pytest.raises(FptError, match="forecasts"):
        train(build_config({"task": "impute", "model": str(tiny_chronos), "out": str(tmp_path / "c"),
                            "progress": False, "task_options": {"path": str(series_csv), "split": "0.7,0.1,0.2",
                                                                "seq_len": 24}}))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FptError, match="chronos-bolt-small.*network access"):
        run(series_csv, tmp_path / "d", "chronos-bolt-small")
    import builtins

    real_import = builtins.__import__

    def no_chronos(name, *args, **kwargs):
        if name.startswith("chronos"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_chronos)
    with pytest.raises(FptError, match=r"pip install 'fpt\[tsfm\]'"):
        run(series_csv, tmp_path / "e", tiny_chronos)
    assert not any((tmp_path / d / "result.json").exists() for d in "abcde")
