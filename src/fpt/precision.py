"""Numeric precision of the frozen backbone: bf16 where the hardware does it natively.

`--precision auto` (the default) picks bf16 autocast on CUDA devices that support it
and on CPUs with native bf16 instructions (AVX512-BF16, AMX, Arm BF16), fp32 elsewhere.
Emulated bf16 is slower than fp32, so it is never chosen automatically.

Under bf16 autocast every matrix product casts its weight to bf16 on every call, and a
frozen weight's cast copy is kept for the backward pass. For frozen Linear layers the
cast gives the same bits every time, so fpt stores those weights in bf16 once: the
products compute exactly what autocast would, without the per-step copies. Trained
parameters (input layer, head, layer norms, positions) stay fp32.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import ContextManager

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from fpt.dropout import Bf16ProductAttention
from fpt.errors import FptError
from fpt.options import check_device
from fpt.provenance import CPU_BF16_FLAGS, cpu_flags


def resolve_device(name: str | torch.device) -> torch.device:
    """auto -> cuda when available, else cpu; a CUDA device that is not there is an error."""
    if isinstance(name, torch.device):
        return name
    check_device(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FptError(f"--device {name}: no CUDA device is available here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise FptError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}") from None


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)  # V100/T4 only emulate it
        except TypeError:  # older torch: no emulation switch
            return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(CPU_BF16_FLAGS & cpu_flags())
    return False  # mps and others: not measured, so not assumed


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto -> bf16 or fp32 for this device; fp32 and bf16 are kept as asked."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(device: torch.device, precision: str) -> ContextManager:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


# On CPU under bf16, PyTorch's fused (flash) SDPA kernel, its choice whenever attention has no
# dropout (Llama-family models; every evaluation pass), is slower than its plain "math" kernel (two
# batched matmuls and a softmax) for short sequences, backward pass above all. Measured on a 2-core
# Xeon with AMX (forward + backward, no dropout, frozen weights, bf16 autocast): MiniLM 64 x 42 tokens
# 1.13 s flash vs 0.33 s math, 448 x 42 8.2 s vs 3.6 s, 64 x 128 2.9 s vs 1.9 s; SmolLM2 16 x 10
# 0.69 s vs 0.47 s, 16 x 64 2.5 s vs 1.8 s. Flash wins from about 256 tokens (MiniLM 16 x 256:
# 1.15 s vs 1.60 s) and in fp32 the two are within 10%. The math kernel upcasts bf16 to fp32 for its
# two products, 5x slower than bf16 products on an AMD EPYC (fpt.dropout.low_precision_attention), so
# up to this length fpt computes attention that way (keeping the (B, heads, L, L) scores, small here).
SHORT_BF16_ATTENTION_TOKENS = 128


def short_bf16_on_cpu(device: torch.device, precision: str, tokens: int) -> bool:
    """Where attention takes bf16 products without dropout: bf16 on a CPU, at most the threshold's tokens."""
    return device.type == "cpu" and precision == "bf16" and tokens <= SHORT_BF16_ATTENTION_TOKENS


def attention_kernel(device: torch.device, precision: str, tokens: int) -> ContextManager:
    """How attention computes around a backbone call: bf16 products for short bf16 sequences on a CPU
    (the math kernel under torch.compile, whose graphs take no function modes), PyTorch's choice elsewhere."""
    if short_bf16_on_cpu(device, precision, tokens):
        return sdpa_kernel(SDPBackend.MATH) if torch.compiler.is_compiling() else Bf16ProductAttention()
    return nullcontext()


# Linear layers whose forward is `input @ weight.T + bias`: the matmul casts the weight as F.linear
# would, but the bias is added outside it, where a bf16 bias would round the sum: weight only.
WEIGHT_ONLY = {"FalconLinear"}


def is_matmul_layer(module: nn.Module) -> bool:
    """nn.Linear (or a subclass computing F.linear, or one in WEIGHT_ONLY), or the Conv1D that GPT-2
    uses as a transposed Linear."""
    if type(module).__name__ in WEIGHT_ONLY or type(module).__name__ == "Conv1D":
        return True
    return isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward


@torch.no_grad()
def store_frozen_matmul_weights(model: nn.Module, dtype: torch.dtype) -> int:
    """Cast the frozen weights and biases of matmul layers to `dtype`; returns how many values."""
    count = 0
    for module in model.modules():
        if not is_matmul_layer(module):
            continue
        for name, param in module.named_parameters(recurse=False):
            if name == "bias" and type(module).__name__ in WEIGHT_ONLY:
                continue
            if not param.requires_grad and param.dtype != dtype:
                param.data = param.data.to(dtype)
                count += param.numel()
    return count


def precision_reason(asked: str, device: torch.device) -> str:
    """Why --precision resolved as it did on this device: result.json's `speed_choices`."""
    if asked != "auto":
        return f"--precision {asked}, as asked"
    if not native_bf16(device):
        return "auto: no native bf16 on this device (emulated bf16 is slower than fp32), so fp32"
    if device.type == "cpu":
        return f"auto: this CPU does bf16 in hardware ({', '.join(sorted(CPU_BF16_FLAGS & cpu_flags()))}), so bf16"
    return "auto: this GPU does bf16 natively, so bf16"


def attention_kernel_reason(device: torch.device, precision: str, tokens: int) -> str:
    """How attention computes at `tokens` tokens, and why."""
    if short_bf16_on_cpu(device, precision, tokens):
        return (f"bf16 products (fpt.dropout.low_precision_attention): bf16 on a CPU with {tokens} tokens (at most "
                f"{SHORT_BF16_ATTENTION_TOKENS}), where PyTorch's flash kernel is slower, backward above all, and its "
                "math kernel's fp32 products 5x slower")
    return f"PyTorch's own choice at {tokens} tokens (flash where it applies)"
