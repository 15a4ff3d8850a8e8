"""Parameter groups: the one place where fpt decides what is frozen.

Every backbone parameter lands in exactly one group, decided by the role of the
module that owns it, or is explicitly `unused` (word embeddings: fpt feeds
`inputs_embeds`). A parameter that no rule claims is an error, so a new
architecture can never be half-frozen by accident.

    layernorm    every normalisation layer (nn.LayerNorm, *LayerNorm, *RMSNorm)
    position     learned position (and BERT token-type) embeddings, added to every input
    attention    everything inside a module whose class ends in "Attention" (or an LSTM)
    feedforward  everything inside a module whose class ends in MLP/Intermediate/Output/FeedForward
    input, output  fpt's own input layer and head (see model.py)
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

from torch import nn

from fpt.options import GROUPS
from fpt.errors import FptError

UNUSED = "unused"
WORD_EMBEDDING = re.compile(r"(^|\.)(wte|word_embeddings|embed_tokens|shared)$")
POSITION_EMBEDDING = re.compile(r"(^|\.)(wpe|position_embeddings|token_type_embeddings|embed_positions)$")
NORM_CLASS = re.compile(r"(LayerNorm|RMSNorm|LayerNorm2d)$")
# Roles of whole sub-blocks, matched on the outermost module that has one.
BLOCK_ROLES = (
    ("attention", re.compile(r"(Attention|LSTM)$")),  # what mixes information across positions
    ("feedforward", re.compile(r"(MLP|Intermediate|Output|FeedForward|FFN|LayerFF)$")),
)


def backbone_groups(backbone: nn.Module) -> dict[str, str]:
    """Map each backbone parameter name to its group (or `unused`)."""
    modules = dict(backbone.named_modules())
    groups: dict[str, str] = {}
    for name, _ in backbone.named_parameters():
        module_path = name.rsplit(".", 1)[0] if "." in name else ""
        group = _role(module_path, modules)
        if group is None:
            raise FptError(
                f"fpt does not know the role of backbone parameter '{name}' "
                f"({type(backbone).__name__}); supported families: GPT-2 and BERT-like models")
        groups[name] = group
    return groups


def _role(module_path: str, modules: dict[str, nn.Module]) -> str | None:
    module = modules[module_path]
    if isinstance(module, nn.LayerNorm) or NORM_CLASS.search(type(module).__name__):
        return "layernorm"
    if isinstance(module, nn.Embedding):
        if WORD_EMBEDDING.search(module_path):
            return UNUSED
        if POSITION_EMBEDDING.search(module_path):
            return "position"
        return None
    # Walk from the outermost ancestor inwards: BertAttention contains BertSelfOutput,
    # and it is the outer class that says what the block is for.
    parts = module_path.split(".")
    for depth in range(1, len(parts) + 1):
        ancestor = type(modules[".".join(parts[:depth])]).__name__
        for role, pattern in BLOCK_ROLES:
            if pattern.search(ancestor):
                return role
    return None


def set_trainable(model: nn.Module, group_of: dict[str, str], train: Iterable[str]) -> None:
    """requires_grad = True exactly for the parameters of the chosen groups."""
    chosen = set(train)
    unknown = chosen - set(GROUPS)
    if unknown:
        raise FptError(f"--train: unknown group(s) {sorted(unknown)}; choose from {', '.join(GROUPS)}")
    for name, param in model.named_parameters():
        param.requires_grad_(group_of[name] in chosen)


def count_parameters(model: nn.Module, group_of: dict[str, str]) -> dict[str, dict[str, int]]:
    """Per group (and `total`): how many parameters exist and how many are trained."""
    total: Counter[str] = Counter()
    trained: Counter[str] = Counter()
    for name, param in model.named_parameters():
        total[group_of[name]] += param.numel()
        if param.requires_grad:
            trained[group_of[name]] += param.numel()
    counts = {g: {"total": total[g], "trainable": trained[g]} for g in (*GROUPS, UNUSED) if total[g]}
    counts["total"] = {"total": sum(total.values()), "trainable": sum(trained.values())}
    return counts


def format_counts(counts: dict[str, dict[str, int]]) -> str:
    """One line per group, for the console."""
    lines = [f"{'group':<12}{'trainable':>14}{'total':>14}"]
    for group, c in counts.items():
        lines.append(f"{group:<12}{c['trainable']:>14,}{c['total']:>14,}")
    t = counts["total"]
    lines.append(f"trainable {t['trainable']:,} of {t['total']:,} parameters "
                 f"({100 * t['trainable'] / max(t['total'], 1):.3f}%)")
    return "\n".join(lines)
