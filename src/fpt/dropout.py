"""The backbone's dropout on a CPU, with masks drawn 16 bits an element instead of a generator call each.

PyTorch's CPU dropout draws its mask with `bernoulli_`, one call of the Mersenne twister (and a
double) per element, on one thread, unless MKL's generator is used, which it is only on Intel CPUs.
On an AMD EPYC that was 17% of fpt's GPT-2 step (`fpt bench`'s profile, 2026-11-28; 38 masks a step). Here
each 64-bit draw of the same generator gives four elements 16 bits each, kept when the 16 bits read
below the keep probability's first 16 binary digits; an element whose bits equal those digits
exactly (1 in 65,536) is settled by a further uniform double against the rest of the probability,
so every element is kept independently with the keep probability to a double's precision, as with
`bernoulli_`. The draws come from the global generator, which fpt train re-seeds from (seed, step)
before every step, so a run's masks are reproducible exactly as before (they are other masks than
`bernoulli_`'s). The noise is built as PyTorch builds it (0 or 1 / keep, in the input's dtype) and
multiplied in, so the gradient is PyTorch's too.

`fast_masks(device)` puts this under every `F.dropout` and under attention's own dropout
(`F.scaled_dot_product_attention` with `dropout_p > 0`, then computed as its math kernel does) for
the calls inside it; on other devices (CUDA draws masks with a fused kernel) and under torch.compile
it does nothing.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any, ContextManager

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

BITS = 16
LEVELS = 1 << BITS  # 65,536 values of one 16-bit draw
OFFSET = 1 << (BITS - 1)  # an int16 reads the draw u in [0, 65536) as u - 32768


def uniform_int16(shape: torch.Size | tuple[int, ...], device: torch.device | str = "cpu") -> Tensor:
    """Independent uniform 16-bit draws, read as int16 (shape), four to each 64-bit generator call."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-2 ** 63, None)  # full 64 bits
    return words.view(torch.int16)[:n].view(shape)


def keep_mask(draws: Tensor, keep: float) -> Tensor:
    """True where an element is kept: P(True) = keep for each element of uniform int16 `draws`.

    keep * 65536 = whole + fraction: a draw below `whole` keeps, above it drops, and equal to it
    (probability 1 / 65536) keeps with probability `fraction`, from one more uniform double."""
    whole = math.floor(keep * LEVELS)
    fraction = keep * LEVELS - whole
    kept = draws < whole - OFFSET                                            # (shape) bool
    if fraction > 0:
        ties = (draws.reshape(-1) == whole - OFFSET).nonzero().squeeze(1)   # (k,) flat positions
        if len(ties):
            kept.view(-1)[ties] = torch.rand(len(ties), dtype=torch.float64, device=draws.device) < fraction
    return kept


def dropout_noise(like: Tensor, p: float) -> Tensor:
    """PyTorch's dropout noise for `like`: 0 where dropped, 1 / (1 - p) where kept, in its dtype."""
    keep = 1.0 - p
    kept = keep_mask(uniform_int16(like.shape, like.device), keep)
    scale = torch.tensor(1.0 / keep, dtype=like.dtype, device=like.device)
    return torch.where(kept, scale, torch.zeros((), dtype=like.dtype, device=like.device))


def dropout(x: Tensor, p: float) -> Tensor:
    """Training-mode dropout of x with rate p (0 < p < 1): x times its noise, differentiable."""
    return x * dropout_noise(x, p)


def math_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                   dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                   enable_gqa: bool = False) -> Tensor:
    """F.scaled_dot_product_attention as its math kernel computes it on a CPU (bf16 and fp16 inputs
    upcast to fp32, as under autocast; the result in the input's dtype), with this module's dropout on
    the attention weights. query (..., Hq, L, E), key/value (..., Hk, S, E|Ev) -> (..., Hq, L, Ev)."""
    dtype = query.dtype
    if torch.is_autocast_enabled(query.device.type) and dtype.is_floating_point:
        dtype = torch.get_autocast_dtype(query.device.type)  # autocast runs SDPA in its low precision
    with torch.autocast(query.device.type, enabled=False):
        q, k, v = (t.to(dtype).float() for t in (query, key, value))
        if enable_gqa and k.size(-3) != q.size(-3):
            repeat = q.size(-3) // k.size(-3)
            k, v = k.repeat_interleave(repeat, -3), v.repeat_interleave(repeat, -3)
        root = math.sqrt(1.0 / math.sqrt(q.size(-1)) if scale is None else scale)
        scores = (q * root) @ (k * root).transpose(-2, -1)                          # (..., L, S)
        if is_causal:
            allowed = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).tril()
            scores = scores.masked_fill(~allowed, float("-inf"))
        if attn_mask is not None:
            scores = (scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool
                      else scores + attn_mask.float())
        weights = torch.ops.aten._safe_softmax(scores, -1)  # a row with nothing to attend to: zeros, not NaN
        if dropout_p > 0:
            weights = dropout(weights, dropout_p)
        return (weights @ v).to(dtype)


class FastMasks(TorchFunctionMode):
    """Routes training-mode dropout (and attention's) to this module's masks while active."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.dropout:
            x, p, training, inplace = _dropout_args(*args, **kwargs)
            if training and 0 < p < 1 and not inplace and x.is_floating_point():
                return dropout(x, p)
        elif func is F.scaled_dot_product_attention:
            if _sdpa_dropout(*args, **kwargs) > 0:
                return math_attention(*args, **kwargs)
        return func(*args, **kwargs)


def _dropout_args(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> tuple:
    return input, p, training, inplace


def _sdpa_dropout(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                  dropout_p: float = 0.0, *rest: Any, **options: Any) -> float:
    return dropout_p


def masks_used(device: torch.device, fast: bool) -> str:
    """Whose masks dropout draws on `device` ('fpt': this module's, on a CPU when `fast`; else 'torch'),
    as result.json records it."""
    return "fpt" if fast and device.type == "cpu" else "torch"


MASKS_REASON = {"fpt": "fpt.dropout: four 16-bit draws per generator call (PyTorch's bernoulli_ draws one per "
                       "element on one thread on a CPU)",
                "torch": "PyTorch's (on a GPU its fused kernel is fast)"}


def fast_masks(device: torch.device, fast: bool = True) -> ContextManager:
    """This module's dropout masks for the calls inside where masks_used says so; PyTorch's own elsewhere
    and under torch.compile (whose graphs do not take the int64-to-int16 view of the draws)."""
    return FastMasks() if masks_used(device, fast) == "fpt" and not torch.compiler.is_compiling() else nullcontext()
