"""Every paper and cpu-mini preset parses, and each of its variants starts on a tiny configuration."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fpt.run.config import build_config
from fpt.experiments.sweep import check_runs, load_spec
from fpt.run.train import train

ROOT = Path(__file__).resolve().parents[2]
PRESETS = sorted((ROOT / "configs").glob("*/*.yaml"))
GENERATED = {"bit-xor", "bit-memory"}


BUILT_IN = {"linear", "repeat-last", "patchtst", "interpolate", "locf", "channel-mean"}  # small enough to run as they are


def tiny_model(model: str, tiny_gpt2: Path, tiny_bert: Path) -> str:
    if model in BUILT_IN:
        return model
    if model.startswith("lstm"):
        return "lstm-16"
    return str(tiny_bert if model.startswith(("bert", "minilm")) else tiny_gpt2)


def test_there_are_presets():
    names = {p.parent.name + "/" + p.stem for p in PRESETS}
    assert {"paper/table1", "paper/rothermel", "paper/groups", "cpu-mini/bit-xor"} <= names


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_preset_parses_and_every_variant_starts(preset, tmp_path, tiny_gpt2, tiny_bert, write_series):
    spec = load_spec(preset)
    runs = spec.runs()
    check_runs(runs, str(preset))  # every run's config is valid
    assert spec.description.strip() and "fpt sweep" in spec.description
    first_of_variant = {}
    for run in spec.runs(tiny=True):
        first_of_variant.setdefault(run.variant, run)
    for run in first_of_variant.values():
        config = dict(run.config)
        config["model"] = tiny_model(config.get("model", "minilm"), tiny_gpt2, tiny_bert)
        if config.get("layers"):
            config["layers"] = 1  # of the tiny model's 2 blocks
        if config.get("task") == "forecast":  # the same settings on a small CSV of this test's own
            csv = tmp_path / "series.csv"
            write_series(csv, 300)
            config["task_options"] = {**config.get("task_options", {}), "path": str(csv), "split": "0.7,0.1,0.2",
                                      "seq_len": 32, "horizon": 8, "patch_len": 8, "stride": 4,
                                      **({"test_path": str(csv)} if "test_path" in config.get("task_options", {}) else {})}
        elif config.get("task") == "impute":  # the same on a small CSV, shorter windows
            csv = tmp_path / "series.csv"
            write_series(csv, 300)
            config["task_options"] = {**config.get("task_options", {}), "path": str(csv), "split": "0.7,0.1,0.2",
                                      "seq_len": 24}
        elif config.get("task") == "anomaly":  # a small labelled CSV of this test's own, shorter windows
            csv = tmp_path / "labelled.csv"
            write_labelled(csv)
            config["task_options"] = {**config.get("task_options", {}), "path": str(csv), "win_size": 16}
        elif config.get("task") == "ucr" and importlib.util.find_spec("sktime") is not None:
            pass  # reads the sets that ship inside the sktime wheel
        elif config.get("task") not in GENERATED:  # datasets are not here: the same settings on bit-xor
            config["task"], config["task_options"] = "bit-xor", {}
            config.pop("train_fraction", None)  # bit-xor generates its examples: no training set to cut
        elif config["task"] == "bit-memory":
            config["task_options"] = {"n_bits": 20, "token_dim": 10, "n_val": 4, "n_test": 4}
        config.update(out=str(tmp_path / run.name), progress=False, steps=2, eval_every=1)
        result = train(build_config(config))
        nothing_trains = config["model"] in ("repeat-last", "interpolate", "locf", "channel-mean")
        assert result["steps_run"] == (0 if nothing_trains else 2), run.name


def write_labelled(path: Path, rows: int = 240) -> None:
    """A sine with a 0/1 label column and one anomalous burst in its test rows (the last 40%)."""
    import numpy as np

    values = np.sin(np.arange(rows) / 5.0)
    labels = np.zeros(rows, dtype=int)
    labels[200:206] = 1
    values[200:206] += 3.0
    path.write_text("value,label\n" + "".join(f"{v:.5f},{y}\n" for v, y in zip(values, labels)))


def test_sweep_command_starts_a_paper_preset(tmp_path, tiny_gpt2):
    out = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "fpt", "sweep", str(ROOT / "configs/paper/table1.yaml"), "--out", str(out),
         "--tiny", "--limit", "1", "--set", f"model={tiny_gpt2}", "--set", "task=bit-xor", "--no-progress"],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(list((out / "runs").glob("*/result.json"))) == 1


def test_sweep_refuses_to_reuse_runs_made_with_other_settings(tmp_path, tiny_gpt2):
    from fpt.errors import FptError
    from fpt.experiments.sweep import sweep

    spec = tmp_path / "s.yaml"
    spec.write_text(f"description: t\nbase: {{task: bit-xor, model: {tiny_gpt2}, steps: 2, eval_every: 1}}\n"
                    "grid: {seed: [0]}\n")
    assert sweep(spec, tmp_path / "out", progress=False) == []
    assert sweep(spec, tmp_path / "out", progress=False) == []      # finished: skipped
    index = (tmp_path / "out" / "index.json").read_bytes()
    with pytest.raises(FptError, match=r"made with other settings \(e.g. default__seed=0: lr: was 0.001, now 0.01;"):
        sweep(spec, tmp_path / "out", overrides={"lr": 0.01}, progress=False)
    assert (tmp_path / "out" / "index.json").read_bytes() == index  # the refused sweep touched nothing


def test_a_data_file_named_by_another_path_to_it_is_the_same_setting(tmp_path, monkeypatch):
    import json

    from fpt.experiments.sweep import changed_settings
    from fpt.run.config import build_config

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "series.csv").write_text("a,b\n1,2\n")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    run = tmp_path / "runs" / "fpt__seed=0"
    run.mkdir(parents=True)
    config = {"task": "forecast", "task_options": {"path": str(tmp_path / "data" / "series.csv"), "horizon": 24}}
    (run / "result.json").write_text(json.dumps({"config": build_config(dict(config)).to_dict()}))  # as train saves it
    monkeypatch.chdir(tmp_path / "data")
    assert changed_settings(run, {**config, "task_options": {"path": "series.csv", "horizon": 24}}) == []
    assert changed_settings(run, {**config, "task_options": {"path": "../other.csv", "horizon": 24}}) == [
        f"task_options: was {{'path': '{tmp_path / 'data' / 'series.csv'}', 'horizon': 24}}, "
        "now {'path': '../other.csv', 'horizon': 24}"]
    assert changed_settings(run, {**config, "task_options": {"path": "series.csv", "horizon": 48}}) != []
    assert changed_settings(tmp_path / "runs" / "none", config) is None


def test_sweep_only_runs_matching_runs_and_indexes_the_whole_grid(tmp_path, tiny_gpt2):
    import json

    from fpt.errors import FptError
    from fpt.experiments.sweep import sweep

    spec = tmp_path / "s.yaml"
    spec.write_text(f"description: t\nbase: {{task: bit-xor, model: {tiny_gpt2}, steps: 2, eval_every: 1}}\n"
                    "grid: {seed: [0, 1]}\nvariants: {a: {}, b: {lr: 0.01}}\n")
    assert sweep(spec, tmp_path / "out", progress=False, only=["b__*"]) == []
    assert sorted(p.parent.name for p in (tmp_path / "out" / "runs").glob("*/result.json")) == ["b__seed=0", "b__seed=1"]
    assert len(json.loads((tmp_path / "out" / "index.json").read_text())) == 4
    with pytest.raises(FptError, match="no run of the grid matches"):
        sweep(spec, tmp_path / "out", progress=False, only=["c__*"])


def test_grid_over_one_task_option_keeps_the_others(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("description: t\nbase: {task: forecast, task_options: {path: x.csv, split: ett-hour}}\n"
                    "grid: {task_options.horizon: [96, 192]}\n")
    runs = load_spec(spec).runs()
    assert [r.name for r in runs] == ["default__horizon=96", "default__horizon=192"]
    assert runs[1].config["task_options"] == {"path": "x.csv", "split": "ett-hour", "horizon": 192}
