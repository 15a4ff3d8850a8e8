"""Checkpoint files: tensors plus a JSON header, in one atomic safetensors file.

    model.safetensors   the trained parameters of the best validation step, plus
                        (in the header) what identifies the backbone and the config
    last.safetensors    trained parameters + Adam state of the last evaluation: for --resume

Only safetensors and JSON are read back: loading never executes code from a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save
from torch import Tensor

from fpt.errors import FptError
from fpt.storage.files import atomic_write

FORMAT_VERSION = 1


def save_tensors(path: Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Tensors and a JSON header, in one atomic safetensors file."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    header = {"fpt": json.dumps({"format": FORMAT_VERSION, **meta})}
    atomic_write(path, save(tensors, metadata=header))


def read_meta(path: Path) -> dict[str, Any]:
    """The fpt header of a file written by save_tensors, without reading its tensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {})["fpt"])
    except Exception:  # missing, corrupt or foreign: load_tensors names the problem
        return load_tensors(path)[1]


def load_tensors(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a file written by save_tensors, or fail saying which file and why."""
    path = Path(path)
    if not path.is_file():
        raise FptError(f"no such checkpoint '{path}'")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
        meta = json.loads(header["fpt"])
    except KeyError:
        raise FptError(f"'{path}' is a safetensors file but not one written by fpt") from None
    except Exception as err:  # safetensors reports truncation and corruption with its own types
        raise FptError(f"checkpoint '{path}' is corrupted or truncated ({str(err)[:120]}); "
                       "delete it to start over, or restore it from a copy") from None
    if meta.get("format") != FORMAT_VERSION:
        raise FptError(f"'{path}' has checkpoint format {meta.get('format')}, this fpt reads {FORMAT_VERSION}")
    return tensors, meta


def optimizer_tensors(optimizer: torch.optim.Optimizer, names: list[str]) -> dict[str, Tensor]:
    """Adam's per-parameter state, keyed by parameter name instead of position."""
    state = optimizer.state_dict()["state"]
    out = {}
    for index, name in enumerate(names):
        for key, value in state.get(index, {}).items():
            out[f"optim/{name}/{key}"] = torch.as_tensor(value)
    return out


def restore_optimizer(optimizer: torch.optim.Optimizer, names: list[str], tensors: dict[str, Tensor]) -> None:
    state_dict = optimizer.state_dict()
    state: dict[int, dict[str, Tensor]] = {}
    for index, name in enumerate(names):
        prefix = f"optim/{name}/"
        entry = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if entry:
            state[index] = entry
    state_dict["state"] = state
    optimizer.load_state_dict(state_dict)
