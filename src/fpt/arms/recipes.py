"""The arms that keep the backbone and choose which of its parameters train: fpt, full, output
(the groups differ only in `--train`'s default, fpt.arms' table) and BitFit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fpt.arms.base import ArmHooks

if TYPE_CHECKING:
    from fpt.model import FPTModel


class Recipe(ArmHooks):
    """fpt, full, output: whole parameter groups, as --train (or the arm's default for it) names them."""


class BitFit(Recipe):
    """BitFit: every bias term of the backbone trains too (the layer norms' biases included)."""

    def after_freeze(self, model: "FPTModel") -> None:
        for name, param in model.backbone.named_parameters():
            if name.endswith("bias"):
                param.requires_grad_(True)
