"""How a model is built around a backbone: the defaults and checks, in one place.

`fpt.build_model(...)` and `fpt train` both build their models from `ModelOptions`, so
the two can never disagree on a default or accept a value the other refuses. Errors name
the `fpt train` flag, which is also the keyword of `fpt.build_model`.

This module imports nothing heavy (no torch), so the CLI can read it at start-up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from fpt.errors import FptError

GROUPS = ("input", "output", "layernorm", "position", "attention", "feedforward")  # and peft's "adapter"
FPT_DEFAULT_GROUPS = "input,output,layernorm,position"  # the paper's: everything but attention and MLPs
INITS = ("pretrained", "random", "stats")
READOUTS = ("auto", "last", "first", "mean", "last-k", "flatten")
ATTENTIONS = ("auto", "causal", "bidirectional")
PRECISIONS = ("auto", "fp32", "bf16")
OBJECTIVES = ("classification", "regression", "bits")
METHODS = ("fpt", "full", "output", "lora", "ia3", "ln-tuning", "bitfit", "no-lm", "attention-1", "block-1",
           "logistic", "mlp", "cnn")
# Series baselines that replace the whole model (fpt.baselines): no backbone, no input layer.
SERIES_BASELINES = ("linear", "repeat-last")
# Models without pretrained weights, and what `--init` and `--train` left at their defaults
# mean for them: built at random; trained whole (patchtst), the head alone (linear), nothing.
FROM_SCRATCH = {"patchtst": "all", "linear": "output", "repeat-last": "none"}


def parse_groups(train: str) -> list[str]:
    """'input,output' -> ['input', 'output']; 'all' -> every group; 'none' -> [] (nothing trains)."""
    if train.strip() == "all":
        return list(GROUPS)
    if train.strip() == "none":
        return []
    return [g.strip() for g in train.split(",") if g.strip()]


def canonical_backbone_dropout(value: Any) -> str | float:
    """'config', or the probability as a float: 0, '0' and 0.0 are one setting, stored as 0.0."""
    if value == "config":
        return "config"
    if not isinstance(value, bool) and isinstance(value, (int, float, str)):
        try:
            p = float(value)
        except ValueError:
            p = float("nan")
        if 0 <= p < 1:
            return p
    raise FptError(f"--backbone-dropout must be config or a probability in [0, 1), got {value!r}")


@dataclass(frozen=True)
class ModelOptions:
    """Everything besides the task's shape that decides the model fpt builds."""

    model: str = "minilm"           # backbone: short name, hub name, local directory or .gguf file
    layers: int = 0                 # keep the first K transformer blocks (0: all)
    init: str = "pretrained"        # pretrained | random | stats
    train: str = FPT_DEFAULT_GROUPS  # comma-separated groups, or all
    readout: str = "auto"           # auto | last | first | mean | last-k | flatten (every token, concatenated)
    attention: str = "auto"         # auto (the backbone's own) | causal | bidirectional
    dropout: float = 0.1            # after the input layer
    backbone_dropout: str | float = "config"  # config (the backbone's own) or a probability
    precision: str = "auto"         # auto | fp32 | bf16
    seed: int = 0                   # the input layer's and head's initialisation (and a random backbone's)
    method: str = "fpt"             # the arm (fpt.methods): fpt | full | output | lora | ia3 | ln-tuning | bitfit |
                                    # no-lm | attention-1 | block-1 | logistic | mlp | cnn
    lora_rank: int = 8              # lora: rank of each adapter
    lora_alpha: float = 16.0        # lora: scale alpha / rank
    lora_dropout: float = 0.0       # lora: dropout on the adapter's input
    lora_targets: str = "attention"  # lora, ia3: attention, feedforward or attention,feedforward

    @property
    def train_groups(self) -> list[str]:
        return parse_groups(self.train)

    def validate(self) -> "ModelOptions":
        """A copy with canonical values, or FptError naming the flag of the first bad one."""
        if not isinstance(self.model, str) or not self.model:
            raise FptError(f"--model must name a backbone, got {self.model!r}")
        for name, choices in (("init", INITS), ("readout", READOUTS), ("attention", ATTENTIONS),
                              ("precision", PRECISIONS)):
            if getattr(self, name) not in choices:
                raise FptError(f"--{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if not isinstance(self.train, str):
            raise FptError(f"--train must be a comma-separated string of groups, got {self.train!r}")
        groups = self.train_groups
        unknown = [g for g in groups if g not in GROUPS]
        if unknown or (not groups and self.train.strip() != "none"):
            raise FptError(f"--train: unknown group(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                           f"choose from {', '.join(GROUPS)} or 'all'")
        if self.train.strip() == "none" and self.model != "repeat-last":
            raise FptError("--train none trains nothing, which only the repeat-last baseline does; "
                           f"choose groups from {', '.join(GROUPS)} or 'all'")
        dropout = self.dropout
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise FptError(f"--dropout must be in [0, 1), got {dropout!r}")
        if isinstance(self.layers, bool) or not isinstance(self.layers, int) or self.layers < 0:
            raise FptError(f"--layers must be a non-negative integer, got {self.layers!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise FptError(f"--seed must be an integer, got {self.seed!r}")
        from fpt.methods import default_train
        if self.method not in METHODS:
            raise FptError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if isinstance(self.lora_rank, bool) or not isinstance(self.lora_rank, int) or self.lora_rank <= 0:
            raise FptError(f"--lora-rank must be a positive integer, got {self.lora_rank!r}")
        if not 0 <= self.lora_dropout < 1:
            raise FptError(f"--lora-dropout must be in [0, 1), got {self.lora_dropout!r}")
        if self.method != "fpt" and self.model in FROM_SCRATCH:
            raise FptError(f"--method {self.method} applies to pretrained backbones; --model {self.model} is "
                           "a model of its own (use --method fpt)")
        changes: dict[str, Any] = {"backbone_dropout": canonical_backbone_dropout(self.backbone_dropout)}
        if self.train == FPT_DEFAULT_GROUPS and self.method != "fpt":
            changes["train"] = default_train(self.method, FPT_DEFAULT_GROUPS)
        if self.model in FROM_SCRATCH:
            if self.init == "pretrained":
                changes["init"] = "random"
            if self.train == FPT_DEFAULT_GROUPS:
                changes["train"] = FROM_SCRATCH[self.model]
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, values: dict[str, Any]) -> "ModelOptions":
        """The model options among a larger mapping (a TrainConfig's dict, a saved header)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
