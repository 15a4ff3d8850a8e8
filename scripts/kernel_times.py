"""The kernel-level measurements behind fpt's bf16 choices on a CPU (docs/SPEED.md), in one command.

    python scripts/kernel_times.py            # a few seconds on 2 cores (4 s on the EPYC, 2026-12-07)

1. attention's products: 384 products of 64 x 64 x 64 (GPT-2 small, batch 32 x 64 tokens, 12
   heads) in fp32, as PyTorch's math kernel runs them on bf16 inputs, and in bf16
   (fpt.dropout.low_precision_attention);
2. GPT-2's tanh GELU against the erf GELU on one MLP activation (32 x 64 x 3072) in bf16, forward
   and backward;
3. how far the erf GELU is from the tanh one: the largest difference of the two functions, and on
   the bundled pretrained MiniLM how much swapping its GELU for the other moves the last hidden
   states, next to how much bf16 itself moves them;
4. attention's error against attention on unrounded fp32 inputs, bf16 products vs the math kernel's
   fp32 products of the same bf16 inputs, for scores of growing size.
Times are medians of 20 calls after 2 warm-up calls; compare within one run.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F


def millis(call: Callable[[], object], repeats: int = 20) -> float:
    call(), call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def products() -> str:
    q, k = torch.randn(384, 64, 64).bfloat16(), torch.randn(384, 64, 64).bfloat16()
    q32, k32 = q.float(), k.float()
    fp32 = millis(lambda: torch.bmm(q32, k32.transpose(1, 2)))
    bf16 = millis(lambda: torch.bmm(q, k.transpose(1, 2)))
    return f"| attention products, 384 x (64 x 64 x 64) | {fp32:.2f} ms fp32 | {bf16:.2f} ms bf16 | {fp32 / bf16:.1f}x |"


def gelus() -> list[str]:
    x = torch.randn(32, 64, 3072).bfloat16()
    grad = torch.randn_like(x)
    rows = []
    for name, forward in (("forward", lambda a: F.gelu(x, approximate=a)),
                          ("backward", lambda a: torch.ops.aten.gelu_backward(grad, x, approximate=a))):
        tanh, erf = millis(lambda: forward("tanh")), millis(lambda: forward("none"))
        rows.append(f"| GELU {name}, 32 x 64 x 3072 bf16 | {tanh:.2f} ms tanh | {erf:.2f} ms erf | {tanh / erf:.1f}x |")
    return rows


def gelu_distance() -> list[str]:
    from fpt.backbones import load_backbone

    grid = torch.linspace(-10, 10, 2_000_001, dtype=torch.float64)
    gap = (F.gelu(grid, approximate="tanh") - F.gelu(grid)).abs()
    lines = [f"- largest |tanh GELU - erf GELU|: {gap.max().item():.2e} at x = {grid[gap.argmax()].item():.2f}"]
    model, _ = load_backbone("minilm", "pretrained", "auto", 0, fused_gelu=False)
    model.eval()
    acts = [m for m in model.modules() if type(m).__name__ == "GELUActivation"]
    ids = torch.randint(1000, 20000, (8, 64), generator=torch.Generator().manual_seed(0))

    def hidden(bf16: bool, approximate: str) -> torch.Tensor:
        for act in acts:
            act.forward = lambda t, a=approximate: F.gelu(t, approximate=a)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(input_ids=ids).last_hidden_state.float()

    exact = hidden(False, "none")                                    # MiniLM's own GELU, fp32
    moved = lambda out: ((out - exact).norm() / exact.norm()).item()
    lines.append(f"- pretrained MiniLM, last hidden states moved (relative): other GELU in fp32 "
                 f"{moved(hidden(False, 'tanh')):.1e}; bf16 {moved(hidden(True, 'none')):.1e}; "
                 f"bf16 with the other GELU {moved(hidden(True, 'tanh')):.1e}")
    return lines


def attention_error() -> list[str]:
    from fpt.dropout import low_precision_attention, math_attention

    torch.manual_seed(0)
    lines = []
    for size in (1, 2, 3):
        q, k, v = torch.randn(4, 4, 40, 64) * size, torch.randn(4, 4, 48, 64) * size, torch.randn(4, 4, 48, 64)
        reference = torch.softmax(q.double() @ k.double().transpose(-2, -1) / 8, -1) @ v.double()
        rounded = [t.bfloat16() for t in (q, k, v)]
        error = lambda out: float((out.double() - reference).norm() / reference.norm())
        ours, kernel = error(low_precision_attention(*rounded)), error(math_attention(*rounded))
        lines.append(f"- attention error, scores of std {size * size}: bf16 products {ours:.2e}, math "
                     f"kernel {kernel:.2e} ({ours / kernel:.1f}x)")
    return lines


def main() -> None:
    from fpt.provenance import cpu_flags

    flags = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})
    print(f"- torch {torch.__version__}, {torch.get_num_threads()} threads, CPU flags {', '.join(flags)}, "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| kernel | | | ratio |\n|---|---|---|---|")
    print(products())
    print("\n".join(gelus()), end="\n\n")
    print("\n".join(gelu_distance()))
    print("\n".join(attention_error()))


if __name__ == "__main__":
    main()
