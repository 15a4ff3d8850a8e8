"""Arms: what trains, or what replaces the backbone (`--method`), everything else equal.

This table is the registry: one entry per arm, torch-free (the CLI lists it without loading
torch), each naming the class that implements it (`module:Class`, imported on first use):

    recipes.py       fpt, full, output, bitfit: which of the backbone's own parameters train
    adapters.py      lora, ia3, ln-tuning: Hugging Face peft adapters added to the backbone
    replacements.py  no-lm, attention-1, block-1, pattn: the backbone replaced (Tan et al.'s ablations)
    plain.py         logistic, mlp, cnn: no backbone at all, a plain model on the flattened input
    fitted.py        trees, minirocket: no backbone, a scikit-learn model fitted once (no gradient steps)

fpt's input layer and head train in every arm. An implementation is an `ArmHooks` subclass
(fpt.arms.base): every hook's default leaves the model as the FPT recipe builds it. Adding an
arm is one class (in a module of its own, or beside its family) plus one `register` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fpt.registry import Registry, load_reference

if TYPE_CHECKING:
    from fpt.arms.base import ArmHooks


@dataclass(frozen=True)
class Arm:
    name: str
    summary: str             # one line: `fpt arms`, the docs' table
    family: str              # recipe | peft | replacement | plain | fitted
    implementation: str      # "module:Class", an ArmHooks subclass, imported on first use
    default_train: str = ""  # what --train left unset ("default") means ("": the FPT groups); an explicit one wins
    replaces: str = ""       # what takes the backbone's place ("": the backbone stays)
    adapter_markers: tuple[str, ...] = ()  # substrings of the parameter names its adapters add

    def hooks(self) -> "ArmHooks":
        return load_reference(self.implementation)()


ARMS: Registry[Arm] = Registry("arm", "--method", hint="see `fpt arms`")
register = ARMS.register


def arm(name: str) -> Arm:
    """The registered arm called `name`, or one line naming the known ones."""
    return ARMS.find(name)


def adapter_markers() -> tuple[str, ...]:
    """Every registered arm's adapter markers: a backbone parameter whose name holds one is an adapter's."""
    return tuple(m for entry in ARMS.values() for m in entry.adapter_markers)


def markdown_table() -> str:
    """The arms as a Markdown table (docs/ARMS.md holds it; a test keeps the two equal)."""
    lines = ["| arm | family | trains by default | in the backbone's place | what it is |", "|---|---|---|---|---|"]
    for a in ARMS.values():
        trains = a.default_train or "input,output,layernorm,position (the paper's groups)"
        lines.append(f"| `{a.name}` | {a.family} | {trains} | {a.replaces or '-'} | {a.summary} |")
    return "\n".join(lines)


_R, _P, _X, _B, _F = ("fpt.arms.recipes", "fpt.arms.adapters", "fpt.arms.replacements", "fpt.arms.plain",
                      "fpt.arms.fitted")
for _entry in (
    Arm("fpt", "the paper's recipe: the groups --train names train, attention and feed-forward stay frozen",
        "recipe", f"{_R}:Recipe"),
    Arm("full", "every parameter trains (full fine-tuning)", "recipe", f"{_R}:Recipe", default_train="all"),
    Arm("output", "the head alone on the frozen backbone (a reservoir; features cached when the data allows)",
        "recipe", f"{_R}:Recipe", default_train="output"),
    Arm("bitfit", "the backbone's bias terms train (layer norms' biases included), peft has no BitFit",
        "recipe", f"{_R}:BitFit", default_train="input,output"),
    Arm("lora", "Hugging Face peft LoRA adapters on the attention (and/or feed-forward) layers",
        "peft", f"{_P}:Lora", default_train="input,output", adapter_markers=("lora_",)),
    Arm("ia3", "peft IA3 scaling vectors on the attention and feed-forward layers",
        "peft", f"{_P}:Ia3", default_train="input,output", adapter_markers=("ia3_l",)),
    Arm("ln-tuning", "peft LN tuning: trained copies of every normalisation layer",
        "peft", f"{_P}:LnTuning", default_train="input,output", adapter_markers=("ln_tuning_layers",)),
    Arm("no-lm", "the backbone removed: input layer straight to the head, which reads every token (flatten) "
        "unless the outputs are per token (Tan et al.)",
        "replacement", f"{_X}:NoLm", default_train="all", replaces="nothing"),
    Arm("attention-1", "one randomly initialised multi-head attention layer of the backbone's width (Tan et al.)",
        "replacement", f"{_X}:AttentionOne", default_train="all", replaces="1 random attention layer"),
    Arm("block-1", "one randomly initialised transformer block of the backbone's width (Tan et al.)",
        "replacement", f"{_X}:BlockOne", default_train="all", replaces="1 random transformer block"),
    Arm("pattn", "Tan et al.'s PAttn: one randomly initialised attention layer without positions (on a series: "
        "patches, their linear embedding, attention, the flatten head)", "replacement", f"{_X}:PAttn",
        default_train="all", replaces="1 random attention layer, no positions"),
    Arm("logistic", "one linear map on the flattened input (logistic regression for classes and bits)",
        "plain", f"{_B}:Logistic", default_train="all", replaces="no backbone, no input layer for float tokens"),
    Arm("mlp", "a 256-unit ReLU MLP on the flattened input",
        "plain", f"{_B}:Mlp", default_train="all", replaces="no backbone, no input layer for float tokens"),
    Arm("cnn", "a small CNN: 2-D on the image the patches came from, else 1-D over the tokens",
        "plain", f"{_B}:Cnn", default_train="all", replaces="no backbone, no input layer for float tokens"),
    Arm("trees", "scikit-learn's histogram gradient-boosted trees on the flattened input, fitted once "
        "(one model per output, its own early stopping)", "fitted", f"{_F}:Trees", default_train="all",
        replaces="no backbone: fitted, not trained by gradient"),
    Arm("minirocket", "sktime's MiniRocket features and a ridge classifier, fitted once (classification of "
        "real-valued series)", "fitted", f"{_F}:MiniRocket", default_train="all",
        replaces="no backbone: fitted, not trained by gradient"),
):
    register(_entry)
