"""Forecasting baselines that replace the whole model: `--model linear` and `--model repeat-last`.

Both are FPTModels with no backbone and no input layer, so the runner, checkpoints and
`fpt predict` treat them like any run. The window (series_len steps of one channel) is one
token and the head is the whole model:

    linear       instance normalisation -> Linear(seq_len, horizon) -> de-normalisation:
                 one linear map per window, shared by the channels (NLinear/DLinear style,
                 the linear model Tan et al. and the closed-form numbers in PAPER.md use)
    repeat-last  the window's last value, repeated over the horizon; nothing trains
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import torch
from torch import Tensor, nn

from fpt.backbones import BackboneInfo
from fpt.errors import FptError
from fpt.tasks.base import TaskSpec


class NoBackbone(nn.Module):
    """Hands the tokens on unchanged (an HF-like backbone with no parameters)."""

    def __init__(self, width: int):
        super().__init__()
        self.hidden_size = width

    def get_input_embeddings(self) -> None:
        return None

    def forward(self, inputs_embeds: Tensor, attention_mask: Tensor | None = None, **_: object) -> SimpleNamespace:
        return SimpleNamespace(last_hidden_state=inputs_embeds)


def series_baseline(name: str, spec: TaskSpec) -> tuple[TaskSpec, NoBackbone, BackboneInfo]:
    """The spec the baseline reads (the window as one token), its backbone and what identifies it."""
    if spec.objective != "forecast":
        raise FptError(f"--model {name} is a forecasting baseline (task forecast); task {spec.name} is "
                       f"{spec.objective}: use a backbone (see `fpt models`)")
    width = spec.series_len * spec.channels
    spec = dataclasses.replace(spec, seq_len=1, token_dim=width, patch_len=spec.series_len,
                               patch_stride=spec.series_len, patch_pad=False,
                               instance_norm=spec.instance_norm and name == "linear")
    info = BackboneInfo(name=name, source="fpt.baselines", init="random", model_type=name, hidden_size=width,
                        max_positions=1, causal=False, family="baseline", position="none", layers=0,
                        attention_impl="", input_size=width)
    return spec, NoBackbone(width), info


@torch.no_grad()
def repeat_last(head: nn.Linear) -> None:
    """Make `head` (window -> horizon) copy the window's last value to every step."""
    head.weight.zero_()
    head.weight[:, -1] = 1
    head.bias.zero_()
