"""Load a pretrained (or randomly initialised) Hugging Face transformer.

A backbone is a model of a family fpt knows (families.py) that accepts
`inputs_embeds`: fpt feeds it the output of its own input layer, so the word
embeddings are never used, while learned position embeddings are kept.

`--model` accepts a short name from the catalogue (fpt.catalog), any hub name, a local
directory, or a GGUF file (gguf.py). `--init random` builds the same architecture
from its config alone: no weights are downloaded, ever. Whether the loaded model
is causal is measured on it (families.probe_causal), never assumed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fpt.errors import FptError
from fpt.families import (Family, apply_attention, check_attention, family_of, keep_first_blocks, max_positions,
                          position_kind, prepare_config, probe_causal)
from fpt.catalog import lookup, packaged_gguf
from fpt.gguf import dequantised, locate
from fpt.storage.downloads import default_data_dir

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
    known = lookup(name)
    if known is not None:
        return known.locate() if known.locate is not None else known.source
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

    known = lookup(name)
    if known is not None and known.config:  # an architecture fpt defines (patchtst)
        return known.build_config(init)
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

    known = lookup(name)
    if known is not None and known.loader:  # a model fpt builds itself (the LSTM)
        return known.load(name, init, attention, seed, layers)
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
    if fused_gelu:
        use_tanh_gelu(model)
    kept = keep_first_blocks(model, family, layers, name)  # before hashing: the hash is of what is used
    apply_attention(model, family, attention)
    input_size = model.get_input_embeddings().embedding_dim
    causal, hidden = probe_causal(model, input_size)  # two forward passes of 2 x 6 tokens
    check_attention(family, attention, causal, name)
    info = BackboneInfo(name=name, source=source, init=init, model_type=config.model_type, hidden_size=hidden,
                        max_positions=max_positions(family, config), causal=causal, family=family.name,
                        position=position_kind(family, config), layers=kept, attention_impl=impl,
                        input_size=input_size, **converted)
    return model, info


def _resolve(name: str, cache_dir: Path | None) -> tuple[str, dict[str, Any]]:
    """(what transformers loads, the provenance fields of a converted GGUF file or {})."""
    packaged = packaged_gguf(name)
    if packaged is not None or name.endswith(".gguf"):
        if packaged is not None:
            path, description = locate(packaged), packaged.description
        else:
            path, description = Path(name).expanduser().resolve(), ""
            if not path.is_file():
                raise FptError(f"--model: no such GGUF file '{name}'")
        directory, record = dequantised(path, cache_dir or default_data_dir(), name, description)
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


class TanhGelu(nn.Module):
    """GELU's tanh approximation (GPT-2's), PyTorch's fused kernel, except on bf16 inputs on a CPU, where
    it is the exact (erf) GELU: PyTorch's CPU tanh makes the approximation 3.3x slower than erf there
    (4.10 against 0.68 ms forward, 4.01 against 1.79 ms backward, one GPT-2 MLP activation of 32 x 64
    tokens, AMD EPYC, `python scripts/kernel_times.py`, 2026-12-07; 10% of fpt's GPT-2 step in `fpt bench`'s
    profile of 2026-12-06). The two functions differ by at most 4.7e-4 (at x = 2.7), under bf16's
    resolution of a GELU output there (0.0156); on the pretrained MiniLM, swapping its GELU for the other
    moves the last hidden states by 2.2e-3 (relative) in fp32, against 7.6e-3 that bf16 moves them, and the
    bf16 model with the other GELU is as close to the fp32 one (7.3e-3). `erf_in_bf16 = False` keeps tanh."""

    erf_in_bf16 = True

    def forward(self, x: Tensor) -> Tensor:
        if self.erf_in_bf16 and x.dtype == torch.bfloat16 and x.device.type == "cpu":
            return F.gelu(x)
        return F.gelu(x, approximate="tanh")


def gelu_reason(model: nn.Module, precision: str, device: torch.device) -> str | None:
    """Which GELU a backbone with the tanh approximation computes, and why (None: it has none)."""
    gelus = [m for m in model.modules() if isinstance(m, TanhGelu)]
    if not gelus:
        return None
    if precision == "bf16" and device.type == "cpu" and all(g.erf_in_bf16 for g in gelus):
        return ("erf GELU for the backbone's tanh approximation: bf16 on a CPU, where PyTorch's tanh is 3.3x slower; "
                "the two differ by at most 4.7e-4, under bf16's resolution (fpt.backbones.TanhGelu)")
    return "the backbone's tanh approximation, PyTorch's fused kernel"


def use_tanh_gelu(model: nn.Module) -> int:
    """Put TanhGelu in place of transformers' fused tanh GELU modules; returns how many."""
    from transformers.activations import ACT2FN

    fused = type(ACT2FN["gelu_pytorch_tanh"])
    swapped = 0
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is fused:
                setattr(parent, name, TanhGelu())
                swapped += 1
    return swapped


def set_dropout(model: nn.Module, p: float) -> int:
    """Set every dropout inside the backbone to `p`; returns how many were set.

    Three kinds: nn.Dropout modules (embeddings, residual branches; BERT's attention kernels read the
    module's p); float rates that attention modules keep as attributes and hand to the attention
    kernel (Llama's `attention_dropout`, OPT's `dropout`); and config rates read during the forward
    pass (Falcon's `hidden_dropout`). LayerDrop (skipping whole layers) is not dropout: left alone."""
    count = 0
    for owner, key, _ in dropout_sites(model):
        setattr(owner, key, p)
        count += 1
    return count


def dropout_sites(model: nn.Module) -> list[tuple[Any, str, float]]:
    """Every dropout rate inside `model` that set_dropout sets: (its owner, attribute name, rate)."""
    sites: list[tuple[Any, str, float]] = []
    config = getattr(model, "config", None)
    for key, value in (config.to_dict() if config is not None else {}).items():
        if isinstance(value, float) and "drop" in key and key != "layerdrop":
            sites.append((config, key, value))
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            sites.append((module, "p", module.p))
            continue
        for key, value in list(vars(module).items()):
            if isinstance(value, float) and (key == "dropout" or key.endswith("_dropout")):
                sites.append((module, key, value))
    return sites


def drops(model: nn.Module) -> bool:
    """Whether any dropout inside `model` has a rate above zero (Llama's and SmolLM2's are all 0)."""
    return any(rate > 0 for _, _, rate in dropout_sites(model))


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
