"""The paper's two synthetic bit tasks, generated on the fly.

bit-xor:    two random bitstrings of n_bits (+/-1), one bit per token
            (2 * n_bits tokens of dim 1); predict their elementwise XOR, read out
            at the last n_bits tokens (one bit each).
bit-memory: n_patterns random bitstrings of n_bits (+/-1), then one of them again
            with each bit masked (set to 0) with probability mask_prob, cut into
            tokens of token_dim bits ((n_patterns + 1) * n_bits / token_dim tokens);
            predict the whole original string, token_dim bits at each of the last
            n_bits / token_dim tokens. Copying the visible bits alone scores
            1 - mask_prob / 2 (75% by default).

Training batches come from a generator seeded by (seed, step). Validation and
test sets are fixed by data_seed and never appear in training: bit-xor
rejects held-out inputs when it samples (its input space is tiny), bit-memory's
space (2^6000 by default) makes a collision impossible in practice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from fpt.tasks.base import Batch, Task, TaskSpec, generator, positive


class GeneratedTask(Task):
    """A task whose examples come from `sample(generator, n)`; splits are generated once."""

    def __init__(self, spec: TaskSpec, data_seed: int, split_sizes: dict[str, int]):
        self.spec = spec
        self.data_seed = data_seed
        self.split_sizes = split_sizes
        self._splits: dict[str, Batch] = {}

    def sample(self, gen: torch.Generator, n: int) -> Batch:
        raise NotImplementedError

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        return self.sample(generator(self.spec.name, "train", seed, step), batch_size)

    def fit_batches(self, batch_size: int, seed: int, limit: int) -> Iterator[Batch]:
        """The first `limit` examples of the training stream of `seed`: what the trained arms see first."""
        for step in range(-(-limit // batch_size)):
            yield self.train_batch(step, batch_size, seed)

    def split(self, split: str) -> Batch:
        if split not in self._splits:
            self._splits[split] = self.sample(generator(self.spec.name, split, self.data_seed),
                                              self.split_sizes[split])
        return self._splits[split]

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        data = self.split(split)
        for i in range(0, len(data), batch_size):
            yield Batch(data.x[i:i + batch_size], data.y[i:i + batch_size], data.mask[i:i + batch_size])

    def split_size(self, split: str) -> int:
        return self.split_sizes[split]


def _signs(gen: torch.Generator, *shape: int) -> Tensor:
    """Uniform random +/-1 floats."""
    return torch.randint(0, 2, shape, generator=gen).float() * 2 - 1


# -- bit-xor -------------------------------------------------------------------

@dataclass(frozen=True)
class BitXorOptions:
    n_bits: int = 5      # length of each of the two strings
    n_val: int = 128     # held-out input pairs for validation
    n_test: int = 128    # held-out input pairs for test

    def __post_init__(self) -> None:
        positive(self, "n_bits", "n_val", "n_test")
        if 2 * self.n_bits <= 62 and self.n_val + self.n_test > 2 ** (2 * self.n_bits) // 2:
            raise ValueError(f"n_val + n_test = {self.n_val + self.n_test} would hold out more than half of "
                             f"the {2 ** (2 * self.n_bits)} possible inputs of n_bits={self.n_bits}")


class BitXor(GeneratedTask):
    records_attention = True  # the paper's figure: each output bit attends to the matching input bits

    @staticmethod
    def make_spec(options: BitXorOptions) -> TaskSpec:
        n = options.n_bits
        return TaskSpec(
            name="bit-xor", seq_len=2 * n, token_dim=1, objective="bits", n_outputs=1, readout_tokens=n,
            description=f"XOR of two {n}-bit strings, one bit per token")

    def __init__(self, options: BitXorOptions, data_seed: int):
        super().__init__(self.make_spec(options), data_seed, {"val": options.n_val, "test": options.n_test})
        self.n_bits = options.n_bits
        self.held_out = self._held_out_codes(options)  # sorted int64 codes, or None

    def _held_out_codes(self, options: BitXorOptions) -> Tensor | None:
        """Codes of validation and test inputs, which training never samples."""
        width = 2 * self.n_bits
        if width > 62:  # codes would overflow int64; 2^-62 collision odds need no guard
            return None
        gen = generator(self.spec.name, "held-out", self.data_seed)
        count = options.n_val + options.n_test
        if width <= 24:
            codes = torch.randperm(2 ** width, generator=gen)[:count]
        else:  # too many to enumerate: draw, deduplicate, and shuffle (unique() sorts) until enough
            codes = torch.empty(0, dtype=torch.long)
            while len(codes) < count:
                codes = torch.unique(torch.cat([codes, torch.randint(0, 2 ** width, (2 * count,), generator=gen)]))
            codes = codes[torch.randperm(len(codes), generator=gen)][:count]
        self._split_codes = {"val": codes[:options.n_val], "test": codes[options.n_val:]}
        return torch.sort(codes).values

    def _from_codes(self, codes: Tensor) -> Batch:
        bits = (codes[:, None] >> torch.arange(2 * self.n_bits)) & 1  # (N, 2n)
        return self._batch(bits.float() * 2 - 1)

    def _batch(self, signs: Tensor) -> Batch:
        """signs: (N, 2n) of +/-1 -> tokens (N, 2n, 1), targets (N, n, 1)."""
        a, b = signs[:, :self.n_bits], signs[:, self.n_bits:]
        y = (a != b).float().unsqueeze(-1)
        mask = torch.ones(signs.shape, dtype=torch.bool)
        return Batch(signs.unsqueeze(-1), y, mask)

    def _codes(self, signs: Tensor) -> Tensor:
        bits = (signs > 0).long()
        return (bits << torch.arange(2 * self.n_bits)).sum(-1)

    def sample(self, gen: torch.Generator, n: int) -> Batch:
        signs = _signs(gen, n, 2 * self.n_bits)
        if self.held_out is not None:  # redraw held-out inputs until none is left
            bad = torch.isin(self._codes(signs), self.held_out)
            while bad.any():
                signs[bad] = _signs(gen, int(bad.sum()), 2 * self.n_bits)
                bad = torch.isin(self._codes(signs), self.held_out)
        return self._batch(signs)

    def split(self, split: str) -> Batch:
        if self.held_out is None:
            return super().split(split)
        if split not in self._splits:
            self._splits[split] = self._from_codes(self._split_codes[split])
        return self._splits[split]


# -- bit-memory ----------------------------------------------------------------

@dataclass(frozen=True)
class BitMemoryOptions:
    n_patterns: int = 5      # strings to remember
    n_bits: int = 1000       # bits per string
    token_dim: int = 50      # bits per token
    mask_prob: float = 0.5   # chance that each bit of the query is masked
    n_val: int = 128
    n_test: int = 512

    def __post_init__(self) -> None:
        positive(self, "n_patterns", "n_bits", "token_dim", "n_val", "n_test")
        if self.n_bits % self.token_dim:
            raise ValueError(f"n_bits={self.n_bits} must be a multiple of token_dim={self.token_dim}")
        if not 0 <= self.mask_prob < 1:
            raise ValueError(f"mask_prob must be in [0, 1), got {self.mask_prob}")


class BitMemory(GeneratedTask):
    @staticmethod
    def make_spec(o: BitMemoryOptions) -> TaskSpec:
        per_string = o.n_bits // o.token_dim
        return TaskSpec(
            name="bit-memory", seq_len=(o.n_patterns + 1) * per_string, token_dim=o.token_dim,
            objective="bits", n_outputs=o.token_dim, readout_tokens=per_string,
            description=f"recall 1 of {o.n_patterns} {o.n_bits}-bit strings from a copy with "
                        f"{o.mask_prob:.0%} of its bits masked")

    def __init__(self, options: BitMemoryOptions, data_seed: int):
        super().__init__(self.make_spec(options), data_seed, {"val": options.n_val, "test": options.n_test})
        self.options = options

    def sample(self, gen: torch.Generator, n: int) -> Batch:
        o = self.options
        patterns = _signs(gen, n, o.n_patterns, o.n_bits)              # (N, P, bits)
        chosen = torch.randint(0, o.n_patterns, (n,), generator=gen)
        target = patterns[torch.arange(n), chosen]                      # (N, bits)
        keep = torch.rand(n, o.n_bits, generator=gen) >= o.mask_prob
        query = target * keep                                           # masked bits -> 0
        x = torch.cat([patterns, query[:, None]], dim=1).reshape(n, self.spec.seq_len, o.token_dim)
        y = (target > 0).float().reshape(n, self.spec.readout_tokens, o.token_dim)
        return Batch(x, y, torch.ones(n, self.spec.seq_len, dtype=torch.bool))
