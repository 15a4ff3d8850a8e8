"""Metrics match their textbook definitions."""

from __future__ import annotations

import pytest
import torch

from fpt.metrics import Metrics
from fpt.objectives import objective


def test_r2_is_per_target_then_averaged():
    y = torch.tensor([[1.0, 100.0], [2.0, 200.0], [3.0, 300.0], [4.0, 400.0]], dtype=torch.float64)
    pred = y.clone()
    pred[:, 0] = 2.5          # target 0 predicted by its mean: R^2 = 0
    pred[:, 1] += 10.0        # target 1 off by 10 everywhere: R^2 = 1 - 100 / 12500
    m = Metrics(objective("regression"))
    m.update(pred[:2].float(), y[:2].float())  # in two batches, like an evaluation pass
    m.update(pred[2:].float(), y[2:].float())
    r = m.compute()
    assert r["r2"] == pytest.approx((0.0 + (1 - 100 / 12500)) / 2, rel=1e-6)
    assert r["rmse"] == pytest.approx(((1.25 + 100) / 2) ** 0.5, rel=1e-6)


def test_bits_accuracy_and_sequence_accuracy():
    y = torch.tensor([[[1.0], [0.0]], [[1.0], [1.0]]])          # (B=2, k=2, n=1)
    logits = torch.tensor([[[3.0], [-1.0]], [[2.0], [-2.0]]])   # second example has one wrong bit
    m = Metrics(objective("bits"))
    m.update(logits, y)
    r = m.compute()
    assert r["accuracy"] == 0.75 and r["sequence_accuracy"] == 0.5


def r2_of_batches(y: torch.Tensor, pred: torch.Tensor, cuts: list[int]) -> float:
    m = Metrics(objective("regression"))
    for a, b in zip([0, *cuts], [*cuts, len(y)]):
        m.update(pred[a:b], y[a:b])
    return m.compute()["r2"]


@pytest.mark.parametrize("case", range(40))
def test_r2_matches_sklearn_including_constant_targets(case):
    """A constant target once gave variance of rounding noise and R^2 near -1e14; now it scores as
    sklearn's r2_score does (force_finite): 1 if predicted exactly, else 0."""
    sklearn = pytest.importorskip("sklearn.metrics")
    gen = torch.Generator().manual_seed(case)
    n, k = int(torch.randint(3, 40, (1,), generator=gen)), 3
    y = torch.randn(n, k, generator=gen) * 10 ** float(torch.randint(-3, 4, (1,), generator=gen))
    y[:, 0] = float(torch.randn(1, generator=gen)) * 1e3 + 0.1  # constant, not exactly representable
    pred = y + 0.1 * torch.randn(n, k, generator=gen)
    if case % 2:
        pred[:, 0] = y[:, 0]  # the constant target predicted exactly
    cuts = sorted(set(torch.randint(1, n, (3,), generator=gen).tolist()))
    expected = sklearn.r2_score(y.double().numpy(), pred.double().numpy(), multioutput="uniform_average")
    assert r2_of_batches(y, pred, cuts) == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_shards_merge_into_the_metrics_of_the_whole_pass():
    gen = torch.Generator().manual_seed(0)
    y, pred = torch.randn(50, 2, generator=gen) + 1e4, torch.randn(50, 2, generator=gen) + 1e4
    whole, parts = Metrics(objective("regression")), [Metrics(objective("regression")) for _ in range(3)]
    whole.update(pred, y)
    for part, index in zip(parts, torch.arange(50).chunk(3)):
        part.update(pred[index], y[index])
    merged = Metrics(objective("regression"))
    for part in parts:  # as the runner does across processes: through state vectors
        merged.absorb(Metrics.from_state(objective("regression"), part.state(2)))
    for key, value in whole.compute().items():
        assert merged.compute()[key] == pytest.approx(value, rel=1e-6)  # loss: float32 per batch


def test_a_regression_pass_over_no_examples_is_nan_not_an_error():
    assert Metrics(objective("regression")).compute()["r2"] != Metrics(objective("regression")).compute()["r2"]  # NaN
