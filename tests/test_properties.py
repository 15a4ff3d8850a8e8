"""Property-based bad input (hypothesis): whatever a user throws at the config schema, the CLI or
the ListOps TSV reader, the answer is a valid result or one FptError — never another exception."""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import tempfile
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fpt.cli import build_parser, config_from_args
from fpt.run.config import TrainConfig, build_config, field_names
from fpt.errors import FptError
from fpt.tasks.listops import read_tsv

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
values = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                   st.text(max_size=12), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5),
                                                                                               st.integers(), max_size=2))
keys = st.one_of(st.sampled_from(field_names()), st.text(min_size=1, max_size=12))


@SETTINGS
@given(st.dictionaries(keys, values, max_size=6))
def test_any_config_is_valid_or_one_fpt_error(overrides):
    try:
        cfg = build_config({"task": "bit-xor", **overrides})
    except FptError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert isinstance(cfg, TrainConfig)
    assert cfg.steps > 0 and cfg.batch_size > 0 and cfg.batch_size % cfg.grad_accum == 0
    assert cfg.lr > 0 and math.isfinite(cfg.lr) and 0 <= cfg.dropout < 1


@SETTINGS
@given(st.dictionaries(keys, values, max_size=6))
def test_any_yaml_file_is_valid_or_one_fpt_error(data):
    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(yaml.safe_dump({"task": "bit-xor", **data}))
        try:
            build_config({}, str(path))
        except FptError as err:
            assert "\n" not in str(err)


flags = st.sampled_from(["--steps", "--batch-size", "--lr", "--grad-accum", "--train", "--init", "--readout",
                         "--attention", "--dropout", "--eval-every", "--task-opt", "--precision", "--seed",
                         "--bogus", "--threshold", "--patience"])
flag_values = st.one_of(st.integers(-5, 5).map(str), st.sampled_from(["nan", "inf", "1e-3", "x", "", "a=b",
                                                                      "input,zzz", "all", "random"]))


@SETTINGS
@given(st.lists(st.tuples(flags, flag_values), max_size=4))
def test_any_command_line_is_valid_or_exit_2(pairs):
    argv = ["train", "--task", "bit-xor"] + [token for pair in pairs for token in pair]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = build_parser().parse_args(argv)
        config_from_args(args)
    except SystemExit as exit_:
        assert exit_.code == 2
        assert len(stderr.getvalue().strip().splitlines()) == 1
    except FptError as err:
        assert "\n" not in str(err)
    except argparse.ArgumentError:  # pragma: no cover - Parser.error turns these into exit 2
        raise


tsv_lines = st.lists(st.one_of(
    st.just("( [MAX 2 9 ] )\t9"), st.just("[SM 1 2 ]\t3"), st.text(max_size=30),
    st.tuples(st.text(alphabet="0123456789[]() MINAXEDS", max_size=30), st.integers(-3, 12)).map(
        lambda t: f"{t[0]}\t{t[1]}")), max_size=6)


@SETTINGS
@given(st.booleans(), tsv_lines, st.integers(1, 40))
def test_any_tsv_is_read_or_one_fpt_error(header, lines, max_length):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "basic_train.tsv"
        path.write_text("\n".join((["Source\tTarget"] if header else []) + lines) + "\n")
        try:
            arrays, truncated = read_tsv(path, max_length)
        except FptError as err:
            assert str(path) in str(err)
            return
        assert len(arrays) >= 1 and 0 <= truncated <= len(arrays)
        assert int(arrays.lengths.max()) <= max_length and int(arrays.y.min()) >= 0 and int(arrays.y.max()) <= 9


small_arrays = st.one_of(
    st.lists(st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1,
                               max_size=3), min_size=1, max_size=4), min_size=0, max_size=5),
    st.lists(st.lists(st.integers(-3, 12), min_size=1, max_size=5), min_size=0, max_size=5),
)
labels = st.one_of(st.lists(st.integers(-2, 4), max_size=6), st.lists(st.floats(allow_nan=True, width=32),
                                                                       max_size=6))


@SETTINGS
@given(small_arrays, labels, small_arrays, labels, st.one_of(st.none(), st.integers(-1, 3)))
def test_any_npz_file_is_read_or_one_fpt_error(x_train, y_train, x_test, y_test, pad_id):
    import numpy as np

    from fpt.tasks.npz import read_dataset

    def array(values):
        try:
            return np.array(values)
        except ValueError:  # ragged lists: store them as they would arrive, as an object array
            return np.array(values, dtype=object)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npz"
        arrays = {"x_train": array(x_train), "y_train": array(y_train), "x_test": array(x_test),
                  "y_test": array(y_test)}
        if pad_id is not None:
            arrays["pad_id"] = np.array(pad_id)
        np.savez(path, **arrays)
        try:
            data = read_dataset(path)
        except FptError as err:
            assert "\n" not in str(err)
            return
        for split in data.splits.values():  # whatever was accepted is clean and consistent
            assert len(split) > 0 and torch.isfinite(split.x.float()).all() and torch.isfinite(split.y.float()).all()
            if data.spec.objective == "classification":
                assert 0 <= int(split.y.min()) and int(split.y.max()) < data.spec.n_outputs
