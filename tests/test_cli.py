"""The command line: listings, one end-to-end run, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fpt.cli import main


def test_tasks_and_models_list(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "bit-xor" in out and "10 tokens x 1 values" in out and "120 tokens x 50 values" in out
    for task in ("listops", "mnist", "cifar10", "cifar10-lra", "remote-homology", "PATH.npz"):
        assert task in out
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "minilm" in out and "gpt2-xl" in out


def test_train_end_to_end_through_the_console_script(tmp_path, tiny_gpt2):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "fpt", "train", "--task", "bit-xor", "--model", str(tiny_gpt2),
         "--steps", "5", "--eval-every", "5", "--out", str(out), "--task-opt", "n_val=16",
         "--no-progress"],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["task"] == "bit-xor" and "accuracy" in summary["test"]
    assert json.loads((out / "result.json").read_text())["config"]["task_options"] == {"n_val": "16"}


def test_yaml_config_with_flag_override(tmp_path, tiny_gpt2, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(f"task: bit-xor\nmodel: {tiny_gpt2}\nsteps: 50\neval_every: 5\nprogress: false\n")
    assert main(["train", "--config", str(config), "--steps", "5", "--out", str(tmp_path / "r")]) == 0
    result = json.loads((tmp_path / "r" / "result.json").read_text())
    assert result["steps"] == 5 and result["config"]["eval_every"] == 5


@pytest.mark.parametrize("argv,message", [
    (["--task", "chess"], "unknown task 'chess'"),
    (["--model", "/no/such/dir"], "no such directory"),
    (["--train", "input,wings"], "--train: unknown group"),
    (["--steps", "0"], "--steps must be a positive integer"),
    (["--batch-size", "-4"], "--batch-size must be a positive integer"),
    (["--steps", "ten"], "invalid int value"),
    (["--stpes", "3"], r"^fpt train: error: unrecognized arguments: --stpes 3 \(see fpt train --help\)$"),
    (["--task-opt", "n_bits"], "expected KEY=VALUE"),
    (["--task-opt", "n_bits=-1"], "n_bits must be positive"),
    (["--config", "/no/such.yaml"], "no such file"),
    (["--task", "bit-memory", "--model", "{tiny_gpt2}"], "needs 120 positions .* has only 64"),
    (["--model", "lstm", "--attention", "bidirectional"], "causal by construction"),
])
def test_user_errors_are_one_line_exit_2_and_write_nothing(tmp_path, tiny_gpt2, capsys, argv, message):
    argv = [a.replace("{tiny_gpt2}", str(tiny_gpt2)) for a in argv]
    if "--task" not in argv:
        argv = ["--task", "bit-xor", *argv]
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main(["train", *argv, "--out", str(out), "--no-progress"]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert __import__("re").search(message, err[0]), err[0]
    assert not out.exists()


def test_existing_runs_are_not_clobbered(tmp_path, tiny_gpt2, capsys):
    argv = ["train", "--task", "bit-xor", "--model", str(tiny_gpt2), "--steps", "5", "--eval-every", "5",
            "--out", str(tmp_path / "r"), "--no-progress"]
    assert main(argv) == 0
    before = (tmp_path / "r" / "result.json").read_bytes()
    assert main(argv) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert (tmp_path / "r" / "result.json").read_bytes() == before


def test_npz_train_then_predict_through_the_cli(tmp_path, tiny_gpt2, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 6, 3)).astype(np.float32)
    y = (x[:, :, 0].sum(1) > 0).astype(np.int64)
    data = tmp_path / "mine.npz"
    np.savez(data, x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    run = tmp_path / "run"
    assert main(["train", "--task", str(data), "--model", str(tiny_gpt2), "--steps", "6", "--eval-every", "3",
                 "--out", str(run), "--no-progress"]) == 0
    result = json.loads((run / "result.json").read_text())
    assert result["task_spec"]["objective"] == "classification" and result["task_spec"]["n_outputs"] == 2
    predictions = tmp_path / "p.npy"
    assert main(["predict", "--run", str(run), "--input", str(data), "--out", str(predictions)]) == 0
    assert np.load(predictions).shape == (20,)
    capsys.readouterr()
    assert main(["predict", "--run", str(run), "--input", str(tmp_path / "none.npz"), "--out",
                 str(tmp_path / "q.npy")]) == 2
    assert "Traceback" not in capsys.readouterr().err and not (tmp_path / "q.npy").exists()


def test_data_listops_writes_lra_files(tmp_path):
    assert main(["data", "listops", "--out", str(tmp_path), "--n-train", "5", "--n-val", "2", "--n-test", "2",
                 "--min-length", "5", "--max-length", "40", "--max-depth", "3", "--no-progress"]) == 0
    lines = (tmp_path / "basic_train.tsv").read_text().splitlines()
    assert lines[0] == "Source\tTarget" and len(lines) == 6
