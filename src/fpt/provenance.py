"""Where a number came from: the machine and the library versions that produced it.

Kept apart from the model stack, so that `fpt report` can name the CPU without importing
torch's models.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

# /proc/cpuinfo flags meaning bf16 arithmetic in hardware (x86 and Arm spellings): precision auto trains in bf16
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def cpu_name() -> str:
    """The processor's model name, for reports and benchmarks."""
    for line in _cpuinfo():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def cpu_flags() -> set[str]:
    """The CPU's feature flags (x86 'flags', Arm 'Features'); empty where /proc/cpuinfo is absent."""
    for line in _cpuinfo():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def bf16_support() -> str:
    """Which bf16 the CPU does natively: what decides fpt's default precision on it."""
    flags = sorted(cpu_flags() & CPU_BF16_FLAGS)
    return "native bf16 (" + ", ".join(flags) + ")" if flags else "no native bf16 (fp32 by default)"


def machine() -> str:
    """This host in one line, as every result.json records it and reports name it: architecture,
    processor, cores, native bf16 or not, and the GPU where torch (already imported) sees one."""
    line = f"{platform.machine()}, {cpu_name()}, {os.cpu_count()} cores, {bf16_support()}"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        line += f", GPU {torch.cuda.get_device_name(0)}"
    return line


def versions() -> dict[str, str]:
    """fpt, torch, transformers, Python and the platform: recorded in every result.json."""
    import torch
    import transformers

    from fpt import __version__
    return {"fpt": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "platform": platform.platform()}
