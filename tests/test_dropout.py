"""fpt.dropout: the CPU dropout masks from 16-bit draws keep each element independently with the exact
keep probability, reproducibly from the generator's seed, and attention computed with them is the
math kernel's attention."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from fpt.dropout import LEVELS, OFFSET, FastMasks, dropout_noise, keep_mask, math_attention, uniform_int16


def within(observed: float, expected: float, n: int, sigmas: float = 5.0) -> bool:
    return abs(observed - expected) <= sigmas * math.sqrt(expected * (1 - expected) / n) + 1e-12


def test_draws_are_uniform_16_bit_in_every_lane_of_a_word():
    torch.manual_seed(0)
    draws = uniform_int16((1_000_000,)).long() + OFFSET             # [0, 65536)
    assert int(draws.min()) >= 0 and int(draws.max()) < LEVELS
    for lane in range(4):                                           # the four 16-bit lanes of a 64-bit draw
        values = draws[lane::4].double()
        assert abs(values.mean().item() / (LEVELS - 1) - 0.5) < 0.003
        assert within(float((values < LEVELS / 4).double().mean()), 0.25, len(values))


@pytest.mark.parametrize("keep", [0.9, 0.5, 0.8, 1 / 3, 0.999])
def test_each_element_is_kept_with_the_keep_probability(keep):
    torch.manual_seed(1)
    n = 2_000_000
    kept = keep_mask(uniform_int16((n,)), keep)
    assert within(float(kept.double().mean()), keep, n)


def test_a_draw_equal_to_the_threshold_keeps_with_the_remaining_fraction():
    """keep * 65536 = whole + fraction: the tie is settled by a further uniform, so P(keep) = keep
    exactly, not the 16-bit rounding whole / 65536 (0.899994 for keep 0.9)."""
    torch.manual_seed(2)
    keep = 0.9
    whole = math.floor(keep * LEVELS)
    fraction = keep * LEVELS - whole
    ties = torch.full((200_000,), whole - OFFSET, dtype=torch.int16)
    assert within(float(keep_mask(ties, keep).double().mean()), fraction, len(ties))
    below, above = torch.full((10,), whole - OFFSET - 1, dtype=torch.int16), torch.full((10,), whole - OFFSET + 1, dtype=torch.int16)
    assert keep_mask(below, keep).all() and not keep_mask(above, keep).any()
    exact = 0.5  # 32768 / 65536: no fraction, a tie drops
    assert not keep_mask(torch.full((10,), 0, dtype=torch.int16), exact).any()


def test_elements_are_independent_of_their_neighbours():
    torch.manual_seed(3)
    keep, n = 0.9, 2_000_000
    kept = keep_mask(uniform_int16((n,)), keep).double()
    for lag in (1, 2, 3, 4, 5):                                     # within a 64-bit word and across words
        both = float((kept[:-lag] * kept[lag:]).mean())
        assert within(both, keep * keep, n - lag), lag


def test_masks_are_reproducible_from_the_seed():
    x = torch.ones(64, 33)
    torch.manual_seed(7)
    a = dropout_noise(x, 0.1)
    torch.manual_seed(7)
    b = dropout_noise(x, 0.1)
    torch.manual_seed(8)
    c = dropout_noise(x, 0.1)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_noise_is_pytorchs_zero_or_inverse_keep_in_the_inputs_dtype(dtype):
    torch.manual_seed(4)
    noise = dropout_noise(torch.ones(1000, 100, dtype=dtype), 0.1)
    assert noise.dtype == dtype
    assert set(noise.unique().tolist()) == {0.0, torch.tensor(1 / 0.9, dtype=dtype).item()}


def test_dropout_under_fast_masks_is_the_input_times_its_noise_and_so_is_its_gradient():
    x = torch.randn(16, 50, requires_grad=True)
    torch.manual_seed(5)
    with FastMasks():
        out = F.dropout(x, 0.25, training=True)
    torch.manual_seed(5)
    noise = dropout_noise(x, 0.25)
    assert torch.equal(out, x * noise)
    out.sum().backward()
    assert torch.equal(x.grad, noise)
    with FastMasks():
        assert torch.equal(F.dropout(x, 0.25, training=False), x)   # eval: the input itself
        assert torch.equal(torch.nn.Dropout(0.0)(x), x)
    kept = float((out != 0).double().mean())
    assert within(kept, 0.75, x.numel())


ATTENTION_CASES = [{"is_causal": True}, {"attn_mask": "bool"}, {"attn_mask": "float"}, {"scale": 0.3}, {"enable_gqa": True}]


@pytest.mark.parametrize("case", ATTENTION_CASES, ids=lambda c: "-".join(map(str, c.items())))
@pytest.mark.parametrize("dtype,under_autocast", [(torch.float32, False), (torch.float32, True), (torch.bfloat16, False)])
def test_math_attention_is_the_math_kernels_attention_bit_for_bit(case, dtype, under_autocast):
    torch.manual_seed(6)
    q = torch.randn(3, 4, 10, 8, dtype=dtype)
    heads_kv = 2 if case.get("enable_gqa") else 4
    k, v = torch.randn(3, heads_kv, 12, 8, dtype=dtype), torch.randn(3, heads_kv, 12, 8, dtype=dtype)
    allowed = torch.rand(3, 1, 10, 12) > 0.3
    allowed[..., 0] = True
    kwargs = dict(case)
    if kwargs.get("attn_mask") == "bool":
        kwargs["attn_mask"] = allowed
    elif kwargs.get("attn_mask") == "float":
        kwargs["attn_mask"] = torch.where(allowed, 0.0, -1e4).to(dtype)
    if kwargs.get("is_causal"):
        k, v = k[..., :10, :], v[..., :10, :]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=under_autocast), sdpa_kernel(SDPBackend.MATH):
        expected = F.scaled_dot_product_attention(q, k, v, **kwargs)
        ours = math_attention(q, k, v, **kwargs)
    assert ours.dtype == expected.dtype and torch.equal(ours, expected)


def test_attention_dropout_goes_through_fast_masks_and_no_dropout_through_pytorchs_kernel():
    torch.manual_seed(9)
    q, k, v = (torch.randn(2, 3, 6, 4, requires_grad=True) for _ in range(3))
    torch.manual_seed(10)
    with FastMasks():
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.2, is_causal=True)
    torch.manual_seed(10)
    assert torch.equal(out, math_attention(q, k, v, dropout_p=0.2, is_causal=True))
    out.sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
    with FastMasks():
        assert torch.equal(F.scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v))


def test_fpt_model_uses_them_on_cpu_reproducibly_and_records_it(tiny_gpt2):
    from fpt import build_model
    from fpt.dropout import masks_used

    model = build_model(str(tiny_gpt2), token_dim=4, n_outputs=3, seq_len=8, init="random", backbone_dropout=0.1)
    model.train()
    x = torch.randn(5, 8, 4)
    outputs = []
    for fast, seed in ((True, 0), (True, 0), (True, 1), (False, 0)):
        model.fast_dropout = fast
        torch.manual_seed(seed)
        outputs.append(model(x))
    assert torch.equal(outputs[0], outputs[1]) and not torch.equal(outputs[0], outputs[2])
    assert not torch.equal(outputs[0], outputs[3])  # PyTorch's masks are other masks
    assert masks_used(torch.device("cpu"), True) == "fpt" and masks_used(torch.device("cuda"), True) == "torch"


def test_fast_masks_stand_aside_on_cuda_and_under_torch_compile(monkeypatch):
    from contextlib import nullcontext

    from fpt.dropout import fast_masks

    assert isinstance(fast_masks(torch.device("cpu")), FastMasks)
    assert isinstance(fast_masks(torch.device("cuda")), nullcontext)
    assert isinstance(fast_masks(torch.device("cpu"), fast=False), nullcontext)  # PyTorch's masks asked for
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert isinstance(fast_masks(torch.device("cpu")), nullcontext)
