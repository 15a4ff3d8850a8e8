"""The config schema: defaults <- YAML <- flags, unknown keys and bad values refused."""

from __future__ import annotations

import pytest

from fpt.run.config import TrainConfig, build_config
from fpt.errors import FptError


def test_defaults_are_the_paper_s():
    cfg = build_config({"task": "bit-xor"})
    assert (cfg.lr, cfg.weight_decay, cfg.clip, cfg.init) == (1e-3, 0.0, 1.0, "pretrained")
    assert cfg.train_groups == ["input", "output", "layernorm", "position"]


def test_yaml_then_flags_override(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: bit-memory\nlr: 1e-4\nsteps: 7\ntask_options: {n_bits: 100, token_dim: 10}\n")
    cfg = build_config({"steps": 9, "task_options": {"n_val": "4"}}, str(path))
    assert (cfg.task, cfg.lr, cfg.steps) == ("bit-memory", 1e-4, 9)
    assert cfg.task_options == {"n_bits": 100, "token_dim": 10, "n_val": "4"}


@pytest.mark.parametrize("yaml_text,message", [
    ("stpes: 3\n", "unknown key 'stpes'.*did you mean 'steps'"),
    ("steps: three\n", "'steps' .* must be int"),
    ("- a list\n", "must hold a mapping"),
    ("task: [\n", "cannot read"),
])
def test_bad_yaml(tmp_path, yaml_text, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(FptError, match=message):
        build_config({"task": "bit-xor"}, str(path))


@pytest.mark.parametrize("overrides,flag", [
    ({"steps": 0}, "--steps"), ({"batch_size": -1}, "--batch-size"), ({"lr": 0.0}, "--lr"),
    ({"lr": float("nan")}, "--lr"), ({"grad_accum": 3}, "--grad-accum"), ({"train": "input,wings"}, "--train"),
    ({"dropout": 1.0}, "--dropout"), ({"device": "tpu"}, "--device"), ({"init": "zeros"}, "--init"),
])
def test_bad_values_name_their_flag(overrides, flag):
    with pytest.raises(FptError, match=flag):
        build_config({"task": "bit-xor", **overrides})


def test_missing_config_file():
    with pytest.raises(FptError, match="no such file"):
        build_config({"task": "bit-xor"}, "/nonexistent/c.yaml")


def test_train_all_expands():
    assert len(TrainConfig(task="x", train="all").train_groups) == 6


@pytest.mark.parametrize("value", [0, 0.0, "0", "0.0"])
def test_backbone_dropout_numbers_are_one_canonical_value(tmp_path, value):
    """YAML's backbone_dropout: 0 (an int) was refused as 'must be str'; every spelling is one setting."""
    assert build_config({"task": "bit-xor", "backbone_dropout": value}).backbone_dropout == 0.0
    config = tmp_path / "c.yaml"
    config.write_text(f"task: bit-xor\nbackbone_dropout: {value}\n")
    assert build_config({}, str(config)).backbone_dropout == 0.0
    assert build_config({"task": "bit-xor"}).backbone_dropout == "config"


def test_a_run_saved_with_dropout_spelt_as_a_string_reads_as_the_same_setting():
    from fpt.run.config import saved_settings
    saved = saved_settings({**build_config({"task": "bit-xor"}).to_dict(), "backbone_dropout": "0"})
    assert saved["backbone_dropout"] == build_config({"task": "bit-xor", "backbone_dropout": 0}).backbone_dropout


@pytest.mark.parametrize("bad", [1, 1.5, -0.1, "high", True])
def test_backbone_dropout_out_of_range_is_refused(bad):
    with pytest.raises(FptError, match="--backbone-dropout must be config or a probability"):
        build_config({"task": "bit-xor", "backbone_dropout": bad})


@pytest.mark.parametrize("overrides,name", [
    ({"task": "bit-xor"}, "bit-xor-minilm-pretrained-s0"),
    ({"task": "bit-xor", "init": "random"}, "bit-xor-minilm-random-s0"),
    ({"task": "bit-xor", "model": "gpt2", "seed": 3}, "bit-xor-gpt2-pretrained-s3"),
    ({"task": "bit-xor", "model": "HuggingFaceTB/SmolLM2-135M"}, "bit-xor-SmolLM2-135M-pretrained-s0"),
    ({"task": "bit-xor", "out": "x/y"}, "y"),
])
def test_the_default_run_directory_names_task_model_init_and_seed(overrides, name):
    assert build_config(overrides).out_dir.name == name


def test_which_fields_may_change_on_resume_is_marked_on_the_fields():
    from fpt.run.config import resumable_fields
    assert resumable_fields() == {"resume", "progress", "device", "out", "steps", "nan_policy", "log_to",
                                  "wandb_project", "parallel", "prune_against"}


def test_the_two_train_fractions_cannot_multiply():
    with pytest.raises(FptError, match="would multiply; give the fraction once"):
        build_config({"task": "forecast", "task_options": {"path": "etth1", "train_fraction": "0.1"},
                      "train_fraction": 0.1})
    assert build_config({"task": "forecast", "task_options": {"path": "etth1", "train_fraction": 1},
                         "train_fraction": 0.1}).train_fraction == 0.1
