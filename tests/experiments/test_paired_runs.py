"""scripts/paired_runs.py: the runs two directories share, paired by name, with the t interval."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "paired_runs.py"


def load():
    spec = importlib.util.spec_from_file_location("paired_runs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(root: Path, name: str, mse: float, precision: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "result.json").write_text(json.dumps(
        {"test": {"mse": mse}, "precision": precision, "versions": {"torch": "2.13.0", "fpt": "0.1.0"}}))


def test_pairs_by_name_and_says_whether_the_interval_excludes_zero(tmp_path, capsys):
    script = load()
    for seed, (a, b) in enumerate([(0.044, 0.0441), (0.045, 0.0449), (0.043, 0.0431)]):
        write(tmp_path / "a" / "runs", f"fpt__seed={seed}", a, "bf16")
        write(tmp_path / "b", f"fpt__seed={seed}", b, "fp32")  # a directory of run directories
    write(tmp_path / "a" / "runs", "linear__seed=0", 0.1, "fp32")  # in A only: not paired
    assert script.main([str(tmp_path / "a"), str(tmp_path / "b"), "--metric", "test/mse"]) == 0
    out = capsys.readouterr().out
    assert "| fpt__seed=1 | 0.04500 | 0.04490 | -0.00010 |" in out and "linear" not in out
    assert "over 3 pairs" in out and "no difference shown" in out
    assert "A ran as: bf16, host not recorded" in out and "B ran as: fp32" in out
    for seed in range(3):
        (tmp_path / "b" / f"fpt__seed={seed}" / "result.json").unlink()
        write(tmp_path / "c", f"fpt__seed={seed}", 0.05 + seed * 1e-4, "fp32")
    assert script.main([str(tmp_path / "a"), str(tmp_path / "c"), "--metric", "test/mse"]) == 0
    assert ": B higher" in capsys.readouterr().out
    assert script.main([str(tmp_path / "a"), str(tmp_path / "c"), "--metric", "test/mse", "--only", "*seed=0"]) == 0
    assert ": too few pairs for an interval (2 at least)" in capsys.readouterr().out


def test_bad_input_is_named(tmp_path, capsys):
    script = load()
    write(tmp_path / "a", "fpt__seed=0", 0.1, "fp32")
    write(tmp_path / "b", "fpt__seed=0", 0.1, "fp32")
    assert script.main([str(tmp_path / "a"), str(tmp_path / "b"), "--metric", "test/mae"]) == 2
    assert "--metric test/mae: the result has no 'mae' there (keys: mse)" in capsys.readouterr().err
    assert script.main([str(tmp_path / "a"), str(tmp_path / "b"), "--only", "linear__*"]) == 2
    assert "no finished run is in both" in capsys.readouterr().err
    assert script.main([str(tmp_path / "missing"), str(tmp_path / "b")]) == 2
    assert "is not a directory of runs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main(["--metric"])
