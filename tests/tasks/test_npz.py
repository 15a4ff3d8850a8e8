"""Bring-your-own .npz tasks: exact loading, padding, seeded validation, every bad file named, training."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from fpt.run.config import build_config
from fpt.errors import FptError
from fpt.tasks import build_task
from fpt.tasks.npz import NpzOptions, NpzTask, npz_spec
from fpt.run.train import train

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "make_npz_example.py"


def features(n: int, length: int = 6, dim: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, length, dim)).astype(np.float32)


def labels(n: int, k: int = 3) -> np.ndarray:
    return np.arange(n) % k


def classification(**changes) -> dict[str, np.ndarray]:
    """A valid float-token classification file's arrays, with `changes` applied (None deletes)."""
    arrays = {"x_train": features(30), "y_train": labels(30), "x_val": features(6, seed=1),
              "y_val": labels(6), "x_test": features(9, seed=2), "y_test": labels(9)}
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


def ids(n: int, length: int = 8, seed: int = 0) -> np.ndarray:
    """Token ids 1..6 right-padded with 0 to `length`, each row 2..length real tokens."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 7, size=(n, length))
    lengths = rng.integers(2, length + 1, size=n)
    x[np.arange(length)[None, :] >= lengths[:, None]] = 0
    return x


def write(tmp_path: Path, arrays: dict[str, np.ndarray], name: str = "data.npz") -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


# -- loading --------------------------------------------------------------------

def test_float_tokens_load_exactly(tmp_path):
    arrays = classification()
    task = build_task(str(write(tmp_path, arrays, "patches.npz")), {}, data_seed=0)
    spec = task.spec
    assert (spec.name, spec.seq_len, spec.token_dim, spec.vocab_size) == ("patches", 6, 3, None)
    assert (spec.objective, spec.n_outputs, spec.readout_tokens) == ("classification", 3, 1)
    assert [task.split_size(s) for s in ("val", "test")] == [6, 9]
    batches = list(task.eval_batches("test", 4))
    assert [len(b) for b in batches] == [4, 4, 1]
    assert torch.equal(torch.cat([b.x for b in batches]), torch.from_numpy(arrays["x_test"]))
    assert torch.equal(torch.cat([b.y for b in batches]), torch.from_numpy(arrays["y_test"]))
    assert all(b.mask.all() and b.y.dtype == torch.long for b in batches)
    assert npz_spec(tmp_path / "patches.npz") == spec
    # Training walks through every training example once per epoch.
    epoch = torch.cat([task.train_batch(step, 10, seed=3).x for step in range(3)])
    rows = lambda a: sorted(map(tuple, a.reshape(len(a), -1).tolist()))
    assert rows(epoch.numpy()) == rows(arrays["x_train"])


def test_float_splits_of_other_lengths_are_padded_and_masked(tmp_path):
    path = write(tmp_path, classification(x_test=features(9, length=10), x_val=features(6, length=4)))
    task = NpzTask(path, NpzOptions(), data_seed=0)
    assert task.spec.seq_len == 10
    assert task.splits["train"].x.shape == (30, 10, 3) and task.splits["train"].lengths.tolist() == [6] * 30
    batch = next(task.eval_batches("val", 6))
    assert batch.x.shape == (6, 4, 3) and batch.mask.all()
    assert (task.splits["train"].x[:, 6:] == 0).all()


@pytest.mark.parametrize("pad_id", [0, -1, 9])
def test_integer_tokens_with_right_padding(tmp_path, pad_id):
    x_train, x_test = ids(40, length=12), ids(10, length=8, seed=1)
    x_train[:, -2:] = 0  # two all-padding columns: dropped from seq_len
    lengths = (x_train != 0).sum(1)
    marked = lambda x: np.where(x == 0, pad_id, x)
    path = write(tmp_path, {"x_train": marked(x_train), "y_train": labels(40, 2),
                            "x_test": marked(x_test), "y_test": labels(10, 2), "pad_id": np.int64(pad_id)})
    task = NpzTask(path, NpzOptions(n_val=8), data_seed=0)
    spec = task.spec
    assert (spec.seq_len, spec.vocab_size, spec.token_dim) == (10, 7, None)  # ids 1..6; pad kept out of vocab
    assert task.pad_id == pad_id
    assert task.split_size("val") == 8 and len(task.splits["train"]) == 32
    task.bucketing = False  # walk the file's order, not shortest first
    batch = next(task.eval_batches("test", 10))
    assert batch.x.dtype == torch.long and batch.x.shape == (10, int((x_test != 0).sum(1).max()))
    assert torch.equal(batch.mask, torch.from_numpy(x_test != 0)[:, :batch.x.shape[1]])
    assert int(batch.x.max()) < spec.vocab_size and int(batch.x.min()) >= 0
    all_lengths = torch.cat([task.splits["train"].lengths, task.splits["val"].lengths])
    assert sorted(all_lengths.tolist()) == sorted(lengths.tolist())


def test_validation_is_carved_by_data_seed(tmp_path):
    path = write(tmp_path, classification(x_val=None, y_val=None))
    make = lambda seed, **opts: build_task(str(path), opts, data_seed=seed)
    task = make(0)
    assert task.split_size("val") == 3 and len(task.splits["train"]) == 27  # default: 10% of train
    rows = lambda t, s: {tuple(r) for r in t.splits[s].x.flatten(1).tolist()}
    assert not rows(task, "val") & rows(task, "train")
    assert rows(task, "val") | rows(task, "train") == {tuple(r) for r in features(30).reshape(30, -1).tolist()}
    assert rows(make(0), "val") == rows(task, "val") and rows(make(1), "val") != rows(task, "val")
    assert make(0, n_val="5").split_size("val") == 5
    with pytest.raises(FptError, match="cannot carve 30 validation .*--task-opt n_val"):
        make(0, n_val=30)
    with pytest.raises(FptError, match="n_val must be >= 0"):
        make(0, n_val=-1)
    with pytest.raises(FptError, match="has no option 'nval'"):
        make(0, nval=3)


def test_n_val_is_refused_when_the_file_has_a_validation_split(tmp_path):
    with pytest.raises(FptError, match="has its own x_val and y_val, so --task-opt n_val does not apply"):
        build_task(str(write(tmp_path, classification())), {"n_val": 2}, data_seed=0)


@pytest.mark.parametrize("y_train, y_test, outputs", [
    (np.linspace(0, 1, 30), np.ones(9), 1),
    (np.arange(90.0).reshape(30, 3), np.zeros((9, 3)), 3),
    (np.arange(30.0), np.arange(9.0), 1),  # whole-valued floats are still regression targets
])
def test_float_targets_are_regression(tmp_path, y_train, y_test, outputs):
    path = write(tmp_path, classification(y_train=y_train, y_test=y_test, x_val=None, y_val=None))
    task = build_task(str(path), {}, data_seed=0)
    assert (task.spec.objective, task.spec.n_outputs) == ("regression", outputs)
    batch = next(task.eval_batches("test", 9))
    assert batch.y.dtype == torch.float32 and batch.y.shape == (9, outputs)
    assert torch.equal(batch.y, torch.from_numpy(y_test.reshape(9, -1)).float())


# -- bad files --------------------------------------------------------------------

OBJECTS = np.array([{"a": 1}] * 30, dtype=object)
PADDED = {"x_train": ids(30), "y_train": labels(30), "x_test": ids(9), "y_test": labels(9), "pad_id": np.int64(0)}
NAN_X = features(30)
NAN_X[4, 2, 1] = np.nan
GAP = labels(30) * 2  # 0, 2, 4: 1 and 3 never occur
PAD_FIRST = ids(30)
PAD_FIRST[3, :2] = [0, 5]
ALL_PAD = ids(30)
ALL_PAD[7] = 0

BAD_ARRAYS = [  # (arrays, message)
    (classification(y_test=None), r"no array y_test; it needs x_train, y_train, x_test, y_test"),
    (classification(y_val=None), r"no array y_val; .*x_val with y_val, or neither"),
    (classification(x_valid=features(3)), r"holds array\(s\) x_valid, which fpt does not read; use only x_train"),
    (classification(y_train=labels(29)), r"x_train has 30 examples but y_train has 29"),
    (classification(x_train=features(30)[..., 0]),
     r"x_train: float tokens must have shape \(N, L, D\).*x\[\.\.\., None\]"),
    (classification(x_train=np.zeros((30, 6, 3), dtype=np.int64)), r"integer token ids must have shape \(N, L\)"),
    (classification(x_train=np.zeros((30, 2, 3, 4), dtype=np.float32)), r"float tokens must have shape"),
    (classification(x_test=features(9, dim=4)),
     r"splits disagree on their tokens \(train: 3 features, val: 3 features, test: 4 features\)"),
    (classification(x_test=ids(9)), r"splits disagree on their tokens .*test: ids"),
    (classification(x_train=NAN_X), r"x_train holds NaN or inf \(first at index \(4, 2, 1\)\)"),
    (classification(y_train=np.full(30, np.inf), y_val=np.ones(6), y_test=np.ones(9)), r"y_train holds NaN or inf"),
    (classification(y_train=GAP, y_val=labels(6) * 2, y_test=labels(9) * 2),
     r"class ids must be exactly 0\.\.4, but 2 of them are missing \(the first is 1\); remap"),
    (classification(y_test=np.where(labels(9) == 2, 4, labels(9))),
     r"class ids must be exactly 0\.\.4, but 1 of them are missing \(the first is 3\)"),
    (classification(y_val=labels(6) - 1), r"y_val has negative label -1; class ids must be 0\.\.K-1"),
    (classification(y_train=np.zeros(30, int), y_val=np.zeros(6, int), y_test=np.zeros(9, int)),
     r"at least two classes"),
    (classification(y_test=np.ones(9)), r"splits disagree on their targets .*test: 1 float targets"),
    (classification(y_train=np.ones((30, 2)), y_val=np.ones((6, 2)), y_test=np.ones((9, 3))),
     r"train: 2 float targets.*test: 3 float"),
    (classification(y_train=np.zeros((30, 2), int)),
     r"y_train has shape \(30, 2\); y must be integer class ids \(N,\)"),
    (classification(x_test=np.zeros((0, 6, 3), np.float32), y_test=labels(0)),
     r"x_test is empty \(shape \(0, 6, 3\)\)"),
    (classification(x_train=np.zeros((30, 0, 3), np.float32)), r"x_train is empty"),
    (classification(x_train=features(30, dim=0)), r"tokens have 0 features"),
    (classification(y_train=OBJECTS), r"array y_train holds Python objects, which fpt never unpickles"),
    (classification(x_train=np.array([["a"] * 6] * 30)), r"x_train has dtype <U1; tokens must be float"),
    (classification(y_test=np.array(["cat"] * 9)), r"y_test has dtype <U3; y must be integer class ids or float"),
    ({**PADDED, "pad_id": np.array([0, 1])}, r"pad_id must be one integer, e\.g\. numpy\.savez\(\.\.\., pad_id=0\)"),
    ({**PADDED, "pad_id": np.float64(0)}, r"pad_id must be one integer"),
    (classification(pad_id=np.int64(0)), r"pad_id applies to integer token ids, but x holds float features"),
    ({**PADDED, "x_train": PAD_FIRST}, r"x_train: row 3 has padding \(pad_id=0\) before real tokens; .*right end"),
    ({**PADDED, "x_train": ALL_PAD}, r"x_train: row 7 is all padding"),
    ({**PADDED, "pad_id": None, "x_test": ids(9) - 1}, r"x_test: token ids must be >= 0, found -1; .*pad_id"),
    ({**PADDED, "x_test": ids(9) * 2 ** 23}, r"largest token id is \d+; map ids to 0\.\.V-1"),
]


@pytest.mark.parametrize("arrays, message", BAD_ARRAYS)
def test_bad_files_are_named(tmp_path, arrays, message):
    path = write(tmp_path, {k: v for k, v in arrays.items() if v is not None})
    with pytest.raises(FptError, match=message) as err:
        build_task(str(path), {}, data_seed=0)
    assert "data.npz" in str(err.value)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


@pytest.mark.parametrize("make, message", [
    (lambda p: None, r"--task: no such file '.*nothing\.npz'; check the path"),
    (lambda p: p.write_text("x_train,y_train\n1,2\n"),
     r"is not an \.npz file, or is truncated \(not a readable zip archive of arrays\)"),
    (lambda p: np.save(p.with_suffix(".npy"), features(3)) or p.with_suffix(".npy").rename(p), r"is not an \.npz file"),
    (lambda p: np.savez(p, **classification()) or p.write_bytes(p.read_bytes()[:-200]), r"or is truncated"),
    (lambda p: np.savez(p, **classification()) or p.write_bytes(_flip(p.read_bytes(), 300)),
     r"array x_train cannot be read \(Bad CRC-32.*write the file again"),
])
def test_unreadable_files_are_named(tmp_path, make, message):
    path = tmp_path / "nothing.npz"
    make(path)
    with pytest.raises(FptError, match=message):
        build_task(str(path), {}, data_seed=0)


# -- end to end -------------------------------------------------------------------

STEPS = {"steps": 6, "eval_every": 3, "batch_size": 8, "progress": False}


def test_trains_on_classification_with_padding(tmp_path, tiny_gpt2):
    path = write(tmp_path, PADDED)
    result = train(build_config({**STEPS, "task": str(path), "model": str(tiny_gpt2), "out": str(tmp_path / "run")}))
    assert result["task_spec"]["vocab_size"] == 7 and result["task_spec"]["n_outputs"] == 3
    assert set(result["test"]) == {"loss", "accuracy", "score"} and 0 <= result["test"]["accuracy"] <= 1
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert build_config({"task": str(path)}).out_dir.name == "data-minilm-pretrained-s0"


def test_trains_on_regression(tmp_path, tiny_bert):
    targets = {"y_train": np.ones((30, 2)), "y_val": np.zeros((6, 2)), "y_test": np.arange(18.0).reshape(9, 2)}
    path = write(tmp_path, classification(**targets))
    result = train(build_config({**STEPS, "task": str(path), "model": str(tiny_bert), "out": str(tmp_path / "run")}))
    assert result["task_spec"]["objective"] == "regression" and result["task_spec"]["n_outputs"] == 2
    assert set(result["test"]) == {"loss", "rmse", "r2", "score"}
    assert result["test"]["rmse"] == pytest.approx(result["test"]["loss"] ** 0.5, rel=1e-5)


def test_example_script_writes_valid_datasets(tmp_path):
    runpy.run_path(str(EXAMPLE))["main"](["--out", str(tmp_path)])
    majority, sine = (build_task(str(tmp_path / f), {}, 0) for f in ("majority.npz", "sine.npz"))
    assert (majority.spec.objective, majority.spec.n_outputs, majority.spec.vocab_size) == ("classification", 4, 9)
    assert [majority.split_size(s) for s in ("val", "test")] == [200, 500] and majority.pad_id == 0
    spec = sine.spec
    assert (spec.objective, spec.n_outputs, spec.token_dim, spec.seq_len) == ("regression", 2, 1, 32)
    # The majority label really is the most frequent of the ids 1..4 (first among ties).
    data = np.load(tmp_path / "majority.npz")
    counts = np.stack([(data["x_train"] == t).sum(1) for t in range(1, 5)], axis=1)
    assert np.array_equal(counts.argmax(1), data["y_train"])
    first = tmp_path / "again"
    runpy.run_path(str(EXAMPLE))["main"](["--out", str(first)])
    for name in ("majority.npz", "sine.npz"):  # deterministic
        again, before = np.load(first / name), np.load(tmp_path / name)
        assert again.files == before.files and all(np.array_equal(again[k], before[k]) for k in again.files)
