"""The FPT model: input layer -> frozen backbone -> readout -> head.

    x (B, L, D) float  --Linear(D, H), orthogonal init gain 1.41-->  (B, L, H)
    x (B, L) long      --Embedding(V, H)------------------------->   (B, L, H)
    -> backbone(inputs_embeds, attention_mask) -> (B, L, H)
    -> readout: last | first | mean over real tokens -> (B, H), last-k -> (B, k, H),
       or flatten: every token's output concatenated -> (B, L * H)
    -> head Linear(H or L * H, n_outputs) -> (B, n_outputs) or (B, k, n_outputs)

Series tasks (fpt.series) put instance normalisation and patching in front, x (B, T, C) ->
tokens (B, P, patch_len * C), and de-normalise forecasts after the head.

Padding (mask False, always on the right) is never attended to and never read out.

An FPTModel is an ordinary nn.Module: build one with `fpt.build_model(...)`, train it in any
loop, `save_pretrained(dir)` writes only the trained tensors, `FPTModel.from_pretrained(dir)`
rebuilds it on the very backbone it was trained on (also from an `fpt train` run directory).

`assemble_model` is the one function that turns a task's spec and `ModelOptions` into a
model: it asks the catalogue (fpt.catalog) for the backbone, the arm (fpt.arms) for what
replaces or is added to it, builds the model and sets the groups. `fpt.build_model`, `fpt
train` and `from_pretrained` all call it, so they share every default and every check.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fpt.arms import arm
from fpt.backbones import BackboneInfo, drops, load_backbone, set_dropout, weights_hash
from fpt.catalog import lookup
from fpt.dropout import fast_masks
from fpt.errors import FptError
from fpt.groups import backbone_groups, check_position_group, count_parameters, format_counts, set_trainable
from fpt.objectives import objective
from fpt.options import ModelOptions
from fpt.precision import (attention_kernel, autocast, resolve_device, resolve_precision,
                           store_frozen_matmul_weights)
from fpt.saved import attach, read_saved, save_pretrained
from fpt.series import SeriesInput, denormalise
from fpt.tasks.base import TaskSpec

ORTHOGONAL_GAIN = 1.41  # the paper's input-layer init
# Positions added to every token: with these the paper's zero input bias is safe (see __init__).
POSITION_TABLES = ("learned", "learned+relative", "sinusoidal")
INPUT_BIAS_STD = 0.02  # the input bias's init where positions are not added (see FPTModel.__init__)


class FPTModel(nn.Module):
    """input layer -> backbone -> readout -> head; see the module docstring for shapes."""

    # Set by assemble_model (what save_pretrained records and from_pretrained checks).
    options: ModelOptions | None = None
    backbone_hash: str = ""
    group_of: dict[str, str]
    counts: dict[str, dict[str, int]]
    pad_id: int | None = None
    peft_config: Any = None  # the peft arms' adapter config (fpt.arms.adapters), else None

    def __init__(self, spec: TaskSpec, backbone: nn.Module, info: BackboneInfo,
                 readout: str = "auto", dropout: float = 0.1, precision: str = "fp32", input_layer: bool = True):
        super().__init__()
        if spec.seq_len > info.max_positions:
            raise FptError(
                f"task {spec.name} needs {spec.seq_len} positions but --model {info.name} has only "
                f"{info.max_positions}; use a backbone with more positions (gpt2 has 1024) "
                "or a shorter variant of the task (--task-opt)")
        self.spec = spec
        self.info = info
        self.readout = resolve_readout(spec, readout, info)
        self.precision = precision  # fp32 | bf16 (autocast around the whole model)
        self.fast_dropout = True  # CPU dropout masks from 8-bit draws (fpt.dropout); off: PyTorch's bernoulli_
        self._drops: bool | None = None  # whether the backbone has dropout above 0 (_backbone_drops)
        hidden = info.hidden_size
        width = info.input_size or hidden  # of inputs_embeds: ELECTRA-small projects 128 up to 256

        self.series = (SeriesInput(spec.series_len, spec.patch_len, spec.patch_stride, spec.instance_norm, spec.patch_pad)
                       if spec.series_len else None)
        self.input: nn.Module
        if not input_layer:  # a baseline whose head reads the tokens themselves (fpt.baselines, fpt.arms.fitted)
            assert (spec.token_dim or 1) == width, "without an input layer the tokens are the backbone's width"
            self.input = nn.Identity() if spec.token_dim is not None else IdsAsValues()
        elif spec.token_dim is not None:
            self.input = nn.Linear(spec.token_dim, width)
            nn.init.orthogonal_(self.input.weight, gain=ORTHOGONAL_GAIN)
            nn.init.zeros_(self.input.bias)
            if info.causal and info.attention_impl and info.position not in POSITION_TABLES:
                # A causal transformer without positions (rotary, ALiBi) adds no position vector, so
                # with the paper's zero bias an all-zero token (an MNIST background patch, a masked bit)
                # embeds to the zero vector. At the start of a sequence that vector stays zero through
                # every bias-free pre-norm block (Llama, SmolLM2), where RMSNorm's derivative is
                # 1/sqrt(eps): each block's attention path multiplies the gradient there by ~1e2-1e3
                # (SmolLM2), inf then NaN within its 30 blocks (measured: MNIST, pretrained and random,
                # fp32 and bf16, NaN at step 2). A small random bias keeps every token off that point:
                # GPT-2's initializer scale 0.02 (or the word embeddings' std if smaller), well above
                # sqrt(eps) and below what the orthogonal weights give a +/-1 token on 576 dimensions
                # (0.06 a dimension; SmolLM2's word-embedding std 0.136 would drown it).
                nn.init.normal_(self.input.bias, std=min(INPUT_BIAS_STD, word_embedding_std(backbone)))
        else:
            assert spec.vocab_size is not None, "a task has real-valued or integer tokens"
            self.input = nn.Embedding(spec.vocab_size, width)
            # Start at the scale of the backbone's own word embeddings, which it was trained on.
            nn.init.normal_(self.input.weight, std=word_embedding_std(backbone))
        self.input_dropout = nn.Dropout(dropout)
        self.backbone = backbone
        self.head = nn.Linear(hidden * spec.seq_len if self.readout == "flatten" else hidden, spec.n_outputs)

    def features(self, x: Tensor, mask: Tensor) -> Tensor:
        """Backbone output at the read-out positions: (B, H), (B, k, H) or (B, L * H), float32."""
        if self.series is not None:
            x = self.series.normalise(x, mask)[0]
        return self._features(x, mask)

    def _features(self, x: Tensor, mask: Tensor) -> Tensor:
        """features() of inputs already normalised."""
        if self.series is not None:
            x, mask = self.series.patches(x, mask)                         # (B, P, patch_len * C), (B, P)
        with autocast(x.device, self.precision), attention_kernel(x.device, self.precision, x.shape[1]):
            with fast_masks(x.device, self.fast_dropout):
                embeds = self.input_dropout(self.input(x))                 # (B, L, H)
            # fpt's masks only where the backbone drops something: their mode sees every op it runs
            with fast_masks(x.device, self.fast_dropout and self.training and self._backbone_drops()):
                hidden = self.backbone(inputs_embeds=embeds, attention_mask=mask.long()).last_hidden_state
        return read_out(hidden, mask, self.readout, self.spec.readout_tokens, self.spec.seq_len).float()

    def _backbone_drops(self) -> bool:
        """Whether the backbone has dropout above 0 (read once, at the first training step, after every
        adapter is in; a rate changed later only changes whose masks draw it, never whether it drops)."""
        if self._drops is None:
            self._drops = drops(self.backbone)
        return self._drops

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, L, D) float or (B, L) long; mask (B, L) bool, True for real tokens (right-padded;
        default: every token real) -> (B, n_outputs) or (B, k, n_outputs). Series tasks: x (B, T, C)
        raw windows, mask (B, T); a forecast comes back in each window's own scale."""
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if self.series is None:
            return self.head(self._features(x, mask))
        x, scale = self.series.normalise(x, mask)
        out = self.head(self._features(x, mask))
        kind = objective(self.spec.objective)
        if kind.reconstructs:  # per token (B, P, patch_len * C) or one token (B, T * C), step-major
            out = out.reshape(len(out), self.spec.series_len, -1)         # (B, T, C)
        return denormalise(out, scale) if kind.horizon or kind.reconstructs else out

    @property
    def forecasts_quantiles(self) -> bool:
        """Whether the arm forecasts quantiles as well as a point (Chronos-Bolt: fpt.tsfm)."""
        return self.series is not None and hasattr(self.backbone, "quantile_forecast")

    def forecast_quantiles(self, x: Tensor, mask: Tensor | None = None) -> tuple[list[float], Tensor]:
        """A probabilistic arm's quantile levels and forecasts (B, Q, horizon) of one-channel windows
        x (B, T, 1), in each window's own scale: every quantile path through the head, as forward()
        takes the median's."""
        if not self.forecasts_quantiles:
            raise FptError(f"--model {self.info.name} forecasts a point, not quantiles")
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        x, scale = self.series.normalise(x, mask)
        tokens, _ = self.series.patches(x, mask)                           # (B, 1, T): the window as one token
        context = self.input(tokens).reshape(len(tokens), -1).float()      # (B, T)
        paths = self.head(self.backbone.quantile_forecast(context))        # (B, Q, horizon)
        return list(self.backbone.levels), denormalise(paths, scale)       # one channel: Q rows scale alike

    # -- PEFT-style conveniences ----------------------------------------------
    def trained_state(self) -> dict[str, Tensor]:
        """The parameters that train (requires_grad), by name: all that save_pretrained keeps."""
        return trained_tensors(self)

    def print_trainable_parameters(self) -> None:
        """The per-group table `fpt train` prints, then PEFT's summary line."""
        counts = count_parameters(self, self.parameter_groups())
        table = format_counts(counts, self.info.position).splitlines()[:-1]  # fpt train's own summary line: PEFT's below
        t = counts["total"]
        print("\n".join(table))
        print(f"trainable params: {t['trainable']:,} || all params: {t['total']:,} || "
              f"trainable%: {100 * t['trainable'] / max(t['total'], 1):.4f}")

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write DIR/model.safetensors (trained tensors only, plus what identifies the backbone)
        and DIR/config.json (the same description, readable); returns the safetensors path."""
        return save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu", precision: str | None = None) -> "FPTModel":
        """The model saved in `path` (a save_pretrained directory or an `fpt train` run directory)
        on the backbone whose weights hash it recorded; refuses another. Reads only safetensors
        and JSON: never executes code from the file. precision: as saved (None), or auto/fp32/bf16."""
        tensors, backbone, config, spec, pad_id = read_saved(path)
        options = ModelOptions.of(config)
        if precision is not None:
            options = dataclasses.replace(options, precision=precision)
        model = assemble_model(spec, options, device, pad_id)
        attach(model, tensors, backbone, Path(path))
        return model

    def identity(self, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """The header a saved model carries: backbone (with its hash), config, groups, input format."""
        options = self.options.to_dict() if self.options is not None else {}
        return saved_identity(self.info, self.backbone_hash, config if config is not None else options,
                              self.options.train_groups if self.options is not None else [], self.spec, self.pad_id)

    @torch.no_grad()
    def attention_maps(self, x: Tensor, mask: Tensor) -> Tensor | None:
        """Every layer's attention, mean over heads and examples: (layers, L, L) float32; None for a
        backbone that has no attention weights to return (an LSTM, a replacement, no backbone)."""
        if not hasattr(self.backbone, "set_attn_implementation") or self.series is not None:
            return None
        before = self.backbone.config._attn_implementation
        self.backbone.set_attn_implementation("eager")  # sdpa does not return attention weights
        was_training = self.training
        self.eval()
        try:
            with autocast(x.device, self.precision):
                embeds = self.input(x)                                     # (B, L, H)
                out = self.backbone(inputs_embeds=embeds, attention_mask=mask.long(), output_attentions=True)
        finally:
            self.backbone.set_attn_implementation(before)
            self.train(was_training)
        if not out.attentions:
            return None
        return torch.stack([a.float().mean(dim=(0, 1)) for a in out.attentions]).cpu()  # (layers, L, L)

    def parameter_groups(self) -> dict[str, str]:
        """Every parameter's group; the backbone's are decided by groups.py."""
        groups = {f"input.{n}": "input" for n, _ in self.input.named_parameters()}
        groups.update({f"head.{n}": "output" for n, _ in self.head.named_parameters()})
        groups.update({f"backbone.{n}": g for n, g in backbone_groups(self.backbone).items()})
        return groups


class IdsAsValues(nn.Module):
    """Integer tokens (B, L) as one real value each (B, L, 1): what a fitted baseline reads of ids."""

    def forward(self, x: Tensor) -> Tensor:
        return x.float().unsqueeze(-1)


def trained_tensors(module: nn.Module) -> dict[str, Tensor]:
    """Copies of a module's trained parameters (requires_grad), by name."""
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


def saved_identity(info: BackboneInfo, backbone_hash: str, config: dict[str, Any], train_groups: list[str],
                   spec: TaskSpec, pad_id: int | None) -> dict[str, Any]:
    """The header of a saved model (save_pretrained and fpt train's checkpoints alike): what it needs to
    re-attach to exactly this backbone and to rebuild its input format without the training data."""
    return {"backbone": {**asdict(info), "hash": backbone_hash}, "config": config, "train_groups": train_groups,
            "task": {"spec": asdict(spec), "pad_id": pad_id}}


def resolve_readout(spec: TaskSpec, readout: str, info: BackboneInfo) -> str:
    """The readout `auto` means for this task, or an error for one that cannot work."""
    if readout == "flatten" and spec.readout_tokens > 1:
        raise FptError(f"--readout flatten: task {spec.name} predicts one output per token; use last-k (or auto)")
    if spec.series_len and spec.readout_tokens == 1:  # One Fits All's flatten head: every patch's output
        return "flatten" if readout == "auto" else readout
    if spec.readout_tokens > 1:
        if readout not in ("auto", "last-k"):
            raise FptError(f"--readout {readout}: task {spec.name} predicts one output per token at its "
                           f"last {spec.readout_tokens} tokens, so it needs --readout last-k (or auto)")
        return "last-k"
    if readout == "last-k":
        raise FptError(f"--readout last-k reads one output at each of a task's last k tokens, but task "
                       f"{spec.name} has one output for the whole sequence; use auto, last, first or mean")
    if readout == "first" and info.causal:
        raise FptError(f"--readout first: {info.name} is causal, so its first token has attended only to "
                       "itself and carries nothing of the rest of the input; use auto (the last real token) "
                       "or mean, or a bidirectional backbone")
    return "last" if readout == "auto" else readout


def read_out(hidden: Tensor, mask: Tensor, mode: str, k: int = 1, seq_len: int = 0) -> Tensor:
    """hidden (B, L, H), mask (B, L) -> (B, H), (B, k, H) for last-k, or (B, seq_len * H) for
    flatten (padding zeroed, and batches cut shorter than seq_len padded back to it)."""
    if mode == "flatten":
        hidden = hidden * mask.unsqueeze(-1).to(hidden.dtype)              # (B, L, H)
        return torch.nn.functional.pad(hidden, (0, 0, 0, max(seq_len - hidden.shape[1], 0))).flatten(1)
    lengths = mask.sum(dim=1)                                              # (B,)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if mode == "last":
        return hidden[rows, lengths - 1]
    if mode == "first":
        return hidden[:, 0]
    if mode == "mean":
        weights = mask.unsqueeze(-1).to(hidden.dtype)                      # (B, L, 1)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
    if mode == "last-k":
        positions = lengths[:, None] - k + torch.arange(k, device=hidden.device)  # (B, k)
        return hidden[rows[:, None], positions]
    raise ValueError(f"unknown readout {mode!r}")


def word_embedding_std(backbone: nn.Module) -> float:
    """The standard deviation of the backbone's word embeddings (0.02 where it has none: the LSTM,
    fpt's replacements; every backbone fpt builds has get_input_embeddings)."""
    words = backbone.get_input_embeddings()
    return float(words.weight.detach().float().std()) if words is not None else 0.02


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
    named = lookup(options.model)
    hooks = (named.whole_model_hooks() if named is not None else None) or arm(options.method).hooks()
    if hooks.whole_model:  # a baseline in place of fpt's whole model: nothing to load
        spec = hooks.adapt_spec(spec, options)
        backbone, info = hooks.replace_backbone(None, None, spec, options)
    else:
        backbone, info = loaded or load_backbone(options.model, options.init, options.attention, options.seed,
                                                 layers=options.layers, cache_dir=cache_dir)
        if spec.seq_len == 0:  # build_model without seq_len: as long as the backbone allows
            spec = dataclasses.replace(spec, seq_len=info.max_positions)
        backbone, info = hooks.replace_backbone(backbone, info, spec, options)
    backbone_hash = weights_hash(backbone)
    if options.backbone_dropout != "config":
        set_dropout(backbone, float(options.backbone_dropout))
    # A whole-model baseline is one small matrix product: fp32.
    precision = "fp32" if hooks.whole_model else resolve_precision(options.precision, device)
    torch.manual_seed(options.seed)  # the new input layer and head
    model = FPTModel(spec, backbone, info, readout=options.readout, dropout=hooks.input_dropout(options),
                     precision=precision, input_layer=hooks.input_layer(spec))
    hooks.finish(model, options)  # after hashing: the hash is of the pretrained weights alone
    group_of = model.parameter_groups()
    check_position_group(options.train, group_of, info.position)
    set_trainable(model, group_of, hooks.train_groups(options.train_groups))
    hooks.after_freeze(model)
    if precision == "bf16":  # after hashing and freezing: only the backbone's frozen matmul weights
        store_frozen_matmul_weights(model.backbone, torch.bfloat16)
    model.options, model.backbone_hash, model.group_of, model.pad_id = options, backbone_hash, group_of, pad_id
    model.counts = count_parameters(model, group_of)
    return model.to(device) if move else model
