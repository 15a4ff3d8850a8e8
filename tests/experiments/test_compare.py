"""fpt compare: plan, run, resume and verdict card, from the command line and from Python alike."""

from __future__ import annotations

import pytest

import fpt
from fpt.cli import main
from fpt.errors import FptError
from fpt.experiments.compare import DEFAULTS, choose_contenders

TINY = {"batch_size": 8, "eval_every": 2, "precision": "fp32"}


def test_default_contenders_follow_the_objective():
    assert [c.name for c in choose_contenders("default", "forecast")] == list(DEFAULTS["forecast"])
    assert [c.name for c in choose_contenders("default", "classification")][:3] == ["fpt", "random-init", "no-lm"]
    assert [c.name for c in choose_contenders("logistic,no-lm", "classification")] == ["fpt", "logistic", "no-lm"]
    with pytest.raises(FptError, match=r"--arms must be one of fpt, .*got 'lorra'"):
        choose_contenders("fpt,lorra", "classification")


def test_a_comparison_runs_resumes_and_gives_the_same_verdict_from_python_and_the_cli(tmp_path, tiny_gpt2, capsys):
    options = dict(task_options={"n_bits": 5, "n_val": 16, "n_test": 16}, model=str(tiny_gpt2),
                   arms="fpt,random-init,logistic,linear", seeds=2, out=tmp_path / "c", workers=2, steps=6,
                   extra=TINY, lrs=(1e-3,), progress=False)
    result = fpt.compare("bit-xor", **options)
    assert result.skipped == {"linear": "a model for forecasting, short-term forecasting, imputation, anomaly detection; this task's outputs are bits"}
    assert {row["contender"] for row in result.table} == {"fpt", "random-init", "logistic"}
    assert all(row["seeds"] == 2 for row in result.table)
    assert result.verdict[0].startswith("Does the language pretraining matter here?")
    assert result.verdict[-1].startswith("Limits:") and "linear skipped" in result.verdict[-1]
    text = result.report.read_text()
    assert text.startswith("## Verdict") and "| contender | test score | vs FPT (paired, 95% interval) |" in text
    runs = sorted(p.name for p in (tmp_path / "c" / "runs").iterdir())
    assert len(runs) == 6  # 3 contenders x (1 lr on seed 0 + 1 more seed)

    capsys.readouterr()
    code = main(["compare", "--task", "bit-xor", "--task-opt", "n_bits=5", "--task-opt", "n_val=16", "--task-opt",
                 "n_test=16", "--model", str(tiny_gpt2), "--arms", "fpt,random-init,logistic,linear",
                 "--seeds", "2", "--out", str(tmp_path / "c"), "--workers", "2", "--steps", "6", "--lrs", "1e-3",
                 "--set", "batch_size=8", "--set", "eval_every=2", "--set", "precision=fp32", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0 and "6 already finished, 0 to run" in captured.err  # resumed: nothing ran again
    assert captured.out.splitlines()[:len(result.verdict)] == result.verdict
    assert sorted(p.name for p in (tmp_path / "c" / "runs").iterdir()) == runs


def test_bad_input_is_one_line_before_anything_runs(tmp_path, tiny_gpt2):
    assert main(["compare", "--task", "bit-xor", "--model", str(tiny_gpt2), "--seeds", "1",
                 "--out", str(tmp_path / "c")]) == 2
    assert main(["compare", "--task", "bit-xorr", "--out", str(tmp_path / "d")]) == 2
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_docs_contenders_table_is_the_registry():
    from pathlib import Path

    from fpt.experiments.compare import markdown_table

    text = (Path(__file__).resolve().parents[2] / "docs" / "COMPARE.md").read_text()
    assert markdown_table() in text, "docs/COMPARE.md's table is stale: paste markdown_table()'s output into it"


def test_a_comparison_on_a_table_runs_the_table_baselines_and_skips_what_cannot_read_one(tmp_path, tiny_bert):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame({"x": rng.normal(size=n), "colour": rng.choice(["red", "blue"], n)})
    frame["y"] = np.where((frame.x > 0) ^ (frame.colour == "red"), "a", "b")
    frame.to_csv(tmp_path / "t.csv", index=False)
    result = fpt.compare(str(tmp_path / "t.csv"), task_options={"target": "y"}, model=str(tiny_bert),
                         arms="fpt,logistic,trees,cnn,minirocket", seeds=2, out=tmp_path / "c", steps=6, extra=TINY,
                         lrs=(1e-3,), progress=False)
    assert set(result.skipped) == {"cnn", "minirocket"} and "is a table" in result.skipped["cnn"]
    rows = {row["contender"]: row for row in result.table}
    assert set(rows) == {"fpt", "logistic", "trees"} and rows["trees"]["once"] == "fitted once"
    assert "| trees |" in result.report.read_text() and "fitted once" in result.report.read_text()


def test_runs_go_side_by_side_one_per_core_up_to_four_and_one_on_a_gpu(monkeypatch):
    import torch

    from fpt.experiments import compare as compare_module

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for cores, workers in ((1, 1), (2, 2), (16, 4), (None, 1)):
        monkeypatch.setattr(compare_module.os, "cpu_count", lambda cores=cores: cores)
        assert compare_module.default_workers() == workers
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert compare_module.default_workers() == 1


def test_the_card_counts_the_pruned_lr_runs(tmp_path):
    from fpt.experiments.compare import Comparison, card

    result = Comparison(["Limits: none."], [], {}, tmp_path / "REPORT.md", runs=66, pruned=9)
    assert "9 of the 66 runs were lr-search runs stopped early behind a sibling lr's" in card(result, 5.0)[-2]
    assert "pruned" not in card(Comparison([], [], {}, tmp_path / "REPORT.md", runs=3), 5.0)[-2]
    assert "took 5 s (estimate printed at its start: about 9 s)." in card(result, 5.0, "9 s")[-2]


def test_the_card_counts_wall_clock_time_without_the_gap_before_a_resumption(tmp_path):
    from fpt.experiments.compare import Comparison, card, run_time
    from fpt.experiments.results import Row

    def result(finished_at: str, seconds: float) -> dict:
        return {"finished_at": finished_at, "wall_seconds": seconds}

    # two overlapping runs on 10:00-11:00, then a resumption the next day: 30 min of runs
    first = Row("fpt", "t", {}, [result("2026-12-01T10:30:00+0000", 1800), result("2026-12-01T11:00:00+0000", 2700)],
                [], [])
    resumed = Row("no-lm", "t", {}, [result("2026-12-02T10:30:00+0000", 1800), {"wall_seconds": 5.0}], [], [])
    span, busy = run_time([first, resumed])
    assert (span, busy) == (24.5 * 3600, 1.5 * 3600)
    line = card(Comparison([], [], {}, tmp_path / "REPORT.md", span_seconds=span, busy_seconds=busy), 5.0)[-2]
    assert "ran for 1 h 30 min of wall-clock time" in line and "spread over 24 h 30 min" in line
    span, busy = run_time([first])
    line = card(Comparison([], [], {}, tmp_path / "REPORT.md", span_seconds=span, busy_seconds=busy), 5.0)[-2]
    assert "ran for 60 min 00 s" in line and "spread over" not in line
    assert run_time([]) == (0.0, 0.0)


def test_a_probe_times_a_step_on_the_threads_a_run_gets_and_gives_this_process_its_own_back(tiny_gpt2, monkeypatch):
    import torch

    from fpt.experiments import compare as compare_module
    from fpt.run.config import build_config
    from fpt.tasks import build_task

    config = build_config({"task": "bit-xor", "task_options": {"n_bits": 5, "n_val": 16, "n_test": 16},
                           "model": str(tiny_gpt2), "steps": 6, **TINY})
    task = build_task(config.task, config.task_options, config.data_seed, None)
    seen = []
    monkeypatch.setattr(compare_module, "_probe", lambda *args: seen.append(torch.get_num_threads()) or
                        compare_module.Probe("", 1.0))
    before = torch.get_num_threads()
    assert compare_module.probe(compare_module.CONTENDERS["fpt"], task, config, threads=1).run_seconds == 1.0
    assert seen == [1] and torch.get_num_threads() == before
    found = compare_module.probe(compare_module.CONTENDERS["fpt"], task, config)
    assert seen == [1, before] and found.reason == ""


def test_a_dry_run_prints_the_plan_and_writes_nothing(tmp_path, tiny_gpt2, capsys):
    code = main(["compare", "--task", "bit-xor", "--task-opt", "n_bits=5", "--task-opt", "n_val=16", "--task-opt",
                 "n_test=16", "--model", str(tiny_gpt2), "--arms", "fpt,logistic,linear", "--seeds", "2",
                 "--out", str(tmp_path / "c"), "--steps", "6", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 0 and "compare: 2 contenders (fpt, logistic)" in err and "about" in err
    assert "skipping linear" in err and not (tmp_path / "c").exists()


def test_the_estimate_divides_the_runs_time_among_the_runs_side_by_side(tiny_gpt2, monkeypatch):
    from fpt.experiments import compare as compare_module

    monkeypatch.setattr(compare_module.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(compare_module, "probe", lambda *args: compare_module.Probe("", 600.0))
    said = {}
    for workers in (1, 2, 4):
        lines = said[workers] = []
        compare_module.compare("bit-xor", {"n_bits": 5, "n_val": 16, "n_test": 16}, model=str(tiny_gpt2), arms="fpt",
                               seeds=2, workers=workers, steps=6, extra=TINY, lrs=(1e-3,), say=lines.append,
                               dry_run=True)
    # two runs of 600 s (6 steps cannot stop early) and 3 s outside training each: one after the other on one
    # worker; two side by side on two; four workers on two cores run no faster than two
    assert "about 20 min 06 s on this machine" in said[1][1]
    assert "about 10 min 03 s on this machine" in said[2][1] and "about 10 min 03 s" in said[4][1]


def test_each_contender_is_probed_with_its_runs_settings(tiny_gpt2, monkeypatch):
    from fpt.experiments import compare as compare_module

    trained = {}
    monkeypatch.setattr(compare_module, "probe", lambda contender, task, config, threads: trained.setdefault(
        contender.name, config.model_options.train) and compare_module.Probe("", 1.0))
    compare_module.compare("bit-xor", {"n_bits": 5, "n_val": 16, "n_test": 16}, model=str(tiny_gpt2),
                           arms="fpt,full,lora", seeds=2, steps=6, extra=TINY, say=lambda line: None, dry_run=True)
    # full fine-tuning trains everything (it was once probed with FPT's explicit groups standing over its method)
    assert trained["full"] == "all" and trained["fpt"] != "all"


def test_ln_tuning_is_skipped_where_it_would_repeat_fpt_run_for_run():
    from fpt.experiments.compare import Probe, repeats_fpt

    def counts(**trained):
        return {g: {"total": n, "trainable": n} for g, n in trained.items()}

    # SmolLM2-135M's result files (JapaneseVowels): no position table, so the same 246,537 parameters
    smollm2_fpt = Probe("", 1.0, counts(input=201024, output=10377, layernorm=35136, total=246537))
    smollm2_ln = Probe("", 1.0, counts(input=201024, output=10377, adapter=35136, total=246537))
    assert repeats_fpt(smollm2_fpt, smollm2_ln)
    # MiniLM trains its position table too: LN tuning trains fewer parameters and is a contender of its own
    minilm_fpt = Probe("", 1.0, counts(input=10, output=4, layernorm=9984, position=196608, total=206606))
    minilm_ln = Probe("", 1.0, counts(input=10, output=4, adapter=9984, total=9998))
    assert not repeats_fpt(minilm_fpt, minilm_ln) and not repeats_fpt(Probe(), smollm2_ln)


def test_the_estimate_assumes_a_run_stops_midway_between_its_first_chance_and_its_cap():
    from types import SimpleNamespace as Config

    from fpt.experiments.compare import early_stop_share
    # imputation's defaults under compare: 1,000 steps, an evaluation every 100, patience 5 -> first stop at 600
    assert early_stop_share(Config(steps=1000, eval_every=100, patience=5)) == pytest.approx(0.8)
    assert early_stop_share(Config(steps=1000, eval_every=10, patience=5)) == pytest.approx(0.53)
    assert early_stop_share(Config(steps=1000, eval_every=500, patience=5)) == 1.0  # cannot stop before its cap
    assert early_stop_share(Config(steps=1000, eval_every=100, patience=0)) == 1.0  # no early stopping


def test_durations_read_as_a_person_says_them():
    from fpt.experiments.compare import _duration

    assert _duration(42) == "42 s" and _duration(1053) == "17 min 33 s" and _duration(71992) == "19 h 59 min"
    assert _duration(539.6) == "9 min 00 s" and _duration(59.7) == "60 s"


def test_series_comparisons_table_imputation_by_ratio_and_detection_by_metric(tmp_path, tiny_bert, write_series):
    write_series(tmp_path / "series.csv", 300)
    imputed = fpt.compare("impute", task_options={"path": str(tmp_path / "series.csv"), "seq_len": 24},
                          model=str(tiny_bert), arms="interpolate,locf,linear", seeds=2, out=tmp_path / "i", workers=1,
                          steps=4, extra=TINY, lrs=(1e-3,), progress=False)
    text = imputed.report.read_text()
    assert "## Imputation" in text and "| 12.5% MSE / MAE | 25.0% MSE / MAE |" in text
    assert {row["contender"] for row in imputed.table} == {"fpt", "interpolate", "locf", "linear"}
    rows = (tmp_path / "series.csv").read_text().splitlines()
    labelled = [rows[0] + ",label"] + [f"{line},{int(i % 97 == 5)}" for i, line in enumerate(rows[1:])]
    (tmp_path / "labelled.csv").write_text("\n".join(labelled) + "\n")
    detected = fpt.compare("anomaly", task_options={"path": str(tmp_path / "labelled.csv"), "win_size": 20},
                           model=str(tiny_bert), arms="linear", seeds=2, out=tmp_path / "a", workers=1, steps=4,
                           extra=TINY, lrs=(1e-3,), progress=False)
    text = detected.report.read_text()
    assert "## Anomaly detection" in text and "| F1 | F1-PA | F1 published | F1-PA published | AUC-PR |" in text
    assert "| (random) |" in text and "| (isolation-forest) |" in text and "| (pca) |" in text
    assert detected.verdict[0].startswith("Which contender detects the anomalies? AUC-PR (%) on the test points")
    assert "linear" in detected.verdict[0] and "random" in detected.verdict[0]
