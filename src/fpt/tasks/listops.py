"""Long Range Arena ListOps: the value (0-9) of a long nested MIN / MAX / MED / SM expression.

Source: Tay et al., "Long Range Arena" (ICLR 2021), whose generator
(`lra_benchmarks/data/listops.py` in google-research/long-range-arena) is
re-implemented in `fpt.tasks.lra_listops`, and whose released files
(`lra_release/listops-1000/basic_{train,val,test}.tsv`) this module reads
interchangeably with that generator's.

Generation, as LRA: a node is a leaf (a digit 0-9) with probability 0.75 and
always at depth max_depth; otherwise an operator (MIN, MAX, MED = integer part
of the median, SM = sum mod 10) over 2..max_args subtrees. A tree is kept when
its length (digits + operators + closing brackets) is > min_length and
< max_length; trees are unique across all splits; 96,000 / 2,000 / 2,000.
The files are TSV with the header `Source<TAB>Target`, CRLF line ends (what
LRA's csv.writer writes), and each source in LRA's markup: an operator node
over k subtrees is `( `*(k+1) + `[OP a ) b ) ... z ) ] )`, e.g.
`( ( ( [MAX 2 ) 9 ) ] )`. The parentheses come from LRA storing the tree as
left-nested pairs; they add nothing to `[OP ... ]` prefix notation.

Tokens: LRA's own input pipeline (tfds Tokenizer, alphanumeric only) drops
every non-alphanumeric token, so it loses the closing brackets `]` and with
them where each argument list ends; the official FPT loader did the same and
truncated to 512 tokens. Here every token that carries meaning is kept: the 10
digits, the 4 operators and `]` (15 ids + pad, fixed below); the markup
parentheses are dropped (as S4 and later work do), which loses nothing. A
source then has exactly LRA's length in tokens, under 2000. Examples longer
than `max_length` are cut to their first max_length tokens and counted; the
count per split is printed on loading. The default 512 is the paper's setting
and fits every bundled backbone, but cuts most LRA examples (500-2000 tokens),
after which the answer is no longer determined by the input: use
max_length=1024 with GPT-2 to cut fewer, and 2000 (LRA's) only with a backbone
that has 2000 positions.

Splits are the files' train / val / test; data_seed is unused.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fpt.errors import FptError
from fpt.tasks.arrays import Arrays, ArrayTask
from fpt.tasks.base import Batch, TaskSpec

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
DIGITS = tuple(str(d) for d in range(10))
MARKUP = frozenset({"(", ")"})                  # LRA's pair markup: dropped by the tokenizer
TOKENS = DIGITS + OPERATORS + (END,)            # ids 1..15; digit d has id d + 1
PAD = 0
VOCAB = {token: i + 1 for i, token in enumerate(TOKENS)}
VOCAB_SIZE = len(TOKENS) + 1                    # 16, pad included
SPLITS = ("train", "val", "test")
HEADER = "Source\tTarget"
N_CLASSES = 10


def _median(values: list[int]) -> int:
    """int(np.median(values)): an even count averages the two middle values, rounded down."""
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) // 2


APPLY: dict[str, Callable[[list[int]], int]] = {
    "[MIN": min, "[MAX": max, "[MED": _median, "[SM": lambda values: sum(values) % 10}


def evaluate_listops(source: str) -> int:
    """The value of an expression in LRA's format (parentheses optional); ValueError if malformed."""
    open_ops: list[list] = []      # each: [operator, argument values so far...]
    done: list[int] = []
    for token in source.split():
        if token in MARKUP:
            continue
        if token in APPLY:
            open_ops.append([token])
            continue
        if token == END:
            if not open_ops or len(open_ops[-1]) < 2:
                raise ValueError(f"'{END}' closes no operator with arguments in {source[:60]!r}")
            op, *args = open_ops.pop()
            value = APPLY[op](args)
        elif token in VOCAB:
            value = int(token)
        else:
            raise ValueError(f"unknown token {token!r}")
        (open_ops[-1] if open_ops else done).append(value)
    if open_ops or len(done) != 1:
        raise ValueError(f"not one complete expression: {source[:60]!r}")
    return done[0]


def tokenize(source: str) -> list[int]:
    """Token ids of a source, parentheses dropped; KeyError names an unknown token."""
    return [VOCAB[t] for t in source.split() if t not in MARKUP]


def detokenize(ids: list[int]) -> str:
    return " ".join(TOKENS[i - 1] for i in ids if i != PAD)


# -- loading -----------------------------------------------------------------------

class _ByteArrays(Arrays):
    """Token ids kept as uint8 (LRA's 96,000 x 2,000 ids take 192 MB), handed out as int64."""

    def take(self, index: torch.Tensor) -> "_ByteArrays":
        return _ByteArrays(self.x[index], self.y[index], self.lengths[index])

    def batch(self, index: torch.Tensor) -> Batch:
        batch = super().batch(index)
        batch.x = batch.x.long()
        return batch


def read_tsv(path: Path, max_length: int) -> tuple[Arrays, int]:
    """One ListOps TSV -> right-padded ids (N, L), targets (N,); and how many sources were cut."""
    fix = f"fix the line, or regenerate the files with `fpt data listops --out {path.parent}`"
    rows: list[bytes] = []
    targets: list[int] = []
    truncated = 0
    try:
        with open(path, encoding="utf-8") as f:      # universal newlines: CRLF and LF alike
            for number, line in enumerate(f, start=1):
                line = line.rstrip("\n")
                where = f"{path}, line {number}"
                if number == 1:
                    if line != HEADER:
                        raise FptError(f"{where}: expected the header 'Source<TAB>Target' of a ListOps TSV, "
                                       f"found {line[:40]!r}; {fix}")
                    continue
                if not line.strip():
                    continue
                source, tab, target = line.partition("\t")
                if not tab or "\t" in target:
                    raise FptError(f"{where}: expected 'SOURCE<TAB>TARGET', found {line[:40]!r}; {fix}")
                try:
                    value = int(target)
                except ValueError:
                    raise FptError(f"{where}: target {target!r} is not an integer; {fix}") from None
                if not 0 <= value < N_CLASSES:
                    raise FptError(f"{where}: target {value} is not a digit 0-9; {fix}")
                try:
                    ids = tokenize(source)
                except KeyError as err:
                    raise FptError(f"{where}: unknown token {err.args[0]!r} (ListOps has 0-9, "
                                   f"{' '.join(OPERATORS)}, ] and the markup ( ); {fix}") from None
                if not ids:
                    raise FptError(f"{where}: the source has no tokens; {fix}")
                truncated += len(ids) > max_length
                rows.append(bytes(ids[:max_length]))
                targets.append(value)
    except UnicodeDecodeError:
        raise FptError(f"{path} is not a text file; {fix}") from None
    if not rows:
        raise FptError(f"{path} holds no examples; {fix}")
    x = np.zeros((len(rows), max(map(len, rows))), dtype=np.uint8)      # (N, L), PAD = 0
    for row, ids in zip(x, rows):
        row[:len(ids)] = np.frombuffer(ids, dtype=np.uint8)
    lengths = torch.tensor([len(ids) for ids in rows], dtype=torch.long)
    return _ByteArrays(torch.from_numpy(x), torch.tensor(targets, dtype=torch.long), lengths), truncated


@dataclass(frozen=True)
class ListOpsOptions:
    data: str = ""          # folder with basic_{train,val,test}.tsv; "" = DATA_DIR/listops
    max_length: int = 512   # tokens kept per example (paper 512, LRA 2000); longer ones are cut and counted

    def __post_init__(self) -> None:
        if self.max_length < 1:
            raise ValueError(f"max_length must be positive, got {self.max_length}")


class ListOps(ArrayTask):
    @staticmethod
    def make_spec(options: ListOpsOptions) -> TaskSpec:
        return TaskSpec(
            name="listops", seq_len=options.max_length, objective="classification", n_outputs=N_CLASSES,
            vocab_size=VOCAB_SIZE, source="`fpt data listops` or LRA's lra_release/listops-1000",
            description=f"value of a nested MIN/MAX/MED/SM expression (Long Range Arena), "
                        f"cut to {options.max_length} tokens")

    pad_id = PAD  # what `fpt predict` treats as padding in new inputs

    def __init__(self, options: ListOpsOptions, data_seed: int, data_dir: Path | None = None):
        # data_seed is unused: the files fix every split.
        if options.data:
            folder = Path(options.data).expanduser()
        elif data_dir is not None:
            folder = Path(data_dir) / "listops"
        else:
            raise FptError("listops: no data folder; pass --task-opt data=DIR (make one with "
                           "`fpt data listops --out DIR`)")
        if folder.is_file():
            raise FptError(f"--task-opt data={options.data} is a file; give the folder that holds "
                           "basic_train.tsv, basic_val.tsv and basic_test.tsv")
        paths = {split: folder / f"basic_{split}.tsv" for split in SPLITS}
        for path in paths.values():
            if not path.is_file():
                default = f"{data_dir}/listops" if data_dir is not None else "none"
                raise FptError(
                    f"listops: {path} is missing; generate the data with `fpt data listops --out DIR` and pass "
                    f"--task-opt data=DIR (default DIR: {default}), or put Long Range Arena's released "
                    f"basic_train.tsv, basic_val.tsv and basic_test.tsv (lra_release/listops-1000/) in {folder}")
        loaded, self.truncated = {}, {}
        for split, path in paths.items():
            loaded[split], self.truncated[split] = read_tsv(path, options.max_length)
        super().__init__(self.make_spec(options), loaded["train"], loaded["val"], loaded["test"])
        counts = ", ".join(f"{self.truncated[s]:,} of {len(loaded[s]):,} {s}" for s in SPLITS)
        print(f"listops: {folder}; examples over max_length={options.max_length} tokens cut to their first "
              f"{options.max_length}: {counts}", file=sys.stderr)
