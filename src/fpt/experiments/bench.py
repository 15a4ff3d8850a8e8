"""`fpt bench`: where a training step's time goes, on this machine, side by side in one run.

Every variant trains the same FPT model on the same shape (default: the GPT-2 small
architecture with random weights, nothing downloaded, batch 32 x 64 tokens of 48 values,
CIFAR-10's shape). Each variant runs in its own subprocess, so its peak memory is its own.

    plain        fp32, eager, frozen weights with requires_grad off: the floor to beat
    naive        frozen weights still require grad; their gradients are computed and thrown away
    full         every parameter trains (full fine-tuning)
    bf16         plain under bf16 autocast
    compile      plain under torch.compile (--compile; compiling takes a while on CPU)
    compile-bf16 both

FLOPs are counted with torch's FlopCounterMode on one FPT step (forward, backward for
activations, weight gradients of trained parameters only: what must be computed) and divided
by each variant's step time; the matmul peak is measured in the same run, per dtype.
Also measured: output-only training on cached features vs recomputing them, and the time
spent producing a batch vs training on it.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from fpt.runs import cpu_name

VARIANTS = ("plain", "naive", "full", "bf16", "compile", "compile-bf16")


def matmul_peak(dtype: torch.dtype, device: torch.device, seconds: float = 1.0) -> float:
    """FLOP/s of a large square matmul, the best this device does for `dtype`."""
    n = 4096 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    _sync(device)
    return 2 * n ** 3 * count / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def build(model_name: str, tokens: int, dim: int, classes: int, train: str, device: torch.device):
    """An FPT model on a synthetic spec; the backbone's weights are random unless it is bundled."""
    from fpt.backbones import load_backbone
    from fpt.groups import set_trainable
    from fpt.model import FPTModel
    from fpt.tasks.base import TaskSpec

    init = "pretrained" if model_name == "minilm" else "random"
    backbone, info = load_backbone(model_name, init, "auto", seed=0)
    spec = TaskSpec(name="bench", seq_len=tokens, token_dim=dim, objective="classification", n_outputs=classes)
    model = FPTModel(spec, backbone, info).to(device)
    groups = model.parameter_groups()
    chosen = ["input", "output", "layernorm", "position", "attention", "feedforward"] if train == "all" \
        else ["input", "output", "layernorm", "position"]
    set_trainable(model, groups, chosen)
    return model, groups


def one_variant(variant: str, model_name: str, batch: int, tokens: int, dim: int, steps: int,
                device_name: str) -> dict[str, Any]:
    """Time `steps` training steps of one variant (run in its own process)."""
    device = torch.device(device_name)
    model, _ = build(model_name, tokens, dim, 10, "all" if variant == "full" else "fpt", device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if variant == "naive":  # the mistake: frozen weights still get gradients
        for p in model.parameters():
            p.requires_grad_(True)
    optimizer = torch.optim.Adam(trainable, lr=1e-3)
    forward = torch.compile(model) if variant.startswith("compile") else model
    bf16 = variant.endswith("bf16")
    x = torch.randn(batch, tokens, dim, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    mask = torch.ones(batch, tokens, dtype=torch.bool, device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(forward(x, mask).float(), y)
        loss.backward()
        for p in model.parameters():  # naive: the frozen weights' gradients are thrown away
            if p.grad is not None and not any(p is t for t in trainable):
                p.grad = None
        optimizer.step()

    model.train()
    compile_start = time.perf_counter()
    step()  # warm-up (and compilation)
    warmup_seconds = time.perf_counter() - compile_start
    step()
    _sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return {"variant": variant, "seconds_per_step": statistics.median(times), "warmup_seconds": warmup_seconds,
            "peak_memory_mb": _peak_memory_mb(device)}


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):  # the process's peak resident memory
            return int(line.split()[1]) / 1024
    return float("nan")


def fpt_step_flops(model_name: str, batch: int, tokens: int, dim: int) -> int:
    """FLOPs of one FPT training step, counted by torch while it runs."""
    from torch.utils.flop_counter import FlopCounterMode

    model, _ = build(model_name, tokens, dim, 10, "fpt", torch.device("cpu"))
    x, y = torch.randn(batch, tokens, dim), torch.randint(0, 10, (batch,))
    mask = torch.ones(batch, tokens, dtype=torch.bool)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x, mask), y).backward()
    return counter.get_total_flops()


def cached_vs_recomputed(model_name: str, examples: int, tokens: int, dim: int, batch: int) -> dict[str, float]:
    """Seconds per epoch of head-only training: features cached once vs recomputed every batch."""
    model, _ = build(model_name, tokens, dim, 10, "fpt", torch.device("cpu"))
    model.eval()
    x, y = torch.randn(examples, tokens, dim), torch.randint(0, 10, (examples,))
    mask = torch.ones(examples, tokens, dtype=torch.bool)
    head = model.head
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)

    def epoch(features_of) -> float:
        start = time.perf_counter()
        for i in range(0, examples, batch):
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(head(features_of(i)), y[i:i + batch])
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start

    with torch.no_grad():
        start = time.perf_counter()
        cache = torch.cat([model.features(x[i:i + batch], mask[i:i + batch]) for i in range(0, examples, batch)])
        caching = time.perf_counter() - start

    def recompute(i: int) -> torch.Tensor:
        with torch.no_grad():
            return model.features(x[i:i + batch], mask[i:i + batch])

    recomputed = epoch(recompute)
    cached = min(epoch(lambda i: cache[i:i + batch]) for _ in range(3))
    return {"recompute_epoch_s": recomputed, "cached_epoch_s": cached, "caching_once_s": caching,
            "speedup": recomputed / cached}


def data_time(batch: int) -> dict[str, float]:
    """Seconds to produce one training batch, per generated task."""
    from fpt.tasks import build_task

    result = {}
    for name in ("bit-xor", "bit-memory"):
        task = build_task(name, {}, data_seed=0)
        start = time.perf_counter()
        for step in range(20):
            task.train_batch(step, batch, seed=0)
        result[name] = (time.perf_counter() - start) / 20
    return result


def run_bench(model_name: str = "gpt2", batch: int = 32, tokens: int = 64, dim: int = 48, steps: int = 5,
              variants: tuple[str, ...] = ("plain", "naive", "full", "bf16"), device: str = "cpu") -> dict[str, Any]:
    dev = torch.device(device)
    record: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores, {cpu_name()}",
        "device": device, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "shape": {"model": model_name, "batch": batch, "tokens": tokens, "dim": dim},
        "peak_flops": {"fp32": matmul_peak(torch.float32, dev), "bf16": matmul_peak(torch.bfloat16, dev)},
        "fpt_step_flops": fpt_step_flops(model_name, batch, tokens, dim),
    }
    record["variants"] = [_in_subprocess(v, model_name, batch, tokens, dim, steps, device) for v in variants]
    plain = record["variants"][0]["seconds_per_step"]
    for v in record["variants"]:
        v["samples_per_s"] = batch / v["seconds_per_step"]
        v["tokens_per_s"] = batch * tokens / v["seconds_per_step"]
        v["speedup_vs_plain"] = plain / v["seconds_per_step"]
        peak = record["peak_flops"]["bf16" if "bf16" in v["variant"] else "fp32"]
        v["fraction_of_peak"] = record["fpt_step_flops"] / v["seconds_per_step"] / peak
    record["output_only"] = cached_vs_recomputed(model_name, 256, tokens, dim, batch)
    data = data_time(batch)
    record["data_seconds_per_batch"] = data
    record["data_fraction_of_plain_step"] = {k: v / plain for k, v in data.items()}
    return record


def _in_subprocess(variant: str, model: str, batch: int, tokens: int, dim: int, steps: int,
                   device: str) -> dict[str, Any]:
    code = ("import json, sys; from fpt.experiments.bench import one_variant; "
            f"print(json.dumps(one_variant({variant!r}, {model!r}, {batch}, {tokens}, {dim}, {steps}, {device!r})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"variant": variant, "error": proc.stderr.strip().splitlines()[-1][:200],
                "seconds_per_step": float("nan")}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown(record: dict[str, Any], command: str) -> str:
    shape = record["shape"]
    peak = record["peak_flops"]
    lines = [
        "# fpt bench", "",
        f"- command: `{command}`",
        f"- machine: {record['machine']}; device {record['device']}; torch {record['torch']}, "
        f"{record['threads']} threads; date {record['date']}",
        f"- shape: {shape['model']} architecture, batch {shape['batch']} x {shape['tokens']} tokens x "
        f"{shape['dim']} values; FPT step = {record['fpt_step_flops'] / 1e9:.1f} GFLOP (counted by torch)",
        f"- matmul peak measured in the same run: fp32 {peak['fp32'] / 1e9:.0f} GFLOP/s, "
        f"bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s", "",
        "| variant | s/step | samples/s | tokens/s | vs plain | FPT FLOPs / peak | peak memory MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in record["variants"]:
        if "error" in v:
            lines.append(f"| {v['variant']} | failed: {v['error']} | | | | | |")
            continue
        lines.append(f"| {v['variant']} | {v['seconds_per_step']:.3f} | {v['samples_per_s']:.1f} | "
                     f"{v['tokens_per_s']:.0f} | {v['speedup_vs_plain']:.2f}x | {v['fraction_of_peak']:.0%} | "
                     f"{v['peak_memory_mb']:.0f} |")
    o = record["output_only"]
    lines += ["", f"Output-only training, one epoch of 256 examples: recomputing features {o['recompute_epoch_s']:.3f} s, "
              f"cached {o['cached_epoch_s']:.5f} s ({o['speedup']:.0f}x faster per epoch; caching once costs "
              f"{o['caching_once_s']:.3f} s).", ""]
    for name, seconds in record["data_seconds_per_batch"].items():
        share = record["data_fraction_of_plain_step"][name]
        lines.append(f"- producing a {name} batch of {shape['batch']}: {seconds * 1e3:.2f} ms "
                     f"({share:.1%} of a plain step)")
    return "\n".join(lines) + "\n"
