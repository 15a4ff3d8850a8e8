"""The FPT model: readouts, padding, attention masks, input layers, position limits."""

from __future__ import annotations

import pytest
import torch

from fpt.backbones import load_backbone
from fpt.errors import FptError
from fpt.model import FPTModel, read_out
from fpt.tasks.base import TaskSpec

CLS = TaskSpec(name="c", seq_len=12, token_dim=3, objective="classification", n_outputs=4)


def build(path, spec=CLS, attention="auto", readout="auto"):
    backbone, info = load_backbone(str(path), "pretrained", attention, 0)
    torch.manual_seed(0)
    return FPTModel(spec, backbone, info, readout=readout, dropout=0.0).eval()


def test_read_out_modes():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float).reshape(2, 4, 1)  # (B, L, H)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    assert read_out(hidden, mask, "last")[:, 0].tolist() == [3.0, 5.0]
    assert read_out(hidden, mask, "first")[:, 0].tolist() == [0.0, 4.0]
    assert read_out(hidden, mask, "mean")[:, 0].tolist() == [1.5, 4.5]
    assert read_out(hidden, mask, "last-k", 2)[..., 0].tolist() == [[2.0, 3.0], [4.0, 5.0]]


@pytest.mark.parametrize("fixture", ["tiny_gpt2", "tiny_bert"])
@pytest.mark.parametrize("readout", ["last", "mean", "first"])
def test_padding_is_never_attended_or_read(request, fixture, readout):
    if fixture == "tiny_gpt2" and readout == "first":
        pytest.skip("refused on a causal backbone: test_first_token_readout_is_refused_on_causal_backbones")
    model = build(request.getfixturevalue(fixture), readout=readout)
    x = torch.randn(1, 12, 3)
    mask = torch.zeros(1, 12, dtype=torch.bool)
    mask[:, :7] = True
    garbage = x.clone()
    garbage[:, 7:] = 1e3 * torch.randn(1, 5, 3)
    with torch.no_grad():
        a, b = model(x, mask), model(garbage, mask)
        alone = model(x[:, :7], mask[:, :7])
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fixture,attention,causal", [
    ("tiny_gpt2", "auto", True), ("tiny_bert", "auto", False), ("tiny_bert", "causal", True)])
def test_attention_mask(request, fixture, attention, causal):
    model = build(request.getfixturevalue(fixture), attention=attention)
    assert model.info.causal is causal
    x = torch.randn(1, 12, 3)
    changed = x.clone()
    changed[:, -1] += 1.0  # the first token sees the last one only without a causal mask
    mask = torch.ones(1, 12, dtype=torch.long)

    def first_token(inputs):  # the backbone's output at position 0
        return model.backbone(inputs_embeds=model.input(inputs), attention_mask=mask).last_hidden_state[:, 0]

    with torch.no_grad():
        same = torch.allclose(first_token(x), first_token(changed), atol=1e-6)
    assert same is causal


@pytest.mark.parametrize("fixture,attention", [("tiny_gpt2", "auto"), ("tiny_bert", "causal")])
def test_first_token_readout_is_refused_on_causal_backbones(request, fixture, attention):
    with pytest.raises(FptError, match="is causal, so its first token has attended only to itself"):
        build(request.getfixturevalue(fixture), attention=attention, readout="first")
    build(request.getfixturevalue(fixture), attention=attention, readout="mean")  # mean reads every token


def test_last_k_readout_is_refused_on_a_one_output_task(tiny_bert):
    with pytest.raises(FptError, match="has one output for the whole sequence"):
        build(tiny_bert, readout="last-k")


def test_gpt2_can_be_bidirectional(tiny_gpt2):
    """A full attention mask through transformers' config.is_causal switch, measured by the probe."""
    assert build(tiny_gpt2, attention="bidirectional").info.causal is False


def test_input_layer_init(tiny_gpt2):
    model = build(tiny_gpt2)
    w = model.input.weight  # (H, D) = (32, 3): orthogonal columns scaled by 1.41
    torch.testing.assert_close(w.T @ w, 1.41 ** 2 * torch.eye(3), atol=1e-4, rtol=1e-4)
    assert torch.count_nonzero(model.input.bias) == 0  # the paper's zero bias: GPT-2 adds learned positions


def test_zero_tokens_on_a_deep_rotary_decoder_keep_finite_gradients(tmp_path):
    """All-zero tokens at the start of a causal, position-free, bias-free RMSNorm decoder would embed to
    the zero vector under the paper's zero bias, a fixed point whose gradient grows 1/sqrt(eps) per norm
    (NaN within 30 SmolLM2 blocks). There the bias starts small and random (std 0.02)."""
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    path = tmp_path / "deep-llama"
    # wide and large-init enough that the zero state's self-attention path gains ~1e3 a block, as SmolLM2's
    LlamaModel(LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=16, num_attention_heads=2,
                           num_key_value_heads=1, vocab_size=50, max_position_embeddings=64,
                           initializer_range=0.1)).save_pretrained(path)
    model = build(path).train()
    assert model.info.position == "rotary" and model.input.bias.abs().max() > 0
    x = torch.zeros(4, 12, 3)
    x[:, 6:] = torch.randn(4, 6, 3)  # the first half of every sequence is zeros (MNIST's top rows)
    loss = model(x).square().mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    with torch.no_grad():
        model.input.bias.zero_()  # the paper's init, on this backbone: the failure the default avoids
    model.zero_grad()
    model(x).square().mean().backward()
    assert not all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # run bidirectionally, every token attends to the others: no fixed point, the paper's zero bias
    assert torch.count_nonzero(build(path, attention="bidirectional").input.bias) == 0


def test_integer_tokens_use_an_embedding(tiny_bert):
    spec = TaskSpec(name="ids", seq_len=8, vocab_size=17, objective="classification", n_outputs=3)
    model = build(tiny_bert, spec)
    assert isinstance(model.input, torch.nn.Embedding) and model.input.num_embeddings == 17
    out = model(torch.randint(0, 17, (2, 8)), torch.ones(2, 8, dtype=torch.bool))
    assert out.shape == (2, 3)


def test_sequence_longer_than_positions(tiny_gpt2):
    spec = TaskSpec(name="long", seq_len=65, token_dim=1, objective="classification", n_outputs=2)
    with pytest.raises(FptError, match="needs 65 positions but --model .* has only 64"):
        build(tiny_gpt2, spec)


def test_per_element_tasks_need_last_k(tiny_gpt2):
    spec = TaskSpec(name="bits", seq_len=10, token_dim=1, objective="bits", n_outputs=1, readout_tokens=5)
    model = build(tiny_gpt2, spec)
    assert model(torch.randn(2, 10, 1), torch.ones(2, 10, dtype=torch.bool)).shape == (2, 5, 1)
    with pytest.raises(FptError, match="needs --readout last-k"):
        build(tiny_gpt2, spec, readout="mean")


def test_random_init_is_seeded_and_differs_from_pretrained(tiny_gpt2):
    a, _ = load_backbone(str(tiny_gpt2), "random", "auto", seed=1)
    b, _ = load_backbone(str(tiny_gpt2), "random", "auto", seed=1)
    c, _ = load_backbone(str(tiny_gpt2), "pretrained", "auto", seed=1)
    wa, wb, wc = (m.h[0].attn.c_attn.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_random_gpt2_needs_no_download_at_all():
    """The gpt2 family's architectures are built in: --init random works offline."""
    import os

    from fpt.backbones import _load_config
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    config = _load_config("gpt2-medium", "gpt2-medium", "random")
    assert (config.n_layer, config.n_embd, config.n_head, config.n_positions) == (24, 1024, 16, 1024)
