"""The M4 measures and Naive2 (fpt.m4) against values computed by hand, and the short-term task
(fpt.tasks.shortterm) on files the tests write: M4's CSV pair and a Monash .tsf file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fpt.errors import FptError
from fpt.m4 import acf, is_seasonal, m4_scores, mase_scale, naive2, seasonal_indices, smape


def test_smape_and_mase_scale_by_hand():
    values = smape(np.array([100.0, 0.0, 50.0]), np.array([110.0, 0.0, 25.0]))
    np.testing.assert_allclose(values, [200 * 10 / 210, 0.0, 200 * 25 / 75])  # 0/0 counts 0
    assert mase_scale(np.array([1.0, 3.0, 2.0, 5.0]), 1) == pytest.approx((2 + 1 + 3) / 3)
    assert mase_scale(np.array([1.0, 3.0, 2.0, 5.0]), 2) == pytest.approx((1 + 2) / 2)
    assert math.isnan(mase_scale(np.array([1.0, 2.0]), 2))


def test_seasonality_test_and_decomposition_by_hand():
    short = np.array([2.0, 4.0] * 4)                   # centred: -1, 1, ...: acf1 = -7/8, acf2 = 6/8
    np.testing.assert_allclose(acf(short, 2), [-0.875, 0.75])
    limit = 1.645 / math.sqrt(8) * math.sqrt(1 + 2 * 0.875 ** 2)  # 0.925 > 0.75: not seasonal
    assert limit > 0.75 and not is_seasonal(short, 2)
    long = np.array([2.0, 4.0] * 10)                   # acf2 = 18/20 = 0.9 > 1.645/sqrt(20) sqrt(1 + 2 (19/20)^2)
    assert is_seasonal(long, 2)
    # R's decompose: the 2x2 centred moving average is 3 inside, the ratios 2/3 and 4/3 per position
    np.testing.assert_allclose(seasonal_indices(long, 2), [2 / 3, 4 / 3] * 10)
    np.testing.assert_allclose(naive2(long, 5, 2), [2.0, 4.0, 2.0, 4.0, 2.0])  # adjusted: 3 throughout
    np.testing.assert_allclose(naive2(short, 3, 2), [4.0, 4.0, 4.0])  # not seasonal: the last value
    assert not is_seasonal(long, 1)                    # yearly: never seasonal
    hourly = np.tile(np.sin(2 * np.pi * np.arange(24) / 24) + 5, 4)  # 96 values: R's acf stops at lag 19
    assert not is_seasonal(hourly, 24) and is_seasonal(np.tile(hourly, 3), 24)


def test_naive2_scores_an_owa_of_one_and_a_perfect_forecast_zero():
    rng = np.random.default_rng(0)
    insamples = [rng.uniform(10, 20, size=n) for n in (30, 41, 25)]
    truths = rng.uniform(10, 20, size=(3, 4))
    benchmark = np.stack([naive2(x, 4, 4) for x in insamples])
    scores = m4_scores(insamples, truths, benchmark, period=4)
    assert scores["owa"] == pytest.approx(1.0) and scores["smape"] == scores["naive2_smape"]
    perfect = m4_scores(insamples, truths, truths, period=4)
    assert perfect["smape"] == perfect["mase"] == perfect["owa"] == 0.0
    # MASE by hand for one series: |y - f| / in-sample mean |x_t - x_{t-4}|, averaged over values
    one = m4_scores(insamples[:1], truths[:1], truths[:1] + 1.0, period=4)
    assert one["mase"] == pytest.approx(1.0 / np.abs(insamples[0][4:] - insamples[0][:-4]).mean())


def write_m4_pair(directory: Path, frequency: str = "Yearly", series: int = 12, horizon: int = 6) -> None:
    """A small copy of M4's layout: quoted CSVs, ids first, training rows of different lengths."""
    rng = np.random.default_rng(1)
    train_rows, test_rows = [], []
    for s in range(series):
        length = 20 + 3 * s
        values = 100 + np.cumsum(rng.uniform(0, 5, size=length + horizon))
        train_rows.append([f"Y{s + 1}", *(f"{v:.3f}" for v in values[:length])])
        test_rows.append([f"Y{s + 1}", *(f"{v:.3f}" for v in values[length:])])
    width = max(len(r) for r in train_rows)

    def write(path: Path, rows: list[list[str]], columns: int) -> None:
        header = ",".join(f'"V{i + 1}"' for i in range(columns))
        lines = [",".join(f'"{v}"' for v in row + [""] * (columns - len(row))) for row in rows]
        path.write_text(header + "\n" + "\n".join(lines) + "\n")

    write(directory / f"{frequency}-train.csv", train_rows, width)
    write(directory / f"{frequency}-test.csv", test_rows, horizon + 1)


def write_tsf(path: Path, series: int = 10, horizon: int = 4, frequency: str = "yearly") -> None:
    rng = np.random.default_rng(2)
    lines = ["# a test file", "@relation test", "@attribute series_name string",
             "@attribute start_timestamp date", f"@frequency {frequency}", f"@horizon {horizon}",
             "@missing false", "@equallength false", "@data"]
    for s in range(series):
        values = 50 + np.cumsum(rng.uniform(-1, 3, size=15 + 2 * s))
        lines.append(f"T{s}:1980-01-01 00-00-00:" + ",".join(f"{v:.4f}" for v in values))
    path.write_text("\n".join(lines) + "\n")


def test_readers_split_m4_and_tsf_as_published(tmp_path):
    from fpt.tasks.shortterm import ShortTerm, ShortTermOptions

    write_m4_pair(tmp_path)
    task = ShortTerm(ShortTermOptions(path=str(tmp_path / "Yearly")), 0)
    assert task.horizon == 6 and task.seq_len == 12 and task.period == 1 and task.history == 1.5
    assert task.split_size("test") == task.split_size("val") == 12
    assert task.protocol()["published"] is True
    batch = next(task.eval_batches("test", 4))
    assert batch.x.shape == (4, 12, 1) and batch.y.shape == (4, 6)
    np.testing.assert_allclose(batch.x[0, :, 0].numpy(), task.insample[0][-12:], rtol=1e-6)  # the series' end
    # a training window ends within the last 1.5 x 6 = 9 values before the validation horizon
    fitting_length = 20 - 6
    cuts = [cut for i, cut in task.windows if i == 0]
    assert min(cuts) == fitting_length - 9 and max(cuts) == fitting_length - 6
    write_tsf(tmp_path / "t.tsf")
    tsf = ShortTerm(ShortTermOptions(path=str(tmp_path / "t.tsf")), 0)
    assert tsf.horizon == 4 and tsf.seq_len == 8 and tsf.protocol()["published"] is False
    assert len(tsf.insample[0]) == 15 - 4  # the last horizon is the test
    short = next(tsf.eval_batches("val", 1))  # 11 - 4 = 7 values of context: one gap before them
    assert np.isnan(short.x[0, 0, 0].item()) and not np.isnan(short.x[0, 1:, 0].numpy()).any()


def test_bad_data_is_named(tmp_path, monkeypatch):
    from fpt.tasks.shortterm import ShortTerm, ShortTermOptions

    with pytest.raises(FptError, match="needs its data"):
        ShortTerm(ShortTermOptions(), 0)
    with pytest.raises(FptError, match="none of m4-yearly"):
        ShortTerm(ShortTermOptions(path=str(tmp_path / "nothing")), 0)
    write_m4_pair(tmp_path)
    with pytest.raises(FptError, match="horizon=3.*leave horizon to it"):  # M4's test fixes it
        ShortTerm(ShortTermOptions(path=str(tmp_path / "Yearly"), horizon=3), 0)
    write_tsf(tmp_path / "t.tsf")
    assert ShortTerm(ShortTermOptions(path=str(tmp_path / "t.tsf"), horizon=3), 0).horizon == 3  # a .tsf: any
    (tmp_path / "gaps.tsf").write_text("@frequency yearly\n@horizon 2\n@data\nA:1,2,?,4,5,6,7\n")
    with pytest.raises(FptError, match="missing values"):
        ShortTerm(ShortTermOptions(path=str(tmp_path / "gaps.tsf")), 0)
    from fpt.tasks import shortterm

    fetched = []
    monkeypatch.setattr(shortterm, "fetch", lambda remote, directory: fetched.append(remote.url) or (
        tmp_path / remote.filename))
    write_m4_pair(tmp_path, "Quarterly", horizon=8)
    task = ShortTerm(ShortTermOptions(path="m4-quarterly"), 0, data_dir=tmp_path)
    assert fetched == ["https://raw.githubusercontent.com/Mcompetitions/M4-methods/master/Dataset/Train/Quarterly-train.csv",
                       "https://raw.githubusercontent.com/Mcompetitions/M4-methods/master/Dataset/Test/Quarterly-test.csv"]
    assert task.period == 4 and task.horizon == 8


def test_training_records_m4_scores_and_repeat_last_is_naive2_on_yearly_data(tmp_path):
    from fpt.run.config import build_config
    from fpt.run.train import train

    write_m4_pair(tmp_path)
    path = str(tmp_path / "Yearly")
    naive = train(build_config({"task": "short-term", "model": "repeat-last", "out": str(tmp_path / "naive"),
                                "progress": False, "task_options": {"path": path}}))
    assert naive["short_term"]["owa"] == pytest.approx(1.0)  # yearly: Naive2 is the last value
    linear = train(build_config({"task": "short-term", "model": "linear", "out": str(tmp_path / "linear"),
                                 "progress": False, "steps": 20, "eval_every": 10, "task_options": {"path": path}}))
    scores = linear["short_term"]
    assert scores["series"] == 12 and scores["naive2_smape"] == pytest.approx(naive["short_term"]["smape"])
    assert linear["test"]["smape"] == pytest.approx(scores["smape"], rel=1e-4)  # the pass and the assessment agree
    saved = json.loads((tmp_path / "linear" / "result.json").read_text())
    assert saved["protocol"]["frequency"] == "yearly" and "owa" in saved["short_term"]
    import fpt
    from fpt.tasks.shortterm import ShortTerm, ShortTermOptions

    insample = ShortTerm(ShortTermOptions(path=path), 0).insample
    windows = np.stack([series[-12:] for series in insample])[:, :, None]   # (12, 12, 1): each series' end
    forecasts = fpt.predict(str(tmp_path / "linear"), windows)
    assert forecasts.shape == (12, 6, 1) and np.isfinite(forecasts).all()


def test_m1_yearly_ships_in_aeons_wheel():
    pytest.importorskip("aeon")
    from fpt.tasks.shortterm import ShortTerm, ShortTermOptions

    task = ShortTerm(ShortTermOptions(path="m1-yearly"), 0)
    assert task.split_size("test") == 181 and task.horizon == 6
