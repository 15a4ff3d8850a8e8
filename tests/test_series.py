"""Series models: patching as One Fits All does it, instance normalisation, the forecasting
baselines, and the FPT forecaster built around a backbone."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from fpt.model import assemble_model
from fpt.errors import FptError
from fpt.options import ModelOptions
from fpt.series import SeriesInput, denormalise, patch_count
from fpt.tasks.base import TaskSpec

SPEC = TaskSpec(name="fc", seq_len=patch_count(48, 8, 4), objective="forecast", n_outputs=12, token_dim=8,
                series_len=48, channels=1, patch_len=8, patch_stride=4, instance_norm=True)


def test_patches_match_replication_pad_and_unfold():
    x = torch.randn(3, 48, 2)                                              # (B, T, C)
    tokens, mask = SeriesInput(48, 8, 4, instance_norm=False).patches(x, torch.ones(3, 48, dtype=torch.bool))
    reference = nn.ReplicationPad1d((0, 4))(x.transpose(1, 2)).unfold(-1, 8, 4)  # (B, C, P, 8), One Fits All's
    assert tokens.shape == (3, patch_count(48, 8, 4), 16) and mask.all()
    assert torch.equal(tokens, reference.permute(0, 2, 3, 1).flatten(2))   # (B, P, 8 * C), step-major


def test_instance_norm_ignores_padding_and_inverts():
    x = torch.randn(2, 20, 1) * 5 + 3
    mask = torch.arange(20)[None, :] < torch.tensor([[20], [12]])
    z, scale = SeriesInput(20, 4, 2, instance_norm=True).normalise(x, mask)
    assert torch.allclose(scale.mean[1, 0], x[1, :12].mean(0), atol=1e-5)  # over the real steps only
    assert (z[1, 12:] == 0).all() and z[0].mean().abs() < 1e-5
    assert torch.allclose(denormalise(z[:, :, 0], scale)[0], x[0, :, 0], atol=1e-4)


def test_short_batches_are_padded_back_to_the_series_length():
    series = SeriesInput(30, 8, 4, instance_norm=False)
    tokens, mask = series.patches(torch.randn(2, 10, 1), torch.ones(2, 10, dtype=torch.bool))
    assert tokens.shape[1] == patch_count(30, 8, 4) and mask[:, :3].all() and not mask[:, 3:].any()


def test_linear_baseline_is_one_linear_map():
    model = assemble_model(SPEC, ModelOptions(model="linear"))
    assert model.options.init == "random" and model.options.train == "output"
    assert model.counts["total"]["trainable"] == 48 * 12 + 12 == model.counts["total"]["total"]
    x = torch.randn(5, 48, 1)
    mean, std = x.mean(1), torch.sqrt(x.var(1, unbiased=False) + 1e-5)     # (B, 1)
    expected = model.head((x[:, :, 0] - mean) / std) * std + mean
    assert torch.allclose(model(x), expected, atol=1e-5)


def test_repeat_last_trains_nothing_and_repeats():
    model = assemble_model(SPEC, ModelOptions(model="repeat-last"))
    assert model.counts["total"]["trainable"] == 0
    x = torch.randn(4, 48, 1)
    assert torch.allclose(model(x), x[:, -1, :].expand(4, 12), atol=1e-6)


def test_series_baselines_refuse_other_tasks():
    spec = TaskSpec(name="c", seq_len=4, objective="classification", n_outputs=2, token_dim=3)
    with pytest.raises(FptError, match="series baseline"):
        assemble_model(spec, ModelOptions(model="linear"))
    with pytest.raises(FptError, match="--train none"):
        ModelOptions(model="minilm", train="none").validate()


def test_fpt_forecaster_flattens_every_patch(tiny_bert):
    model = assemble_model(SPEC, ModelOptions(model=str(tiny_bert), precision="fp32"))
    assert model.readout == "flatten"
    assert model.head.in_features == 32 * SPEC.seq_len                     # width x patches
    x = torch.randn(3, 48, 1) * 4 + 10
    out = model(x)
    assert out.shape == (3, 12)
    # instance normalisation: shifting and scaling a window shifts and scales its forecast
    model.eval()
    assert torch.allclose(model(x * 2 + 5), model(x) * 2 + 5, atol=1e-3)


def test_patchtst_is_trained_from_scratch():
    model = assemble_model(SPEC, ModelOptions(model="patchtst"))
    assert model.options.init == "random" and model.options.train == "all"
    assert model.info.hidden_size == 128 and model.info.layers == 3
    assert model.counts["total"]["trainable"] == model.counts["total"]["total"] - model.counts.get(
        "unused", {}).get("total", 0)
    with pytest.raises(FptError, match="no pretrained weights"):
        assemble_model(SPEC, ModelOptions(model="patchtst", init="stats"))


def test_series_classification_with_variable_lengths(tiny_bert):
    spec = dataclasses.replace(SPEC, objective="classification", n_outputs=3, channels=2, token_dim=16,
                               instance_norm=False)
    model = assemble_model(spec, ModelOptions(model=str(tiny_bert), precision="fp32")).eval()
    x = torch.randn(2, 48, 2)
    mask = torch.arange(48)[None, :] < torch.tensor([[48], [20]])
    out = model(x, mask)
    assert out.shape == (2, 3)
    # what lies past a series' length changes nothing
    noisy = x.clone()
    noisy[1, 20:] = 100.0
    assert torch.allclose(model(noisy, mask), out, atol=1e-5)
