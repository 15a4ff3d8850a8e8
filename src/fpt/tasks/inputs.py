"""Reading and checking arrays a user hands fpt: a training .npz (`fpt.tasks.npz`) or the
inputs of `fpt predict`. Every check names the file, the array and the fix; nothing is
ever unpickled.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from fpt.errors import FptError


def load_arrays(path: Path, names: tuple[str, ...], flag: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """Those of the arrays `names` that the .npz (or .npy, as 'x') at `path` holds, and the names of
    all its arrays; never unpickles anything."""
    if not path.is_file():
        raise FptError(f"{flag}: no such file '{path}'; check the path (write one with numpy.savez, "
                       "see examples/make_npz_example.py)")
    if not zipfile.is_zipfile(path):
        if "x" in names and path.suffix == ".npy":  # a bare array is accepted as 'x'
            try:
                return {"x": np.load(path, allow_pickle=False)}, ["x"]
            except (ValueError, OSError, EOFError) as err:
                raise FptError(f"{flag}: '{path}' cannot be read as a .npy array of numbers "
                               f"({str(err)[:80]}); save it with numpy.save or numpy.savez") from None
        raise FptError(f"{flag}: '{path}' is not an .npz file, or is truncated (not a readable zip archive "
                       "of arrays); write it "
                       "with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as data:
            for name in data.files:
                if name in names:
                    arrays[name] = _read_member(data, name, path)
            present = list(data.files)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise FptError(f"{flag}: '{path}' is corrupted or truncated ({err}); write it again") from None
    return arrays, present


def _read_member(data: Any, name: str, path: Path) -> np.ndarray:
    try:
        return data[name]
    except ValueError:  # numpy refuses object arrays without allow_pickle
        raise FptError(f"'{path}': array {name} holds Python objects, which fpt never unpickles; "
                       "store numbers (float features, integer ids or labels)") from None
    except Exception as err:  # zlib / zip errors of a damaged member
        raise FptError(f"'{path}': array {name} cannot be read ({err}); write the file again") from None


def check_tokens(x: np.ndarray, where: str) -> np.ndarray:
    """Float (N, L, D) features as float32, or integer (N, L) ids as int64; anything else fails."""
    if x.dtype.kind == "f":
        if x.ndim != 3:
            raise FptError(f"{where}: float tokens must have shape (N, L, D), got {x.shape}; for one feature "
                           "per token use x[..., None], for token ids store integers")
        if x.shape[2] == 0:
            raise FptError(f"{where}: tokens have 0 features (shape {x.shape}); D must be at least 1")
        if not np.isfinite(x).all():
            raise FptError(f"{where} holds NaN or inf (first at index {first_bad(x)}); remove or impute them")
        x = x.astype(np.float32, copy=False)
    elif x.dtype.kind in "iub":
        if x.ndim != 2:
            raise FptError(f"{where}: integer token ids must have shape (N, L), got {x.shape}; for real-valued "
                           "features store floats, e.g. x.astype(np.float32)")
        x = x.astype(np.int64, copy=False)
    else:
        raise FptError(f"{where} has dtype {x.dtype}; tokens must be float (N, L, D) features or "
                       "integer (N, L) token ids")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise FptError(f"{where} is empty (shape {x.shape}); it needs at least one example of one token")
    return x


def check_pad_id(value: np.ndarray | None, where: str) -> int | None:
    if value is None:
        return None
    if value.ndim != 0 or value.dtype.kind not in "iu":
        raise FptError(f"{where}: pad_id must be one integer, e.g. numpy.savez(..., pad_id=0), "
                       f"got dtype {value.dtype} and shape {value.shape}")
    return int(value)


def token_lengths(x: np.ndarray, pad_id: int | None, where: str) -> np.ndarray:
    """(N,) real tokens per row of integer ids (N, L); padding must be on the right, no row all padding."""
    n, width = x.shape
    if pad_id is None:
        lengths = np.full(n, width, dtype=np.int64)
    else:
        real = x != pad_id                                                  # (N, L)
        lengths = real.sum(axis=1)
        misplaced = (real != (np.arange(width)[None, :] < lengths[:, None])).any(axis=1)
        if misplaced.any():
            raise FptError(f"{where}: row {int(np.argmax(misplaced))} has padding (pad_id={pad_id}) before "
                           "real tokens; padding must be at the right end of each row")
        if (lengths == 0).any():
            raise FptError(f"{where}: row {int(np.argmin(lengths))} is all padding (pad_id={pad_id}); "
                           "drop empty examples")
    real_ids = x[np.arange(width)[None, :] < lengths[:, None]]
    if (real_ids < 0).any():
        raise FptError(f"{where}: token ids must be >= 0, found {int(real_ids.min())}; "
                       "shift them, or declare the negative value as pad_id")
    return lengths


def first_bad(a: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
