"""fpt.storage.archives never lets a downloaded file run code or write outside its folder.

Pickles and tar.gz archives are written here in their real formats, hostile ones included.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import pickletools
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest

from fpt.storage.archives import ALLOWED, md5_of, safe_extract, safe_unpickle
from fpt.errors import FptError


# -- pickles -------------------------------------------------------------------

class Evil:
    """Pickles to a call of os.mkdir(target): loading it with plain pickle creates the folder."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (str(self.target),)


def as_numpy1(data: bytes) -> bytes:
    """The same pickle as numpy 1 writes it: numpy.core.* instead of numpy._core.* (frames redone)."""
    for module in ("multiarray", "numeric"):
        old, new = f"numpy._core.{module}".encode(), f"numpy.core.{module}".encode()
        data = data.replace(b"c" + old + b"\n", b"c" + new + b"\n")                # GLOBAL, protocols 0-3
        data = data.replace(bytes([0x8C, len(old)]) + old, bytes([0x8C, len(new)]) + new)  # SHORT_BINUNICODE
    return pickletools.optimize(data)


@pytest.mark.parametrize("payload, refused", [("os.mkdir", "(posix|os).mkdir"), ("nested", "(posix|os).mkdir"),
                                             ("eval", "builtins.eval"), ("getattr", "builtins.getattr")])
def test_pickles_that_would_run_code_are_refused_and_never_run(tmp_path, payload, refused):
    target = tmp_path / "pwned"
    data = {
        "os.mkdir": pickle.dumps(Evil(target), protocol=2),
        "nested": pickle.dumps({"x": np.zeros(3), "deep": [1, {"evil": Evil(target)}]}, protocol=4),
        "eval": f"cbuiltins\neval\n(S'__import__(\"os\").mkdir({str(target)!r})'\ntR.".encode(),
        "getattr": b"cbuiltins\ngetattr\n(cnumpy\nndarray\nS'__class__'\ntR.",
    }[payload]
    where = tmp_path / "data_batch_1"
    start = re.escape(f"'{where}' is not a test batch (UnpicklingError: refused to load ")
    with pytest.raises(FptError, match=rf"^{start}{refused}: only numpy arrays and plain values .*; delete it$"):
        safe_unpickle(data, where, what="a test batch", fix="delete it")
    assert not target.exists()
    if payload != "getattr":  # the file really runs code when loaded by plain pickle
        pickle.loads(data)
        assert target.is_dir()


def test_only_numpy_rebuilding_and_latin1_bytes_are_allowed():
    numpy_names = {(f"{core}.{module}", name) for core in ("numpy.core", "numpy._core")
                   for module, name in [("multiarray", "_reconstruct"), ("multiarray", "scalar"),
                                        ("numeric", "_frombuffer")]}
    assert set(ALLOWED) == numpy_names | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


@pytest.mark.parametrize("codec", ["zlib", "base64", "rot13"])
def test_codecs_other_than_latin1_are_refused(tmp_path, codec):
    data = b"c_codecs\nencode\n(X\x03\x00\x00\x00abcX" + len(codec).to_bytes(4, "little") + codec.encode() + b"tR."
    with pytest.raises(FptError, match=f"codec '{codec}' is not allowed"):
        safe_unpickle(data, tmp_path / "x.pkl")


@pytest.mark.parametrize("numpy1", [False, True])
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_arrays_round_trip(tmp_path, protocol, numpy1):
    record = {"float32": np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4),
              "fortran": np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
              "uint8": np.arange(3072, dtype=np.uint8) % 251, "empty": np.zeros((0, 5)),
              "objects": np.array([b"a", 1, "z"], dtype=object), "scalar": np.int32(-4), "half": np.float16(0.5),
              "plain": [1, 2.5, "text", b"bytes", (None, True)]}
    if protocol == 2:  # an empty array's b"" is then pickled as a call of bytes(), which is not allowed
        del record["empty"]
    data = pickle.dumps(record, protocol=protocol)
    if numpy1:
        data = as_numpy1(data)
        assert b"numpy._core" not in data and b"numpy.core.multiarray" in data
    loaded = safe_unpickle(data, tmp_path / "x.pkl")
    assert loaded.keys() == record.keys() and loaded["plain"] == record["plain"]
    for key in record.keys() - {"scalar", "half", "plain"}:
        assert loaded[key].dtype == record[key].dtype and loaded[key].shape == record[key].shape
        assert np.array_equal(loaded[key], record[key])
    assert loaded["fortran"].flags.f_contiguous
    assert type(loaded["scalar"]) is np.int32 and loaded["scalar"] == -4
    assert type(loaded["half"]) is np.float16 and loaded["half"] == 0.5


def test_bytes_open_files_and_paths_are_read_alike(tmp_path):
    data = pickle.dumps({"x": np.arange(4)}, protocol=2)
    path = tmp_path / "x.pkl"
    path.write_bytes(data)
    with open(path, "rb") as f:
        sources = [data, memoryview(data), f, path]
        assert all(np.array_equal(safe_unpickle(s, path)["x"], np.arange(4)) for s in sources)


def test_python2_strings_read_as_bytes_when_asked(tmp_path):
    data = b"\x80\x02}q\x00U\x04dataq\x01K\x07s."  # Python 2: {'data': 7} at protocol 2, 'data' a str of bytes
    assert safe_unpickle(data, tmp_path / "x") == {"data": 7}
    assert safe_unpickle(data, tmp_path / "x", encoding="bytes") == {b"data": 7}


@pytest.mark.parametrize("data, error", [
    (b"garbage", "UnpicklingError"),
    (pickle.dumps({"x": np.arange(100)}, protocol=2)[:-30], "UnpicklingError"),
    (b"", "EOFError"),
])
def test_damaged_pickles_name_the_file(tmp_path, data, error):
    start = re.escape(f"'{tmp_path / 'x.pkl'}' is not a pickle of plain values ({error}")
    with pytest.raises(FptError, match=f"^{start}.*delete it and run the command again to download it afresh$"):
        safe_unpickle(data, tmp_path / "x.pkl")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FptError, match="x.pkl' is not a pickle of plain values .FileNotFoundError"):
        safe_unpickle(tmp_path / "x.pkl", tmp_path / "x.pkl")


# -- tar.gz ------------------------------------------------------------------------

def write_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    """A .tar.gz of (name, content) files and raw TarInfo entries (links, devices, odd names)."""
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
    return path


def entry(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_archive_is_unpacked_whole_or_one_folder_of_it(tmp_path):
    archive = write_tar(tmp_path / "a.tar.gz", [("top.txt", b"top"), ("data/x.bin", b"\x00\x01"),
                                                 ("data/deep/y.txt", b"y"), entry("data/empty", tarfile.DIRTYPE)])
    assert safe_extract(archive, tmp_path / "new" / "all") == tmp_path / "new" / "all"  # parents created
    assert files_under(tmp_path / "new" / "all") == {"top.txt": b"top", "data/x.bin": b"\x00\x01",
                                                     "data/deep/y.txt": b"y"}
    assert (tmp_path / "new" / "all" / "data" / "empty").is_dir()
    safe_extract(archive, tmp_path / "only", keep="data")
    assert files_under(tmp_path / "only") == {"x.bin": b"\x00\x01", "deep/y.txt": b"y"}
    leftovers = [p.name for p in [*tmp_path.iterdir(), *(tmp_path / "new").iterdir()] if p.name.startswith(".")]
    assert leftovers == []


@pytest.mark.parametrize("member", [
    ("../escaped", b"x"), ("../../escaped", b"x"), ("../../../escaped", b"x"), ("ok/../../../../escaped", b"x"),
    ("/tmp/fpt-test-absolute-escaped", b"x"),
    entry("link", tarfile.SYMTYPE, "/etc/passwd"), entry("link", tarfile.SYMTYPE, "inside.txt"),
    entry("link", tarfile.LNKTYPE, "/etc/passwd"), entry("dev", tarfile.CHRTYPE), entry("fifo", tarfile.FIFOTYPE),
], ids=lambda m: m[0] if isinstance(m, tuple) else f"{m.name}-{m.type.decode()}")
def test_unsafe_entries_refuse_the_whole_archive(tmp_path, member):
    archive = write_tar(tmp_path / "a.tar.gz", [("inside.txt", b"fine"), member])
    target = tmp_path / "out" / "data"
    name = member[0] if isinstance(member, tuple) else member.name
    message = (f"'{archive}' holds an unsafe entry '{name}' (a device, a link or a path outside its folder), "
               "so it is not the CIFAR-10 python version and was not unpacked; delete it")
    with pytest.raises(FptError, match=f"^{re.escape(message)}$"):
        safe_extract(archive, target, what="the CIFAR-10 python version", fix="delete it")
    assert [p for p in tmp_path.rglob("*") if not p.is_dir()] == [archive]  # nothing written, not even inside.txt
    assert not target.exists() and list((tmp_path / "out").iterdir()) == []  # and no staging folder left
    assert not Path("/tmp/fpt-test-absolute-escaped").exists()


def test_missing_folder_and_corrupt_archives_are_named(tmp_path):
    archive = write_tar(tmp_path / "a.tar.gz", [("other/x", b"x")])
    with pytest.raises(FptError, match="a.tar.gz' has no folder data/, so it is not the expected archive; delete"):
        safe_extract(archive, tmp_path / "data", keep="data")
    full = archive.read_bytes()
    for damaged in (b"not a tar at all" * 50, full[:len(full) // 2], full[:10] + b"\xff" * 20 + full[30:]):
        archive.write_bytes(damaged)
        start = re.escape(f"cannot extract '{archive}' (")
        with pytest.raises(FptError, match=f"^{start}.*; delete it and run the command again"):
            safe_extract(archive, tmp_path / "data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz"]


def test_md5_of_matches_hashlib(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(3 << 20))  # several read blocks
    assert md5_of(path) == hashlib.md5(path.read_bytes()).hexdigest()
