"""listops: LRA's generator and file format, every target checked by evaluation, a tokenizer that
keeps the closing brackets, counted truncation, and bad files named by file and line."""

from __future__ import annotations

import csv
import io
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import fpt.tasks.listops as listops
from fpt.errors import FptError
from fpt.tasks.base import parse_options
from fpt.tasks import lra_listops
from fpt.tasks.listops import PAD, VOCAB, VOCAB_SIZE, ListOps, ListOpsOptions, detokenize, evaluate_listops, tokenize
from fpt.tasks.lra_listops import generate_listops, render

SMALL = dict(n_train=300, n_val=40, n_test=40, min_length=10, max_length=60, max_depth=4, seed=3)
FILES = ("basic_train.tsv", "basic_val.tsv", "basic_test.tsv")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """A CPU-sized variant written by the generator: lengths 11..59, depth <= 4."""
    out = tmp_path_factory.mktemp("listops")
    generate_listops(out, progress=False, **SMALL)
    return out


def rows(path: Path) -> list[tuple[str, str]]:
    lines = path.read_bytes().decode().split("\r\n")
    assert lines[0] == "Source\tTarget" and lines[-1] == ""
    return [tuple(line.split("\t")) for line in lines[1:-1]]


def copy_data(small: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    shutil.copytree(small, folder)
    return folder


def load(folder: Path, max_length: int) -> ListOps:
    return ListOps(ListOpsOptions(data=str(folder), max_length=max_length), data_seed=0)


# -- generation ----------------------------------------------------------------

def test_every_target_is_the_value_and_every_length_fits(small):
    sources = []
    for name, n in zip(FILES, (300, 40, 40)):
        data = rows(small / name)
        assert len(data) == n
        for source, target in data:
            assert int(target) == evaluate_listops(source)
            assert 10 < len(tokenize(source)) < 60        # LRA's length: digits, operators, ']'
            sources.append(source)
    assert len(set(sources)) == len(sources)              # unique across all splits, as LRA's set()
    # All four operators and all ten classes occur.
    text = " ".join(sources)
    assert all(op in text for op in ("[MIN", "[MAX", "[MED", "[SM"))
    assert {int(t) for _, t in rows(small / "basic_train.tsv")} == set(range(10))


def pairs(tokens: list[str]) -> object:
    """Parse LRA's markup, asserting that every '( ... )' holds exactly two items (a left-nested pair)."""
    stack: list[list] = [[]]
    for token in tokens:
        if token == "(":
            stack.append([])
        elif token == ")":
            group = stack.pop()
            assert len(group) == 2, group
            stack[-1].append(tuple(group))
        else:
            stack[-1].append(token)
    assert len(stack) == 1 and len(stack[0]) == 1
    return stack[0][0]


def test_file_format_is_lras(small):
    raw = (small / "basic_train.tsv").read_bytes()
    assert raw.startswith(b"Source\tTarget\r\n") and raw.endswith(b"\r\n")
    data = rows(small / "basic_train.tsv")
    # Byte for byte what LRA's csv.writer(f, delimiter='\t') writes.
    expected = io.StringIO()
    writer = csv.writer(expected, delimiter="\t")
    writer.writerow(["Source", "Target"])
    writer.writerows([source, int(target)] for source, target in data)
    assert expected.getvalue().encode() == raw
    for source, _ in data:
        assert source == " ".join(source.split())       # single spaces, no padding
        nested = pairs(source.split())
        assert isinstance(nested, tuple) and nested[1] == "]"   # (( ... ), ']') at the root
    assert render("b29]") == "( ( ( [MAX 2 ) 9 ) ] )"   # the example in LRA's paper
    assert render("d" + "a12]" + "3]") == "( ( ( [SM ( ( ( [MIN 1 ) 2 ) ] ) ) 3 ) ] )"
    assert render("7") == "7"


def test_generation_is_deterministic_by_seed(small, tmp_path):
    generate_listops(tmp_path / "same", progress=False, **SMALL)
    generate_listops(tmp_path / "other", progress=False, **{**SMALL, "seed": 4})
    for name in FILES:
        assert (tmp_path / "same" / name).read_bytes() == (small / name).read_bytes()
        assert (tmp_path / "other" / name).read_bytes() != (small / name).read_bytes()


def test_sampler_follows_lras_distribution():
    """Unconstrained trees: the root is a leaf 3/4 of the time, an operator takes 2..max_args args."""
    sampler = lra_listops._TreeSampler(random.Random(0), max_depth=10, max_args=10, leaf_prob=0.75,
                                   max_length=10**9)
    trees = [sampler.sample() for _ in range(4000)]
    leaves = sum(len(compact) == 1 for compact, _, _ in trees)
    assert 0.72 < leaves / 4000 < 0.78
    for compact, value, length in trees[:500]:
        assert length == len(compact) and value == evaluate_listops(render(compact))
    arities = [len(render(c).split("[", 1)[0].split()) - 1 for c, _, _ in trees if len(c) > 1]
    assert min(arities) == 2 and max(arities) == 10 and 5.5 < np.mean(arities) < 6.5
    depth_one = lra_listops._TreeSampler(random.Random(0), 1, 10, 0.75, 10**9)
    assert all(len(depth_one.sample()[0]) == 1 for _ in range(50))   # max depth: always a leaf


@pytest.mark.parametrize("overrides,message", [
    ({"n_val": 0}, "--n-val must be at least 1"),
    ({"min_length": 10, "max_length": 11}, "no length L"),
    ({"max_depth": 0}, "--max-depth"),
    ({"max_args": 1}, "--max-args"),
    ({"leaf_prob": 1.5}, "--leaf-prob"),
    ({"max_depth": 2, "max_args": 3, "min_length": 5}, "at most 5 tokens"),
])
def test_bad_generation_settings(tmp_path, overrides, message):
    with pytest.raises(FptError, match=message):
        generate_listops(tmp_path, progress=False, **{**SMALL, **overrides})
    assert not list(tmp_path.iterdir())


def test_too_few_distinct_trees_is_an_error_not_a_hang(tmp_path, monkeypatch):
    monkeypatch.setattr(lra_listops, "_MAX_FRUITLESS", 20_000)
    # Depth 2, 2 arguments: 10 leaves and 4 x 10 x 10 operator nodes; only the 400 nodes are over length 1.
    with pytest.raises(FptError, match="too few distinct trees"):
        generate_listops(tmp_path, n_train=400, n_val=10, n_test=10, min_length=1, max_length=10,
                         max_depth=2, max_args=2, seed=0, progress=False)


# -- semantics -----------------------------------------------------------------

@pytest.mark.parametrize("source,value", [
    ("( ( ( [MAX 2 ) 9 ) ] )", 9),
    ("( ( ( [MIN 2 ) 9 ) ] )", 2),
    ("( ( ( ( ( [MED 1 ) 2 ) 3 ) 4 ) ] )", 2),           # median 2.5 -> int part 2
    ("( ( ( [MED 9 ) 0 ) ] )", 4),                       # 4.5 -> 4
    ("( ( ( ( [MED 7 ) 1 ) 4 ) ] )", 4),                 # odd count: the middle value
    ("( ( ( ( [SM 5 ) 7 ) 9 ) ] )", 1),                  # 21 mod 10
    ("( ( ( [SM 5 ) 5 ) ] )", 0),
    ("( ( ( ( [MAX 2 ) ( ( ( [MIN 4 ) 7 ) ] ) ) 0 ) ] )", 4),
    ("( ( ( [SM ( ( ( [MED 8 ) 9 ) ] ) ) ( ( ( [MAX 1 ) 6 ) ] ) ) ] )", 4),  # (8 + 6) mod 10
    ("[SM [MIN 1 2 ] 3 ]", 4),                          # parentheses are optional
    ("6", 6),
])
def test_evaluation_by_lras_rules(source, value):
    assert evaluate_listops(source) == value


def test_median_is_numpys_integer_part():
    rng = random.Random(0)
    for _ in range(500):
        values = [rng.randrange(10) for _ in range(rng.randint(2, 10))]
        assert listops.APPLY["[MED"](values) == int(np.median(values))
        assert listops.APPLY["[SM"](values) == np.sum(values) % 10


@pytest.mark.parametrize("source", ["[MAX 1 2", "[MAX 1 2 ] ]", "1 2", "[MIN ]", "[MAX 1 x ]", ""])
def test_malformed_expressions_raise(source):
    with pytest.raises(ValueError):
        evaluate_listops(source)


# -- tokens --------------------------------------------------------------------

def test_vocabulary_is_fixed():
    assert PAD == 0 and VOCAB_SIZE == 16
    assert VOCAB == {**{str(d): d + 1 for d in range(10)}, "[MIN": 11, "[MAX": 12, "[MED": 13, "[SM": 14, "]": 15}


def test_tokenizer_keeps_every_meaningful_token(small):
    for source, _ in rows(small / "basic_val.tsv"):
        ids = tokenize(source)
        meaningful = [t for t in source.split() if t not in ("(", ")")]
        assert detokenize(ids) == " ".join(meaningful)
        assert ids.count(VOCAB["]"]) == sum(ids.count(VOCAB[op]) for op in ("[MIN", "[MAX", "[MED", "[SM"))
        assert evaluate_listops(detokenize(ids)) == evaluate_listops(source)  # nothing needed was lost


# -- the task ------------------------------------------------------------------

def test_task_loads_all_splits_with_padding_mask(small, capsys):
    task = load(small, 64)
    spec = task.spec
    assert (spec.seq_len, spec.vocab_size, spec.n_outputs, spec.objective) == (64, 16, 10, "classification")
    assert {s: task.split_size(s) for s in ("val", "test")} == {"val": 40, "test": 40}
    assert task.truncated == {"train": 0, "val": 0, "test": 0}
    assert "0 of 300 train, 0 of 40 val, 0 of 40 test" in capsys.readouterr().err
    data = rows(small / "basic_test.tsv")
    task.bucketing = False  # walk the file's order, not shortest first
    batches = list(task.eval_batches("test", 16))
    assert [len(b) for b in batches] == [16, 16, 8]
    start = 0
    for batch in batches:
        assert batch.x.dtype == torch.long and batch.mask.dtype == torch.bool
        for i in range(len(batch)):
            source, target = data[start + i]
            ids = tokenize(source)
            n = int(batch.mask[i].sum())
            assert n == len(ids) and batch.mask[i, :n].all()            # right-padded
            assert batch.x[i, :n].tolist() == ids and (batch.x[i, n:] == PAD).all()
            assert int(batch.y[i]) == int(target)
            assert int(batch.x[i, n - 1]) == VOCAB["]"] or n == 1     # the read-out token closes the root
        start += len(batch)
    assert batch.x.shape[1] == int(batch.mask.sum(1).max())             # cut to its longest example
    train = task.train_batch(0, 8, seed=0)
    assert train.x.dtype == torch.long and torch.equal(train.x, task.train_batch(0, 8, seed=0).x)


def test_truncation_is_counted_and_keeps_the_start(small, capsys):
    task = load(small, 30)
    for split, name in zip(("train", "val", "test"), FILES):
        lengths = [len(tokenize(s)) for s, _ in rows(small / name)]
        assert task.truncated[split] == sum(n > 30 for n in lengths) > 0
    err = capsys.readouterr().err
    assert f"{task.truncated['train']} of 300 train" in err and "max_length=30" in err
    source = rows(small / "basic_val.tsv")[0][0]
    task.bucketing = False  # walk the file's order, not shortest first
    batch = next(task.eval_batches("val", 4))
    assert batch.x[0, :int(batch.mask[0].sum())].tolist() == tokenize(source)[:30]
    assert int(batch.mask.sum(1).max()) <= 30


def test_default_folder_and_lf_line_ends(small, tmp_path):
    """DATA_DIR/listops is the default; files with LF line ends (re-saved by an editor) load the same."""
    folder = tmp_path / "listops"
    folder.mkdir()
    for name in FILES:
        (folder / name).write_bytes((small / name).read_bytes().replace(b"\r\n", b"\n"))
    lf = ListOps(ListOpsOptions(), 0, data_dir=tmp_path)
    crlf = ListOps(ListOpsOptions(data=str(small)), 0)
    for split in ("train", "val", "test"):
        assert torch.equal(lf.splits[split].x, crlf.splits[split].x)
        assert torch.equal(lf.splits[split].y, crlf.splits[split].y)


@pytest.mark.parametrize("missing", FILES)
def test_missing_file_names_it_and_both_ways_to_get_it(small, tmp_path, missing):
    folder = copy_data(small, tmp_path)
    (folder / missing).unlink()
    with pytest.raises(FptError) as err:
        ListOps(ListOpsOptions(data=str(folder)), 0, data_dir=tmp_path / "cache")
    message = str(err.value)
    assert f"{folder / missing} is missing" in message
    assert "fpt data listops --out DIR" in message and "--task-opt data=DIR" in message
    assert "lra_release/listops-1000" in message and str(tmp_path / "cache" / "listops") in message


def test_data_option_must_be_a_folder(small):
    with pytest.raises(FptError, match="is a file; give the folder"):
        ListOps(ListOpsOptions(data=str(small / "basic_train.tsv")), 0)


@pytest.mark.parametrize("content,line,message", [
    ("Source,Target\r\n", 1, "expected the header 'Source<TAB>Target'"),
    ("Source\tTarget\r\n( ( ( [MAX 2 ) 9 ) ] )\tnine\r\n", 2, "target 'nine' is not an integer"),
    ("Source\tTarget\r\n( ( ( [MAX 2 ) 9 ) ] )\t9\r\n( ( ( [SM 5 ) 7 ) ] )\t12\r\n", 3, "target 12 is not a digit"),
    ("Source\tTarget\r\n( ( ( [MAX 2 ) 9 ) ] )\t-1\r\n", 2, "target -1 is not a digit"),
    ("Source\tTarget\r\n( ( ( [MAX 2 ) 10 ) ] )\t9\r\n", 2, "unknown token '10'"),
    ("Source\tTarget\r\n( ( ( MAX 2 ) 9 ) ] )\t9\r\n", 2, "unknown token 'MAX'"),
    ("Source\tTarget\r\n( ( ( [MAX 2 ) 9 ) ] ) 9\r\n", 2, "expected 'SOURCE<TAB>TARGET'"),
    ("Source\tTarget\r\n( ( ( [MAX 2 ) 9 ) ] )\t9\t1\r\n", 2, "expected 'SOURCE<TAB>TARGET'"),
    ("Source\tTarget\r\n( )\t9\r\n", 2, "the source has no tokens"),
    ("Source\tTarget\r\n", None, "holds no examples"),
    ("", None, "holds no examples"),
])
@pytest.mark.parametrize("name", ["basic_train.tsv", "basic_test.tsv"])
def test_malformed_files_name_file_and_line(small, tmp_path, content, line, message, name):
    folder = copy_data(small, tmp_path)
    (folder / name).write_bytes(content.encode())
    with pytest.raises(FptError) as err:
        ListOps(ListOpsOptions(data=str(folder)), 0)
    where = f"{folder / name}, line {line}: " if line else f"{folder / name} "
    assert str(err.value).startswith(where) and message in str(err.value)
    assert f"fpt data listops --out {folder}" in str(err.value)


def test_binary_file_is_refused(small, tmp_path):
    folder = copy_data(small, tmp_path)
    (folder / "basic_val.tsv").write_bytes(b"\xff\xfe\x00Source")
    with pytest.raises(FptError, match="basic_val.tsv is not a text file"):
        ListOps(ListOpsOptions(data=str(folder)), 0)


def test_options_and_spec_need_no_files():
    spec = ListOps.make_spec(ListOpsOptions(data="/nonexistent"))
    assert (spec.seq_len, spec.vocab_size) == (512, 16)
    assert ListOps.make_spec(parse_options(ListOpsOptions, {"max_length": "2000"}, "listops")).seq_len == 2000
    with pytest.raises(FptError, match="max_length must be positive"):
        parse_options(ListOpsOptions, {"max_length": 0}, "listops")


def test_trains_end_to_end_through_fpt_train(small, tmp_path, tiny_bert):
    import json

    from fpt.cli import main

    assert main(["train", "--task", "listops", "--task-opt", f"data={small}", "--task-opt", "max_length=48",
                 "--model", str(tiny_bert), "--steps", "6", "--eval-every", "3", "--batch-size", "8",
                 "--device", "cpu", "--no-progress", "--out", str(tmp_path / "run")]) == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["task"] == "listops" and result["steps"] == 6
    assert 0.0 <= result["test"]["accuracy"] <= 1.0
    assert (tmp_path / "run" / "result.json").is_file()
