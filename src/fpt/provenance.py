"""Where a number came from: the machine and the library versions that produced it.

Kept apart from the model stack, so that `fpt report` can name the CPU without importing
torch's models.
"""

from __future__ import annotations

import platform
from pathlib import Path


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


def versions() -> dict[str, str]:
    """fpt, torch, transformers, Python and the platform: recorded in every result.json."""
    import torch
    import transformers

    from fpt import __version__
    return {"fpt": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "platform": platform.platform()}
