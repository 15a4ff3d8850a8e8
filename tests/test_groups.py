"""Parameter groups: exact membership tables for GPT-2 and BERT, and the paper's count."""

from __future__ import annotations

import pytest
import torch

from fpt.backbones import load_backbone
from fpt.options import GROUPS
from fpt.errors import FptError
from fpt.groups import backbone_groups, count_parameters, set_trainable
from fpt.model import FPTModel
from fpt.tasks.base import TaskSpec

# Hand-counted for the tiny fixtures (width 32, 2 layers, 64 positions, vocab 100).
GPT2_TABLE = {
    "unused": 100 * 32,                                     # wte
    "position": 64 * 32,                                    # wpe
    "layernorm": 2 * 2 * 64 + 64,                           # ln_1, ln_2 per block + ln_f
    "attention": 2 * ((32 * 96 + 96) + (32 * 32 + 32)),     # c_attn, c_proj
    "feedforward": 2 * ((32 * 128 + 128) + (128 * 32 + 32)),  # c_fc, c_proj
}
BERT_TABLE = {
    "unused": 100 * 32,                                     # word embeddings (pooler is dropped)
    "position": 64 * 32 + 2 * 32,                           # position + token-type embeddings
    "layernorm": 64 + 2 * 2 * 64,                           # embeddings LN + 2 per layer
    "attention": 2 * (3 * (32 * 32 + 32) + (32 * 32 + 32)),  # q, k, v, output dense
    "feedforward": 2 * ((32 * 64 + 64) + (64 * 32 + 32)),   # intermediate, output dense
}
SPEC = TaskSpec(name="t", seq_len=10, token_dim=1, objective="bits", n_outputs=1, readout_tokens=5)


@pytest.mark.parametrize("fixture,table", [("tiny_gpt2", GPT2_TABLE), ("tiny_bert", BERT_TABLE)])
def test_group_table_is_exact(request, fixture, table):
    backbone, _ = load_backbone(str(request.getfixturevalue(fixture)), "pretrained", "auto", 0)
    groups = backbone_groups(backbone)
    sizes: dict[str, int] = {}
    params = dict(backbone.named_parameters())
    for name, group in groups.items():
        sizes[group] = sizes.get(group, 0) + params[name].numel()
    assert sizes == table
    assert set(groups) == set(params)  # every parameter in exactly one group


@pytest.mark.parametrize("fixture", ["tiny_gpt2", "tiny_bert"])
@pytest.mark.parametrize("train", [["input", "output", "layernorm", "position"], ["output"], list(GROUPS)])
def test_set_trainable_follows_groups(request, fixture, train):
    backbone, info = load_backbone(str(request.getfixturevalue(fixture)), "pretrained", "auto", 0)
    model = FPTModel(SPEC, backbone, info)
    group_of = model.parameter_groups()
    set_trainable(model, group_of, train)
    counts = count_parameters(model, group_of)
    for name, param in model.named_parameters():
        assert param.requires_grad == (group_of[name] in train), name
    assert counts["input"] == {"total": 32 + 32, "trainable": 64 if "input" in train else 0}
    assert counts["output"] == {"total": 33, "trainable": 33 if "output" in train else 0}
    assert counts["unused"]["trainable"] == 0
    assert counts["total"]["total"] == sum(p.numel() for p in model.parameters())


def test_gpt2_small_cifar10_count_matches_paper_groups():
    """GPT-2 small on CIFAR-10 shapes (64 tokens x 48, 10 classes), FPT default groups.

    The paper quotes ~106K trained parameters (0.086%). Input + output + layer norms
    alone are 83,722; the full position table adds 786,432 (only its first 64 rows
    ever get a gradient at this length). We assert the exact per-group numbers.
    """
    from transformers import GPT2Config, GPT2Model

    backbone = GPT2Model(GPT2Config())  # the gpt2 architecture, random weights, no download
    from fpt.backbones import BackboneInfo
    info = BackboneInfo("gpt2", "gpt2", "random", "gpt2", 768, 1024, True)
    spec = TaskSpec(name="cifar10", seq_len=64, token_dim=48, objective="classification", n_outputs=10)
    model = FPTModel(spec, backbone, info)
    group_of = model.parameter_groups()
    set_trainable(model, group_of, ["input", "output", "layernorm", "position"])
    c = count_parameters(model, group_of)
    assert c["input"]["trainable"] == 48 * 768 + 768 == 37_632
    assert c["output"]["trainable"] == 768 * 10 + 10 == 7_690
    assert c["layernorm"]["trainable"] == 25 * 2 * 768 == 38_400
    assert c["position"]["trainable"] == 1024 * 768
    assert c["input"]["trainable"] + c["output"]["trainable"] + c["layernorm"]["trainable"] == 83_722
    assert c["attention"]["trainable"] == c["feedforward"]["trainable"] == 0
    assert 124_000_000 < c["total"]["total"] < 124_600_000


def test_unknown_parameter_role_is_an_error():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mystery = torch.nn.Linear(2, 2)

    with pytest.raises(FptError, match="does not know the role"):
        backbone_groups(Odd())
