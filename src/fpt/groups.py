"""Parameter groups: the one place where fpt decides what is frozen.

Every backbone parameter lands in exactly one group, decided by the role of the
module that owns it, or is explicitly `unused` (the word embeddings, found as the
model's own `get_input_embeddings()`: fpt feeds `inputs_embeds`). A parameter that
no rule claims is an error, so a new architecture can never be half-frozen by accident.
Rules, first match wins:

    layernorm    every normalisation layer (nn.LayerNorm, *LayerNorm, *RMSNorm), including
                 Qwen3's and Gemma 3's query/key norms inside attention
    unused       the word embeddings
    position     the tables its family lists (families.py): learned position and BERT token-type
                 embeddings, added to every input. Rotary, ALiBi and relative families have none.
    (family)     modules the family places explicitly: OPT's fc1/fc2, ELECTRA's embedding
                 projection (feedforward); DeBERTa's and MPNet's relative-position tables (attention)
    attention    everything inside a module whose class ends in "Attention" (or an LSTM), so
                 T5's relative-position bias too
    feedforward  everything inside a module whose class ends in MLP/Intermediate/Output/FeedForward/FFN
    input, output  fpt's own input layer and head (see model.py)
"""

from __future__ import annotations

import re
from collections import Counter
from fnmatch import fnmatchcase
from typing import Iterable

from torch import nn

from fpt.arms import adapter_markers
from fpt.options import FPT_DEFAULT_GROUPS, GROUPS
from fpt.errors import FptError
from fpt.families import FAMILIES, Family

UNUSED = "unused"
ADAPTER = "adapter"  # parameters that an arm's adapters add (fpt.arms: peft's LoRA, IA3, LN tuning)
NORM_CLASS = re.compile(r"(LayerNorm|RMSNorm|LayerNorm2d)$")
# Roles of whole sub-blocks, matched on the outermost module that has one.
BLOCK_ROLES = (
    ("attention", re.compile(r"(Attention|LSTM)$")),  # what mixes information across positions
    ("feedforward", re.compile(r"(MLP|Intermediate|Output|FeedForward|FFN|LayerFF)$")),
)


def backbone_groups(backbone: nn.Module) -> dict[str, str]:
    """Map each backbone parameter name to its group (or `unused`). A module that decides its own
    groups (fpt's replacement arms) says so with a `parameter_groups()` method."""
    if hasattr(backbone, "parameter_groups"):
        return backbone.parameter_groups()
    modules = dict(backbone.named_modules())
    family = FAMILIES.get(getattr(getattr(backbone, "config", None), "model_type", ""))
    words = backbone.get_input_embeddings() if hasattr(backbone, "get_input_embeddings") else None
    groups: dict[str, str] = {}
    markers = adapter_markers()
    for name, _ in backbone.named_parameters():
        if any(marker in name for marker in markers):
            groups[name] = ADAPTER
            continue
        module_path = name.rsplit(".", 1)[0] if "." in name else ""
        group = _role(module_path, modules, family, words)
        if group is None:
            raise FptError(
                f"fpt does not know the role of backbone parameter '{name}' ({type(backbone).__name__}); "
                "a module of a kind its family's rules in fpt/families.py do not cover")
        groups[name] = group
    return groups


def _role(module_path: str, modules: dict[str, nn.Module], family: Family | None,
          words: nn.Module | None) -> str | None:
    module = modules[module_path]
    module_path = module_path.replace(".base_layer", "")  # a layer peft wrapped plays its old role
    if isinstance(module, nn.LayerNorm) or NORM_CLASS.search(type(module).__name__):
        return "layernorm"
    if words is not None and module is words:
        return UNUSED
    if family is not None:
        if module_path in family.position_tables:
            return "position"
        for pattern, group in family.roles:
            if fnmatchcase(module_path, pattern):
                return group
    # Walk from the outermost ancestor inwards: BertAttention contains BertSelfOutput,
    # and it is the outer class that says what the block is for.
    parts = module_path.split(".")
    for depth in range(1, len(parts) + 1):
        ancestor = type(modules[".".join(parts[:depth])]).__name__
        for role, pattern in BLOCK_ROLES:
            if pattern.search(ancestor):
                return role
    return None


def check_position_group(train: str, group_of: dict[str, str], position: str) -> None:
    """--train position on a backbone without a position table is an error. The FPT recipe (the
    default groups) and `all` mean "these groups where the backbone has them" and pass."""
    asked = {g.strip() for g in train.split(",")}
    if "position" not in asked or train.strip() in ("all", FPT_DEFAULT_GROUPS):
        return
    if "position" not in group_of.values():
        raise FptError(f"--train position: this backbone has no learned position table (its positions: "
                       f"{position}, computed inside attention); drop 'position' from --train")


def set_trainable(model: nn.Module, group_of: dict[str, str], train: Iterable[str]) -> None:
    """requires_grad = True exactly for the parameters of the chosen groups."""
    chosen = set(train)
    unknown = chosen - set(GROUPS) - {ADAPTER}
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
    counts = {g: {"total": total[g], "trainable": trained[g]} for g in (*GROUPS, ADAPTER, UNUSED) if total[g]}
    counts["total"] = {"total": sum(total.values()), "trainable": sum(trained.values())}
    return counts


def format_counts(counts: dict[str, dict[str, int]], position: str = "") -> str:
    """One line per group, for the console; `position` (the backbone's position kind) explains a
    backbone without a position table, on the row where the table would be."""
    lines = [f"{'group':<12}{'trainable':>14}{'total':>14}"]
    for group, c in counts.items():
        lines.append(f"{group:<12}{c['trainable']:>14,}{c['total']:>14,}")
    if position and "position" not in counts:
        why = "" if position == "none" else f"  ({position} positions, nothing to train)"
        after = sum(1 for g in counts if g in GROUPS[:GROUPS.index("position")])
        lines.insert(1 + after, f"{'position':<12}{'none':>14}{'-':>14}{why}")
    t = counts["total"]
    lines.append(f"trainable {t['trainable']:,} of {t['total']:,} parameters "
                 f"({100 * t['trainable'] / max(t['total'], 1):.3f}%)")
    return "\n".join(lines)
