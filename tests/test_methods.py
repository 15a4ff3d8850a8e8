"""The arms (--method): what each trains, exact counts, peft adapters that peft itself loads."""

from __future__ import annotations

import json

import pytest
import torch

from fpt.build import assemble_model
from fpt.errors import FptError
from fpt.model import FPTModel
from fpt.options import ModelOptions
from fpt.run.config import build_config
from fpt.run.train import train
from fpt.tasks.base import TaskSpec

SPEC = TaskSpec(name="t", seq_len=10, objective="classification", n_outputs=3, token_dim=4)
# tiny GPT-2 (2 blocks, width 32): input 4*32+32, head 32*3+3
INPUT, HEAD = 160, 99


def build(path, method: str, **options) -> FPTModel:
    return assemble_model(SPEC, ModelOptions(model=str(path), method=method, precision="fp32", **options))


def trained_by_group(model: FPTModel) -> dict[str, int]:
    return {g: c["trainable"] for g, c in model.counts.items() if c["trainable"] and g != "total"}


def test_each_arm_trains_what_it_says(tiny_gpt2):
    assert trained_by_group(build(tiny_gpt2, "full"))["attention"] == 8448
    assert trained_by_group(build(tiny_gpt2, "output")) == {"output": HEAD}
    # LoRA rank 8 on c_attn (32 -> 96) and attention c_proj (32 -> 32) of 2 blocks
    assert trained_by_group(build(tiny_gpt2, "lora")) == {"input": INPUT, "output": HEAD,
                                                          "adapter": 2 * 8 * ((32 + 96) + (32 + 32))}
    assert trained_by_group(build(tiny_gpt2, "lora", lora_rank=2, lora_targets="feedforward"))["adapter"] == \
        2 * 2 * ((32 + 128) + (128 + 32))
    assert trained_by_group(build(tiny_gpt2, "ln-tuning"))["adapter"] == 5 * 64  # ln_1, ln_2 x 2 and ln_f
    assert trained_by_group(build(tiny_gpt2, "lora", train="input,output,layernorm"))["layernorm"] == 320
    bitfit = build(tiny_gpt2, "bitfit")
    biases = sum(p.numel() for n, p in bitfit.backbone.named_parameters() if n.endswith("bias"))
    assert bitfit.counts["total"]["trainable"] == INPUT + HEAD + biases
    assert all(p.requires_grad == n.endswith("bias") for n, p in bitfit.backbone.named_parameters())


def test_replacement_arms_keep_width_and_drop_the_weights(tiny_gpt2):
    no_lm = build(tiny_gpt2, "no-lm")
    assert trained_by_group(no_lm) == {"input": INPUT, "output": HEAD} and no_lm.info.model_type == "no-lm"
    block = build(tiny_gpt2, "block-1")
    groups = trained_by_group(block)
    assert groups["attention"] == 4 * 32 * 32 + 4 * 32 and groups["feedforward"] == 2 * 32 * 128 + 128 + 32
    assert block.counts["total"]["trainable"] == block.counts["total"]["total"]
    attention = build(tiny_gpt2, "attention-1").eval()
    x, mask = torch.randn(2, 10, 4), torch.arange(10)[None, :] < torch.tensor([[10], [6]])
    noisy = x.clone()
    noisy[1, 6:] = 50.0
    assert torch.allclose(attention(x, mask), attention(noisy, mask), atol=1e-5)  # padding is never attended to


def test_bad_arms_are_refused(tiny_gpt2):
    with pytest.raises(FptError, match="--method must be one of"):
        ModelOptions(method="adapters").validate()
    with pytest.raises(FptError, match="--lora-targets"):
        build(tiny_gpt2, "lora", lora_targets="mlp")
    with pytest.raises(FptError, match="applies to pretrained backbones"):
        ModelOptions(model="patchtst", method="lora").validate()


def test_lora_run_saves_an_adapter_peft_loads(tmp_path, tiny_gpt2):
    from peft import PeftModel
    from transformers import AutoModel

    out = tmp_path / "lora"
    result = train(build_config({"task": "bit-xor", "model": str(tiny_gpt2), "method": "lora", "steps": 20,
                                 "eval_every": 10, "batch_size": 8, "progress": False, "out": str(out),
                                 "precision": "fp32"}))
    assert result["config"]["method"] == "lora" and result["params_by_group"]["adapter"]["trainable"] > 0
    flops = result["train_flops"]
    assert flops["per_step"] > 2 * 8 * 10 * 27779 and flops["total"] == flops["per_step"] * 20  # counted: > 2 x params x tokens
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8
    ours = FPTModel.from_pretrained(out)  # fpt's own loading: the adapter is among the trained tensors
    assert any("lora_B" in n and p.abs().sum() > 0 for n, p in ours.named_parameters())  # it trained
    base = AutoModel.from_pretrained(tiny_gpt2)
    loaded = PeftModel.from_pretrained(base, out).eval()
    embeds = torch.randn(2, 10, 32)
    with torch.no_grad():
        expected = ours.backbone(inputs_embeds=embeds).last_hidden_state
        got = loaded(inputs_embeds=embeds).last_hidden_state
    assert torch.allclose(got, expected, atol=1e-4)


def test_plain_baselines_read_the_flattened_input(tiny_gpt2):
    logistic = build(tiny_gpt2, "logistic")
    assert trained_by_group(logistic) == {"output": 10 * 4 * 3 + 3}  # one linear map of the 40 input values
    x = torch.randn(2, 10, 4)
    assert torch.allclose(logistic(x), logistic.head(x.flatten(1)), atol=1e-6)
    mlp = build(tiny_gpt2, "mlp")
    assert trained_by_group(mlp) == {"output": 40 * 256 + 256 + 256 * 3 + 3}
    bits = assemble_model(TaskSpec(name="b", seq_len=10, objective="bits", n_outputs=1, token_dim=1, readout_tokens=5),
                          ModelOptions(model=str(tiny_gpt2), method="logistic", precision="fp32"))
    assert bits(torch.randn(3, 10, 1)).shape == (3, 5, 1)  # every output bit from the whole input


def test_plain_baseline_run_saves_and_loads(tmp_path, tiny_gpt2):
    out = tmp_path / "mlp"
    train(build_config({"task": "bit-xor", "model": str(tiny_gpt2), "method": "mlp", "steps": 10, "eval_every": 5,
                        "batch_size": 8, "progress": False, "out": str(out)}))
    loaded = FPTModel.from_pretrained(out)
    assert loaded.readout == "flatten" and loaded.counts["total"]["trainable"] == 10 * 256 + 256 + 256 * 5 + 5
