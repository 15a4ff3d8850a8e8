"""fpt report builds tables and figures from result files alone."""

from __future__ import annotations

import csv

import pytest

from fpt.cli import main
from fpt.errors import FptError
from fpt.experiments.report import mean_se, report


def test_mean_and_standard_error():
    mean, se = mean_se([1.0, 2.0, 3.0])
    assert mean == 2.0 and se == pytest.approx(1.0 / 3 ** 0.5)


def test_report_from_a_small_sweep(tmp_path, tiny_gpt2):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "description: |\n  tiny report test\n  Command: fpt sweep spec.yaml\n"
        f"base: {{task: bit-xor, model: {tiny_gpt2}, steps: 4, eval_every: 2}}\n"
        "grid: {seed: [0, 1]}\n"
        "variants: {fpt: {}, random: {init: random}}\n"
        "paper: {table: table2, rows: {fpt: language (FPT), random: random}}\n")
    out = tmp_path / "sweep"
    assert main(["sweep", str(spec), "--out", str(out), "--no-progress"]) == 0
    path = report(out)
    text = path.read_text()
    assert "> tiny report test" in text and "| fpt | bit-xor | 2 |" in text and "| random | bit-xor | 2 |" in text
    assert "does not reproduce" in text  # 4 steps do not reach the paper's 100%
    rows = list(csv.reader((path.parent / "results.csv").open()))
    assert rows[0][:2] == ["variant", "task"] and len(rows) == 3
    for figure in ("curves-bit-xor.png", "bit-xor-attention.png"):
        assert (path.parent / figure).stat().st_size > 1000


def test_report_of_a_wrong_directory_is_one_error(tmp_path):
    with pytest.raises(FptError, match="not a sweep directory"):
        report(tmp_path / "typo")
    assert not (tmp_path / "typo").exists()
