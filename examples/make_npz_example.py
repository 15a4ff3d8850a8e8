"""Write two small example datasets in the format `fpt train --task FILE.npz` reads.

    python examples/make_npz_example.py --out data/
    fpt train --task data/majority.npz --steps 300
    fpt train --task data/sine.npz --steps 300

majority.npz  classification, integer tokens with padding: 8 to 24 ids from 1..8, padded
              with pad_id=0 to 24 columns; the label (0..3) is the most frequent of the
              ids 1..4 (ties go to the smaller id). The ids 5..8 are distractors.
              No x_val: fpt carves the validation set out of x_train.
sine.npz      regression, float tokens: 32 noisy samples (N, 32, 1) of a*sin(2 pi f t + phase);
              the 2 targets are the amplitude a and the frequency f. Has its own x_val/y_val.

Deterministic: the same files for the same --seed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

PAD, WIDTH = 0, 24


def majority(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """x (n, 24) int64 ids right-padded with 0, y (n,) int64 in 0..3."""
    x = np.full((n, WIDTH), PAD, dtype=np.int64)
    y = np.empty(n, dtype=np.int64)
    for i in range(n):
        length = rng.integers(8, WIDTH + 1)
        favourite = rng.integers(1, 5)                 # made more frequent, to keep classes balanced
        weights = np.ones(8)
        weights[favourite - 1] = 3
        tokens = rng.choice(np.arange(1, 9), size=length, p=weights / weights.sum())
        x[i, :length] = tokens
        y[i] = np.argmax(np.bincount(tokens, minlength=9)[1:5])  # argmax takes the first of ties
    return x, y


def sine(rng: np.random.Generator, n: int, tokens: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """x (n, 32, 1) float32 noisy sine samples, y (n, 2) float32 (amplitude, frequency)."""
    amplitude = rng.uniform(0.5, 2.0, n)
    frequency = rng.uniform(1.0, 4.0, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    t = np.arange(tokens) / tokens
    x = amplitude[:, None] * np.sin(2 * np.pi * frequency[:, None] * t + phase[:, None])
    x += rng.normal(0, 0.05, x.shape)
    return x[..., None].astype(np.float32), np.stack([amplitude, frequency], axis=1).astype(np.float32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data", help="directory to write majority.npz and sine.npz into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    x_train, y_train = majority(rng, 2000)
    x_test, y_test = majority(rng, 500)
    np.savez(out / "majority.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
             pad_id=np.int64(PAD))

    splits = {name: sine(rng, n) for name, n in (("train", 2000), ("val", 250), ("test", 500))}
    np.savez(out / "sine.npz", **{f"{a}_{s}": arr for s, pair in splits.items() for a, arr in zip("xy", pair)})
    print(f"wrote {out / 'majority.npz'} and {out / 'sine.npz'}")


if __name__ == "__main__":
    main()
