"""fpt predict: predictions agree with evaluate(), every output kind, bad inputs named, atomic output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fpt.run.config import build_config
from fpt.errors import FptError
from fpt.run.predict import load_input, predict, predict_cli, predict_loaded
from fpt.run.setup import load_run
from fpt.run.train import evaluate, train

QUICK = {"eval_every": 10, "batch_size": 8, "progress": False}


@pytest.fixture(scope="module")
def xor_run(tmp_path_factory, tiny_gpt2) -> Path:
    out = tmp_path_factory.mktemp("runs") / "xor"
    train(build_config({**QUICK, "task": "bit-xor", "steps": 40, "model": str(tiny_gpt2), "out": str(out)}))
    return out


@pytest.fixture(scope="module")
def xor(xor_run):
    return load_run(xor_run)


def signs(n: int, length: int = 10, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).integers(0, 2, (n, length, 1)) * 2 - 1).astype(np.float32)


def test_bit_predictions_agree_with_evaluate(xor):
    test = list(xor.task.eval_batches("test", 64))
    x, y = torch.cat([b.x for b in test]), torch.cat([b.y for b in test])
    bits = predict_loaded(xor, x, batch_size=64)
    assert bits.shape == (128, 5, 1) and bits.dtype == np.uint8 and set(np.unique(bits)) <= {0, 1}
    expected = evaluate(xor, "test", 64)
    assert (bits == y.numpy()).mean() == pytest.approx(expected["accuracy"], abs=1e-12)
    assert (bits == y.numpy()).all(axis=(1, 2)).mean() == pytest.approx(expected["sequence_accuracy"], abs=1e-12)
    p = predict_loaded(xor, x.numpy(), probs=True)
    assert p.dtype == np.float32 and p.shape == (128, 5, 1) and ((p > 0.5) == bits).all()
    assert np.array_equal(predict_loaded(xor, x, batch_size=7), bits)  # batching does not matter


def test_cli_writes_the_same_array_atomically(xor_run, tmp_path, capsys):
    x = signs(9)
    np.savez(tmp_path / "new.npz", x=x)
    assert predict_cli(str(xor_run), str(tmp_path / "new.npz"), str(tmp_path / "p.npy"), batch_size=4,
                       device="cpu") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == {"out": str(tmp_path / "p.npy"), "examples": 9, "shape": [9, 5, 1], "dtype": "uint8"}
    written = np.load(tmp_path / "p.npy", allow_pickle=False)
    assert np.array_equal(written, predict(xor_run, x, device="cpu"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.npz", "p.npy"]  # no temporary left
    # x_test of a training-style file and a bare .npy work as inputs too.
    np.savez(tmp_path / "split.npz", x_test=x, y_test=np.zeros(9))
    np.save(tmp_path / "bare.npy", x)
    for source in ("split.npz", "bare.npy"):
        assert np.array_equal(load_input(tmp_path / source)[0], x)


BAD_INPUTS = [  # (x, message): the run reads 10 tokens of 1 feature, last 5 read out
    (signs(3, length=10)[..., [0, 0]], r"the run reads tokens of D=1 features, got D=2 \(shape \(3, 10, 2\)\)"),
    (signs(3, length=11), r"11 tokens, but the run was trained on at most 10; shorten or split"),
    (signs(3, length=4), r"reads out the last 5 tokens, but an input has only 4"),
    (signs(3)[..., 0].astype(np.int64),
     r"reads float tokens \(N, L, 1\), got integer ids of shape \(3, 10\); convert"),
    (signs(3).astype(np.int64), r"integer token ids must have shape \(N, L\), got \(3, 10, 1\).*astype\(np\.float32\)"),
    (signs(3)[..., 0], r"float tokens must have shape \(N, L, D\), got \(3, 10\)"),
    (np.where(np.arange(10)[None, :, None] == 3, np.nan, signs(3)), r"holds NaN or inf \(first at index \(0, 3, 0\)\)"),
    (np.full((3, 10, 1), "a"), r"has dtype <U1; tokens must be float"),
    (np.zeros((0, 10, 1), np.float32), r"is empty \(shape \(0, 10, 1\)\)"),
]


@pytest.mark.parametrize("x, message", BAD_INPUTS)
def test_bad_inputs_are_named_and_leave_no_file(xor_run, tmp_path, x, message):
    np.savez(tmp_path / "in.npz", x=x)
    out = tmp_path / "p.npy"
    out.write_bytes(b"previous")
    with pytest.raises(FptError, match=message) as err:
        predict_cli(str(xor_run), str(tmp_path / "in.npz"), str(out), device="cpu")
    assert "--input '" in str(err.value)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npz", "p.npy"]


@pytest.mark.parametrize("call, message", [
    (lambda run, d: predict_cli(str(d / "nowhere"), str(d / "in.npz"), str(d / "p.npy")),
     r"--run: '.*nowhere' holds no model\.safetensors"),
    (lambda run, d: predict_cli(str(run), str(d / "missing.npz"), str(d / "p.npy")), r"--input: no such file"),
    (lambda run, d: predict_cli(str(run), str(d / "in.npz"), str(d / "no" / "p.npy")),
     r"--out '.*p\.npy': must be a file in an existing directory"),
    (lambda run, d: predict_cli(str(run), str(d / "in.npz"), str(d)), r"must be a file in an existing directory"),
    (lambda run, d: predict_cli(str(run), str(d / "y.npz"), str(d / "p.npy")),
     r"'.*y\.npz' has no array x \(nor x_test\); it holds y"),
    (lambda run, d: predict_cli(str(run), str(d / "in.npz"), str(d / "p.npy"), batch_size=0),
     r"--batch-size must be a positive integer, got 0"),
    (lambda run, d: predict_cli(str(run), str(d / "in.npz"), str(d / "p.npy"), device="tpu"),
     r"--device must be auto, cpu, cuda or cuda:N"),
    (lambda run, d: predict(run, signs(2), pad_id=0), r"pad_id applies to integer token ids"),
])
def test_bad_calls_are_named(xor_run, tmp_path, call, message):
    np.savez(tmp_path / "in.npz", x=signs(2))
    np.savez(tmp_path / "y.npz", y=np.zeros(2))
    with pytest.raises(FptError, match=message):
        call(xor_run, tmp_path)
    assert not (tmp_path / "p.npy").exists()


def test_classification_with_padding(tmp_path, tiny_gpt2):
    rng = np.random.default_rng(0)
    x = rng.integers(1, 6, (60, 8))
    lengths = rng.integers(2, 9, 60)
    x[np.arange(8)[None, :] >= lengths[:, None]] = 0
    y = (x == 1).sum(1) % 3
    data = tmp_path / "toy.npz"
    np.savez(data, x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:], pad_id=np.int64(0))
    train(build_config({**QUICK, "task": str(data), "steps": 10, "model": str(tiny_gpt2), "out": str(tmp_path / "r")}))
    built = load_run(tmp_path / "r")
    classes = predict_loaded(built, x[40:], batch_size=32)  # pad_id from the run's training file
    assert classes.shape == (20,) and classes.dtype == np.int64
    assert (classes == y[40:]).mean() == pytest.approx(evaluate(built, "test", 32)["accuracy"], abs=1e-12)
    probs = predict_loaded(built, x[40:], probs=True)
    assert probs.shape == (20, 3) and np.allclose(probs.sum(1), 1, atol=1e-6)
    assert np.array_equal(probs.argmax(1), classes)
    # An input file's own pad_id marks its padding (here -1 instead of 0): same predictions.
    np.savez(tmp_path / "in.npz", x=np.where(x[40:] == 0, -1, x[40:]), pad_id=np.int64(-1))
    assert predict_cli(str(tmp_path / "r"), str(tmp_path / "in.npz"), str(tmp_path / "p.npy")) == 0
    assert np.array_equal(np.load(tmp_path / "p.npy"), classes)

    for bad, message in [(np.full((2, 4), 6), r"token id 6 is not below the run's vocab_size 6"),
                         (np.array([[0, 1, 2]]), r"row 0 has padding \(pad_id=0\) before real tokens"),
                         (np.ones((2, 9), np.int64), r"9 tokens, but the run was trained on at most 8"),
                         (np.ones((2, 4, 1), np.float32), r"reads integer token ids \(N, L\) below 6, got float")]:
        with pytest.raises(FptError, match=message):
            predict_loaded(built, bad)
    shutil.move(data, tmp_path / "moved.npz")  # the training data is gone: predict does not need it
    assert np.array_equal(predict(tmp_path / "r", x[40:]), classes)


def test_regression_values(tmp_path, tiny_gpt2):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 5, 2)).astype(np.float32)
    y = np.stack([x.sum((1, 2)), x[:, -1, 0]], axis=1)
    data = tmp_path / "reg.npz"
    np.savez(data, x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    train(build_config({**QUICK, "task": str(data), "steps": 10, "model": str(tiny_gpt2), "out": str(tmp_path / "r")}))
    built = load_run(tmp_path / "r")
    values = predict_loaded(built, x[30:])
    assert values.shape == (10, 2) and values.dtype == np.float32
    rmse = float(np.sqrt(((values - y[30:]) ** 2).mean()))
    assert rmse == pytest.approx(evaluate(built, "test", 64)["rmse"], rel=1e-5)
    with pytest.raises(FptError, match=r"--probs: task reg is a regression, its outputs are values"):
        predict_loaded(built, x[30:], probs=True)


def test_an_older_checkpoint_without_its_input_format_still_loads_through_its_data(tmp_path, tiny_gpt2):
    from fpt.storage.checkpoints import load_tensors, save_tensors
    rng = np.random.default_rng(3)
    x = rng.integers(1, 6, size=(30, 6)).astype(np.int64)
    data = tmp_path / "old.npz"
    np.savez(data, x_train=x[:20], y_train=x[:20, 0] % 2, x_test=x[20:], y_test=x[20:, 0] % 2)
    train(build_config({**QUICK, "task": str(data), "steps": 4, "model": str(tiny_gpt2), "out": str(tmp_path / "r")}))
    tensors, meta = load_tensors(tmp_path / "r" / "model.safetensors")
    assert meta["task"]["spec"]["vocab_size"] == 6 and "pad_id" in meta["task"]
    del meta["task"]  # as written before checkpoints recorded the input format
    save_tensors(tmp_path / "r" / "model.safetensors", tensors, meta)
    before = predict(tmp_path / "r", x[20:])
    assert np.array_equal(before, predict_loaded(load_run(tmp_path / "r"), x[20:]))
    shutil.move(data, tmp_path / "moved.npz")
    with pytest.raises(FptError, match=r"was trained on '.*old\.npz', which predict reads again .*not there"):
        predict(tmp_path / "r", x[20:])

