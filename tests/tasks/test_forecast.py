"""Forecasting: the benchmarks' splits and windows, standardisation, batches as views, bad CSVs named."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from fpt.errors import FptError
from fpt.tasks import build_task
from fpt.tasks import forecast as fc
from fpt.tasks.forecast import Forecast, ForecastOptions, read_csv, split_rows
from fpt.storage.downloads import Remote


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory, write_series) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("data") / "series.csv"
    return path, write_series(path, 400)


def small(path: Path, **options) -> dict:
    return {"path": str(path), "seq_len": 48, "horizon": 12, "patch_len": 8, "stride": 4, "val_stride": 1, **options}


def test_ett_hour_split_is_the_benchmarks_protocol():
    # ETTh1: 12/4/4 months; val and test reach back seq_len rows; test has 2,785 windows at 336/96.
    bounds = split_rows("ett-hour", 17420, 336)
    assert bounds == {"train": (0, 8640), "val": (8640 - 336, 11520), "test": (11520 - 336, 14400)}
    a, b = bounds["test"]
    assert b - a - 336 - 96 + 1 == 2785
    assert split_rows("ett-minute", 69680, 336)["test"] == (4 * 11520 - 336, 4 * 14400)
    # fractions: Autoformer's custom loader (train int(n*0.7), test int(n*0.2), val the rest)
    assert split_rows("0.7,0.1,0.2", 1000, 50) == {"train": (0, 700), "val": (650, 800), "test": (750, 1000)}


def test_windows_examples_and_standardisation(csv_file):
    path, values = csv_file
    task = build_task("forecast", small(path), 0)
    bounds = split_rows("0.7,0.1,0.2", 400, 48)
    train_rows = values[:280]
    assert np.allclose(task.spec.channel_mean, train_rows.mean(0)) and np.allclose(task.spec.channel_std, train_rows.std(0))
    for split, (a, b) in bounds.items():
        assert task.split_size(split) == 3 * (b - a - 48 - 12 + 1)  # channels x windows
    # every test example, in order: channel-major, window by window, values standardised
    batches = list(task.eval_batches("test", 50))
    x = torch.cat([batch.x for batch in batches])                      # (N, 48, 1)
    y = torch.cat([batch.y for batch in batches])                      # (N, 12)
    z = (values - train_rows.mean(0)) / train_rows.std(0)
    a = bounds["test"][0]
    windows = bounds["test"][1] - a - 59
    for i in (0, 1, windows, 3 * windows - 1):
        c, w = divmod(i, windows)
        assert np.allclose(x[i, :, 0].numpy(), z[a + w:a + w + 48, c], atol=1e-5)
        assert np.allclose(y[i].numpy(), z[a + w + 48:a + w + 60, c], atol=1e-5)
    assert task.spec.seq_len == (48 + 4 - 8) // 4 + 1 and task.spec.token_dim == 8 and task.spec.n_outputs == 12


def test_windows_are_views_of_one_tensor(csv_file):
    task = build_task("forecast", small(csv_file[0]), 0)
    bases = {task.windows[s].untyped_storage().data_ptr() for s in ("train", "val", "test")}
    assert len(bases) == 1  # no copy of the series per split, nor per window


def test_training_batches_are_deterministic_epochs(csv_file):
    task = build_task("forecast", small(csv_file[0]), 0)
    n = task.split_size("train")
    seen = torch.cat([task.train_batch(step, 10, seed=3).y for step in range(n // 10)])
    assert len(torch.unique(seen, dim=0)) == (n // 10) * 10  # within an epoch, every example at most once
    assert torch.equal(task.train_batch(5, 10, 3).x, build_task("forecast", small(csv_file[0]), 0).train_batch(5, 10, 3).x)


def test_val_stride_and_train_fraction(csv_file):
    full = build_task("forecast", small(csv_file[0]), 0)
    strided = build_task("forecast", small(csv_file[0], val_stride=4, train_fraction=0.25), 0)
    windows = full.windows["val"].shape[1]
    assert strided.split_size("val") == 3 * len(range(0, windows, 4))
    assert strided.split_size("test") == full.split_size("test")  # test is always every window
    train_rows = full.windows["train"].shape[1] + full.windows["train"].shape[2] - 1
    seq_len, span = full.options.seq_len, full.windows["train"].shape[2]
    kept_rows = (train_rows - seq_len) * 25 // 100 + seq_len       # One Fits All's cut of the rows
    assert strided.split_size("train") == 3 * (kept_rows - span + 1)
    assert strided.spec.channel_mean == full.spec.channel_mean  # statistics from all training rows


def test_univariate_features(csv_file):
    task = build_task("forecast", small(csv_file[0], features="c1"), 0)
    assert task.spec.channel_names == ("c1",) and task.windows["train"].shape[0] == 1


@pytest.mark.parametrize("content, message", [
    ("date,a\n", "no data rows"),
    ("date,a,b\n2016,1,2\n2017,1,x\n", "line 3, column 'b': 'x' is not a number"),
    ("date,a\n2016,1\n2017,nan\n", "NaN or inf"),
    ("date,a\n2016,1,2\n", "has 3 fields"),
])
def test_bad_csv_is_named(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(FptError, match=message):
        read_csv(path, "all")


def test_bad_options_are_named(csv_file, tmp_path):
    path = csv_file[0]
    for options, message in [({"split": "0.5,0.5"}, "three positive fractions"),
                             ({"features": "nope"}, "no such channel"),
                             ({"patch_len": 100}, "longer than seq_len"),
                             ({"train_fraction": 0}, "train_fraction"),
                             ({"horizon": 200}, "fewer than seq_len"),
                             ({"split": "ett-hour"}, "needs 20 months")]:
        with pytest.raises(FptError, match=message):
            build_task("forecast", small(path, **options), 0)
    with pytest.raises(FptError, match="no such file"):
        build_task("forecast", small(tmp_path / "missing.csv"), 0)
    with pytest.raises(FptError, match="needs its data"):
        build_task("forecast", {}, 0)
    constant = tmp_path / "constant.csv"
    constant.write_text("date,a,b\n" + "".join(f"{i},1,{i}\n" for i in range(200)))
    with pytest.raises(FptError, match="channel 'a' is constant"):
        build_task("forecast", small(constant), 0)


def test_benchmark_names_download_once_and_verify(tmp_path, monkeypatch, csv_file):
    source = csv_file[0]
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    monkeypatch.setitem(fc.BENCHMARKS, "etth1", Remote(source.as_uri(), "ETTh1.csv", digest, source.stat().st_size))
    task = Forecast(ForecastOptions(**{**small("etth1"), "split": "0.7,0.1,0.2"}), 0, data_dir=tmp_path)
    assert (tmp_path / "ett" / "ETTh1.csv").read_bytes() == source.read_bytes()
    assert task.split_size("test") > 0
    monkeypatch.setitem(fc.BENCHMARKS, "etth2", Remote(source.as_uri(), "ETTh2.csv", "0" * 64))
    with pytest.raises(FptError, match="file is wrong"):
        Forecast(ForecastOptions(**small("etth2")), 0, data_dir=tmp_path)
    assert not (tmp_path / "ett" / "ETTh2.csv").exists()
    monkeypatch.setitem(fc.BENCHMARKS, "ettm1", Remote("http://127.0.0.1:9/ETTm1.csv", "ETTm1.csv"))
    with pytest.raises(FptError, match="put it at .*ETTm1.csv"):
        Forecast(ForecastOptions(**small("ettm1")), 0, data_dir=tmp_path)


def test_an_ett_file_anywhere_gets_the_ett_split():
    from fpt.tasks.forecast import ForecastOptions

    assert ForecastOptions(path="etth1").split_name == "ett-hour"
    assert ForecastOptions(path="/data/ETT-small/ETTh1.csv").split_name == "ett-hour"  # its name, not its path
    assert ForecastOptions(path="data/ETTm2.csv").split_name == "ett-minute"
    assert ForecastOptions(path="data/etth_like/sales.csv").split_name == "0.7,0.1,0.2"


def test_few_shot_keeps_one_fits_alls_rows(tmp_path, write_series):
    """border2 = (border2 - seq_len) * percent // 100 + seq_len on ETT's 12 training months (8,640 rows)."""
    path = tmp_path / "ETTh1.csv"
    write_series(path, 14400, channels=1)
    def windows(fraction: float, horizon: int) -> int:
        return build_task("forecast", {"path": str(path), "features": "c0", "horizon": horizon,
                                       "train_fraction": fraction}, 0).split_size("train")
    assert windows(1.0, 96) == 8640 - 336 - 96 + 1
    assert windows(0.1, 96) == 735      # 1,166 rows (a cut of the windows kept 820)
    assert windows(0.1, 720) == 111     # 6.8x fewer than 10% of the windows (758)
    assert windows(0.05, 96) == 751 - 432 + 1
    with pytest.raises(FptError, match="train_fraction 0.01: 419 training rows are left"):
        windows(0.01, 96)
    # every channel on the cut: the published few-shot setting, recorded as such (not the full-data one)
    few = build_task("forecast", {"path": str(path), "train_fraction": 0.1}, 0).protocol()
    assert few["few_shot"] == 0.1 and not few["published"]
    assert "few_shot" not in build_task("forecast", {"path": str(path)}, 0).protocol()
    univariate = build_task("forecast", {"path": str(path), "features": "c0", "train_fraction": 0.1}, 0)
    assert "few_shot" not in univariate.protocol()  # another setting than the published one


def test_a_benchmark_file_brings_its_published_protocol():
    from fpt.tasks.forecast import ForecastOptions

    def window(path: str, **given) -> tuple:
        o = ForecastOptions(path=path, **given)
        return o.seq_len, o.patch_len, o.stride, o.horizon, o.split_name

    assert window("etth1") == window("data/ETTh2.csv") == (336, 16, 8, 96, "ett-hour")
    assert window("/x/ETTm1.csv") == (512, 16, 16, 96, "ett-minute")   # stride 16, as One Fits All's ETTm scripts
    assert window("weather.csv") == window("traffic.csv") == (512, 16, 8, 96, "0.7,0.1,0.2")
    assert window("national_illness.csv") == (104, 24, 2, 24, "0.7,0.1,0.2")
    assert window("sales.csv") == (336, 16, 8, 96, "0.7,0.1,0.2")       # any other file: the generic setting
    assert window("ETTm1.csv", seq_len=96, stride=8) == (96, 16, 8, 96, "ett-minute")  # given values stand


def test_transfer_tests_on_another_files_test_split(tmp_path, write_series):
    source, target = tmp_path / "ETTh1.csv", tmp_path / "ETTh2.csv"
    write_series(source, 14400, seed=0)
    values = write_series(target, 14400, seed=1)
    options = {"path": str(source), "horizon": 24}
    plain = build_task("forecast", options, 0)
    moved = build_task("forecast", {**options, "test_path": str(target)}, 0)
    assert torch.equal(moved.windows["train"], plain.windows["train"])      # trained and validated on the source
    assert moved.split_size("test") == plain.split_size("test")             # the same ETT split, of the target
    a = 16 * 720 - 336                                                      # ETT test rows reach back seq_len
    own = (values[:12 * 720].mean(0), values[:12 * 720].std(0))             # the target's training rows
    first = torch.from_numpy(((values[a:a + 360, 0] - own[0][0]) / own[1][0]).astype(np.float32))
    assert torch.allclose(moved.windows["test"][0, 0], first, atol=1e-5)
    scaled = build_task("forecast", {**options, "test_path": str(target), "test_scale": "source"}, 0)
    mean, std = plain.spec.channel_mean[0], plain.spec.channel_std[0]
    assert torch.allclose(scaled.windows["test"][0, 0], torch.from_numpy(((values[a:a + 360, 0] - mean) / std)
                                                                           .astype(np.float32)), atol=1e-5)
    assert not moved.protocol()["published"] and moved.protocol()["test_path"] == str(target)
    other = tmp_path / "other.csv"
    write_series(other, 14400, channels=2)
    with pytest.raises(FptError, match="a transfer tests the same channels"):
        build_task("forecast", {**options, "test_path": str(other)}, 0)


def _hourly_csv(path: Path, rows: int = 600) -> np.ndarray:
    """A CSV with real hourly dates (period 24): a daily cycle, a trend and noise; returns the values."""
    from datetime import datetime, timedelta

    rng = np.random.default_rng(3)
    t = np.arange(rows)
    values = np.sin(2 * np.pi * t / 24) + 0.002 * t + 0.2 * rng.standard_normal(rows)
    start = datetime(2020, 1, 1)
    path.write_text("date,v\n" + "".join(f"{start + timedelta(hours=int(i))},{v:.6f}\n" for i, v in zip(t, values)))
    return values


def test_mase_against_seasonal_naive_by_hand(tmp_path):
    csv = tmp_path / "hourly.csv"
    _hourly_csv(csv)
    options = {"path": str(csv), "split": "0.6,0.2,0.2", "seq_len": 72, "horizon": 12, "patch_len": 12,
               "stride": 12, "mase": True}
    task = build_task("forecast", options, 0)
    assert task.spec.period == 24
    zero = task.assess(lambda batch: torch.zeros_like(batch.y))["mase"]  # the forecast "0" everywhere
    naive = task.assess(lambda batch: batch.x[:, 48 + torch.arange(12) % 24, 0])["mase"]  # seasonal naive itself
    # by hand, from the task's own test windows
    windows = task.windows["test"][0].double().numpy()                  # (W, 72 + 12)
    context, truth = windows[:, :72], windows[:, 72:]
    scale = np.abs(context[:, 24:] - context[:, :-24]).mean(axis=1)
    expected_zero = (np.abs(truth).mean(axis=1) / scale).mean()
    expected_naive = (np.abs(context[:, 48:60] - truth).mean(axis=1) / scale).mean()
    assert zero["model"] == pytest.approx(expected_zero, rel=1e-9)
    assert zero["seasonal_naive"] == naive["seasonal_naive"] == pytest.approx(expected_naive, rel=1e-9)
    assert naive["relative"] == pytest.approx(1.0)
    assert zero["period"] == 24 and zero["windows"] == len(windows) and zero["constant_windows_skipped"] == 0
    assert build_task("forecast", {**options, "mase": False}, 0).assess(lambda batch: batch.y) == {}


def test_mase_is_in_result_json_on_request(tmp_path):
    from fpt.run.config import build_config
    from fpt.run.train import train

    csv = tmp_path / "hourly.csv"
    _hourly_csv(csv)
    result = train(build_config({"task": "forecast", "model": "seasonal-naive", "out": str(tmp_path / "run"),
                                 "progress": False, "task_options": {"path": str(csv), "split": "0.6,0.2,0.2",
                                                                     "seq_len": 72, "horizon": 12, "mase": True}}))
    assert result["mase"]["relative"] == pytest.approx(1.0)  # the baseline is seasonal naive itself


def test_wql_by_hand_for_point_and_quantile_forecasts(tmp_path):
    from fpt.tasks.forecast import WQL_LEVELS, pinball_loss

    # the pinball loss: q (y - f) above the forecast, (1 - q) (f - y) below it
    truth, paths = torch.tensor([[1.0, 3.0]]), torch.tensor([[[2.0, 2.0]]])
    assert pinball_loss(truth, paths, torch.tensor([0.9])).tolist() == [[[pytest.approx(0.1), pytest.approx(0.9)]]]
    csv = tmp_path / "hourly.csv"
    _hourly_csv(csv)
    options = {"path": str(csv), "split": "0.6,0.2,0.2", "seq_len": 72, "horizon": 12, "patch_len": 12,
               "stride": 12, "wql": True}
    task = build_task("forecast", options, 0)
    windows = task.windows["test"][0].double().numpy()                  # (W, 72 + 12)
    context, truth = windows[:, :72], windows[:, 72:]
    magnitude = np.abs(truth).sum()
    # a point forecast stands for every level: 2 * mean over the symmetric levels of the pinball = |error|
    scored = task.assess(lambda batch: torch.zeros_like(batch.y))
    zero = scored["wql"]
    assert zero["model"] == pytest.approx(1.0, rel=1e-9)  # sum |0 - y| / sum |y|
    assert zero["seasonal_naive"] == pytest.approx(np.abs(context[:, 48:60] - truth).sum() / magnitude, rel=1e-9)
    assert zero["quantiles"] == "the point forecast at every level" and "mase" not in scored
    # an arm's own quantiles: the truth shifted by -1 .. +1 across the levels, each level scored by hand
    offsets = torch.linspace(-1, 1, 9, dtype=torch.float64)
    spread = task.assess(lambda batch: batch.y, lambda batch: (list(WQL_LEVELS), batch.y[:, None].double()
                                                                + offsets[None, :, None]))["wql"]
    expected = np.mean([2 * len(truth.ravel()) * max(q * -d, (q - 1) * -d) / magnitude
                        for q, d in zip(WQL_LEVELS, offsets.tolist())])
    assert spread["model"] == pytest.approx(expected, rel=1e-9) and spread["quantiles"] == "the arm's own"
    assert spread["relative"] == pytest.approx(expected / zero["seasonal_naive"], rel=1e-9)
    with pytest.raises(FptError, match="the arm forecasts the quantile levels"):
        task.assess(lambda batch: batch.y, lambda batch: ([0.25, 0.5, 0.75], batch.y[:, None].repeat(1, 3, 1)))
