"""The peft arms: lora, ia3 and ln-tuning, through Hugging Face peft itself.

The adapters are added to the backbone with `peft.inject_adapter_in_model`, targeting layers
by their fpt group, so an adapter is saved in peft's own format and loads with
`peft.PeftModel.from_pretrained(backbone, dir)`. Their parameters form the group `adapter`;
the layers peft wraps keep their groups. The default `--train` means input,output only:
layer norms and positions stay frozen unless --train names them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fpt.arms.base import ArmHooks
from fpt.errors import FptError
from fpt.groups import ADAPTER, backbone_groups
from fpt.options import ModelOptions

if TYPE_CHECKING:
    from fpt.model import FPTModel

PEFT_INSTALL = "pip install peft"


class PeftAdapters(ArmHooks):
    """An arm made of peft adapters; a subclass says which (`config`)."""

    def config(self, peft: Any, options: ModelOptions, backbone: nn.Module, group_of: dict[str, str]) -> Any:
        raise NotImplementedError

    def finish(self, model: "FPTModel", options: ModelOptions) -> None:
        # After hashing (assemble_model hashes first): the hash is of the pretrained weights alone.
        model.peft_config = self.inject(options, model.backbone, backbone_groups(model.backbone))

    def train_groups(self, groups: list[str]) -> list[str]:
        return [*groups, ADAPTER]

    def inject(self, options: ModelOptions, backbone: nn.Module, group_of: dict[str, str]) -> Any:
        """Add the arm's peft adapters to `backbone` in place; return the peft config."""
        try:
            import peft
        except ImportError:
            raise FptError(f"--method {options.method} uses Hugging Face peft: {PEFT_INSTALL}") from None
        config = self.config(peft, options, backbone, group_of)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(options.seed)
            peft.inject_adapter_in_model(config, backbone)
        return config


class LnTuning(PeftAdapters):
    def config(self, peft: Any, options: ModelOptions, backbone: nn.Module, group_of: dict[str, str]) -> Any:
        norms = sorted({n.rsplit(".", 1)[0] for n, g in group_of.items() if g == "layernorm"})
        if not norms:
            raise FptError("--method ln-tuning: this backbone has no normalisation layers")
        return peft.LNTuningConfig(target_modules=norms)


class Lora(PeftAdapters):
    def config(self, peft: Any, options: ModelOptions, backbone: nn.Module, group_of: dict[str, str]) -> Any:
        _, layers, conv1d = _targets(options, backbone, group_of)
        return peft.LoraConfig(r=options.lora_rank, lora_alpha=options.lora_alpha,
                               lora_dropout=options.lora_dropout, target_modules=layers, fan_in_fan_out=conv1d)


class Ia3(PeftAdapters):
    def config(self, peft: Any, options: ModelOptions, backbone: nn.Module, group_of: dict[str, str]) -> Any:
        targets, layers, conv1d = _targets(options, backbone, group_of)
        feedforward = _leaf_layers(backbone, group_of, {"feedforward"} & targets)
        return peft.IA3Config(target_modules=layers, feedforward_modules=feedforward, fan_in_fan_out=conv1d)


def _leaf_layers(backbone: nn.Module, group_of: dict[str, str], groups: set[str]) -> list[str]:
    """Full names of the Linear (and GPT-2 Conv1D) layers whose weights are in `groups`."""
    names = []
    for name, module in backbone.named_modules():
        if (isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D") and \
                group_of.get(f"{name}.weight") in groups:
            names.append(name)
    return names


def _targets(options: ModelOptions, backbone: nn.Module, group_of: dict[str, str]) -> tuple[set[str], list[str], bool]:
    """The groups --lora-targets names, the layers in them, and whether they are GPT-2's Conv1D."""
    targets = {t.strip() for t in options.lora_targets.split(",") if t.strip()}
    if not targets or targets - {"attention", "feedforward"}:
        raise FptError(f"--lora-targets must be attention, feedforward or attention,feedforward, "
                       f"got {options.lora_targets!r}")
    layers = _leaf_layers(backbone, group_of, targets)
    if not layers:
        raise FptError(f"--method {options.method}: no linear layer of the backbone is in {sorted(targets)}")
    conv1d = any(type(m).__name__ == "Conv1D" for n, m in backbone.named_modules() if n in layers)
    return targets, layers, conv1d
