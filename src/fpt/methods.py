"""Arms: what trains, or what replaces the backbone (`--method`), everything else equal.

    fpt          the paper's groups (--train, default input,output,layernorm,position)
    full         every parameter trains (fine-tuning)
    output       the head alone (a frozen reservoir; features cached when the data allows)
    lora         Hugging Face peft LoRA adapters on the backbone's attention (and/or feed-forward) layers
    ia3          peft IA3 scaling vectors on attention and feed-forward layers
    ln-tuning    peft LN tuning: trained copies of every normalisation layer
    bitfit       the backbone's bias terms (peft has no BitFit)
    no-lm        the backbone removed: input layer straight to the readout and head (Tan et al.)
    logistic     plain baselines on the flattened input (no backbone, no input layer for float
    mlp          tokens; integer ids go through fpt's embedding): one linear map (logistic
                 regression for classes and bits) or a 256-unit ReLU MLP, to every output
    cnn          a small CNN: on image tasks a 2-D CNN on the image the patches came from,
                 else a 1-D CNN over the tokens; two convolutions, a 128-unit layer, the outputs
    attention-1  one randomly initialised multi-head attention layer of the backbone's width
    block-1      one randomly initialised transformer block of the backbone's width

fpt's input layer and head train in every arm. For the peft arms and bitfit, the default
`--train` means input,output only: layer norms and positions stay frozen unless --train names
them. The replacement arms train everything they have (the replacement included).
The peft arms use the real library (`inject_adapter_in_model`), so an adapter is saved in
peft's own format and loads with `peft.PeftModel.from_pretrained(backbone, dir)`.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

from fpt.errors import FptError
from fpt.groups import ADAPTER
from fpt.options import METHODS

PEFT_METHODS = ("lora", "ia3", "ln-tuning")
REPLACEMENTS = ("no-lm", "attention-1", "block-1")
PLAIN = ("logistic", "mlp", "cnn")
MLP_HIDDEN = 256
CNN_HIDDEN = 128
assert set(METHODS) == {"fpt", "full", "output", "bitfit", *PEFT_METHODS, *REPLACEMENTS, *PLAIN}
PEFT_INSTALL = "pip install peft"


def default_train(method: str, fpt_default: str) -> str:
    """What --train left at its default means for `method`."""
    return {"full": "all", "output": "output", "bitfit": "input,output", **{m: "input,output" for m in PEFT_METHODS},
            **{m: "all" for m in (*REPLACEMENTS, *PLAIN)}}.get(method, fpt_default)


# -- replacements --------------------------------------------------------------

class Replacement(nn.Module):
    """One randomly initialised attention layer or transformer block in place of the backbone,
    with a learned position table (pre-LN, residual); an HF-like backbone for FPTModel."""

    def __init__(self, width: int, heads: int, positions: int, block: bool, dropout: float = 0.1):
        super().__init__()
        self.hidden_size = width
        self.position = nn.Embedding(max(positions, 1), width)
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
        h = inputs_embeds + self.position.weight[:inputs_embeds.shape[1]]   # (B, L, H)
        padding = None if attention_mask is None else attention_mask == 0   # (B, L), True: ignore
        q = self.norm_attention(h)
        h = h + self.dropout(self.attention(q, q, q, key_padding_mask=padding, need_weights=False)[0])
        if self.block:
            h = h + self.dropout(self.mlp(self.norm_mlp(h)))
        return SimpleNamespace(last_hidden_state=h)


def replacement(method: str, width: int, heads: int, positions: int, seed: int) -> nn.Module:
    from fpt.baselines import NoBackbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if method == "no-lm":
            return NoBackbone(width)
        return Replacement(width, heads, positions, block=method == "block-1")


class FlatHead(nn.Module):
    """The plain baselines' head: flattened features (B, F) -> (B, *outputs), linear or MLP."""

    def __init__(self, features: int, outputs: tuple[int, ...], hidden: int = 0):
        super().__init__()
        size = math.prod(outputs)
        layers: list[nn.Module] = ([nn.Linear(features, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, size)]
                                   if hidden else [nn.Linear(features, size)])
        self.net = nn.Sequential(*layers)
        self.outputs = outputs

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features).view(features.shape[0], *self.outputs)


class ConvHead(nn.Module):
    """The small-CNN baseline on flattened tokens (B, L * D) -> (B, *outputs).

    Image tasks (spec.image_patch = p): the tokens are put back into the (B, C, H, W) image
    (the inverse of fpt.tasks.patches.patchify), then two 3x3 convolutions of 32 and 64
    channels, each with ReLU and 2x2 max pooling. Other tasks: the same two convolutions in 1-D
    (kernel 3) over the L tokens of D features, without pooling (L may be 1). Then flattened,
    a 128-unit ReLU layer with dropout 0.1, and one linear map to every output: PyTorch's MNIST
    example network, give or take."""

    def __init__(self, tokens: int, width: int, outputs: tuple[int, ...], image_patch: int = 0):
        super().__init__()
        self.tokens, self.width, self.patch, self.outputs = tokens, width, image_patch, outputs
        self.side = math.isqrt(tokens)                                  # patches per image side
        if image_patch:
            if self.side * self.side != tokens or width % (image_patch * image_patch):
                raise FptError(f"--method cnn: {tokens} tokens of {width} values are not a square image of "
                               f"{image_patch}x{image_patch} patches")
            self.channels = width // (image_patch * image_patch)
            pixels = self.side * image_patch
            conv, pool, cells = nn.Conv2d, nn.MaxPool2d(2, ceil_mode=True), math.ceil(math.ceil(pixels / 2) / 2) ** 2
        else:
            self.channels, conv, pool, cells = width, nn.Conv1d, nn.Identity(), tokens
        self.net = nn.Sequential(conv(self.channels, 32, 3, padding=1), nn.ReLU(), pool,
                                 conv(32, 64, 3, padding=1), nn.ReLU(), pool, nn.Flatten(),
                                 nn.Linear(64 * cells, CNN_HIDDEN), nn.ReLU(), nn.Dropout(0.1),
                                 nn.Linear(CNN_HIDDEN, math.prod(outputs)))

    def forward(self, features: Tensor) -> Tensor:                      # (B, L * D)
        b = features.shape[0]
        x = features.view(b, self.tokens, self.width)                     # (B, L, D)
        if self.patch:
            g, p, c = self.side, self.patch, self.channels
            x = x.view(b, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, g * p, g * p)  # (B, C, H, W)
        else:
            x = x.transpose(1, 2)                                         # (B, D, L)
        return self.net(x).view(b, *self.outputs)


def make_plain(model: nn.Module, method: str) -> None:
    """Turn an FPTModel on a NoBackbone into the logistic / MLP / CNN baseline: every token's
    values flattened into one head."""
    spec = model.spec
    outputs = (spec.readout_tokens, spec.n_outputs) if spec.readout_tokens > 1 else (spec.n_outputs,)
    model.readout = "flatten"
    with torch.random.fork_rng(devices=[]):
        if method == "cnn":
            model.head = ConvHead(spec.seq_len, model.info.hidden_size, outputs, spec.image_patch)
        else:
            model.head = FlatHead(model.info.hidden_size * spec.seq_len, outputs, MLP_HIDDEN if method == "mlp" else 0)


def attention_heads(backbone: nn.Module) -> int:
    config = getattr(backbone, "config", None)
    for key in ("num_attention_heads", "n_head", "num_heads"):
        if isinstance(getattr(config, key, None), int):
            return getattr(config, key)
    return 1


# -- peft arms -------------------------------------------------------------------

def _leaf_layers(backbone: nn.Module, group_of: dict[str, str], groups: set[str]) -> list[str]:
    """Full names of the Linear (and GPT-2 Conv1D) layers whose weights are in `groups`."""
    names = []
    for name, module in backbone.named_modules():
        if (isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D") and \
                group_of.get(f"{name}.weight") in groups:
            names.append(name)
    return names


def peft_config(options: Any, backbone: nn.Module, group_of: dict[str, str]) -> Any:
    """The peft config of a lora / ia3 / ln-tuning arm, targeting modules by their fpt group."""
    try:
        import peft
    except ImportError:
        raise FptError(f"--method {options.method} uses Hugging Face peft: {PEFT_INSTALL}") from None
    if options.method == "ln-tuning":
        norms = sorted({n.rsplit(".", 1)[0] for n, g in group_of.items() if g == "layernorm"})
        if not norms:
            raise FptError("--method ln-tuning: this backbone has no normalisation layers")
        return peft.LNTuningConfig(target_modules=norms)
    targets = {t.strip() for t in options.lora_targets.split(",") if t.strip()}
    if not targets or targets - {"attention", "feedforward"}:
        raise FptError(f"--lora-targets must be attention, feedforward or attention,feedforward, "
                       f"got {options.lora_targets!r}")
    layers = _leaf_layers(backbone, group_of, targets)
    if not layers:
        raise FptError(f"--method {options.method}: no linear layer of the backbone is in {sorted(targets)}")
    conv1d = any(type(m).__name__ == "Conv1D" for n, m in backbone.named_modules() if n in layers)
    if options.method == "lora":
        return peft.LoraConfig(r=options.lora_rank, lora_alpha=options.lora_alpha, lora_dropout=options.lora_dropout,
                               target_modules=layers, fan_in_fan_out=conv1d)
    feedforward = _leaf_layers(backbone, group_of, {"feedforward"} & targets)
    return peft.IA3Config(target_modules=layers, feedforward_modules=feedforward, fan_in_fan_out=conv1d)


def inject(options: Any, backbone: nn.Module, group_of: dict[str, str]) -> Any:
    """Add the arm's peft adapters to `backbone` in place (their parameters form the group
    `adapter`; the layers peft wraps keep their groups); return the peft config."""
    import peft

    config = peft_config(options, backbone, group_of)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        peft.inject_adapter_in_model(config, backbone)
    return config


def train_groups(method: str, groups: list[str]) -> list[str]:
    """The groups that train: the peft arms add their adapters to what --train names."""
    return [*groups, ADAPTER] if method in PEFT_METHODS else groups


def adapter_files(backbone: nn.Module, config: Any, base_model: str) -> tuple[dict[str, Tensor], Any]:
    """The adapter's tensors and config as `peft.PeftModel.save_pretrained` writes them
    (keys under base_model.model., as PeftModel.from_pretrained(backbone, dir) reads them)."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(backbone)
    config.base_model_name_or_path = base_model
    return {f"base_model.model.{k}": v.detach().contiguous() for k, v in state.items()}, config
