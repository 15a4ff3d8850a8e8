"""Imputation: One Fits All's protocol (masks, masked metrics, normalisation over observed points),
the gap-filling baselines, runs recorded at every mask ratio, and fpt predict filling a CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fpt.baselines import GapFill
from fpt.errors import FptError
from fpt.objectives import objective
from fpt.run.config import build_config
from fpt.run.predict import predict, predict_cli
from fpt.run.train import train
from fpt.series import SeriesInput
from fpt.tasks import build_task
from fpt.tasks.forecast import split_rows
from fpt.tasks.impute import RATIOS

OPTIONS = {"seq_len": 24, "val_stride": 1}
QUICK = {"steps": 12, "eval_every": 6, "batch_size": 16, "progress": False, "precision": "fp32"}


@pytest.fixture(scope="module")
def series_csv(tmp_path_factory, write_series) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("data") / "series.csv"
    return path, write_series(path, 300)


def test_windows_hold_every_channel_with_hidden_points_as_nan(series_csv):
    path, values = series_csv
    task = build_task("impute", {"path": str(path), **OPTIONS, "mask_ratio": 0.25}, 0)
    spec = task.spec
    assert (spec.objective, spec.series_len, spec.channels, spec.seq_len, spec.readout_tokens) == ("imputation", 24, 3, 24, 24)
    assert spec.n_outputs == spec.token_dim == 3 and not spec.patch_pad
    bounds = split_rows("0.7,0.1,0.2", 300, 24)
    assert task.split_size("test") == bounds["test"][1] - bounds["test"][0] - 24 + 1  # every window, all channels
    batch = next(task.eval_batches("test", 8))
    truth, hidden = batch.y[..., 0], batch.y[..., 1].bool()               # (8, 24, 3) each
    assert batch.x.shape == (8, 24, 3) and torch.isnan(batch.x).eq(hidden).all()
    z = (values - values[:210].mean(0)) / values[:210].std(0)
    a = bounds["test"][0]
    assert np.allclose(truth[1].numpy(), z[a + 1:a + 25], atol=1e-5)
    assert torch.equal(batch.x[~hidden], truth[~hidden])
    share = float(torch.cat([b.y[..., 1] for b in task.eval_batches("test", 64)]).mean())
    assert 0.2 < share < 0.3


def test_masks_are_fixed_nested_across_ratios_and_seeded_in_training(series_csv):
    path, _ = series_csv
    task = build_task("impute", {"path": str(path), **OPTIONS}, 0)
    again = build_task("impute", {"path": str(path), **OPTIONS}, 0)
    hidden = {name: torch.cat([b.y[..., 1] for b in task.eval_batches(name, 32)]).bool()
              for name in task.test_variants()}
    assert list(hidden) == [f"test@{r:g}" for r in RATIOS]
    assert [task.is_test_itself(name) for name in hidden] == [r == task.options.mask_ratio for r in RATIOS]
    small, large = hidden["test@0.125"], hidden["test@0.5"]
    assert torch.equal(small & large, small) and large.sum() > 3 * small.sum()  # nested: the same draws
    assert torch.equal(torch.cat([b.y[..., 1] for b in again.eval_batches("test", 32)]).bool(), small)
    assert torch.equal(task.train_batch(3, 16, 7).y, again.train_batch(3, 16, 7).y)  # a pure function of the step
    assert not torch.equal(task.train_batch(3, 16, 7).y[..., 1], task.train_batch(4, 16, 7).y[..., 1])


def test_bad_options_are_named(series_csv):
    path, _ = series_csv
    with pytest.raises(FptError, match="mask_ratio must be in"):
        build_task("impute", {"path": str(path), "mask_ratio": 1.0}, 0)
    with pytest.raises(FptError, match="patch_len 5 must divide seq_len 24"):
        build_task("impute", {"path": str(path), "seq_len": 24, "patch_len": 5}, 0)
    with pytest.raises(FptError, match="task impute needs its data"):
        build_task("impute", {}, 0)


def test_the_loss_and_metrics_count_hidden_points_only():
    kind = objective("imputation")
    truth = torch.zeros(2, 4, 3)
    hidden = torch.zeros(2, 4, 3)
    hidden[0, 1, 2] = hidden[1, 3, 0] = 1
    y = torch.stack([truth, hidden], dim=-1)
    outputs = torch.full((2, 4, 3), 5.0)                                   # wrong everywhere ...
    outputs[0, 1, 2], outputs[1, 3, 0] = 1.0, -3.0                         # ... and on the hidden points by 1, 3
    assert float(kind.loss(outputs, y)) == pytest.approx((1 + 9) / 2)
    from fpt.metrics import Metrics
    m = Metrics(kind)
    m.update(outputs, y)
    got = m.compute()
    assert (got["mse"], got["mae"], got["score"]) == (pytest.approx(5.0), pytest.approx(2.0), pytest.approx(-5.0))


def test_normalisation_uses_observed_points_only():
    x = torch.tensor([[[1.0], [float("nan")], [3.0], [float("nan")]]])     # (1, 4, 1)
    normalised, scale = SeriesInput(4, 1, 1, instance_norm=True, pad=False).normalise(x, torch.ones(1, 4, dtype=torch.bool))
    assert float(scale.mean) == 2.0 and float(scale.std) == pytest.approx(1.0, abs=1e-4)
    assert normalised[0, :, 0].tolist() == pytest.approx([-1.0, 0.0, 1.0, 0.0], abs=1e-4)  # gaps at the mean


def test_gap_fillers():
    nan = float("nan")
    x = torch.tensor([[nan, 2.0, nan, nan, 8.0, nan]]).T[None]             # (1, 6, 1)
    out = {rule: GapFill(6, 1, rule)(x.reshape(1, 1, 6)).last_hidden_state.reshape(6).tolist()
           for rule in GapFill.RULES}
    assert out["interpolate"] == [2.0, 2.0, 4.0, 6.0, 8.0, 8.0]
    assert out["locf"] == [2.0, 2.0, 2.0, 2.0, 8.0, 8.0]
    assert out["channel-mean"] == [5.0, 2.0, 5.0, 5.0, 8.0, 5.0]
    empty = GapFill(3, 1, "interpolate")(torch.full((1, 1, 3), nan)).last_hidden_state
    assert empty.tolist() == [[[0.0, 0.0, 0.0]]]  # nothing observed: the training mean


def test_runs_record_every_ratio_and_baselines_run(tmp_path, series_csv, tiny_bert):
    path, _ = series_csv
    results = {}
    for name, flags in (("fpt", {"model": str(tiny_bert)}), ("interpolate", {"model": "interpolate"}),
                        ("linear", {"model": "linear"}), ("no-lm", {"model": str(tiny_bert), "method": "no-lm"})):
        out = tmp_path / name
        results[name] = train(build_config({**QUICK, "task": "impute", "task_options": {"path": str(path), **OPTIONS},
                                            "out": str(out), **flags}))
    for name, result in results.items():
        assert set(result["test_variants"]) == {f"test@{r:g}" for r in RATIOS}, name
        assert result["test_variants"]["test@0.125"] == result["test"]  # the test itself, not scored twice
        assert result["protocol"]["mask_ratio"] == 0.125 and not result["protocol"]["published"]
    # a smooth sinusoid: interpolation is close; at 50% hidden it is worse than at 12.5%
    assert results["interpolate"]["test"]["mse"] < 0.2
    by_ratio = results["interpolate"]["test_variants"]
    assert by_ratio["test@0.5"]["mse"] > by_ratio["test@0.125"]["mse"]
    assert results["interpolate"]["trainable_params"] == 0


def test_predict_fills_the_gaps_of_a_csv_and_keeps_the_rest(tmp_path, series_csv):
    path, values = series_csv
    out = tmp_path / "run"
    train(build_config({**QUICK, "task": "impute", "task_options": {"path": str(path), **OPTIONS},
                        "out": str(out), "model": "interpolate"}))
    rows = list(csv.reader(open(path)))
    gappy = [rows[0]] + [list(r) for r in rows[1:51]]                     # 50 rows: two windows of 24, one overlapping
    holes = [(3, 1), (10, 2), (11, 2), (49, 3), (27, 1)]
    for r, c in holes:
        gappy[r + 1][c] = ""
    src = tmp_path / "gappy.csv"
    with open(src, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(gappy)
    assert predict_cli(str(out), str(src), str(tmp_path / "filled.csv")) == 0
    filled = list(csv.reader(open(tmp_path / "filled.csv")))
    assert len(filled) == 51 and filled[0] == rows[0]
    for r in range(50):
        for c in range(1, 4):
            if (r, c) not in holes:
                assert filled[r + 1][c] == gappy[r + 1][c]                 # untouched, as written
    # interpolation between the neighbours, in the data's units
    assert float(filled[4][1]) == pytest.approx((values[2, 0] + values[4, 0]) / 2, abs=1e-3)
    assert float(filled[50][3]) == pytest.approx(values[48, 2], abs=1e-3)  # the last row: carried from before
    # the same through Python, on windows with NaN gaps
    window = values[:24].copy()
    window[5, 1] = np.nan
    got = predict(out, window[None])
    assert got.shape == (1, 24, 3) and got[0, 5, 1] == pytest.approx((values[4, 1] + values[6, 1]) / 2, abs=1e-3)
    with pytest.raises(FptError, match="use --out FILE.csv"):
        predict_cli(str(out), str(src), str(tmp_path / "filled.npy"))
    with pytest.raises(FptError, match=r"windows of shape \(N, 24, 3\)"):
        predict(out, values[None, :10])
    short = tmp_path / "short.csv"
    short.write_text("\n".join(",".join(r) for r in gappy[:10]) + "\n")
    with pytest.raises(FptError, match="needs 24 at least"):
        predict_cli(str(out), str(short), str(tmp_path / "x.csv"))
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "filled.npy").exists()
    assert json.loads((out / "result.json").read_text())["model"] == "interpolate"


def test_dlinear_rebuilds_each_channel_from_its_own_trend_and_remainder(tmp_path, series_csv):
    """Time-Series-Library's DLinear.imputation (individual=False): Linear(T, T) from each channel's
    remainder and from its trend, summed, the same maps for every channel; no channel sees another."""
    from fpt.baselines import ChannelSharedMap
    from fpt.model import assemble_model
    from fpt.options import ModelOptions

    path, _ = series_csv
    task = build_task("impute", {"path": str(path), **OPTIONS}, 0)
    model = assemble_model(task.spec, ModelOptions(model="dlinear")).eval()
    assert isinstance(model.head, ChannelSharedMap) and model.head.linear.weight.shape == (24, 48)
    torch.manual_seed(0)
    x = torch.randn(2, 24, 3)                                              # (B, T, C), nothing hidden
    front, end = x[:, :1].repeat(1, 12, 1), x[:, -1:].repeat(1, 12, 1)
    trend = torch.nn.AvgPool1d(25, stride=1)(torch.cat([front, x, end], 1).permute(0, 2, 1))  # (B, C, T)
    remainder = x.permute(0, 2, 1) - trend
    w, b = model.head.linear.weight, model.head.linear.bias
    expected = remainder @ w[:, :24].T + trend @ w[:, 24:].T + b            # (B, C, T): one map for every channel
    with torch.no_grad():
        got = model(x)                                                     # (B, T, C)
        assert torch.allclose(got, expected.permute(0, 2, 1), atol=1e-5)
        moved = x.clone()
        moved[:, :, 2] += 1.0                                              # another channel changes ...
        assert torch.allclose(model(moved)[..., :2], got[..., :2])         # ... and the first two do not
    result = train(build_config({**QUICK, "task": "impute", "task_options": {"path": str(path), **OPTIONS},
                                 "out": str(tmp_path / "dlinear"), "model": "dlinear"}))
    assert result["trainable_params"] == 2 * 24 * 24 + 24
    assert " cores, " in json.loads((tmp_path / "dlinear" / "result.json").read_text())["machine"]  # the host it trained on
    window = next(task.eval_batches("test", 1)).x.numpy()                 # (1, 24, 3), NaN at the hidden points
    assert predict(tmp_path / "dlinear", window).shape == (1, 24, 3)


def test_fitted_arms_refuse_tasks_that_rebuild_windows(series_csv):
    from fpt.model import assemble_model
    from fpt.options import ModelOptions

    path, _ = series_csv
    spec = build_task("impute", {"path": str(path), **OPTIONS}, 0).spec
    with pytest.raises(FptError, match="--method trees fits one estimator per output"):
        assemble_model(spec, ModelOptions(model="minilm", method="trees"))


def test_a_long_attention_mask_still_normalises():
    x = torch.randn(2, 8, 1)
    ones = torch.ones(2, 8, dtype=torch.long)
    series = SeriesInput(8, 4, 4, instance_norm=True)
    assert torch.allclose(series.normalise(x, ones)[0], series.normalise(x, ones.bool())[0])


def test_a_gap_in_the_first_cell_is_not_a_date_column(tmp_path):
    from fpt.tasks.forecast import read_csv

    (tmp_path / "g.csv").write_text("a,b\n,2\n3,4\n")
    names, values, _ = read_csv(tmp_path / "g.csv", "all", gaps=True)
    assert names == ["a", "b"] and np.isnan(values[0, 0]) and values[1].tolist() == [3.0, 4.0]
