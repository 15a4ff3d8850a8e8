"""--precision: auto picks bf16 only where it is native; stored bf16 frozen weights change nothing."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from fpt import precision
from fpt.run.config import build_config
from fpt.precision import autocast, resolve_precision, store_frozen_matmul_weights
from fpt.run.setup import setup


@pytest.mark.parametrize("flags, expected", [({"avx512f", "avx512_bf16"}, "bf16"), ({"amx_bf16"}, "bf16"),
                                             ({"asimd", "bf16"}, "bf16"), ({"avx2", "fma"}, "fp32"), (set(), "fp32")])
def test_auto_is_bf16_only_on_cpus_that_do_it_natively(monkeypatch, flags, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"  # explicit choices are kept
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"


@pytest.mark.parametrize("fixture", ["tiny_gpt2", "tiny_bert"])
def test_stored_bf16_weights_compute_exactly_what_autocast_does(request, fixture):
    """The cast autocast would make on every call, made once: same bits out, same gradients."""
    cfg = build_config({"task": "bit-xor", "model": str(request.getfixturevalue(fixture)), "precision": "fp32",
                        "dropout": 0.0})
    model = setup(cfg).model
    stored = copy.deepcopy(model)
    stored.precision = model.precision = "bf16"
    cast = store_frozen_matmul_weights(stored, torch.bfloat16)
    assert cast > 0
    for name, param in stored.named_parameters():  # trained parameters stay fp32
        if param.requires_grad:
            assert param.dtype == torch.float32, name
    x, mask = torch.randn(4, 10, 1), torch.ones(4, 10, dtype=torch.bool)
    mask[0, 7:] = False
    outputs = []
    for m in (model, stored):
        out = m(x, mask)
        out.sum().backward()
        outputs.append((out, {n: p.grad for n, p in m.named_parameters() if p.requires_grad}))
    assert torch.equal(outputs[0][0], outputs[1][0])
    for name, grad in outputs[0][1].items():
        assert torch.equal(grad, outputs[1][1][name]), name


def test_frozen_matmul_weights_are_bf16_and_trained_ones_fp32(tiny_gpt2):
    built = setup(build_config({"task": "bit-xor", "model": str(tiny_gpt2), "precision": "bf16"}))
    assert built.precision == "bf16"
    params = dict(built.model.named_parameters())
    assert params["backbone.h.0.attn.c_attn.weight"].dtype == torch.bfloat16
    assert params["backbone.h.0.mlp.c_fc.bias"].dtype == torch.bfloat16
    for name in ("input.weight", "head.weight", "backbone.h.0.ln_1.weight", "backbone.wpe.weight"):
        assert params[name].dtype == torch.float32 and params[name].requires_grad, name
    assert built.model(torch.randn(2, 10, 1), torch.ones(2, 10, dtype=torch.bool)).dtype == torch.float32


def test_gpt2_uses_the_fused_tanh_gelu_which_is_gelu_new(tiny_gpt2):
    from transformers.activations import NewGELUActivation

    built = setup(build_config({"task": "bit-xor", "model": str(tiny_gpt2), "precision": "fp32"}))
    act = built.model.backbone.h[0].mlp.act
    assert type(act).__name__ == "TanhGelu"
    x = torch.randn(1000) * 4
    torch.testing.assert_close(act(x), NewGELUActivation()(x), atol=1e-6, rtol=0)
    assert not isinstance(act, NewGELUActivation)


def test_the_tanh_gelu_is_erf_in_bf16_on_a_cpu_and_tanh_otherwise():
    """Within bf16's resolution of the output: the two GELUs differ by at most 4.7e-4 anywhere."""
    from fpt.backbones import TanhGelu

    act = TanhGelu()
    x = torch.linspace(-8, 8, 100_001)
    assert torch.equal(act(x), F.gelu(x, approximate="tanh"))                      # fp32: GPT-2's own
    assert torch.equal(act(x.bfloat16()), F.gelu(x.bfloat16()))                    # bf16 on a CPU: erf
    assert float((F.gelu(x.double(), approximate="tanh") - F.gelu(x.double())).abs().max()) < 4.8e-4
    act.erf_in_bf16 = False
    assert torch.equal(act(x.bfloat16()), F.gelu(x.bfloat16(), approximate="tanh"))


def test_autocast_is_a_no_op_for_fp32():
    with autocast(torch.device("cpu"), "fp32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with autocast(torch.device("cpu"), "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_a_frozen_head_or_input_layer_stays_fp32_and_runs(tmp_path, tiny_gpt2):
    from fpt.run.train import train

    for groups in ("input,layernorm", "output,layernorm"):
        cfg = build_config({"task": "bit-xor", "model": str(tiny_gpt2), "precision": "bf16", "train": groups,
                            "steps": 2, "eval_every": 2, "progress": False, "out": str(tmp_path / groups)})
        assert train(cfg)["precision"] == "bf16"


def test_backbone_dropout_is_the_configs_unless_set(tiny_gpt2):
    import torch.nn as nn

    from fpt.errors import FptError

    def rates(value):
        built = setup(build_config({"task": "bit-xor", "model": str(tiny_gpt2), "backbone_dropout": value}))
        return {m.p for m in built.model.backbone.modules() if isinstance(m, nn.Dropout)}

    assert rates("config") == {0.0}  # the tiny fixture's own config
    assert rates("0.25") == {0.25}
    for bad in ("1.5", "none", "-0.1"):
        with pytest.raises(FptError, match="--backbone-dropout must be config or a probability"):
            rates(bad)



@pytest.mark.parametrize(("name", "max_tokens", "routed"),
                         [("bf16", precision.SHORT_BF16_ATTENTION_TOKENS, True), ("bf16", 9, False),
                          ("fp32", precision.SHORT_BF16_ATTENTION_TOKENS, False)])
def test_short_bf16_sequences_on_cpu_get_bf16_product_attention(monkeypatch, tiny_gpt2, name, max_tokens, routed):
    """CPU flash SDPA is 1.4-3.5x slower than the math kernel for short bf16 sequences, whose fp32
    products are 5x slower than bf16 ones (precision.py): the backbone call computes attention with bf16
    products there (bit-xor: 10 tokens), in training and evaluation, and leaves PyTorch's choice elsewhere."""
    from fpt import dropout

    seen = []
    ours = dropout.low_precision_attention

    def recording(*args, **kwargs):
        seen.append(args[0].shape)
        return ours(*args, **kwargs)

    monkeypatch.setattr(dropout, "low_precision_attention", recording)
    monkeypatch.setattr(precision, "SHORT_BF16_ATTENTION_TOKENS", max_tokens)
    model = setup(build_config({"task": "bit-xor", "model": str(tiny_gpt2), "precision": name})).model
    x = torch.randn(2, 10, 1)
    for mode in (model.train, model.eval):  # the fixture's backbone has no dropout: training goes this way too
        mode()
        seen.clear()  # setup's own probes of the backbone
        chosen = model(x)
        assert bool(seen) is routed and all(shape[-2] == 10 for shape in seen)
    monkeypatch.setattr(precision, "SHORT_BF16_ATTENTION_TOKENS", 0)
    torch.testing.assert_close(chosen, model(x), rtol=2e-2, atol=2e-2)  # same maths, bf16 rounding apart


def test_attention_with_torch_masks_under_the_bf16_mode_is_pytorchs_math_kernel():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from fpt.dropout import Bf16ProductAttention

    q, k, v = (torch.randn(2, 3, 6, 4, dtype=torch.bfloat16) for _ in range(3))
    torch.manual_seed(3)
    with Bf16ProductAttention():
        ours = F.scaled_dot_product_attention(q, k, v, dropout_p=0.3)
    torch.manual_seed(3)
    with sdpa_kernel(SDPBackend.MATH):
        assert torch.equal(ours, F.scaled_dot_product_attention(q, k, v, dropout_p=0.3))


def test_result_says_why_precision_and_the_attention_kernel_were_chosen(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert precision.precision_reason("auto", cpu) == "auto: this CPU does bf16 in hardware (avx512_bf16), so bf16"
    assert precision.precision_reason("fp32", cpu) == "--precision fp32, as asked"
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2"})
    assert "no native bf16" in precision.precision_reason("auto", cpu) and "so fp32" in precision.precision_reason("auto", cpu)
    assert precision.attention_kernel_reason(cpu, "bf16", 10).startswith("bf16 products")
    assert "with 10 tokens" in precision.attention_kernel_reason(cpu, "bf16", 10)
    assert precision.attention_kernel_reason(cpu, "bf16", 512).startswith("PyTorch's own choice")
    assert precision.attention_kernel_reason(cpu, "fp32", 10).startswith("PyTorch's own choice")
