"""Shared fixtures: tiny GPT-2 and BERT backbones saved to disk, as a user's local models would be."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    """A 2-layer, width-32 GPT-2 with random weights, saved with save_pretrained."""
    import torch
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "tiny-gpt2"
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=100,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    GPT2Model(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, width-32 BERT with random weights, saved with save_pretrained."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "tiny-bert"
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=64, vocab_size=100,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertModel(config).save_pretrained(path)
    return path


def _write_series(path: Path, rows: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A CSV of `rows` hourly steps: a date column and `channels` noisy sinusoids; returns the values."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)[:, None]
    values = np.sin(2 * np.pi * t / 24 + np.arange(channels)) * (1 + np.arange(channels)) + \
        0.1 * rng.standard_normal((rows, channels)) + np.arange(channels) * 10
    lines = ["date," + ",".join(f"c{j}" for j in range(channels))]
    for i in range(rows):
        lines.append(f"2016-07-01 {i:05d}," + ",".join(f"{v:.6f}" for v in values[i]))
    path.write_text("\n".join(lines) + "\n")
    return np.array([[float(f"{v:.6f}") for v in row] for row in values])


@pytest.fixture(scope="session")
def write_series():
    """The writer of a small forecasting CSV (a fixture: test modules cannot import one another in CI)."""
    return _write_series
