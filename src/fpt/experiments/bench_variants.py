"""One training step, timed: the variants `fpt bench` puts side by side.

Every variant trains an FPT model on the same synthetic shape. Each runs in its own
process (`in_subprocess`), so its peak memory is its own:

    plain      the loop a user writes with Hugging Face: fp32, eager, frozen weights with
               requires_grad off, the model exactly as transformers builds it. The floor to beat.
    naive      plain, but the frozen weights still require grad (their gradients thrown away)
    full       plain, every parameter trains (full fine-tuning)
    bf16       plain under bf16 autocast: "autocast alone"
    fpt        what `fpt train` does by default here: --precision auto (bf16 where native, frozen
               matmul weights stored in bf16), GPT-2's fused tanh GELU
    fpt-fp32   fpt with --precision fp32: what a host without native bf16 (AVX2 only) runs by default
    fpt-nodrop fpt with --backbone-dropout 0 (not a default: the paper's code keeps the backbone's
               dropout; shows what its random masks cost)
    fpt-torchmasks  fpt with PyTorch's own dropout masks (bernoulli_) instead of fpt.dropout's: what
               the cheaper masks save
    full-fpt   full fine-tuning on fpt's path (same precision and kernels as fpt)
    compile    fpt under torch.compile (opt-in: compiling takes a while on a CPU)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch


@dataclass(frozen=True)
class Variant:
    """How one variant's model and step differ from the plain loop."""
    fpt_path: bool = False        # fpt's kernels: fused GELU, fpt.dropout's masks, --precision auto
    precision: str | None = None  # None: auto on fpt's path, fp32 off it
    train_all: bool = False
    naive: bool = False           # frozen weights left requiring grad
    autocast_outside: bool = False  # the whole step under bf16 autocast (fpt's model applies its own inside)
    backbone_dropout: float | None = None  # None: the backbone's configured rates
    torch_masks: bool = False     # PyTorch's dropout masks on fpt's path
    compile: bool = False
    method: str = "fpt"


VARIANTS: dict[str, Variant] = {
    "plain": Variant(),
    "naive": Variant(naive=True),
    "full": Variant(train_all=True),
    "bf16": Variant(autocast_outside=True),
    "fpt": Variant(fpt_path=True),
    "fpt-fp32": Variant(fpt_path=True, precision="fp32"),
    "fpt-nodrop": Variant(fpt_path=True, backbone_dropout=0.0),
    "fpt-torchmasks": Variant(fpt_path=True, torch_masks=True),
    "full-fpt": Variant(fpt_path=True, train_all=True),
    "compile": Variant(fpt_path=True, compile=True),
}


def variant_settings(name: str) -> Variant:
    """A named variant, or arm-NAME: fpt's path with the arena's arm NAME (--method)."""
    from fpt.arms import ARMS

    if name.startswith("arm-") and name[4:] in ARMS:
        return Variant(fpt_path=True, method=name[4:])
    return VARIANTS[name]


def build(model_name: str, tokens: int, dim: int, classes: int, variant: Variant, device: torch.device) -> torch.nn.Module:
    """An FPT model on a synthetic spec; the backbone's weights are random unless it is bundled.
    Off fpt's path (the plain variants) it is fp32 with GPT-2's GELU as transformers writes it and
    PyTorch's dropout masks."""
    from fpt.backbones import load_backbone
    from fpt.catalog import lookup
    from fpt.model import assemble_model
    from fpt.options import FPT_DEFAULT_GROUPS, ModelOptions
    from fpt.tasks.base import TaskSpec

    named = lookup(model_name)
    init = "pretrained" if named is not None and named.locate is not None else "random"  # bundled weights
    precision = variant.precision or ("auto" if variant.fpt_path else "fp32")
    dropout = "config" if variant.backbone_dropout is None else variant.backbone_dropout
    options = ModelOptions(model=model_name, init=init, train="all" if variant.train_all else FPT_DEFAULT_GROUPS,
                           precision=precision, backbone_dropout=dropout, method=variant.method)
    loaded = load_backbone(model_name, init, "auto", seed=0, fused_gelu=variant.fpt_path)
    spec = TaskSpec(name="bench", seq_len=tokens, token_dim=dim, objective="classification", n_outputs=classes)
    model = assemble_model(spec, options, device, loaded=loaded)
    model.fast_dropout = variant.fpt_path and not variant.torch_masks
    return model


def one_variant(name: str, model_name: str, batch: int, tokens: int, dim: int, steps: int,
                device_name: str, profile: bool = False) -> dict[str, Any]:
    """Time `steps` training steps of one variant (run it in its own process)."""
    device = torch.device(device_name)
    variant = variant_settings(name)
    model = build(model_name, tokens, dim, 10, variant, device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if variant.naive:  # the mistake: frozen weights still get gradients
        for p in model.parameters():
            p.requires_grad_(True)
    optimizer = torch.optim.Adam(trainable, lr=1e-3)
    forward = torch.compile(model) if variant.compile else model
    autocast_outside = variant.autocast_outside
    kept = {id(p) for p in trainable}
    x = torch.randn(batch, tokens, dim, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    mask = torch.ones(batch, tokens, dtype=torch.bool, device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast_outside):
            loss = torch.nn.functional.cross_entropy(forward(x, mask).float(), y)
        loss.backward()
        for p in model.parameters():  # naive: the frozen weights' gradients are thrown away
            if p.grad is not None and id(p) not in kept:
                p.grad = None
        optimizer.step()

    model.train()
    reset_peak_memory(device)  # the peak of training, not of loading
    started = time.perf_counter()
    step()  # warm-up (and compilation)
    warmup_seconds = time.perf_counter() - started
    step()
    sync(device)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - started)
    result = {"variant": name, "seconds_per_step": statistics.median(times), "warmup_seconds": warmup_seconds,
              "peak_memory_mb": peak_memory_mb(device), "precision": getattr(model, "precision", "fp32")
              if not autocast_outside else "bf16"}
    if profile:
        result["profile"] = op_profile(step, device)
    return result


def op_profile(step: Callable[[], None], device: torch.device, top: int = 10) -> list[dict[str, Any]]:
    """Where one step's time goes: the operators with the most self time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        sync(device)
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, attr), reverse=True)
    total = sum(getattr(e, attr) for e in events) or 1.0
    return [{"op": e.key, "ms": getattr(e, attr) / 1e3, "share": getattr(e, attr) / total, "calls": e.count}
            for e in events[:top]]


def step_flops(model_name: str, batch: int, tokens: int, dim: int) -> int:
    """FLOPs of one FPT training step, counted by torch while it runs: forward, backward for
    activations, weight gradients of the trained parameters only (what must be computed)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build(model_name, tokens, dim, 10, VARIANTS["plain"], torch.device("cpu"))
    x, y = torch.randn(batch, tokens, dim), torch.randint(0, 10, (batch,))
    mask = torch.ones(batch, tokens, dtype=torch.bool)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x, mask), y).backward()
    return counter.get_total_flops()


def matmul_peak(dtype: torch.dtype, device: torch.device, seconds: float = 1.0, windows: int = 3) -> float:
    """FLOP/s of a large square matmul, the best this device does for `dtype`: the best of `windows`
    windows of `seconds` each (one window read 759-967 GFLOP/s bf16 on the same EPYC on one day: a
    busy moment lowers it, and every fraction of peak with it)."""
    n = 4096 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    best = 0.0
    for _ in range(windows):
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            a @ b
            count += 1
        sync(device)
        best = max(best, 2 * n ** 3 * count / (time.perf_counter() - started))
    return best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: restart the peak-RSS count (VmHWM)
    except OSError:
        pass


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):  # the process's peak resident memory
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def in_subprocess(variant: str, model: str, batch: int, tokens: int, dim: int, steps: int, device: str,
                  profile: bool = False) -> dict[str, Any]:
    code = ("import json; from fpt.experiments.bench_variants import one_variant; print(json.dumps(one_variant("
            f"{variant!r}, {model!r}, {batch}, {tokens}, {dim}, {steps}, {device!r}, {profile})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"variant": variant, "error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200],
                "seconds_per_step": float("nan")}
    return json.loads(proc.stdout.strip().splitlines()[-1])
