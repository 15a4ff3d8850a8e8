"""TAPE remote homology: classify a protein's fold (1195 classes) from its amino-acid sequence.

Source: TAPE (Rao et al., NeurIPS 2019), the release its own `download_data.sh`
fetches: `remote_homology.tar.gz` holding one LMDB database per split,
`remote_homology_{train,valid,test_fold_holdout,test_superfamily_holdout,
test_family_holdout}.lmdb`. Each database maps b'num_examples' to a count and
b'0', b'1', ... to pickled dicts with 'primary' (the sequence as a string) and
'fold_label' (the target), among other keys. TAPE also released the same data as
JSON lists of such dicts (`data_raw`); `--task-opt format=json` reads those.

The archive is fetched with `fpt.storage.downloads.fetch` and checked against the md5
published for it; it is unpacked and its pickled records are loaded by
`fpt.storage.archives`, which never lets a downloaded file run code.

Tokens follow TAPE's IUPAC vocabulary (30 ids: <pad> <mask> <cls> <sep> <unk>,
then the 25 letters A..Z without J) and TAPE's encoding `<cls> residues <sep>`:
with last-token readout the trailing <sep> is where the sequence is summed up.
Long proteins are truncated, never dropped: an example keeps `<cls>`, its first
max_length - 2 residues and `<sep>`; how many were cut, per split, is printed
on loading. (The official FPT code skipped batches over 1024 tokens instead and
rescaled its accuracy.)

Splits: TAPE's train and valid; the test split is the holdout named by
`test_split` (fold by default: no fold in it is seen in training, the hardest
and the one TAPE reports first). All three holdouts are also kept under their
TAPE names in `splits`.
"""

from __future__ import annotations

import json
import numbers
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fpt.storage.archives import md5_of, safe_extract, safe_unpickle
from fpt.storage.downloads import Remote, fetch
from fpt.errors import FptError
from fpt.tasks.arrays import Arrays, ArrayTask
from fpt.tasks.base import TaskSpec

N_FOLDS = 1195
SPECIALS = ("<pad>", "<mask>", "<cls>", "<sep>", "<unk>")
RESIDUES = "ABCDEFGHIKLMNOPQRSTUVWXYZ"        # TAPE's IUPAC letters, ids 5..29
VOCAB = {t: i for i, t in enumerate(SPECIALS + tuple(RESIDUES))}
PAD, CLS, SEP = VOCAB["<pad>"], VOCAB["<cls>"], VOCAB["<sep>"]
HOLDOUTS = {h: f"test_{h}_holdout" for h in ("fold", "superfamily", "family")}

BASE = "https://s3.amazonaws.com/songlabdata/proteindata"  # TAPE's bucket, over TLS
REMOTES = {"lmdb": Remote(f"{BASE}/data_pytorch/remote_homology.tar.gz", "remote_homology.tar.gz"),
           "json": Remote(f"{BASE}/data_raw/remote_homology.tar.gz", "remote_homology_json.tar.gz")}
# md5 of the LMDB archive as published by TorchDrug's `Fold` dataset; none is published for JSON.
MD5 = {"lmdb": "1d687bdeb9e3866f77504d6079eed00a", "json": None}
OWN_FILE = "use TAPE's own file (delete it to download it again)"


@dataclass(frozen=True)
class RemoteHomologyOptions:
    max_length: int = 1024   # tokens per example incl. <cls> and <sep>; longer proteins are truncated
    test_split: str = "fold"  # TAPE holdout used as the test split: fold, superfamily or family
    format: str = "lmdb"     # TAPE release to read: lmdb (data_pytorch) or json (data_raw)
    data_path: str = ""      # folder already holding TAPE's remote_homology_*.lmdb / .json (no download)

    def __post_init__(self) -> None:
        if self.max_length < 3:
            raise ValueError(f"max_length must be at least 3 (<cls>, a residue, <sep>), got {self.max_length}")
        if self.test_split not in HOLDOUTS:
            raise ValueError(f"test_split must be one of {', '.join(HOLDOUTS)}, got {self.test_split!r}")
        if self.format not in REMOTES:
            raise ValueError(f"format must be lmdb or json, got {self.format!r}")


class RemoteHomology(ArrayTask):
    @staticmethod
    def make_spec(options: RemoteHomologyOptions) -> TaskSpec:
        return TaskSpec(
            name="remote-homology", seq_len=options.max_length, objective="classification",
            n_outputs=N_FOLDS, vocab_size=len(VOCAB), source=REMOTES[options.format].url,
            description=f"fold of a protein from its amino acids (TAPE), tested on the "
                        f"{options.test_split} holdout, truncated to {options.max_length} tokens")

    pad_id = PAD  # what `fpt predict` treats as padding in new inputs

    def __init__(self, options: RemoteHomologyOptions, data_seed: int, data_dir: Path):
        # data_seed is unused: TAPE fixes every split.
        folder = Path(options.data_path).expanduser() if options.data_path else prepare(data_dir, options.format)
        self.truncated: dict[str, int] = {}
        loaded = {}
        for name in ("train", "valid", *HOLDOUTS.values()):
            path = locate(folder, name, options.format, downloaded=not options.data_path)
            loaded[name], self.truncated[name] = encode(read_records(path), options.max_length, path)
        test = HOLDOUTS[options.test_split]
        super().__init__(self.make_spec(options), loaded["train"], loaded["valid"], loaded[test])
        self.splits.update({name: loaded[name] for name in HOLDOUTS.values()})
        counts = ", ".join(f"{self.truncated[n]} of {len(loaded[n])} {n}" for n in self.truncated)
        print(f"remote-homology: test split is {test}; sequences over {options.max_length - 2} residues "
              f"truncated to max_length={options.max_length} tokens: {counts}", file=sys.stderr)


# -- tokens --------------------------------------------------------------------

_IDS = np.full(256, -1, dtype=np.int64)  # ASCII code -> token id
for _letter in RESIDUES:
    _IDS[ord(_letter)] = VOCAB[_letter]


def encode(records: list[dict[str, Any]], max_length: int, where: Path) -> tuple[Arrays, int]:
    """Records -> right-padded `<cls> residues <sep>` ids (N, L), fold labels (N,); and the truncated count."""
    keep = max_length - 2
    sequences, labels = [], []
    for i, record in enumerate(records):
        sequence, label = record.get("primary"), record.get("fold_label")
        if not isinstance(sequence, str) or not sequence:
            raise FptError(f"{where}: record {i} has no amino-acid string under 'primary' "
                           f"(got {type(sequence).__name__}); {OWN_FILE}")
        if not isinstance(label, numbers.Integral) or isinstance(label, bool) or not 0 <= label < N_FOLDS:
            raise FptError(f"{where}: record {i} has fold_label {label!r}, not a class in 0..{N_FOLDS - 1}; {OWN_FILE}")
        codes = np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)
        ids = _IDS[codes]
        if (ids < 0).any():
            bad = sequence[int(np.argmax(ids < 0))]
            raise FptError(f"{where}: record {i} holds {bad!r}, which is not one of TAPE's amino-acid letters "
                           f"{RESIDUES}; {OWN_FILE}")
        sequences.append(ids[:keep])
        labels.append(int(label))
    lengths = torch.tensor([len(s) + 2 for s in sequences], dtype=torch.long)
    x = torch.full((len(sequences), max((len(s) + 2 for s in sequences), default=0)), PAD, dtype=torch.long)
    for row, ids in zip(x, sequences):                                     # row: (L,)
        row[0], row[1:len(ids) + 1], row[len(ids) + 1] = CLS, torch.from_numpy(ids), SEP
    truncated = sum(len(r["primary"]) > keep for r in records)
    return Arrays(x, torch.tensor(labels, dtype=torch.long), lengths), truncated


# -- files ---------------------------------------------------------------------

def prepare(data_dir: Path, fmt: str) -> Path:
    """The unpacked TAPE release in data_dir/remote_homology/FMT, downloading it first if needed."""
    folder = data_dir / "remote_homology"
    unpacked = folder / fmt
    if not unpacked.is_dir():  # it appears only by an atomic rename, once complete
        archive = fetch(REMOTES[fmt], folder)
        if MD5[fmt] is not None and md5_of(archive) != MD5[fmt]:
            archive.unlink()
            raise FptError(f"{archive} is not TAPE's remote homology archive (md5 differs); it was deleted, "
                           "run the command again to download it afresh")
        safe_extract(archive, unpacked, what="TAPE's remote homology archive")
    return unpacked


def locate(folder: Path, split: str, fmt: str, downloaded: bool) -> Path:
    """The one file (or LMDB folder) remote_homology_SPLIT.FMT under `folder`."""
    name = f"remote_homology_{split}.{fmt}"
    found = sorted(folder.rglob(name)) if folder.is_dir() else []
    if len(found) != 1:
        fix = (f"delete {folder} to download and unpack it again" if downloaded else
               f"put TAPE's {name} under {folder} or fix --task-opt data_path")
        raise FptError(f"{'no' if not found else 'more than one'} {name} under {folder}; {fix}")
    return found[0]


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of one TAPE split file, as dicts."""
    records = _read_json(path) if path.suffix == ".json" else _read_lmdb(path)
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise FptError(f"{path}: record {i} is a {type(record).__name__}, not a dict; use TAPE's own file")
    return records


def _read_json(path: Path) -> list[Any]:
    try:
        records = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FptError(f"cannot read {path} as JSON ({err}); use TAPE's own file") from None
    if not isinstance(records, list):
        raise FptError(f"{path} holds a JSON {type(records).__name__}, not TAPE's list of records")
    return records


def _read_lmdb(path: Path) -> list[Any]:
    try:
        import lmdb
    except ImportError:
        raise FptError("reading TAPE's LMDB files needs the lmdb package: pip install lmdb "
                       "(or use --task-opt format=json)") from None
    try:
        with lmdb.open(str(path), subdir=path.is_dir(), readonly=True, lock=False, readahead=False,
                       meminit=False) as env, env.begin(write=False) as txn:
            raw = txn.get(b"num_examples")
            count = safe_loads(raw, path) if raw is not None else None
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise FptError(f"{path} has no valid 'num_examples' entry, so it is not a TAPE database; "
                               "use TAPE's own file")
            records = []
            for i in range(count):
                value = txn.get(str(i).encode())
                if value is None:
                    raise FptError(f"{path} says it holds {count} records but record {i} is missing; "
                                   "the file is damaged: delete it to download it again")
                records.append(safe_loads(value, path))
            return records
    except lmdb.Error as err:
        raise FptError(f"cannot read {path} as an LMDB database ({err}); {OWN_FILE}") from None


def safe_loads(data: bytes, where: Path) -> Any:
    """One record, unpickled by fpt.storage.archives: plain values and numpy arrays only, no code runs."""
    return safe_unpickle(data, where, what="a TAPE database of plain records", fix=OWN_FILE)
