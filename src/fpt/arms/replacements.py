"""Tan et al.'s ablations: the backbone replaced by nothing (no-lm), one randomly initialised
attention layer (attention-1) or one transformer block (block-1), of the backbone's width;
and their PAttn baseline (pattn): one attention layer without any position information, so
that on a series it is patching, a linear patch embedding, one attention layer and the
flatten head. Everything they have trains; the input layer and head are fpt's own, as in every arm."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from fpt.arms.base import ArmHooks, NoBackbone
from fpt.backbones import BackboneInfo
from fpt.options import ModelOptions
from fpt.tasks.base import TaskSpec

if TYPE_CHECKING:
    from fpt.model import FPTModel


class Replacement(nn.Module):
    """One randomly initialised attention layer or transformer block in place of the backbone,
    with a learned position table (none for PAttn; pre-LN, residual); an HF-like backbone for FPTModel."""

    def __init__(self, width: int, heads: int, positions: int, block: bool, dropout: float = 0.1):
        super().__init__()
        self.hidden_size = width
        self.position = nn.Embedding(positions, width) if positions else None  # 0: no positions (PAttn)
        if self.position is not None:
            nn.init.normal_(self.position.weight, std=0.02)
        self.norm_attention = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.block = block
        if block:
            self.norm_mlp = nn.LayerNorm(width)
            self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Dropout(dropout),
                                     nn.Linear(4 * width, width))

    def get_input_embeddings(self) -> None:
        return None

    def parameter_groups(self) -> dict[str, str]:
        def group(name: str) -> str:
            if name.startswith("position"):
                return "position"
            if name.startswith("norm_"):
                return "layernorm"
            return "attention" if name.startswith("attention") else "feedforward"
        return {name: group(name) for name, _ in self.named_parameters()}

    def forward(self, inputs_embeds: Tensor, attention_mask: Tensor | None = None, **_: object) -> SimpleNamespace:
        h = inputs_embeds                                                   # (B, L, H)
        if self.position is not None:
            h = h + self.position.weight[:h.shape[1]]
        padding = None if attention_mask is None else attention_mask == 0   # (B, L), True: ignore
        q = self.norm_attention(h)
        h = h + self.dropout(self.attention(q, q, q, key_padding_mask=padding, need_weights=False)[0])
        if self.block:
            h = h + self.dropout(self.mlp(self.norm_mlp(h)))
        return SimpleNamespace(last_hidden_state=h)


class Replace(ArmHooks):
    """The backbone's width, not its weights: `layers` random layers (0: nothing) in its place."""

    layers = 0        # 0: nothing (no-lm); 1: one attention layer, or one block with `block`
    block = False
    positions = True  # a learned position table (PAttn has none)

    def replace_backbone(self, backbone: nn.Module, info: BackboneInfo, spec: TaskSpec,
                         options: ModelOptions) -> tuple[nn.Module, BackboneInfo]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(options.seed)
            positions = max(spec.seq_len, 1) if self.positions else 0
            replacement: nn.Module = (Replacement(info.hidden_size, attention_heads(backbone), positions,
                                                  block=self.block) if self.layers else NoBackbone(info.hidden_size))
        info = dataclasses.replace(info, model_type=options.method, causal=False, layers=self.layers,
                                   position="learned" if self.layers and self.positions else "none", attention_impl="",
                                   input_size=info.hidden_size, max_positions=max(spec.seq_len, 1),
                                   description=f"{options.method} in place of {info.name}, randomly initialised")
        return replacement, info


class NoLm(Replace):
    layers = 0

    def finish(self, model: "FPTModel", options: ModelOptions) -> None:
        """With nothing to mix the tokens, reading out one token would see one token of the input
        (a table's last column): under --readout auto the head reads every token (flatten), as Tan
        et al.'s w/o-LLM head does on series. Per-token outputs keep their own tokens (last-k)."""
        spec = model.spec
        if options.readout != "auto" or spec.readout_tokens > 1 or model.readout == "flatten":
            return
        model.readout = "flatten"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(options.seed)
            model.head = nn.Linear(model.info.hidden_size * spec.seq_len, spec.n_outputs)


class AttentionOne(Replace):
    layers = 1


class BlockOne(Replace):
    layers, block = 1, True


class PAttn(Replace):
    layers, positions = 1, False


def attention_heads(backbone: nn.Module) -> int:
    config = getattr(backbone, "config", None)
    for key in ("num_attention_heads", "n_head", "num_heads"):
        if isinstance(getattr(config, key, None), int):
            return getattr(config, key)
    return 1
