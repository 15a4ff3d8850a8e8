"""What fpt knows about each transformer family, by `config.model_type`.

A backbone is first-class when fpt knows, for its family, where the blocks are
(for `--layers`), which modules hold learned position tables (group `position`),
what kind of positions it uses, how its attention can be switched between causal
and bidirectional, and which modules the generic role rules of groups.py do not
cover. Whether a loaded model *is* causal is never taken from this table: it is
measured on the model itself by `probe_causal`.

An unknown `model_type` is refused: guessing its causality or its parameter groups
would silently run a different experiment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from fpt.errors import FptError

# Ways to switch a family's attention (checked afterwards by the probe):
IS_DECODER = "is_decoder"  # BERT-like encoders: config.is_decoder builds a causal mask
IS_CAUSAL = "is_causal"    # transformers' decoders: config.is_causal = False builds a full mask


def _roberta_offset(config: Any) -> int:
    # RoBERTa counts positions from padding_idx + 1, so that many rows of its table are never
    # reachable from inputs_embeds: a 514-row table serves 512 tokens.
    return int(config.pad_token_id) + 1


@dataclass(frozen=True)
class Family:
    name: str                      # as users know it
    blocks: str                    # path of the nn.ModuleList of transformer blocks
    position: str                  # learned | rotary | alibi | relative | learned+relative | sinusoidal
    position_tables: tuple[str, ...] = ()  # module paths of tables added to every input (group position)
    roles: tuple[tuple[str, str], ...] = ()  # (module path pattern, group) the generic rules do not cover
    switch: str = ""               # IS_DECODER | IS_CAUSAL | "" (attention fixed)
    fixed_reason: str = ""         # why the attention cannot be switched, for the error
    position_offset: Callable[[Any], int] | None = None  # table rows unusable from inputs_embeds
    model_class: str = ""          # transformers class when AutoModel's is not the encoder alone
    layer_lists: tuple[str, ...] = ("layer_types",)  # per-block config lists that --layers cuts


def _decoder(name: str, blocks: str = "layers", position: str = "rotary", **kw: Any) -> Family:
    return Family(name, blocks, position, switch=IS_CAUSAL, **kw)


_BERT_TABLES = ("embeddings.position_embeddings", "embeddings.token_type_embeddings")
_BERT = dict(blocks="encoder.layer", position="learned", position_tables=_BERT_TABLES, switch=IS_DECODER)
_ROBERTA = dict(_BERT, position_offset=_roberta_offset)

FAMILIES: dict[str, Family] = {
    # decoders
    "gpt2": _decoder("GPT-2", "h", "learned", position_tables=("wpe",)),
    "llama": _decoder("Llama"),
    "qwen2": _decoder("Qwen2"),
    "qwen3": _decoder("Qwen3"),
    "mistral": _decoder("Mistral"),
    "gemma": _decoder("Gemma"),
    "gemma2": _decoder("Gemma 2"),
    "gemma3_text": _decoder("Gemma 3 (text)"),
    "phi": _decoder("Phi"),
    "phi3": _decoder("Phi-3"),
    "opt": _decoder("OPT", "decoder.layers", "learned", position_tables=("decoder.embed_positions",),
                    # OPT's feed-forward layers sit directly in the block, not in an MLP module; its
                    # optional embedding projections (opt-350m) are position-wise linear maps.
                    roles=(("decoder.layers.*.fc1", "feedforward"), ("decoder.layers.*.fc2", "feedforward"),
                           ("decoder.project_in", "feedforward"), ("decoder.project_out", "feedforward"))),
    "gpt_neox": _decoder("GPT-NeoX (Pythia)"),
    "gpt_neo": Family("GPT-Neo", "h", "learned", position_tables=("wpe",), layer_lists=("attention_layers",),
                      fixed_reason="its attention applies a causal mask stored in each layer, with no switch"),
    "gptj": _decoder("GPT-J", "h"),
    "falcon": _decoder("Falcon", "h"),
    # encoders
    "bert": Family("BERT", **_BERT),
    "electra": Family("ELECTRA", **_BERT, roles=(("embeddings_project", "feedforward"),)),
    "roberta": Family("RoBERTa", **_ROBERTA),
    "xlm-roberta": Family("XLM-RoBERTa", **_ROBERTA),
    "camembert": Family("CamemBERT", **_ROBERTA),
    "distilbert": Family("DistilBERT", "transformer.layer", "learned",
                         position_tables=("embeddings.position_embeddings",),
                         fixed_reason="DistilBERT has no decoder mode in transformers"),
    "deberta-v2": Family("DeBERTa-v2/v3", "encoder.layer", "relative", position_tables=_BERT_TABLES,
                         # the relative-position table is read by every layer's attention scores
                         # (and DeBERTa-v2-xlarge's convolution beside the first block mixes tokens)
                         roles=(("encoder.rel_embeddings", "attention"), ("encoder.conv.conv", "attention")),
                         fixed_reason="DeBERTa's disentangled attention has no causal mode in transformers"),
    "mpnet": Family("MPNet", "encoder.layer", "learned+relative", position_tables=("embeddings.position_embeddings",),
                    roles=(("encoder.relative_attention_bias", "attention"),),
                    position_offset=lambda config: 2,  # padding_idx is fixed at 1 in MPNetEmbeddings
                    fixed_reason="MPNet has no decoder mode in transformers"),
    "t5": Family("T5 (encoder)", "encoder.block", "relative", model_class="T5EncoderModel",
                 fixed_reason="T5's encoder has no causal mode (T5's decoder also cross-attends)"),
}

# Families fpt has looked at and cannot use, with the reason.
REFUSED = {
    "vit": "transformers' ViTModel takes pixel_values only (no inputs_embeds): its patch embedding, class "
           "token and 2-D position grid sit in front of the encoder, so fpt's input layer cannot feed it",
}


def family_of(config: Any, name: str) -> Family:
    """The family of a loaded config, or FptError for one fpt does not support."""
    model_type = config.model_type
    if model_type in REFUSED:
        raise FptError(f"--model {name}: {model_type} is not supported: {REFUSED[model_type]}; "
                       f"use one of: {supported_names()}")
    if model_type not in FAMILIES:
        raise FptError(f"--model {name}: fpt does not know the model family '{model_type}' (its causality "
                       f"and parameter roles); supported: {supported_names()}")
    return FAMILIES[model_type]


def supported_names() -> str:
    return ", ".join(f.name for f in FAMILIES.values())


def position_kind(family: Family, config: Any) -> str:
    """learned | sinusoidal | rotary | alibi | relative | learned+relative, read from the config where it varies."""
    if family.name == "Falcon" and getattr(config, "alibi", False):
        return "alibi"
    if family.name == "DistilBERT" and getattr(config, "sinusoidal_pos_embds", False):
        return "sinusoidal"
    if family.name == "DeBERTa-v2/v3":
        learned = getattr(config, "position_biased_input", True)
        relative = getattr(config, "relative_attention", False)
        return "learned+relative" if learned and relative else "learned" if learned else "relative"
    return family.position


def max_positions(family: Family, config: Any) -> int:
    """How many tokens the backbone takes: its position table's usable rows, or its configured context."""
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if limit is None:  # T5: relative buckets, no table and no configured limit
        return 1 << 30
    offset = family.position_offset(config) if family.position_offset else 0
    return int(limit) - offset


def prepare_config(family: Family, config: Any, attention: str) -> None:
    """Set the config flag that switches attention, before the model is built; `check_attention`
    then measures whether it took effect."""
    if family.switch == IS_DECODER and attention != "auto":
        config.is_decoder = attention == "causal"
    elif family.switch == IS_CAUSAL and attention == "bidirectional":
        config.is_causal = False


def apply_attention(model: nn.Module, family: Family, attention: str) -> None:
    """Decoders: the attention modules' own `is_causal` (read when no mask is materialised) follows the config."""
    if family.switch == IS_CAUSAL and attention == "bidirectional":
        for module in model.modules():
            if isinstance(getattr(module, "is_causal", None), bool):
                module.is_causal = False


def check_attention(family: Family, attention: str, causal: bool, name: str) -> None:
    """Refuse a requested mask that the measured model does not have."""
    if attention == "auto" or causal == (attention == "causal"):
        return
    reason = family.fixed_reason or "the switch did not take effect in this version of transformers"
    raise FptError(f"--attention {attention}: {name} ({family.name}) stays {'causal' if causal else 'bidirectional'}: "
                   f"{reason}; use --attention auto")


@torch.no_grad()
def probe_causal(model: nn.Module, width: int, length: int = 6) -> tuple[bool, int]:
    """Measure causality: change a later token and see whether earlier outputs move.

    Two rows, one unpadded and one right-padded, so that both of transformers' mask paths (no mask
    materialised, and a padding mask) are measured. Returns (True when earlier outputs are unchanged,
    the width of last_hidden_state: OPT-350m projects back to its embedding width).
    """
    was_training = model.training
    model.eval()  # no dropout: the two passes must differ only by the changed token
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, length, width, generator=gen)                     # (B, L, H)
    changed = x.clone()
    later = length - 3
    changed[:, later] += 3 * torch.randn(width, generator=gen)
    mask = torch.ones(2, length, dtype=torch.long)
    mask[1, later + 1:] = 0                                               # row 1: right padding
    a = model(inputs_embeds=x, attention_mask=mask).last_hidden_state     # (B, L, H')
    b = model(inputs_embeds=changed, attention_mask=mask).last_hidden_state
    model.train(was_training)
    unchanged = [torch.allclose(a[i, :later].float(), b[i, :later].float(), atol=1e-5, rtol=1e-4) for i in range(2)]
    if unchanged[0] != unchanged[1]:
        raise FptError(f"{type(model).__name__}: its attention is causal with padding and bidirectional "
                       "without (or the reverse); fpt cannot use a backbone whose mask depends on padding")
    return unchanged[0], int(a.shape[-1])


def block_list(model: nn.Module, family: Family) -> nn.ModuleList:
    blocks = model.get_submodule(family.blocks)
    assert isinstance(blocks, nn.ModuleList), f"{family.name}: {family.blocks} is not a ModuleList"
    return blocks


def keep_first_blocks(model: nn.Module, family: Family, k: int, name: str) -> int:
    """--layers K: keep the first K transformer blocks (One Fits All keeps 6 of GPT-2's 12); returns
    how many blocks the backbone now has. k = 0 keeps them all."""
    blocks = block_list(model, family)
    if k == 0:
        return len(blocks)
    if k > len(blocks):
        raise FptError(f"--layers {k}: {name} has only {len(blocks)} blocks; use --layers 1..{len(blocks)} "
                       "or 0 for all")
    parent_path, _, attr = family.blocks.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, nn.ModuleList(list(blocks)[:k]))
    config = model.config
    config.num_hidden_layers = k  # several families loop over layers[:config.num_hidden_layers]
    for key in family.layer_lists:  # per-block settings (sliding or full attention) must stay aligned
        if isinstance(getattr(config, key, None), list):
            setattr(config, key, getattr(config, key)[:k])
    return k
