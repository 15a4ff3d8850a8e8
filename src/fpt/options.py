"""How a model is built around a backbone: the defaults and checks, in one place.

`fpt.build_model(...)` and `fpt train` both build their models from `ModelOptions`, so
the two can never disagree on a default or accept a value the other refuses. Errors name
the `fpt train` flag, which is also the keyword of `fpt.build_model`.

This module imports nothing heavy (no torch), so the CLI can read it at start-up.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

from fpt.arms import ARMS, arm
from fpt.catalog import lookup
from fpt.errors import FptError

GROUPS = ("input", "output", "layernorm", "position", "attention", "feedforward")  # and peft's "adapter"
FPT_DEFAULT_GROUPS = "input,output,layernorm,position"  # the paper's: everything but attention and MLPs
ARM_DEFAULT = "default"  # --train left unset: what the --method (or a from-scratch --model) trains by default
INITS = ("pretrained", "random", "stats")
READOUTS = ("auto", "last", "first", "mean", "last-k", "flatten")
ATTENTIONS = ("auto", "causal", "bidirectional")
PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_ARM = "fpt"  # the paper's recipe (fpt.arms)


def is_count(value: Any, minimum: int = 1) -> bool:
    """An int (not a bool) of at least `minimum`: the check behind every count-valued flag."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def check_device(name: str) -> None:
    """--device: auto, cpu, cuda or cuda:N (whether it is there is fpt.precision.resolve_device's to say)."""
    if not isinstance(name, str) or not (name in ("auto", "cpu", "cuda") or name.startswith("cuda:")):
        raise FptError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")


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


def option(default: Any, help: str, choices: Any = None) -> Any:
    """A model option: its default, and its `fpt train --help` text (the flag is --NAME-WITH-DASHES)."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class ModelOptions:
    """Everything besides the task's shape that decides the model fpt builds. The one declaration
    of these options: `fpt train`'s config (fpt.run.config.TrainConfig) extends this class, and
    `fpt.build_model` takes its fields as keywords."""

    model: str = option("minilm", "backbone: minilm (bundled, offline), smollm2 (offline causal LM, see README), "
                        "gpt2, gpt2-medium, ..., a hub name, a local directory or a .gguf file (see `fpt models`)")
    layers: int = option(0, "keep only the first K transformer blocks of the backbone (One Fits All keeps 6 of "
                         "GPT-2's 12); 0 keeps them all")
    init: str = option("pretrained", "backbone weights: pretrained; random (same architecture, nothing downloaded "
                       "but its config); stats (random, drawn with each pretrained tensor's mean and std)",
                       choices=INITS)
    method: str = option(DEFAULT_ARM, "the arm: what trains, or what replaces the backbone (`fpt arms` lists each "
                         "with a line on what it is): " + ", ".join(ARMS), choices=ARMS)  # the live registry
    train: str = option(ARM_DEFAULT, f"comma-separated parameter groups to train: {', '.join(GROUPS)}, or all; "
                        f"'{ARM_DEFAULT}': the --method's own ({FPT_DEFAULT_GROUPS} for fpt, input,output for the "
                        "peft arms and bitfit, all for the replacements and plain baselines); given explicitly, "
                        "it is what trains, whatever the --method")
    lora_rank: int = option(8, "--method lora: adapter rank")
    lora_alpha: float = option(16.0, "--method lora: alpha (the update is scaled by alpha / rank)")
    lora_dropout: float = option(0.0, "--method lora: dropout on the adapters' input")
    lora_targets: str = option("attention", "--method lora / ia3: the layers adapted: attention, feedforward or "
                               "attention,feedforward")
    readout: str = option("auto", "how the head reads the sequence: auto (the task's), last, first, mean, last-k",
                          choices=READOUTS)
    attention: str = option("auto", "attention mask: auto (the backbone's own), causal or bidirectional",
                            choices=ATTENTIONS)
    dropout: float = option(0.1, "dropout after the input layer (the backbone keeps its own config)")
    backbone_dropout: str | float = option("config", "dropout inside the frozen backbone: config (its own, 0.1 for "
                                           "GPT-2 and BERT, as in the paper's code) or a probability; 0 skips its "
                                           "random masks (17-31%% of a CPU step at 64 tokens; see docs/BENCHMARKS.md)")
    precision: str = option("auto", "auto (bf16 autocast where the CPU/GPU does bf16 natively, else fp32), fp32, "
                            "bf16", choices=PRECISIONS)
    seed: int = option(0, "seed for the initialisation (input layer, head, a random backbone), training batches "
                       "and dropout")

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
        named = lookup(self.model)
        scratch = named if named is not None and named.from_scratch else None
        chosen = arm(self.method)
        if self.train.strip() == ARM_DEFAULT:  # an explicit --train is honoured as given, never replaced
            train = (named.default_train if named else "") or chosen.default_train or FPT_DEFAULT_GROUPS
            return dataclasses.replace(self, train=train).validate()
        groups = self.train_groups
        unknown = [g for g in groups if g not in GROUPS]
        if unknown or (not groups and self.train.strip() != "none"):
            raise FptError(f"--train: unknown group(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                           f"choose from {', '.join(GROUPS)} or 'all'")
        if self.train.strip() == "none" and (named is None or named.default_train != "none"):
            raise FptError("--train none trains nothing, which only models that need no training do (repeat-last, "
                           f"the gap fillers, Chronos-Bolt zero-shot); choose groups from {', '.join(GROUPS)} or 'all'")
        dropout = self.dropout
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise FptError(f"--dropout must be in [0, 1), got {dropout!r}")
        if not is_count(self.layers, 0):
            raise FptError(f"--layers must be a non-negative integer, got {self.layers!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise FptError(f"--seed must be an integer, got {self.seed!r}")
        if not is_count(self.lora_rank):
            raise FptError(f"--lora-rank must be a positive integer, got {self.lora_rank!r}")
        if not 0 <= self.lora_dropout < 1:
            raise FptError(f"--lora-dropout must be in [0, 1), got {self.lora_dropout!r}")
        if named is not None and (named.from_scratch or named.whole_model) and chosen.name != DEFAULT_ARM:
            raise FptError(f"--method {self.method} applies to fpt's language-model backbones; --model {self.model} "
                           f"is a model of its own (use --method {DEFAULT_ARM}; --train chooses what of it trains)")
        changes: dict[str, Any] = {"backbone_dropout": canonical_backbone_dropout(self.backbone_dropout)}
        if scratch is not None and self.init == "pretrained":  # no pretrained weights: built at random
            changes["init"] = "random"
        return dataclasses.replace(self, **changes)

    @classmethod
    def build(cls, values: dict[str, Any], where: str, **fixed: Any) -> "ModelOptions":
        """Options from keyword values, refusing a name that is not an option (closest one suggested)."""
        names = [f.name for f in dataclasses.fields(cls) if f.name not in fixed]
        for key in values:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"the options: {', '.join(names)}"
                raise FptError(f"{where}: unknown option {key!r}; {hint}")
        return cls(**values, **fixed)

    @classmethod
    def of(cls, values: dict[str, Any]) -> "ModelOptions":
        """The model options among a larger mapping (a TrainConfig's dict, a saved header)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
