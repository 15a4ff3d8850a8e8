"""Download a dataset file once into the cache, verified, never half-written.

A file is fetched to `NAME.part` (resumed with an HTTP Range request if a
previous attempt broke off), checked against its size and sha256, and only then
renamed to `NAME`. A file already in place is trusted only if it verifies.
Without network access the error names the file, the URL and where to put it.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from fpt.errors import FptError

CHUNK = 1 << 20


def default_data_dir() -> Path:
    """$FPT_DATA_DIR, or ~/.cache/fpt: where datasets are downloaded and generated, and GGUF
    backbones dequantised (`--data-dir` overrides it for a run)."""
    return Path(os.environ.get("FPT_DATA_DIR", Path.home() / ".cache" / "fpt")).expanduser()


@dataclass(frozen=True)
class Remote:
    """A file to fetch: where from, what it is called in the cache, how to check it."""

    url: str
    filename: str
    sha256: str | None = None
    size: int | None = None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, remote: Remote) -> str | None:
    """None if `path` is the right file, else why not."""
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        return f"size {size} bytes, expected {remote.size}"
    if remote.sha256 is not None and sha256_of(path) != remote.sha256:
        return "sha256 does not match"
    return None


def fetch(remote: Remote, directory: Path, progress: bool = True) -> Path:
    """The verified local copy of `remote` in `directory`, downloading it if needed."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / remote.filename
    if target.exists():
        problem = verify(target, remote)
        if problem is None:
            return target
        target.unlink()  # a wrong file is never used; fetch it again
    partial = target.with_name(target.name + ".part")
    try:
        _download(remote.url, partial, remote.size, progress)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        reason = getattr(err, "reason", None) or err
        raise FptError(
            f"cannot download {remote.url} ({reason}). Download it yourself and put it at {target} "
            f"(or point --data-dir / FPT_DATA_DIR at a folder that holds {remote.filename})") from None
    got = partial.stat().st_size
    if remote.size is not None and got < remote.size:  # broke off: keep the part to resume from
        raise FptError(f"the download of {remote.url} broke off at {got} of {remote.size} bytes; "
                       "run the command again to resume it")
    problem = verify(partial, remote)
    if problem is not None:
        partial.unlink()
        raise FptError(f"downloaded {remote.url} but the file is wrong ({problem}); it was deleted, "
                       "run the command again")
    os.replace(partial, target)
    return target


def _download(url: str, partial: Path, size: int | None, progress: bool) -> None:
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=60) as response:
        if have and response.status != 206:  # the server ignored Range: start over
            have = 0
        total = size or (have + int(response.headers.get("Content-Length", 0))) or None
        with open(partial, "ab" if have else "wb") as out, \
                tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=partial.name[:-5],
                     disable=not progress) as bar:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                bar.update(len(block))
