"""Files a run writes, all atomically: a reader sees the old file or the new one, never half.

    model.safetensors   the trained parameters of the best validation step, plus
                        (in the header) what identifies the backbone and the config
    last.safetensors    trained parameters + Adam state of the last evaluation: for --resume
    metrics.jsonl       one JSON line per evaluation
    result.json         written once, at the end

Only safetensors and JSON are read back: loading never executes code from a file.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save
from torch import Tensor

from fpt.errors import FptError

FORMAT_VERSION = 1
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read the process umask once (os.umask can only be read by setting it)


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise FptError(f"cannot write in '{path.parent}': {err.strerror}; check the directory "
                       "exists and is writable, or choose another --out") from None
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise FptError(f"cannot write '{path}': {err.strerror}; free some space or choose another "
                       "--out (the previous version of the file, if any, is untouched)") from None


@contextmanager
def exclusive(directory: Path) -> Iterator[None]:
    """Hold DIR/.lock while training in DIR; the OS releases it if the process dies."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise FptError(f"cannot create the run directory '{directory}': {err.strerror}; "
                       "choose another --out") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FptError(f"another fpt process is training in '{directory}'; wait for it to finish "
                       "or choose another --out") from None
    try:
        yield
    finally:
        os.close(fd)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one whole line; a torn last line is dropped by read_jsonl."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete, parseable line of a JSON-lines file."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by a kill mid-write
    return records


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
