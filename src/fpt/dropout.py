"""The backbone's dropout on a CPU, with masks drawn 8 bits an element instead of a generator call each.

PyTorch's CPU dropout draws its mask with `bernoulli_`, one call of the Mersenne twister (and a
double) per element, on one thread, unless MKL's generator is used, which it is only on Intel CPUs.
On an AMD EPYC that was 17% of fpt's GPT-2 step (`fpt bench`'s profile, 2026-11-28; 38 masks a step). Here
each 64-bit draw of the same generator gives eight elements a byte each, kept when the byte reads
below the keep probability's first 8 binary digits; an element whose byte equals those digits
exactly (1 in 256) is settled by a further uniform double against the rest of the probability,
so every element is kept independently with the keep probability to a double's precision, as with
`bernoulli_`. The draws come from the global generator, which fpt train re-seeds from (seed, step)
before every step, so a run's masks are reproducible exactly as before (they are other masks than
`bernoulli_`'s). The noise is built as PyTorch builds it (0 or 1 / keep, in the input's dtype) and
multiplied in, so the gradient is PyTorch's too. (Bytes rather than 16-bit draws since 2026-12-07: half
the generator calls, the same comparisons, 256x more ties, still a few thousand doubles a mask: the
draws' `random_` went from 39 to 20 ms a GPT-2 step, the profiles in `fpt bench`'s reports of
2026-12-06 and 2026-12-07.)

`fast_masks(device)` puts this under every `F.dropout` and under attention's own dropout
(`F.scaled_dot_product_attention` with `dropout_p > 0`, then computed by `attention_with_dropout`)
for the calls inside it; on other devices (CUDA draws masks with a fused kernel) and under
torch.compile it does nothing. Attention in bf16 is computed with bf16 products
(`low_precision_attention`), with dropout here and, for short sequences on a CPU, without it
(`Bf16ProductAttention`, which fpt.precision.attention_kernel puts around the backbone call).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any, ContextManager

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode

SDPA = F.scaled_dot_product_attention  # the functions themselves, whatever later rebinds the names
DROPOUT = F.dropout

BITS = 8
LEVELS = 1 << BITS  # 256 values of one byte
PER_WORD = 64 // BITS  # bytes of one 64-bit generator call


def uniform_bytes(shape: torch.Size | tuple[int, ...], device: torch.device | str = "cpu") -> Tensor:
    """Independent uniform bytes, uint8 (shape) in [0, 256), eight to each 64-bit generator call."""
    n = math.prod(shape)
    words = torch.empty((n + PER_WORD - 1) // PER_WORD, dtype=torch.int64, device=device).random_(-2 ** 63, None)
    return words.view(torch.uint8)[:n].view(shape)  # full 64 bits above, so every byte is uniform


def keep_mask(draws: Tensor, keep: float) -> Tensor:
    """True where an element is kept: P(True) = keep for each element of uniform uint8 `draws`.

    keep * 256 = whole + fraction: a draw below `whole` keeps, above it drops, and equal to it
    (probability 1 / 256) keeps with probability `fraction`, from one more uniform double."""
    whole = math.floor(keep * LEVELS)
    fraction = keep * LEVELS - whole
    kept = draws < whole                                                     # (shape) bool
    if fraction > 0:
        ties = flat_positions(draws.reshape(-1) == whole)                   # (k,) flat positions
        if len(ties):
            kept.view(-1)[ties] = torch.rand(len(ties), dtype=torch.float64, device=draws.device) < fraction
    return kept


def flat_positions(flags: Tensor) -> Tensor:
    """(k,) ascending positions of the True elements of a 1-D bool tensor, as flags.nonzero() gives them.
    Ties are sparse (1 in 256): found among eight-flag words first, a scan an eighth as long."""
    if flags.numel() % 8 or not flags.is_contiguous() or flags.storage_offset() % 8:
        return flags.nonzero().squeeze(1)
    words = flags.view(torch.int64).nonzero().squeeze(1)                    # (w,) words holding a True
    within = flags.view(-1, 8)[words].nonzero()                             # (k, 2): word row, byte
    return words[within[:, 0]] * 8 + within[:, 1]


def dropout_noise(like: Tensor, p: float) -> Tensor:
    """PyTorch's dropout noise for `like`: 0 where dropped, 1 / (1 - p) where kept, in its dtype."""
    keep = 1.0 - p
    kept = keep_mask(uniform_bytes(like.shape, like.device), keep)
    scale = torch.tensor(1.0 / keep, dtype=like.dtype, device=like.device)  # rounded to the dtype, as PyTorch's
    return kept.to(like.dtype).mul_(scale)


def dropout(x: Tensor, p: float) -> Tensor:
    """Training-mode dropout of x with rate p (0 < p < 1): x times its noise, differentiable."""
    return x * dropout_noise(x, p)


def math_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                   dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                   enable_gqa: bool = False) -> Tensor:
    """F.scaled_dot_product_attention as its math kernel computes it on a CPU (bf16 and fp16 inputs
    upcast to fp32, as under autocast; the result in the input's dtype), with this module's dropout on
    the attention weights. query (..., Hq, L, E), key/value (..., Hk, S, E|Ev) -> (..., Hq, L, Ev)."""
    dtype = attention_dtype(query)
    with torch.autocast(query.device.type, enabled=False):
        q, k, v = _heads_matched((t.to(dtype).float() for t in (query, key, value)), enable_gqa)
        root = math.sqrt(1.0 / math.sqrt(q.size(-1)) if scale is None else scale)
        scores = (q * root) @ (k * root).transpose(-2, -1)                          # (..., L, S)
        weights = _masked_softmax(scores, attn_mask, is_causal)
        if dropout_p > 0:
            weights = dropout(weights, dropout_p)
        return (weights @ v).to(dtype)


def low_precision_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                            dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                            enable_gqa: bool = False) -> Tensor:
    """Attention for bf16 (or fp16) inputs with its two products in that precision, as an eager
    attention under autocast computes them: q k^T in bf16 (fp32 accumulation, scaled and a causal or
    boolean mask added in the same product, each score rounded once), then softmax and this module's
    dropout in fp32 (an additive float mask is added there, in fp32), the weights rounded to bf16 for the
    product with v. The math kernel (`math_attention`) upcasts q, k and v to fp32 instead; its fp32
    products were 4.8x slower on an AMD EPYC with native bf16 (384 products of 64 x 64 x 64: 1.43
    against 0.29 ms, `python scripts/kernel_times.py`, 2026-12-07), 9% of fpt's GPT-2 step. The price: against attention on unrounded fp32
    inputs, the output errs 1.4-1.7x what the math kernel's does from the same bf16 inputs
    (tests/test_dropout.py). Shapes as `math_attention`."""
    dtype = attention_dtype(query)
    with torch.autocast(query.device.type, enabled=False):
        q, k, v = _heads_matched((t.to(dtype) for t in (query, key, value)), enable_gqa)
        scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
        if attn_mask is not None and attn_mask.dtype != torch.bool:  # an additive mask: added in fp32
            weights = _masked_softmax((q @ k.transpose(-2, -1)).float() * scale, attn_mask, is_causal)
        else:  # scale and a 0 / -inf mask inside one product, the softmax reading bf16 into fp32
            (length, width), keys = q.shape[-2:], k.size(-2)
            batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2])
            q3 = q.expand(*batch, length, width).reshape(-1, length, width)              # (N, L, E)
            k3 = k.expand(*batch, keys, width).reshape(-1, keys, width)                  # (N, S, E)
            bias = _score_bias(attn_mask, is_causal, batch, length, keys, dtype, q.device)
            scores = torch.baddbmm(bias, q3, k3.transpose(1, 2), beta=0.0 if bias.dim() == 0 else 1.0,
                                   alpha=scale)                                        # (N, L, S) bf16
            softmax = torch.ops.aten._safe_softmax if _rows_may_be_empty(attn_mask) else torch.softmax
            weights = softmax(scores, -1, dtype=torch.float32).view(*batch, length, keys)
        if dropout_p > 0:
            weights = dropout(weights, dropout_p)
        return weights.to(dtype) @ v


def _score_bias(attn_mask: Tensor | None, is_causal: bool, batch: torch.Size, length: int, keys: int,
                dtype: torch.dtype, device: torch.device) -> Tensor:
    """0 where a query may attend, -inf where not: (L, S) causal, (N, L, S) from a bool mask, or a 0-dim
    zero where nothing is masked (baddbmm then ignores it)."""
    if is_causal:
        return torch.zeros(length, keys, dtype=dtype, device=device).masked_fill_(
            ~_causal(length, keys, device), float("-inf"))
    if attn_mask is None:
        return torch.zeros((), dtype=dtype, device=device)
    bias = torch.zeros(attn_mask.shape, dtype=dtype, device=device).masked_fill_(~attn_mask, float("-inf"))
    return bias.expand(*batch, length, keys).reshape(-1, length, keys)


def attention_dtype(query: Tensor) -> torch.dtype:
    """The precision SDPA runs in for this query: autocast's where it is on, else the query's."""
    if torch.is_autocast_enabled(query.device.type) and query.dtype.is_floating_point:
        return torch.get_autocast_dtype(query.device.type)
    return query.dtype


def attention_with_dropout(*args: Any, **kwargs: Any) -> Tensor:
    """Training attention under FastMasks: bf16/fp16 products where the inputs are in that precision
    (`low_precision_attention`), the math kernel's fp32 arithmetic otherwise."""
    if _in_low_precision(args, kwargs):
        return low_precision_attention(*args, **kwargs)
    return math_attention(*args, **kwargs)


def _in_low_precision(args: tuple, kwargs: dict) -> bool:
    """Whether an SDPA call's query runs in bf16 or fp16 (its own dtype, or autocast's)."""
    return attention_dtype(args[0] if args else kwargs["query"]) in (torch.bfloat16, torch.float16)


def _heads_matched(tensors: Any, enable_gqa: bool) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v with k and v's heads repeated to q's (grouped-query attention), as SDPA does."""
    q, k, v = tensors
    if enable_gqa and k.size(-3) != q.size(-3):
        repeat = q.size(-3) // k.size(-3)
        k, v = k.repeat_interleave(repeat, -3), v.repeat_interleave(repeat, -3)
    return q, k, v


def _masked_softmax(scores: Tensor, attn_mask: Tensor | None, is_causal: bool) -> Tensor:
    """Softmax over the last dim of fp32 scores (..., L, S) after SDPA's masking; a row with nothing to
    attend to gives zeros, not NaN (SDPA's _safe_softmax), checked on the mask, which is smaller than
    the scores: where no row can be empty the plain softmax gives the same values at a fifth of the cost."""
    if is_causal:
        scores = scores.masked_fill(~_causal(scores.size(-2), scores.size(-1), scores.device), float("-inf"))
    if attn_mask is not None:
        scores = (scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool
                  else scores + attn_mask.float())
    if _rows_may_be_empty(attn_mask):
        return torch.ops.aten._safe_softmax(scores, -1)
    return torch.softmax(scores, -1)


def _causal(length: int, keys: int, device: torch.device) -> Tensor:
    """(L, S) bool, True where query i may attend to key j: j <= i (SDPA's is_causal, top-left aligned)."""
    return torch.ones(length, keys, dtype=torch.bool, device=device).tril()


def _rows_may_be_empty(attn_mask: Tensor | None) -> bool:
    """Whether a query row may have every key masked (a causal mask alone never does: row i sees key 0)."""
    if attn_mask is None:
        return False
    if attn_mask.dtype == torch.bool:
        return not bool(attn_mask.any(-1).all())
    return bool(torch.isneginf(attn_mask).all(-1).any())


class FastMasks(TorchFunctionMode):
    """Routes training-mode dropout (and attention's) to this module's masks while active."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is DROPOUT:
            x, p, training, inplace = _dropout_args(*args, **kwargs)
            if training and 0 < p < 1 and not inplace and x.is_floating_point():
                return dropout(x, p)
        elif func is SDPA:
            if _sdpa_dropout(*args, **kwargs) > 0:
                return attention_with_dropout(*args, **kwargs)
        return func(*args, **kwargs)


class Bf16ProductAttention(TorchFunctionMode):
    """Routes attention without dropout in bf16 (or fp16) to `low_precision_attention`, for short
    sequences on a CPU (fpt.precision.attention_kernel decides where): PyTorch's flash kernel is slower
    there, backward above all, and its math kernel's fp32 products 5x slower. Attention with dropout
    that reaches this mode (PyTorch's own masks asked for) runs PyTorch's math kernel, as before."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is SDPA:
            if _sdpa_dropout(*args, **kwargs) == 0 and _in_low_precision(args, kwargs):
                return low_precision_attention(*args, **kwargs)
            with sdpa_kernel(SDPBackend.MATH):
                return func(*args, **kwargs)
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


MASKS_REASON = {"fpt": "fpt.dropout: eight 8-bit draws per generator call (PyTorch's bernoulli_ draws one per "
                       "element on one thread on a CPU)",
                "torch": "PyTorch's (on a GPU its fused kernel is fast)"}


def attention_dropout_reason(masks: str, precision: str) -> str:
    """How training attention with dropout computes, as result.json's speed_choices records it."""
    if masks != "fpt":
        return "PyTorch's SDPA kernel with its own dropout"
    if precision == "bf16":
        return ("bf16 products, fp32 softmax and dropout (fpt.dropout.low_precision_attention): the math kernel's "
                "fp32 products are 5x slower")
    return "the math kernel's arithmetic with fpt.dropout's masks (fpt.dropout.math_attention)"


def fast_masks(device: torch.device, fast: bool = True) -> ContextManager:
    """This module's dropout masks for the calls inside where masks_used says so; PyTorch's own elsewhere
    and under torch.compile (whose graphs do not take the int64-to-uint8 view of the draws)."""
    return FastMasks() if masks_used(device, fast) == "fpt" and not torch.compiler.is_compiling() else nullcontext()
