"""Open downloaded archives and pickles without ever running code from them.

fpt promises that no code from a downloaded file ever runs, however the file was
made: a dataset host can be compromised, a cache can be tampered with. Two
formats the datasets come in could break that promise, so they are opened here:

- tar.gz archives can hold links, devices, absolute paths and `../` paths that
  write outside the target folder. `safe_extract` refuses the whole archive if
  any member is not a plain file or folder inside it (and also passes Python's
  own filter="data" as a second guard), unpacks into a temporary folder and
  renames the result into place, so the target is complete or absent.
- pickles run whatever callable they name while loading. `safe_unpickle` lets
  them name only numpy's array, dtype and scalar rebuilding (under numpy 1's
  `numpy.core` and numpy 2's `numpy._core` module names) and `_codecs.encode`
  restricted to latin1 (how protocol 2 spells bytes). None of these runs code
  chosen by the file; everything else (dicts, lists, strings, numbers) is built
  by the unpickler itself. Any refusal or damage is an FptError naming the file.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from fpt.errors import FptError

REFETCH = "delete it and run the command again to download it afresh"


def md5_of(path: Path) -> str:
    """The md5 of a file, for archives whose publishers give nothing stronger."""
    digest = hashlib.md5(usedforsecurity=False)  # a checksum against damage, not a security measure
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- tar.gz --------------------------------------------------------------------

def safe_extract(archive: Path, target: Path, *, keep: str | None = None,
                 what: str = "the expected archive", fix: str = REFETCH) -> Path:
    """Unpack a .tar.gz into `target` (only its folder `keep`, if given), all or nothing.

    Any link, device, absolute path or path leaving the folder refuses the whole
    archive. `what` names the expected archive and `fix` the remedy in errors.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))  # same disk: the rename is atomic
    root = staging / "archive"
    root.mkdir()  # (mkdtemp's folder is private; this one gets the usual permissions)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            inside = root.resolve()
            for m in members:
                if not (m.isfile() or m.isdir()) or os.path.isabs(m.name) \
                        or not (inside / m.name).resolve().is_relative_to(inside):
                    raise FptError(f"'{archive}' holds an unsafe entry '{m.name}' (a device, a link or a path "
                                   f"outside its folder), so it is not {what} and was not unpacked; {fix}")
            guard = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.11.4
            tar.extractall(root, members=members, **guard)
        source = root / keep if keep else root
        if not source.is_dir():
            raise FptError(f"'{archive}' has no folder {keep}/, so it is not {what}; {fix}")
        os.replace(source, target)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise FptError(f"cannot extract '{archive}' ({err}); {fix}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# -- pickles -------------------------------------------------------------------

def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """How protocol-2 pickles spell bytes; any other codec (zlib, base64...) is refused."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"codec {encoding!r} is not allowed")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only callables a pickle may name: numpy array, dtype and scalar rebuilding, latin1 bytes."""
    try:  # numpy >= 2 (importing numpy.core there warns)
        multiarray, numeric = (importlib.import_module(f"numpy._core.{m}") for m in ("multiarray", "numeric"))
    except ImportError:
        multiarray, numeric = (importlib.import_module(f"numpy.core.{m}") for m in ("multiarray", "numeric"))
    allowed: dict[tuple[str, str], Any] = {("_codecs", "encode"): _latin1_encode,
                                           ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):  # numpy 1 wrote numpy.core, numpy 2 writes numpy._core
        allowed[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        if hasattr(numeric, "_frombuffer"):  # protocol 5's out-of-band-capable arrays
            allowed[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


ALLOWED = _allowed_globals()


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays and plain values "
                                         "may be rebuilt, so that no code from the file runs") from None


def safe_unpickle(source: bytes | BinaryIO | Path, where: Path, *, what: str = "a pickle of plain values",
                  fix: str = REFETCH, encoding: str = "ASCII") -> Any:
    """Unpickle bytes, an open binary file or a file, refusing every global but those in ALLOWED.

    `where` is the file named in errors, `what` what it should have held, `fix` the
    remedy; encoding="bytes" reads Python 2 pickles' str as bytes (CIFAR-10's).
    """
    try:
        if isinstance(source, Path):
            with open(source, "rb") as f:
                return _Unpickler(f, encoding=encoding).load()
        stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
        return _Unpickler(stream, encoding=encoding).load()
    except Exception as err:  # a broken or hostile pickle can raise almost anything; all mean a bad file
        raise FptError(f"'{where}' is not {what} ({type(err).__name__}: {err}); {fix}") from None
