"""Building an FPT model: backbone, input layer, head and freezing, from options alone.

    model = fpt.build_model("minilm", token_dim=4, n_outputs=3)

`assemble_model` is the one function that turns a task's spec and `ModelOptions` into a
model; `fpt.build_model` (for a user's own loop), `fpt train` (through the runner's setup)
and `FPTModel.from_pretrained` all call it, so they share every default and every check.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from fpt.backbones import BackboneInfo, load_backbone, set_dropout, weights_hash
from fpt.errors import FptError
from fpt.groups import backbone_groups, check_position_group, count_parameters, set_trainable
from fpt.model import FPTModel
from fpt.baselines import NoBackbone, repeat_last, series_baseline
from fpt.methods import (PEFT_METHODS, PLAIN, REPLACEMENTS, attention_heads, inject, make_plain, replacement,
                         train_groups)
from fpt.options import FPT_DEFAULT_GROUPS, OBJECTIVES, SERIES_BASELINES, ModelOptions
from fpt.precision import resolve_precision, store_frozen_matmul_weights
from fpt.tasks.base import TaskSpec


def resolve_device(name: str | torch.device) -> torch.device:
    """auto -> cuda when available, else cpu; a CUDA device that is not there is an error."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FptError(f"--device {name}: no CUDA device is available here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise FptError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}") from None


def assemble_model(spec: TaskSpec, options: ModelOptions, device: torch.device | str = "cpu",
                   pad_id: int | None = None, move: bool = True,
                   loaded: tuple[nn.Module, BackboneInfo] | None = None,
                   cache_dir: Path | None = None) -> FPTModel:
    """The FPT model for `spec`: backbone loaded, weights hashed, groups frozen, its precision
    chosen for `device` and (unless move=False, for FSDP, which moves only shards) moved there.
    loaded: a backbone already loaded for these options (`fpt bench` loads GPT-2's unfused GELU).
    cache_dir: where GGUF backbones are dequantised to (default $FPT_DATA_DIR or ~/.cache/fpt).

    The returned model knows its own `options`, `backbone_hash`, `group_of` and `pad_id`:
    what `save_pretrained` records and `from_pretrained` checks."""
    options = options.validate()
    device = resolve_device(device)
    baseline = options.model in SERIES_BASELINES
    if baseline:
        spec, backbone, info = series_baseline(options.model, spec)
    else:
        backbone, info = loaded or load_backbone(options.model, options.init, options.attention, options.seed,
                                                 layers=options.layers, cache_dir=cache_dir)
    if spec.seq_len == 0:  # build_model without seq_len: as long as the backbone allows
        spec = dataclasses.replace(spec, seq_len=info.max_positions)
    if options.method in REPLACEMENTS:  # Tan et al.'s ablations: the backbone's width, not its weights
        backbone = replacement(options.method, info.hidden_size, attention_heads(backbone), spec.seq_len, options.seed)
        info = dataclasses.replace(info, model_type=options.method, causal=False, layers=int(options.method != "no-lm"),
                                   position="none" if options.method == "no-lm" else "learned", attention_impl="",
                                   input_size=info.hidden_size, max_positions=max(spec.seq_len, 1),
                                   description=f"{options.method} in place of {info.name}, randomly initialised")
    plain = options.method in PLAIN
    if plain:  # the flattened input itself: float tokens as they are, ids through fpt's embedding
        width = spec.token_dim or info.hidden_size
        backbone = NoBackbone(width)
        info = dataclasses.replace(info, model_type=options.method, causal=False, layers=0, position="none",
                                   attention_impl="", hidden_size=width, input_size=width,
                                   max_positions=max(spec.seq_len, 1),
                                   description=f"{options.method} on the flattened input, no backbone")
    backbone_hash = weights_hash(backbone)
    if options.backbone_dropout != "config":
        set_dropout(backbone, float(options.backbone_dropout))
    # A baseline is one small matrix product: fp32, and no dropout on the raw window.
    precision = "fp32" if baseline else resolve_precision(options.precision, device)
    torch.manual_seed(options.seed)  # the new input layer and head
    model = FPTModel(spec, backbone, info, readout=options.readout, dropout=0.0 if baseline or plain else options.dropout,
                     precision=precision, input_layer=not (baseline or (plain and spec.token_dim is not None)))
    if plain:
        make_plain(model, options.method)
    if options.model == "repeat-last":
        repeat_last(model.head)
    if options.method in PEFT_METHODS:  # after hashing: the hash is of the pretrained weights alone
        model.peft_config = inject(options, model.backbone, backbone_groups(model.backbone))
    group_of = model.parameter_groups()
    check_position_group(options.train, group_of, info.position)
    set_trainable(model, group_of, train_groups(options.method, options.train_groups))
    if options.method == "bitfit":  # BitFit: every bias term of the backbone trains too
        for name, param in model.backbone.named_parameters():
            if name.endswith("bias"):
                param.requires_grad_(True)
    if precision == "bf16":  # after hashing and freezing: only the backbone's frozen matmul weights
        store_frozen_matmul_weights(model.backbone, torch.bfloat16)
    model.options, model.backbone_hash, model.group_of, model.pad_id = options, backbone_hash, group_of, pad_id
    model.counts = count_parameters(model, group_of)
    return model.to(device) if move else model


def build_model(backbone: str = "minilm", *, token_dim: int | None = None, vocab_size: int | None = None,
                n_outputs: int, objective: str = "classification", seq_len: int | None = None,
                readout_tokens: int = 1, train: str = FPT_DEFAULT_GROUPS, init: str = "pretrained",
                readout: str = "auto", attention: str = "auto", dropout: float = 0.1,
                backbone_dropout: str | float = "config", precision: str = "auto", seed: int = 0, layers: int = 0,
                method: str = "fpt", lora_rank: int = 8, lora_alpha: float = 16.0, lora_dropout: float = 0.0,
                lora_targets: str = "attention", pad_id: int | None = None, device: torch.device | str = "cpu",
                name: str = "custom") -> FPTModel:
    """A frozen pretrained transformer for your own data, ready for a plain PyTorch loop.

    Inputs are `token_dim` floats per token (x of shape (B, L, token_dim)) or integer ids
    below `vocab_size` (x of shape (B, L)). The model returns (B, n_outputs) logits (or
    values for regression), or (B, readout_tokens, n_outputs) for the per-token `bits`
    objective. `seq_len` is the longest input it must take (default: every position the
    backbone has). `train`, `init`, `readout`, `attention`, `dropout`, `backbone_dropout`,
    `precision`, `seed`, `layers`, `method` (the arm: lora, ia3, bitfit, ..., see fpt.methods) and the
    `lora_*` settings mean what the `fpt train` flags of the same names mean, with the
    same defaults (the paper's: input, output, layer norms and positions train).
    Only the parameters of the chosen groups have requires_grad; pass those to the optimiser:
    `torch.optim.Adam(p for p in model.parameters() if p.requires_grad)`.
    """
    if (token_dim is None) == (vocab_size is None):
        raise FptError("build_model: give exactly one of token_dim (float tokens, x of shape (B, L, D)) "
                       "or vocab_size (integer ids, x of shape (B, L))")
    for label, value in (("token_dim", token_dim), ("vocab_size", vocab_size), ("n_outputs", n_outputs),
                         ("seq_len", seq_len), ("readout_tokens", readout_tokens)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise FptError(f"build_model: {label} must be a positive integer, got {value!r}")
    if objective not in OBJECTIVES:
        raise FptError(f"build_model: objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if readout_tokens > 1 and objective != "bits":
        raise FptError(f"build_model: readout_tokens={readout_tokens} reads one output per token, which is the "
                       "bits objective; use objective='bits' or readout_tokens=1")
    options = ModelOptions(model=backbone, init=init, train=train, readout=readout, attention=attention,
                           dropout=dropout, backbone_dropout=backbone_dropout, precision=precision, seed=seed,
                           layers=layers, method=method, lora_rank=lora_rank, lora_alpha=lora_alpha,
                           lora_dropout=lora_dropout, lora_targets=lora_targets)
    # seq_len 0: the backbone's own position count, known once it is loaded (assemble_model).
    spec = TaskSpec(name=name, seq_len=seq_len or 0, objective=objective,  # type: ignore[arg-type]
                    n_outputs=n_outputs, token_dim=token_dim, vocab_size=vocab_size,
                    readout_tokens=readout_tokens, description="built with fpt.build_model", source="your data")
    return assemble_model(spec, options, device, pad_id)
