"""Metrics match their textbook definitions."""

from __future__ import annotations

import pytest
import torch

from fpt.metrics import Metrics


def test_r2_is_per_target_then_averaged():
    y = torch.tensor([[1.0, 100.0], [2.0, 200.0], [3.0, 300.0], [4.0, 400.0]], dtype=torch.float64)
    pred = y.clone()
    pred[:, 0] = 2.5          # target 0 predicted by its mean: R^2 = 0
    pred[:, 1] += 10.0        # target 1 off by 10 everywhere: R^2 = 1 - 100 / 12500
    m = Metrics("regression")
    m.update(pred[:2].float(), y[:2].float())  # in two batches, like an evaluation pass
    m.update(pred[2:].float(), y[2:].float())
    r = m.compute()
    assert r["r2"] == pytest.approx((0.0 + (1 - 100 / 12500)) / 2, rel=1e-6)
    assert r["rmse"] == pytest.approx(((1.25 + 100) / 2) ** 0.5, rel=1e-6)


def test_bits_accuracy_and_sequence_accuracy():
    y = torch.tensor([[[1.0], [0.0]], [[1.0], [1.0]]])          # (B=2, k=2, n=1)
    logits = torch.tensor([[[3.0], [-1.0]], [[2.0], [-2.0]]])   # second example has one wrong bit
    m = Metrics("bits")
    m.update(logits, y)
    r = m.compute()
    assert r["accuracy"] == 0.75 and r["sequence_accuracy"] == 0.5
