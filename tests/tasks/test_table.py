"""Tables (`--task data.csv --task-opt target=COLUMN`, fpt.tasks.table): the feature tokenizer's
encoding, the objective from the target, the split, and one line for every bad table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fpt.cli import main
from fpt.errors import FptError
from fpt.tasks import build_task, is_data_file


def _frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"age": rng.integers(18, 80, n).astype(float), "city": rng.choice(["paris", "lyon", "nice"], n),
                       "income": rng.normal(50, 10, n)})
    df.loc[[3, 7, 11], "income"] = np.nan
    df.loc[[5], "city"] = np.nan
    df["label"] = np.where((df.city == "paris") ^ (df.age > 50), "yes", "no")
    df["price"] = df.age * 2 + (df.city == "nice") * 30 + rng.normal(0, 1, n)
    return df


@pytest.fixture
def table(tmp_path) -> Path:
    path = tmp_path / "people.csv"
    _frame().to_csv(path, index=False)
    return path


def test_a_csv_is_a_data_file_and_parquet_too():
    assert is_data_file("a/b.csv") and is_data_file("x.PARQUET") and is_data_file("x.npz")
    assert not is_data_file("bit-xor")


def test_every_column_is_one_token_of_its_own_slots(table):
    task = build_task(str(table), {"target": "label", "drop": "price"}, data_seed=0)
    spec = task.spec
    # age: 1 slot; city: paris, lyon, nice, (missing), (other) = 5; income: value + missing = 2
    assert spec.columns == ("age", "city", "income") and spec.seq_len == 3 and spec.token_dim == 8
    assert spec.objective == "classification" and spec.n_outputs == 2
    x = torch.cat([task.splits[s].x for s in ("train", "val", "test")])    # (N, 3, 8)
    assert ((x != 0).sum(-1) >= 1).all()                                  # every token holds its value
    assert (x[:, 0, 1:] == 0).all() and (x[:, 2, :6] == 0).all()          # each column keeps to its own slots
    assert torch.allclose(x[:, 1, 1:6].sum(-1), torch.ones(len(x)))       # one category each
    train = task.splits["train"].x[:, 0, 0]
    assert abs(float(train.mean())) < 1e-5 and abs(float(train.std(unbiased=False)) - 1) < 1e-4  # standardised on train
    missing = task.splits["train"].x[:, 2, 7] == 1
    assert (task.splits["train"].x[missing, 2, 6] == 0).all()             # missing: the training mean, flagged


def test_the_split_is_seeded_by_the_data_seed_and_a_split_column_overrides_it(tmp_path, table):
    sizes = {s: len(build_task(str(table), {"target": "label"}, 0).splits[s]) for s in ("train", "val", "test")}
    assert sizes == {"train": 140, "val": 20, "test": 40}
    a = build_task(str(table), {"target": "label"}, 0).splits["test"].y
    b = build_task(str(table), {"target": "label"}, 1).splits["test"].y
    assert not torch.equal(a, b) or len(a) == 0
    df = _frame()
    df["part"] = ["train"] * 150 + ["val"] * 20 + ["test"] * 30
    df.to_csv(tmp_path / "split.csv", index=False)
    task = build_task(str(tmp_path / "split.csv"), {"target": "label", "split_column": "part"}, 0)
    assert [len(task.splits[s]) for s in ("train", "val", "test")] == [150, 20, 30]
    assert "part" not in task.spec.columns


def test_the_target_decides_the_objective(tmp_path, table):
    assert build_task(str(table), {"target": "price"}, 0).spec.objective == "regression"
    df = _frame()
    df["grade"] = np.arange(len(df)) % 4          # whole numbers, 4 values: classes
    df.to_csv(tmp_path / "g.csv", index=False)
    spec = build_task(str(tmp_path / "g.csv"), {"target": "grade"}, 0).spec
    assert spec.objective == "classification" and spec.n_outputs == 4
    spec = build_task(str(tmp_path / "g.csv"), {"target": "grade", "objective": "regression"}, 0).spec
    assert spec.objective == "regression"


def test_parquet_reads_like_csv(tmp_path):
    pytest.importorskip("pyarrow")
    _frame().to_parquet(tmp_path / "p.parquet")
    assert build_task(str(tmp_path / "p.parquet"), {"target": "label"}, 0).spec.seq_len == 4


@pytest.mark.parametrize("change, options, message", [
    (None, {}, r"name the column to predict: --task-opt target=COLUMN \(columns: age, city"),
    (None, {"target": "nope"}, r"has no column 'nope'; its columns: age"),
    (lambda df: df.assign(const=1.0), {"target": "label"}, r"column 'const' is constant; .* --task-opt drop=const"),
    (lambda df: df.assign(label="yes"), {"target": "label"}, r"has one class \('yes'\)"),
    (lambda df: df.assign(age=df.age.astype(object).where(df.index != 9, "n/a?")), {"target": "label"},
     r"row 10, column 'age': 'n/a\?' is not a number, but 199 of its 200 filled cells are"),
    (lambda df: df.assign(label=df.label.where(df.index != 4)), {"target": "label"}, r"1 row\(s\) have no 'label'"),
    (lambda df: df.assign(age=df.age.where(df.index != 2, np.inf)), {"target": "label"}, r"'age' is infinite"),
    (None, {"target": "label", "objective": "regression"}, r"objective=regression needs a numeric target"),
    (lambda df: df.head(5), {"target": "label"}, r"has 5 rows; a table needs 10"),
])
def test_bad_tables_get_one_line_and_no_run_directory(tmp_path, capsys, change, options, message):
    df = _frame()
    if change is not None:
        df = change(df)
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    args = ["train", "--task", str(path), *[a for k, v in options.items() for a in ("--task-opt", f"{k}={v}")],
            "--out", str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "run").exists()


def test_an_unreadable_file_is_one_line(tmp_path):
    (tmp_path / "x.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(FptError, match="cannot read"):
        build_task(str(tmp_path / "x.csv"), {"target": "a"}, 0)
    with pytest.raises(FptError, match="no such file"):
        build_task(str(tmp_path / "none.csv"), {"target": "a"}, 0)


def test_fpt_and_the_table_baselines_learn_a_table(tmp_path, table, tiny_bert):
    for method, extra in (("fpt", ["--model", str(tiny_bert), "--steps", "400", "--lr", "1e-2"]),
                          ("logistic", ["--steps", "200", "--lr", "1e-2"]), ("trees", [])):
        out = tmp_path / method
        assert main(["train", "--no-progress", "--task", str(table), "--task-opt", "target=price", "--method", method,
                     *extra, "--out", str(out)]) == 0
        result = json.loads((out / "result.json").read_text())
        assert result["test"]["r2"] > 0.5, (method, result["test"])
    assert main(["train", "--task", str(table), "--task-opt", "target=label", "--method", "cnn",
                 "--out", str(tmp_path / "cnn")]) == 2


def test_rare_categories_share_one_slot_and_a_table_too_wide_for_memory_is_refused(tmp_path, monkeypatch):
    from fpt.tasks import table

    df = _frame()
    df["code"] = [f"c{i % 50}" for i in range(len(df))]
    df.to_csv(tmp_path / "wide.csv", index=False)
    task = build_task(str(tmp_path / "wide.csv"), {"target": "label", "max_categories": 5}, 0)
    code = [c for c in task.columns if c.name == "code"][0]
    assert code.slots == 6 and code.categories[-1] == "(other)"
    monkeypatch.setattr(table, "MAX_TOKEN_BYTES", 1000)
    with pytest.raises(FptError, match=r"GiB as tokens; lower --task-opt max_categories"):
        build_task(str(tmp_path / "wide.csv"), {"target": "label"}, 0)


def test_new_rows_are_encoded_as_the_training_rows_were(tmp_path, table):
    from fpt.tasks.table import Table, TableOptions, encode_rows

    options = {"target": "label", "drop": "price"}
    task = build_task(str(table), options, data_seed=0)
    every = encode_rows(task.spec, table)                                   # the training file itself, in row order
    split = Table._split(pd.read_csv(table), TableOptions(**options), 0, table)
    for s, name in enumerate(("train", "val", "test")):
        assert torch.equal(torch.from_numpy(every[split == s]), task.splits[name].x)
    reordered = pd.read_csv(table)[["income", "city", "age"]]               # any column order, no target
    assert np.array_equal(encode_rows(task.spec, _saved(tmp_path, reordered)), every)
    city = json.loads(task.spec.table_encoding)[1]["categories"]            # slots 1..5 of the token
    new = pd.DataFrame({"age": [30.0, np.nan], "city": ["berlin", None], "income": [None, 40.0]})
    tokens = encode_rows(task.spec, _saved(tmp_path, new))                  # (2, 3, 8)
    assert tokens[0, 1, 1 + city.index("(other)")] == 1                     # a city never seen in training
    assert tokens[1, 1, 1 + city.index("(missing)")] == 1 and tokens[0, 2, 7] == 1  # missing cells, flagged
    assert tokens[1, 0, 0] == 0                                             # a missing age: the training mean
    assert task.spec.classes == ("no", "yes")
    with pytest.raises(FptError, match=r"lacks the column\(s\) income"):
        encode_rows(task.spec, _saved(tmp_path, new[["age", "city"]]))
    with pytest.raises(FptError, match=r"row 1, column 'age': 'old' is not a finite number"):
        encode_rows(task.spec, _saved(tmp_path, new.assign(age=["old", "1"])))


def _saved(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / f"rows-{len(list(tmp_path.glob('rows-*')))}.csv"
    frame.to_csv(path, index=False)
    return path


def test_fpt_predict_reads_a_table_and_writes_labels_or_values(tmp_path, table, tiny_bert):
    fast = ["--model", str(tiny_bert), "--steps", "4", "--eval-every", "2", "--precision", "fp32", "--no-progress"]
    assert main(["train", "--task", str(table), "--task-opt", "target=label", "--task-opt", "drop=price",
                 "--out", str(tmp_path / "c"), *fast]) == 0
    new = _saved(tmp_path, pd.read_csv(table).head(5).drop(columns=["label"]))
    assert main(["predict", "--run", str(tmp_path / "c"), "--input", str(new), "--out", str(tmp_path / "p.csv")]) == 0
    assert set(pd.read_csv(tmp_path / "p.csv")["prediction"]) <= {"no", "yes"}
    assert main(["predict", "--run", str(tmp_path / "c"), "--input", str(new), "--out", str(tmp_path / "q.csv"),
                 "--probs"]) == 0
    probs = pd.read_csv(tmp_path / "q.csv")
    assert list(probs.columns) == ["p(no)", "p(yes)"] and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert main(["train", "--task", str(table), "--task-opt", "target=price", "--task-opt", "drop=label",
                 "--out", str(tmp_path / "r"), *fast]) == 0
    assert main(["predict", "--run", str(tmp_path / "r"), "--input", str(new), "--out", str(tmp_path / "v.npy")]) == 0
    values = np.load(tmp_path / "v.npy")                                    # (5, 1) in the target's units
    assert values.shape == (5, 1) and 20 < float(np.abs(values).mean()) < 400  # prices, not standard deviations
