"""Every supported family as a tiny random model saved with save_pretrained: exact parameter groups,
measured causality, padding, dropout, --layers, positions, bf16 storage and a short `fpt train`."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from fpt.backbones import load_backbone, set_dropout, weights_hash
from fpt.cli import main
from fpt.run.config import build_config
from fpt.errors import FptError
from fpt.groups import backbone_groups, format_counts
from fpt.model import FPTModel
from fpt.precision import store_frozen_matmul_weights
from fpt.run.setup import setup
from fpt.tasks.base import TaskSpec

# Width 32, 2 blocks, vocabulary 100, 64 positions, feed-forward 64 unless the family fixes it (4 x width).
LLAMA_LIKE = dict(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=8, vocab_size=100, max_position_embeddings=64)
BERT_LIKE = dict(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                 vocab_size=100, max_position_embeddings=64)
# Shared sub-totals: 4 bias-free projections (q 32x32, k and v 32x16, o 32x32) and a SwiGLU MLP (3 x 32x64).
WITHOUT_HEAD_DIM = {k: v for k, v in LLAMA_LIKE.items() if k != "head_dim"}  # width / heads = 8 anyway
GQA, SWIGLU = 32 * 32 + 2 * 32 * 16 + 32 * 32, 3 * 32 * 64
LINEAR_32 = 32 * 32 + 32                         # a 32 -> 32 linear with bias
BERT_FF = (32 * 64 + 64) + (64 * 32 + 32)        # intermediate + output dense
GPT_FF = (32 * 128 + 128) + (128 * 32 + 32)      # 4 x width


@dataclass(frozen=True)
class Case:
    model_type: str
    config: dict[str, Any]
    groups: dict[str, int]   # hand-counted sizes of every group
    causal: bool             # the family's pretrained attention
    position: str
    switchable: bool = True  # --attention of the other kind works
    max_positions: int = 64
    eager: bool = False      # transformers has no SDPA path for it
    extra: dict[str, Any] = field(default_factory=dict)
    variant: str = ""        # a second case of one model_type (OPT-350m's projections, Falcon's ALiBi, ...)

    @property
    def key(self) -> str:
        return self.variant or self.model_type


CASES = [
    Case("gpt2", dict(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=100),
         {"unused": 3200, "position": 64 * 32, "layernorm": 2 * 2 * 64 + 64,
          "attention": 2 * ((32 * 96 + 96) + LINEAR_32), "feedforward": 2 * GPT_FF}, True, "learned"),
    Case("llama", LLAMA_LIKE, {"unused": 3200, "layernorm": 2 * 2 * 32 + 32, "attention": 2 * GQA,
                               "feedforward": 2 * SWIGLU}, True, "rotary"),
    Case("mistral", LLAMA_LIKE, {"unused": 3200, "layernorm": 160, "attention": 2 * GQA,
                                 "feedforward": 2 * SWIGLU}, True, "rotary"),
    Case("qwen2", LLAMA_LIKE, {"unused": 3200, "layernorm": 160, "attention": 2 * (GQA + 32 + 16 + 16),
                               "feedforward": 2 * SWIGLU}, True, "rotary"),
    Case("qwen3", LLAMA_LIKE, {"unused": 3200, "layernorm": 160 + 2 * 2 * 8,  # + query/key norms
                               "attention": 2 * GQA, "feedforward": 2 * SWIGLU}, True, "rotary"),
    Case("gemma", LLAMA_LIKE, {"unused": 3200, "layernorm": 160, "attention": 2 * GQA,
                               "feedforward": 2 * SWIGLU}, True, "rotary"),
    Case("gemma2", LLAMA_LIKE, {"unused": 3200, "layernorm": 2 * 4 * 32 + 32, "attention": 2 * GQA,
                                "feedforward": 2 * SWIGLU}, True, "rotary", eager=True),
    Case("gemma3_text", LLAMA_LIKE, {"unused": 3200, "layernorm": 2 * 4 * 32 + 32 + 2 * 2 * 8,
                                     "attention": 2 * GQA, "feedforward": 2 * SWIGLU}, True, "rotary"),
    Case("phi", dict(WITHOUT_HEAD_DIM, num_key_value_heads=4),
         {"unused": 3200, "layernorm": 2 * 64 + 64, "attention": 2 * 4 * LINEAR_32,
          "feedforward": 2 * BERT_FF}, True, "rotary"),
    Case("phi3", dict(WITHOUT_HEAD_DIM, pad_token_id=0),
         {"unused": 3200, "layernorm": 160, "attention": 2 * (32 * 64 + 32 * 32),  # fused qkv, o
          "feedforward": 2 * (32 * 128 + 64 * 32)}, True, "rotary"),  # fused gate_up, down
    Case("opt", dict(num_hidden_layers=2, hidden_size=32, ffn_dim=64, num_attention_heads=4, vocab_size=100,
                     max_position_embeddings=64, word_embed_proj_dim=32),
         {"unused": 3200, "position": 66 * 32,  # OPT's table has 2 extra rows it never reads
          "layernorm": 2 * 2 * 64 + 64, "attention": 2 * 4 * LINEAR_32, "feedforward": 2 * BERT_FF},
         True, "learned"),
    Case("gpt_neox", {k: v for k, v in WITHOUT_HEAD_DIM.items() if k != "num_key_value_heads"},
         {"unused": 3200, "layernorm": 2 * 2 * 64 + 64, "attention": 2 * ((32 * 96 + 96) + LINEAR_32),
          "feedforward": 2 * BERT_FF}, True, "rotary"),
    Case("gpt_neo", dict(num_layers=2, hidden_size=32, num_heads=4, vocab_size=100, max_position_embeddings=64,
                         attention_types=[[["global", "local"], 1]], window_size=8),
         {"unused": 3200, "position": 64 * 32, "layernorm": 2 * 2 * 64 + 64,
          "attention": 2 * (3 * 32 * 32 + LINEAR_32), "feedforward": 2 * GPT_FF},
         True, "learned", switchable=False, eager=True),
    Case("gptj", dict(n_layer=2, n_embd=32, n_head=4, rotary_dim=4, vocab_size=100, n_positions=64),
         {"unused": 3200, "layernorm": 2 * 64 + 64, "attention": 2 * 4 * 32 * 32, "feedforward": 2 * GPT_FF},
         True, "rotary"),
    Case("falcon", dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, vocab_size=100,
                        max_position_embeddings=64),
         {"unused": 3200, "layernorm": 2 * 64 + 64,
          "attention": 2 * (32 * (32 + 2 * 8) + 32 * 32),  # multi-query: one key and value head
          "feedforward": 2 * 2 * 32 * 128}, True, "rotary"),
    # OPT-350m's layout: embeddings of width 16 projected in and out of the width-32 blocks, post-LN
    Case("opt", dict(num_hidden_layers=2, hidden_size=32, ffn_dim=64, num_attention_heads=4, vocab_size=100,
                     max_position_embeddings=64, word_embed_proj_dim=16, do_layer_norm_before=False),
         {"unused": 1600, "position": 66 * 32, "layernorm": 2 * 2 * 64,  # no final norm when post-LN
          "attention": 2 * 4 * LINEAR_32, "feedforward": 2 * BERT_FF + 16 * 32 + 32 * 16},
         True, "learned", variant="opt-350m-like", extra={"width": 16}),  # in and out of the projections
    # Falcon-7B/40B's predecessors (falcon-rw): ALiBi instead of rotary positions
    Case("falcon", dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, vocab_size=100,
                        max_position_embeddings=64, alibi=True, multi_query=False, parallel_attn=False,
                        bias=True),
         {"unused": 3200, "layernorm": 2 * 2 * 64 + 64,
          "attention": 2 * ((32 * 96 + 96) + LINEAR_32),
          "feedforward": 2 * ((32 * 128 + 128) + (128 * 32 + 32))}, True, "alibi", variant="falcon-alibi"),
    Case("bert", BERT_LIKE, {"unused": 3200, "position": 64 * 32 + 2 * 32, "layernorm": 64 + 2 * 2 * 64,
                             "attention": 2 * 4 * LINEAR_32, "feedforward": 2 * BERT_FF}, False, "learned"),
    Case("roberta", dict(BERT_LIKE, max_position_embeddings=66, type_vocab_size=1),
         {"unused": 3200, "position": 66 * 32 + 32, "layernorm": 320, "attention": 2 * 4 * LINEAR_32,
          "feedforward": 2 * BERT_FF}, False, "learned"),  # 66 rows, 64 usable: from padding_idx + 1
    Case("distilbert", dict(n_layers=2, dim=32, hidden_dim=64, n_heads=2, vocab_size=100, max_position_embeddings=64),
         {"unused": 3200, "position": 64 * 32, "layernorm": 64 + 2 * 2 * 64, "attention": 2 * 4 * LINEAR_32,
          "feedforward": 2 * BERT_FF}, False, "learned", switchable=False),
    Case("deberta-v2", dict(BERT_LIKE, relative_attention=True, position_biased_input=False, type_vocab_size=0,
                            pos_att_type=["p2c", "c2p"], position_buckets=16, norm_rel_ebd="layer_norm",
                            share_att_key=True),  # DeBERTa-v3's layout
         {"unused": 3200, "layernorm": 64 + 2 * 2 * 64 + 64,  # + the relative table's norm
          "attention": 2 * 4 * LINEAR_32 + 2 * 16 * 32,     # + the shared relative-position table
          "feedforward": 2 * BERT_FF}, False, "relative", switchable=False, eager=True),
    # DeBERTa-v2-xlarge's layout: a convolution beside the first block's output
    Case("deberta-v2", dict(BERT_LIKE, relative_attention=True, position_biased_input=False, type_vocab_size=0,
                            pos_att_type=["p2c", "c2p"], position_buckets=16, norm_rel_ebd="layer_norm",
                            share_att_key=True, conv_kernel_size=3, conv_act="gelu"),
         {"unused": 3200, "layernorm": 64 + 2 * 2 * 64 + 64 + 64,  # + the convolution's norm
          "attention": 2 * 4 * LINEAR_32 + 2 * 16 * 32 + (32 * 32 * 3 + 32),  # + the convolution mixing tokens
          "feedforward": 2 * BERT_FF}, False, "relative", switchable=False, eager=True, variant="deberta-v2-conv"),
    Case("electra", dict(BERT_LIKE, embedding_size=16),
         {"unused": 100 * 16, "position": 64 * 16 + 2 * 16, "layernorm": 32 + 2 * 2 * 64,
          "attention": 2 * 4 * LINEAR_32, "feedforward": 2 * BERT_FF + (16 * 32 + 32)}, False, "learned"),
    Case("mpnet", dict(BERT_LIKE, max_position_embeddings=66),
         {"unused": 3200, "position": 66 * 32, "layernorm": 320,
          "attention": 2 * 4 * LINEAR_32 + 32 * 2,  # + relative bias: 32 buckets x 2 heads
          "feedforward": 2 * BERT_FF}, False, "learned+relative", switchable=False, eager=True),
    Case("t5", dict(num_layers=2, d_model=32, d_ff=64, num_heads=2, d_kv=16, vocab_size=100),
         {"unused": 3200, "layernorm": 2 * 2 * 32 + 32, "attention": 2 * 4 * 32 * 32 + 32 * 2,
          "feedforward": 2 * 2 * 32 * 64}, False, "relative", switchable=False, max_positions=1 << 30),
]
BY_TYPE = {c.key: c for c in CASES}
IDS = [c.key for c in CASES]


def _dropouts_to(config: Any, p: float) -> None:
    """Every dropout rate in the config, so that set_dropout has something to override."""
    for key, value in config.to_dict().items():
        if isinstance(value, float) and "drop" in key and key != "layerdrop":
            setattr(config, key, p)


@pytest.fixture(scope="session")
def family_dir(tmp_path_factory):
    """model_type -> directory of a tiny random model of that family (dropout 0.1 everywhere)."""
    from transformers import AutoConfig, AutoModel, T5EncoderModel

    made: dict[str, Path] = {}

    def make(key: str) -> Path:
        model_type = BY_TYPE[key].model_type
        if key not in made:
            config = AutoConfig.for_model(model_type, **BY_TYPE[key].config)
            _dropouts_to(config, 0.1)
            torch.manual_seed(0)
            model = (T5EncoderModel(config) if model_type == "t5" else
                     AutoModel.from_config(config, attn_implementation="eager"))
            made[key] = tmp_path_factory.mktemp("families") / key
            model.save_pretrained(made[key])
        return made[key]

    return make


def load(family_dir, model_type: str, attention: str = "auto", **kw: Any):
    return load_backbone(str(family_dir(model_type)), "pretrained", attention, 0, **kw)


def sizes(backbone: torch.nn.Module) -> dict[str, int]:
    params = dict(backbone.named_parameters())
    out: dict[str, int] = {}
    for name, group in backbone_groups(backbone).items():
        out[group] = out.get(group, 0) + params[name].numel()
    return out


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_group_table_is_exact(family_dir, case):
    backbone, info = load(family_dir, case.key)
    groups = backbone_groups(backbone)
    assert set(groups) == {n for n, _ in backbone.named_parameters()}  # every parameter, once
    assert sizes(backbone) == case.groups
    assert sum(case.groups.values()) == sum(p.numel() for p in backbone.parameters())
    assert (info.position, info.max_positions, info.layers) == (case.position, case.max_positions, 2)
    assert info.attention_impl == ("eager" if case.eager else "sdpa")


def _first_token_moves(model: FPTModel, width: int = 3, length: int = 12) -> bool:
    """The test's own probe, through fpt's input layer and backbone: does changing the last token move
    the first token's output? (--readout first itself is refused on causal backbones.)"""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, length, width, generator=gen)
    changed = x.clone()
    changed[:, -1] += torch.randn(width, generator=gen)
    mask = torch.ones(2, length, dtype=torch.long)

    def first(inputs: torch.Tensor) -> torch.Tensor:
        return model.backbone(inputs_embeds=model.input(inputs), attention_mask=mask).last_hidden_state[:, 0]

    with torch.no_grad():
        return not torch.allclose(first(x), first(changed), atol=1e-6, rtol=1e-5)


SPEC = TaskSpec(name="c", seq_len=12, token_dim=3, objective="classification", n_outputs=4)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("attention", ["auto", "causal", "bidirectional"])
def test_causality_is_measured_and_switches_work_or_are_refused(family_dir, case, attention):
    expected = case.causal if attention == "auto" else attention == "causal"
    if attention != "auto" and expected != case.causal and not case.switchable:
        with pytest.raises(FptError, match=f"--attention {attention}: .* stays"):
            load(family_dir, case.key, attention)
        return
    backbone, info = load(family_dir, case.key, attention)
    assert info.causal is expected
    torch.manual_seed(0)
    model = FPTModel(SPEC, backbone, info, readout="mean", dropout=0.0).eval()
    assert _first_token_moves(model) is not info.causal


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_padding_changes_nothing(family_dir, case):
    backbone, info = load(family_dir, case.key)
    torch.manual_seed(0)
    model = FPTModel(SPEC, backbone, info, dropout=0.0).eval()
    x = torch.randn(3, 12, 3)
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[1, 7:] = False
    mask[2, 4:] = False
    with torch.no_grad():
        padded = model(x, mask)
        for row, length in ((0, 12), (1, 7), (2, 4)):
            alone = model(x[row:row + 1, :length], mask[row:row + 1, :length])
            torch.testing.assert_close(padded[row:row + 1], alone, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backbone_dropout_reaches_every_dropout(family_dir, case):
    """The tiny models have dropout 0.1 in every config field; train mode is then random, and
    set_dropout(0) must make it deterministic, float attention rates included."""
    backbone, _ = load(family_dir, case.key)
    backbone.train()
    width = backbone.get_input_embeddings().embedding_dim
    x, mask = torch.randn(2, 8, width), torch.ones(2, 8, dtype=torch.long)

    def twice() -> bool:
        with torch.no_grad():
            torch.manual_seed(1)
            a = backbone(inputs_embeds=x, attention_mask=mask).last_hidden_state
            torch.manual_seed(2)
            return torch.equal(a, backbone(inputs_embeds=x, attention_mask=mask).last_hidden_state)

    assert not twice()
    assert set_dropout(backbone, 0.0) > 0
    assert twice()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_layers_keeps_the_first_blocks(family_dir, case):
    from fpt.families import FAMILIES, block_list

    full, full_info = load(family_dir, case.key)
    one, info = load(family_dir, case.key, layers=1)
    second_block = sum(p.numel() for p in block_list(full, FAMILIES[case.model_type])[1].parameters())
    assert info.layers == 1 and full_info.layers == 2
    assert sum(p.numel() for p in one.parameters()) == sum(p.numel() for p in full.parameters()) - second_block
    assert weights_hash(one) != weights_hash(full)
    assert info.causal is case.causal  # still measured, on the truncated model
    with pytest.raises(FptError, match="--layers 3: .* has only 2 blocks"):
        load(family_dir, case.key, layers=3)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_stored_bf16_weights_compute_exactly_what_autocast_does(family_dir, case):
    cfg = build_config({"task": "bit-xor", "model": str(family_dir(case.key)), "precision": "fp32",
                        "dropout": 0.0, "backbone_dropout": "0"})
    model = setup(cfg).model
    stored = copy.deepcopy(model)
    stored.precision = model.precision = "bf16"
    assert store_frozen_matmul_weights(stored, torch.bfloat16) > 0
    x, mask = torch.randn(4, 10, 1), torch.ones(4, 10, dtype=torch.bool)
    mask[0, 7:] = False
    results = []
    for m in (model, stored):
        out = m(x, mask)
        out.sum().backward()
        results.append((out, {n: p.grad for n, p in m.named_parameters() if p.requires_grad}))
    assert torch.equal(results[0][0], results[1][0])
    for name, grad in results[0][1].items():
        assert torch.equal(grad, results[1][1][name]), name


@pytest.mark.parametrize("model_type", ["gptj", "gpt_neo", "phi"])
def test_tanh_gelu_families_use_the_fused_kernel(family_dir, model_type):
    from transformers.activations import NewGELUActivation

    backbone, _ = load(family_dir, model_type)
    assert not any(isinstance(m, NewGELUActivation) for m in backbone.modules())
    plain, _ = load(family_dir, model_type, fused_gelu=False)
    assert any(isinstance(m, NewGELUActivation) for m in plain.modules())


@pytest.mark.parametrize("model_type", ["llama", "t5", "deberta-v2"])
def test_train_position_without_a_table_is_an_error(family_dir, model_type):
    path = str(family_dir(model_type))
    with pytest.raises(FptError, match="--train position: .* no learned position table .*"
                                       f"{BY_TYPE[model_type].position}"):
        setup(build_config({"task": "bit-xor", "model": path, "train": "layernorm,position"}))
    built = setup(build_config({"task": "bit-xor", "model": path}))  # the FPT recipe: what there is
    assert "position" not in built.counts
    table = format_counts(built.counts, built.info.position).splitlines()
    assert table[4].split() == ["position", "none", "-", f"({BY_TYPE[model_type].position}", "positions,",
                                "nothing", "to", "train)"]


def test_roberta_position_limit_counts_from_padding_idx(family_dir, tmp_path, capsys):
    """66 rows from padding_idx + 1 = 2 leave 64 positions: a 65-token task fails in setup, before any write."""
    out = tmp_path / "run"
    code = main(["train", "--task", "bit-memory", "--task-opt", "n_patterns=4", "--task-opt", "n_bits=13",
                 "--task-opt", "token_dim=1", "--model", str(family_dir("roberta")), "--out", str(out),
                 "--steps", "2", "--no-progress"])
    assert code == 2
    assert "needs 65 positions but --model" in (err := capsys.readouterr().err) and "has only 64" in err
    assert not out.exists()


def test_electra_small_input_layer_feeds_the_embedding_width(family_dir):
    backbone, info = load(family_dir, "electra")
    assert (info.input_size, info.hidden_size) == (16, 32)
    model = FPTModel(SPEC, backbone, info)
    assert model.input.out_features == 16 and model.head.in_features == 32


def test_unknown_and_refused_families(tmp_path):
    from transformers import AutoConfig, AutoModel, ViTConfig

    AutoModel.from_config(AutoConfig.for_model("bloom", n_layer=1, hidden_size=32, n_head=2,
                                               vocab_size=100)).save_pretrained(tmp_path / "bloom")
    with pytest.raises(FptError, match="does not know the model family 'bloom'.*supported: GPT-2, Llama"):
        load_backbone(str(tmp_path / "bloom"), "pretrained", "auto", 0)
    ViTConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64,
              image_size=16, patch_size=8).save_pretrained(tmp_path / "vit")
    with pytest.raises(FptError, match="vit is not supported: transformers' ViTModel takes pixel_values only"):
        load_backbone(str(tmp_path / "vit"), "random", "auto", 0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fpt_train_runs_and_records_the_backbone(family_dir, tmp_path, case, capsys):
    out = tmp_path / "run"
    code = main(["train", "--task", "bit-xor", "--task-opt", "n_bits=3", "--task-opt", "n_val=8",
                 "--task-opt", "n_test=8", "--model", str(family_dir(case.key)), "--steps", "4",
                 "--eval-every", "2", "--batch-size", "4", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    backbone = result["backbone"]
    assert (backbone["causal"], backbone["position"], backbone["layers"]) == (case.causal, case.position, 2)
    width = case.extra.get("width", 16 if case.model_type == "electra" else 32)  # of inputs_embeds (and output)
    out_width = case.extra.get("width", 32)
    assert result["params_by_group"]["total"]["total"] == sum(case.groups.values()) + 2 * width + (out_width + 1)
    assert result["steps_run"] == 4


# The hub models' architectures as their config.json files give them (read on a connected machine;
# here only the architecture is built, on the meta device, so nothing is downloaded or allocated).
HUB_ARCHITECTURES = {
    "smollm2-135m": ("llama", dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                   num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                                   max_position_embeddings=8192)),
    "qwen2.5-0.5b": ("qwen2", dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                   num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                                   max_position_embeddings=32768)),
    "pythia-160m": ("gpt_neox", dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                     num_attention_heads=12, vocab_size=50304, max_position_embeddings=2048)),
    "opt-125m": ("opt", dict(hidden_size=768, ffn_dim=3072, num_hidden_layers=12, num_attention_heads=12,
                             vocab_size=50272, max_position_embeddings=2048, word_embed_proj_dim=768)),
}


@pytest.mark.parametrize("name", sorted(HUB_ARCHITECTURES))
def test_known_hub_backbones_match_their_architectures(name):
    from transformers import AutoConfig, AutoModel

    from fpt.catalog import CATALOG
    from fpt.families import FAMILIES, max_positions, position_kind

    model_type, kwargs = HUB_ARCHITECTURES[name]
    config = AutoConfig.for_model(model_type, **kwargs)
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    known = CATALOG[name]
    family = FAMILIES[model_type]
    assert (known.family, known.layers, known.width) == (model_type, config.num_hidden_layers, config.hidden_size)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == known.params_m
    assert (known.positions, known.position) == (max_positions(family, config), position_kind(family, config))
