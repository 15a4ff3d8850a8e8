"""remote-homology reads TAPE's released archives (written here in TAPE's real layout), tokenizes
like TAPE, truncates and counts instead of dropping, and refuses unsafe pickles and bad files."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tarfile
import urllib.error
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch

import fpt.storage.downloads
from fpt.run.config import build_config
from fpt.errors import FptError
from fpt.run.setup import setup
from fpt.tasks.base import parse_options
from fpt.tasks.homology import (CLS, PAD, SEP, VOCAB, RemoteHomology, RemoteHomologyOptions, encode,
                                safe_extract, safe_loads)
import fpt.tasks.homology as homology

SPLITS = {"train": 12, "valid": 4, "test_fold_holdout": 3, "test_superfamily_holdout": 4,
          "test_family_holdout": 5}
LETTERS = "ACDEFGHIKLMNPQRSTVWY"


# -- fixtures in TAPE's format -------------------------------------------------

def tape_record(i: int, primary: str, fold: int) -> dict:
    """A record as TAPE's tfrecord_to_lmdb.py wrote it: strings, ints, bytes and numpy arrays."""
    n = len(primary)
    return {"id": f"d{i:04d}a_".encode(), "primary": primary, "protein_length": n, "class_label": fold % 7,
            "fold_label": fold, "superfamily_label": 3 * fold, "family_label": 5 * fold,
            "secondary_structure": np.eye(3, dtype=np.float32)[np.arange(n) % 3],
            "solvent_accessibility": np.zeros((n, 2), dtype=np.float32),
            "evolutionary": np.full((n, 20), 0.5, dtype=np.float32)}


def make_records(seed: int, split: str) -> list[dict]:
    """Random proteins; the first of train and of the fold holdout is longer than 64 tokens."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(SPLITS[split]):
        n = 100 if i == 0 and split in ("train", "test_fold_holdout") else int(rng.integers(5, 40))
        primary = "".join(rng.choice(list(LETTERS), n))
        out.append(tape_record(i, primary, fold=int(rng.integers(0, 1195))))
    return out


def tape_pickle(obj, protocol: int = 3) -> bytes:
    """Pickled as TAPE did (Python 3.6/3.7's default protocol 3) under numpy 1's module names."""
    return pickle.dumps(obj, protocol=protocol).replace(b"cnumpy._core.", b"cnumpy.core.")


def write_lmdb(path: Path, records: list, num_examples: int | None = None) -> None:
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i, record in enumerate(records):
            txn.put(str(i).encode(), tape_pickle(record))
        if num_examples != -1:
            txn.put(b"num_examples", tape_pickle(len(records) if num_examples is None else num_examples))
    env.close()


def write_release(root: Path, splits: dict[str, list], fmt: str = "lmdb") -> Path:
    """The folder remote_homology/ of TAPE's archive: one .lmdb database or .json file per split."""
    folder = root / "remote_homology"
    folder.mkdir(parents=True)
    for split, records in splits.items():
        if fmt == "lmdb":
            write_lmdb(folder / f"remote_homology_{split}.lmdb", records)
        else:
            plain = [{k: v.decode() if isinstance(v, bytes) else v.tolist() if isinstance(v, np.ndarray) else v
                      for k, v in r.items()} for r in records]
            (folder / f"remote_homology_{split}.json").write_text(json.dumps(plain))
    return folder


def all_splits(seed: int = 0) -> dict[str, list]:
    return {split: make_records(seed + i, split) for i, split in enumerate(SPLITS)}


def place_archive(data_dir: Path, folder: Path, fmt: str, monkeypatch) -> Path:
    """Tar the release as TAPE ships it into the cache where fetch looks; its md5 becomes the expected one."""
    archive = data_dir / "remote_homology" / homology.REMOTES[fmt].filename
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="remote_homology")
    monkeypatch.setitem(homology.MD5, fmt, hashlib.md5(archive.read_bytes()).hexdigest())
    return archive


@pytest.fixture
def release(tmp_path, monkeypatch):
    """data_dir holding TAPE's LMDB archive; returns (data_dir, records by split)."""
    splits = all_splits()
    folder = write_release(tmp_path / "build", splits)
    data_dir = tmp_path / "data"
    place_archive(data_dir, folder, "lmdb", monkeypatch)
    return data_dir, splits


def build(data_dir: Path, **options) -> RemoteHomology:
    return RemoteHomology(parse_options(RemoteHomologyOptions, options, "remote-homology"), 0, data_dir=data_dir)


def expected_ids(primary: str, max_length: int = 1024) -> list[int]:
    return [CLS] + [VOCAB[c] for c in primary[:max_length - 2]] + [SEP]


# -- vocabulary and spec -------------------------------------------------------

def test_vocabulary_is_tapes_iupac():
    assert len(VOCAB) == 30 and (PAD, VOCAB["<mask>"], CLS, SEP, VOCAB["<unk>"]) == (0, 1, 2, 3, 4)
    assert [VOCAB[c] for c in "ABCDEFGHIKLMNOPQRSTUVWXYZ"] == list(range(5, 30)) and "J" not in VOCAB
    spec = RemoteHomology.make_spec(RemoteHomologyOptions(max_length=512, test_split="family"))
    assert (spec.seq_len, spec.vocab_size, spec.n_outputs, spec.objective) == (512, 30, 1195, "classification")
    assert spec.token_dim is None and "family holdout" in spec.description
    assert spec.source.endswith("data_pytorch/remote_homology.tar.gz")


@pytest.mark.parametrize("options, flag", [({"max_length": 2}, "max_length"), ({"test_split": "class"}, "test_split"),
                                           ({"format": "fasta"}, "format"), ({"max_length": "long"}, "max_length")])
def test_bad_options_name_the_option(options, flag):
    with pytest.raises(FptError, match=flag):
        parse_options(RemoteHomologyOptions, options, "remote-homology")


# -- loading the release -------------------------------------------------------

def test_lmdb_release_is_fetched_unpacked_and_tokenized_exactly(release, capsys):
    data_dir, splits = release
    task = build(data_dir)
    assert {s: task.split_size(s) for s in ("val", "test")} == {"val": 4, "test": 3}
    assert len(task.splits["train"]) == 12
    for name, records in (("val", splits["valid"]), ("test", splits["test_fold_holdout"])):
        data = task.splits[name]
        for row, length, label, record in zip(data.x, data.lengths, data.y, records):
            ids = expected_ids(record["primary"])
            assert row[:length].tolist() == ids and int(length) == len(ids)
            assert (row[length:] == PAD).all() and int(label) == record["fold_label"]
    assert int(task.splits["train"].lengths[0]) == 102  # 100 residues, no truncation at 1024
    assert task.truncated == dict.fromkeys(SPLITS, 0)
    assert "test split is test_fold_holdout" in capsys.readouterr().err
    # The unpacked copy is reused: no archive needed any more.
    (data_dir / "remote_homology" / "remote_homology.tar.gz").unlink()
    again = build(data_dir)
    assert torch.equal(again.splits["train"].x, task.splits["train"].x)


def test_long_sequences_are_truncated_and_counted_never_dropped(release, capsys):
    data_dir, splits = release
    task = build(data_dir, max_length=64)
    assert task.spec.seq_len == 64
    assert task.truncated == {"train": 1, "valid": 0, "test_fold_holdout": 1, "test_superfamily_holdout": 0,
                              "test_family_holdout": 0}
    assert task.split_size("test") == 3 and len(task.splits["train"]) == 12
    first = task.splits["test"]
    assert first.x[0].tolist() == expected_ids(splits["test_fold_holdout"][0]["primary"], 64)
    assert first.x[0, -1] == SEP and int(first.lengths[0]) == 64 and first.x.shape[1] == 64
    err = capsys.readouterr().err
    assert "truncated to max_length=64" in err and "1 of 12 train" in err and "1 of 3 test_fold_holdout" in err


@pytest.mark.parametrize("holdout", ["fold", "superfamily", "family"])
def test_each_holdout_can_be_the_test_split(release, holdout):
    data_dir, splits = release
    task = build(data_dir, test_split=holdout)
    name = f"test_{holdout}_holdout"
    assert task.split_size("test") == SPLITS[name]
    assert task.splits["test"].y.tolist() == [r["fold_label"] for r in splits[name]]
    for other in ("test_fold_holdout", "test_superfamily_holdout", "test_family_holdout"):
        assert len(task.splits[other]) == SPLITS[other]  # every holdout stays available


def test_batches_mask_padding_and_are_pure(release):
    task = build(release[0])
    a, b = task.train_batch(5, 4, seed=1), task.train_batch(5, 4, seed=1)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and a.x.dtype == torch.long
    assert torch.equal(a.mask, a.x != PAD) and a.mask[:, 0].all()
    rows = torch.arange(4)
    assert (a.x[rows, a.mask.sum(1) - 1] == SEP).all()  # the last real token, read out, is <sep>
    batches = list(task.eval_batches("val", 3))
    assert [len(x) for x in batches] == [3, 1]


def test_json_release_is_read_too(tmp_path, monkeypatch):
    splits = all_splits(seed=5)
    folder = write_release(tmp_path / "build", splits, fmt="json")
    place_archive(tmp_path / "data", folder, "json", monkeypatch)
    task = build(tmp_path / "data", format="json", test_split="superfamily")
    assert task.spec.source.endswith("data_raw/remote_homology.tar.gz")
    record = splits["test_superfamily_holdout"][2]
    assert task.splits["test"].x[2, :len(record["primary"]) + 2].tolist() == expected_ids(record["primary"])
    assert (tmp_path / "data" / "remote_homology" / "json").is_dir()


def test_data_path_reads_an_unpacked_release_without_downloading(tmp_path, monkeypatch):
    folder = write_release(tmp_path / "tape", all_splits())
    monkeypatch.setattr(homology, "fetch", lambda *a: pytest.fail("must not download"))
    task = build(tmp_path / "empty", data_path=str(folder))
    assert task.split_size("val") == 4
    with pytest.raises(FptError, match="remote_homology_train.lmdb .*data_path"):
        build(tmp_path / "empty", data_path=str(tmp_path / "nowhere"))


def test_no_network_names_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    def offline(*args):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(fpt.storage.downloads, "_download", offline)
    with pytest.raises(FptError, match=r"remote_homology\.tar\.gz.*put it at"):
        build(tmp_path)


# -- pickles -------------------------------------------------------------------

class Evil:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (str(self.target),)


@pytest.mark.parametrize("payload", ["os.mkdir", "builtins.eval", "nested"])
def test_pickles_that_would_run_code_are_refused(tmp_path, payload):
    target = tmp_path / "pwned"
    if payload == "os.mkdir":
        data = pickle.dumps(Evil(target))
    elif payload == "builtins.eval":
        data = b"cbuiltins\neval\n(S'1+1'\ntR."
    else:  # hidden inside an otherwise valid record
        data = tape_pickle({**tape_record(0, "ACD", 1), "extra": Evil(target)})
    with pytest.raises(FptError, match="refused"):
        safe_loads(data, tmp_path / "x.lmdb")
    assert not target.exists()


def test_codec_other_than_latin1_is_refused(tmp_path):
    data = b"c_codecs\nencode\n(X\x03\x00\x00\x00abcX\x04\x00\x00\x00zlibtR."
    with pytest.raises(FptError, match="zlib"):
        safe_loads(data, tmp_path / "x.lmdb")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_records_with_numpy_arrays_round_trip(tmp_path, protocol):
    record = {**tape_record(0, "MKV", 7), "scalar": np.int32(4), "objects": np.array([b"a", 1], dtype=object)}
    loaded = safe_loads(tape_pickle(record, protocol), tmp_path / "x.lmdb")
    assert loaded.keys() == record.keys() and loaded["primary"] == "MKV" and loaded["id"] == record["id"]
    assert np.array_equal(loaded["evolutionary"], record["evolutionary"])
    assert loaded["evolutionary"].dtype == np.float32 and loaded["scalar"] == 4
    assert list(loaded["objects"]) == [b"a", 1]


# -- bad files -----------------------------------------------------------------

def records_of(primary: str = "ACD", fold=1, **extra) -> list:
    return [{**tape_record(0, primary, 0), "fold_label": fold, **extra}]


@pytest.mark.parametrize("records, message", [
    (records_of(fold=1195), "fold_label 1195, not a class in 0..1194"),
    (records_of(fold=-1), "fold_label -1"),
    (records_of(fold=2.0), "fold_label 2.0"),
    (records_of(primary="ACJD"), "'J', which is not one of TAPE's amino-acid letters"),
    (records_of(primary="ACé"), "'é'"),
    (records_of(primary=""), "no amino-acid string"),
    (records_of(primary=[5, 6]), "no amino-acid string"),
    ([["not", "a", "dict"]], "not a dict"),
])
def test_bad_records_name_the_file(tmp_path, records, message):
    path = tmp_path / "remote_homology_valid.lmdb"
    write_lmdb(path, records)
    with pytest.raises(FptError, match=str(path)) as err:
        encode(homology.read_records(path), 1024, path)
    assert message in str(err.value)


@pytest.mark.parametrize("num_examples, message", [(-1, "no valid 'num_examples'"), (3, "record 1 is missing")])
def test_damaged_databases_are_refused(tmp_path, num_examples, message):
    path = tmp_path / "remote_homology_train.lmdb"
    write_lmdb(path, records_of(), num_examples=num_examples)
    with pytest.raises(FptError, match=message):
        homology.read_records(path)


def test_files_that_are_not_databases_are_refused(tmp_path):
    junk = tmp_path / "remote_homology_train.lmdb"
    junk.mkdir()
    (junk / "data.mdb").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(FptError, match="cannot read .* as an LMDB database"):
        homology.read_records(junk)
    bad_json = tmp_path / "remote_homology_train.json"
    bad_json.write_text('{"primary": "ACD"}')
    with pytest.raises(FptError, match="not TAPE's list of records"):
        homology.read_records(bad_json)


def test_wrong_archive_is_deleted_and_refetched_next_time(release):
    data_dir, _ = release
    archive = data_dir / "remote_homology" / "remote_homology.tar.gz"
    homology.MD5["lmdb"] = "0" * 32  # monkeypatched by the fixture, so restored afterwards
    with pytest.raises(FptError, match="md5 differs.*deleted"):
        build(data_dir)
    assert not archive.exists() and not (data_dir / "remote_homology" / "lmdb").exists()


def test_missing_split_in_archive_names_it(tmp_path, monkeypatch):
    splits = all_splits()
    del splits["test_family_holdout"]
    place_archive(tmp_path / "data", write_release(tmp_path / "build", splits), "lmdb", monkeypatch)
    with pytest.raises(FptError, match="no remote_homology_test_family_holdout.lmdb .* delete"):
        build(tmp_path / "data")


def tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.addfile(member, io.BytesIO(data) if data else None)
    return path


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink"])
def test_archives_escaping_their_folder_are_refused(tmp_path, kind):
    member = tarfile.TarInfo({"dotdot": "../escaped", "absolute": str(tmp_path / "escaped")}.get(kind, "link"))
    data = b""
    if kind in ("dotdot", "absolute"):
        data = b"x"
        member.size = 1
    else:
        member.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
        member.linkname = "/etc/passwd"
    archive = tar_with(tmp_path / "a.tar.gz", member, data)
    target = tmp_path / "out" / "lmdb"
    with pytest.raises(FptError, match="link or a path outside"):
        safe_extract(archive, target)
    assert not (tmp_path / "escaped").exists() and not target.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # no partial folder left


def test_corrupt_archive_is_refused(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(b"not a tar at all" * 50)
    with pytest.raises(FptError, match="cannot extract .*delete it"):
        safe_extract(archive, tmp_path / "lmdb")


# -- end to end ----------------------------------------------------------------

def test_trains_end_to_end_through_fpt_train(release, tiny_bert, tmp_path):
    import json

    from fpt.cli import main

    data_dir, _ = release
    common = {"task": "remote-homology", "model": str(tiny_bert), "data_dir": str(data_dir),
              "progress": False, "device": "cpu"}
    assert main(["train", "--task", "remote-homology", "--model", str(tiny_bert), "--data-dir", str(data_dir),
                 "--task-opt", "max_length=64", "--steps", "4", "--eval-every", "2", "--batch-size", "4",
                 "--lr", "1e-4", "--no-progress", "--out", str(tmp_path / "run")]) == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert 0 <= result["test"]["accuracy"] <= 1 and result["steps"] == 4
    with pytest.raises(FptError, match="needs 1024 positions"):
        setup(build_config({**common, "out": str(tmp_path / "too-long")}))
