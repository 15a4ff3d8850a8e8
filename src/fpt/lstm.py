"""The paper's LSTM baseline as a backbone: 3 LSTM layers, each followed by a LayerNorm.

It takes the same `inputs_embeds` and `attention_mask` as a Hugging Face model and
returns an object with `last_hidden_state`, so input layer, readout and head are
shared with FPT. Each layer is one fused `nn.LSTM` (cuDNN on GPU, no Python loop over
time). It is causal by construction, so right padding never reaches a real token's
state, and the readout never reads padding.

Groups: the recurrent weights mix information across time, the job attention does in
a transformer, so they form the `attention` group; the LayerNorms form `layernorm`.
The paper trains the LSTM fully (`--train all`).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import Tensor, nn

from fpt.backbones import BackboneInfo
from fpt.errors import FptError


class LSTMBackbone(nn.Module):
    def __init__(self, hidden_size: int = 768, num_layers: int = 3, dropout: float = 0.1):
        super().__init__()
        self.hidden_size = hidden_size
        self.layers = nn.ModuleList(nn.LSTM(hidden_size, hidden_size, batch_first=True) for _ in range(num_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_size) for _ in range(num_layers))
        self.dropout = nn.Dropout(dropout)

    def get_input_embeddings(self) -> None:
        return None  # no word embeddings: fpt's Embedding input layer starts at std 0.02

    def forward(self, inputs_embeds: Tensor, attention_mask: Tensor | None = None, **_: object) -> SimpleNamespace:
        h = inputs_embeds                                     # (B, L, H)
        for lstm, norm in zip(self.layers, self.norms):
            h = norm(self.dropout(lstm(h)[0]))                # (B, L, H)
        return SimpleNamespace(last_hidden_state=h)


def load_lstm(name: str, init: str, attention: str, seed: int, layers: int) -> tuple[nn.Module, BackboneInfo]:
    """`--model lstm` (width 768) or `lstm-N` (width N), randomly initialised from `seed`."""
    if init == "stats":
        raise FptError("--init stats needs pretrained weights to take statistics from; the LSTM has none")
    if layers:
        raise FptError("--layers applies to transformer backbones; the LSTM baseline has its 3 layers")
    if attention == "bidirectional":
        raise FptError("--attention bidirectional: the LSTM baseline is causal by construction")
    width = name.partition("-")[2] or "768"
    if not width.isdigit() or int(width) <= 0:
        raise FptError(f"--model {name}: write lstm or lstm-N with N the hidden width, e.g. lstm-256")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LSTMBackbone(hidden_size=int(width))
    info = BackboneInfo(name=name, source="fpt.lstm", init="random", model_type="lstm",
                        hidden_size=int(width), max_positions=1 << 30, causal=True, family="LSTM",
                        position="none", layers=len(model.layers), attention_impl="", input_size=int(width))
    return model, info
