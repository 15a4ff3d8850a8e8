"""Atomic files: a reader sees the old file or the new one, never half of one.

    atomic_write(path, data)   temporary file beside `path`, fsync, rename over it
    append_jsonl / read_jsonl  one whole JSON line per record; a line torn by a kill is skipped
    exclusive(directory)       a lock file held while one process works in the directory
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from fpt.errors import FptError

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
