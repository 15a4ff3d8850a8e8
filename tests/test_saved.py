"""Saved models from before the registries redesign (fpt 0.1.0 at commit df57c84) still load.

tests/fixtures/saved-0.1.0/ was written by that code: a tiny random GPT-2 (config.json only:
its weights are drawn from --init random, seed 0), and two models saved with save_pretrained on
it, the FPT recipe and LoRA, with their outputs on fixed inputs in expected.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import fpt

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "saved-0.1.0"


@pytest.mark.parametrize("arm", ["fpt", "lora"])
def test_a_model_saved_before_the_redesign_loads_and_predicts_the_same(arm, monkeypatch):
    monkeypatch.chdir(FIXTURE)  # the models name their backbone as the relative path tiny-gpt2
    expected = json.loads((FIXTURE / "expected.json").read_text())
    model = fpt.FPTModel.from_pretrained(f"model-{arm}")
    assert model.options.method == arm
    with torch.no_grad():
        outputs = model(torch.tensor(expected["x"]))
    assert torch.allclose(outputs, torch.tensor(expected["outputs"][arm]), atol=1e-5)
