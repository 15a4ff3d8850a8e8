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

from torch import Tensor, nn


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
