"""LRA's ListOps generator: the trees, their markup and the released file format.

Tay et al.'s procedure (`lra_benchmarks/data/listops.py` in google-research/long-range-arena),
draw for draw: a node is a leaf (a digit 0-9) with probability `leaf_prob` and always at
depth max_depth; otherwise an operator over 2..max_args subtrees. A tree is kept when its
length is > min_length and < max_length; trees are unique across all splits. The files are
TSV with the header `Source<TAB>Target`, CRLF line ends (what LRA's csv.writer writes), each
source in LRA's markup (see `render`). `fpt data listops` calls `generate_listops`; the task
that reads the files is `fpt.tasks.listops`.
"""

from __future__ import annotations

import io
import random
import sys
from pathlib import Path

from tqdm import tqdm

from fpt.errors import FptError
from fpt.storage.files import atomic_write
from fpt.tasks.listops import APPLY, DIGITS, END, HEADER, OPERATORS


_OP_CHARS = "abcd"              # compact storage: one character per token, ops as a-d
_MAX_FRUITLESS = 1_000_000      # attempts in a row without a new tree before giving up


class _TooLong(Exception):
    """The tree under construction reached max_length: it can only be rejected."""


class _TreeSampler:
    """LRA's generate_tree: the same draws in the same order (from the same random state it builds
    the same tree; checked once against LRA's own function), with one shortcut: a tree stops
    growing as soon as it reaches max_length (it would be rejected anyway), which bounds the
    cost of an attempt and leaves the distribution of kept trees unchanged."""

    def __init__(self, rng: random.Random, max_depth: int, max_args: int, leaf_prob: float,
                 max_length: int):
        self.rng, self.max_depth, self.max_args = rng, max_depth, max_args
        self.branch_p = 1 - leaf_prob    # LRA: a node branches when random() <= VALUE_P = 0.25
        self.max_length = max_length

    def sample(self) -> tuple[str, int, int] | None:
        """(compact prefix string, value, length), or None when too long."""
        self.out: list[str] = []
        self.length = 0
        try:
            value = self._node(1)
        except _TooLong:
            return None
        return "".join(self.out), value, self.length

    def _grow(self, n: int) -> None:
        self.length += n
        if self.length >= self.max_length:
            raise _TooLong

    def _node(self, depth: int) -> int:
        rng = self.rng
        if depth >= self.max_depth or rng.random() > self.branch_p:
            value = rng.randrange(10)
            self.out.append(DIGITS[value])
            self._grow(1)
            return value
        slot = len(self.out)
        self.out.append("")          # the operator, drawn after its arguments as in LRA
        self._grow(2)                # operator and closing bracket
        values = [self._node(depth + 1) for _ in range(rng.randint(2, self.max_args))]
        op = rng.randrange(len(OPERATORS))
        self.out[slot] = _OP_CHARS[op]
        self.out.append(END)
        return APPLY[OPERATORS[op]](values)


def render(compact: str) -> str:
    """A compact prefix string ('b29]') in LRA's markup ('( ( ( [MAX 2 ) 9 ) ] )')."""
    frames: list[list[str]] = [[]]   # [operator, rendered arguments...] per open node
    for char in compact:
        if char in _OP_CHARS:
            frames.append([OPERATORS[_OP_CHARS.index(char)]])
        elif char == END:
            op, *args = frames.pop()
            frames[-1].append("( " * (len(args) + 1) + op + " " + " ) ".join(args) + " ) ] )")
        else:
            frames[-1].append(char)
    return frames[0][0]


def _check_generation(n: dict[str, int], min_length: int, max_length: int, max_depth: int,
                      max_args: int, leaf_prob: float) -> None:
    for split, count in n.items():
        if count < 1:
            raise FptError(f"--n-{split} must be at least 1, got {count}")
    if min_length < 0 or max_length <= min_length + 1:
        raise FptError(f"--min-length {min_length} and --max-length {max_length} leave no length L with "
                       "min < L < max (both bounds are exclusive, as in LRA); widen the window")
    if not 1 <= max_depth <= 100:
        raise FptError(f"--max-depth must be between 1 and 100, got {max_depth}")
    if max_args < 2:
        raise FptError(f"--max-args must be at least 2 (an operator has 2..max_args arguments), got {max_args}")
    if not 0 <= leaf_prob <= 1:
        raise FptError(f"--leaf-prob must be in [0, 1], got {leaf_prob}")
    longest = 1                       # the longest possible tree: every node full, to max_depth
    for _ in range(max_depth - 1):
        longest = 2 + max_args * longest
    if longest <= min_length:
        raise FptError(f"trees of --max-depth {max_depth} and --max-args {max_args} have at most {longest} "
                       f"tokens, not over --min-length {min_length}; raise --max-depth or lower --min-length")


def generate_listops(out_dir: str | Path, n_train: int = 96_000, n_val: int = 2_000, n_test: int = 2_000,
                     min_length: int = 500, max_length: int = 2000, max_depth: int = 10, max_args: int = 10,
                     leaf_prob: float = 0.75, seed: int = 0, progress: bool = True) -> dict[str, Path]:
    """Write basic_{train,val,test}.tsv in LRA's format to `out_dir`; deterministic given `seed`.

    The defaults are LRA's: about 2 minutes on one core, 1 GB of memory, a 635 MB train file
    (about 8% of the trees fall in the length window). Returns the path of each split's file.
    """
    counts = {"train": n_train, "val": n_val, "test": n_test}
    _check_generation(counts, min_length, max_length, max_depth, max_args, leaf_prob)
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FptError(f"--out {out}: cannot create the folder ({err.strerror}); choose another --out") from None
    sampler = _TreeSampler(random.Random(seed), max_depth, max_args, leaf_prob, max_length)
    total = sum(counts.values())
    seen: set[str] = set()
    kept: list[tuple[str, int]] = []        # (compact tree, value) in the order found
    fruitless = 0
    with tqdm(total=total, desc="listops", unit="tree", disable=not progress, file=sys.stderr) as bar:
        while len(kept) < total:
            tree = sampler.sample()
            if tree is None or tree[2] <= min_length or tree[0] in seen:
                fruitless += 1
                if fruitless >= _MAX_FRUITLESS:
                    raise FptError(
                        f"{_MAX_FRUITLESS:,} trees in a row were too short, too long or already drawn after "
                        f"{len(kept):,} of {total:,}: the settings allow too few distinct trees; widen "
                        "--min-length/--max-length, raise --max-depth or --max-args, or ask for fewer examples")
                continue
            fruitless = 0
            seen.add(tree[0])
            kept.append(tree[:2])
            bar.update(1)
    paths, start = {}, 0
    for split, count in counts.items():
        buffer = io.BytesIO()
        buffer.write(f"{HEADER}\r\n".encode())
        for compact, value in kept[start:start + count]:
            buffer.write(f"{render(compact)}\t{value}\r\n".encode())
        start += count
        paths[split] = out / f"basic_{split}.tsv"
        atomic_write(paths[split], buffer.getbuffer())
    return paths
