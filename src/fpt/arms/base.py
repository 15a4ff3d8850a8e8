"""The hooks an arm (or a built-in model that replaces fpt's whole model) implements.

`fpt.build.assemble_model` calls them in this order, and every default leaves the model as
the FPT recipe builds it:

    adapt_spec        the task's spec as the model reads it (a series baseline: one window, one token)
    replace_backbone  what stands where the backbone was (Tan et al.'s replacements, no backbone)
    input_layer       whether fpt's input layer is built (plain baselines on float tokens: no)
    input_dropout     dropout after the input layer
    finish            the built FPTModel changed in place (a plain head, peft adapters)
    train_groups      the groups that train, from those --train names (peft adds `adapter`)
    after_freeze      parameters unfrozen beyond whole groups (BitFit's biases)
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

if TYPE_CHECKING:
    from fpt.backbones import BackboneInfo
    from fpt.model import FPTModel
    from fpt.options import ModelOptions
    from fpt.tasks.base import TaskSpec


class ArmHooks:
    whole_model = False  # True: replaces fpt's whole model (no backbone loaded, fp32, no input dropout)

    def adapt_spec(self, spec: "TaskSpec", options: "ModelOptions") -> "TaskSpec":
        return spec

    def replace_backbone(self, backbone: Any, info: Any, spec: "TaskSpec",
                         options: "ModelOptions") -> tuple[nn.Module, "BackboneInfo"]:
        return backbone, info

    def input_layer(self, spec: "TaskSpec") -> bool:
        return True

    def input_dropout(self, options: "ModelOptions") -> float:
        return options.dropout

    def finish(self, model: "FPTModel", options: "ModelOptions") -> None:
        pass

    def train_groups(self, groups: list[str]) -> list[str]:
        return groups

    def after_freeze(self, model: "FPTModel") -> None:
        pass


class NoBackbone(nn.Module):
    """Hands the tokens on unchanged (an HF-like backbone with no parameters)."""

    def __init__(self, width: int):
        super().__init__()
        self.hidden_size = width

    def get_input_embeddings(self) -> None:
        return None

    def forward(self, inputs_embeds: Tensor, attention_mask: Tensor | None = None, **_: object) -> SimpleNamespace:
        return SimpleNamespace(last_hidden_state=inputs_embeds)
