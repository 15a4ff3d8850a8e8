"""Did a change that should not move results move them? The runs two directories share by name
(the same arm, setting and seed), paired: each pair's test metric, and the 95% t interval of the
mean difference B minus A (n-1 degrees of freedom, fpt.experiments.stats.paired).

    python scripts/paired_runs.py docs/results/cpu-mini/imputation runs/prec-fp32 --metric test/mse
    python scripts/paired_runs.py A B --only 'fpt__*' --metric test_variants/test@0.5/mse

A and B are sweep or report directories (their runs/NAME/result.json) or directories of run
directories. What differs between the two sides (precision, host, library versions) is printed with
the pairs, from the result files. "no difference shown" means the interval includes zero: at these
seeds the change cannot be told from the seed-to-seed noise, not that it is zero.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from pathlib import Path
from typing import Any

from fpt.errors import FptError
from fpt.experiments.stats import paired


def results(directory: Path) -> dict[str, dict[str, Any]]:
    """Each finished run's result, by run name."""
    root = directory / "runs" if (directory / "runs").is_dir() else directory
    if not root.is_dir():
        raise FptError(f"'{directory}' is not a directory of runs: give a sweep or report directory")
    return {f.parent.name: json.loads(f.read_text()) for f in sorted(root.glob("*/result.json"))}


def metric(result: dict[str, Any], path: str) -> float:
    value: Any = result
    for key in path.split("/"):
        if not isinstance(value, dict) or key not in value:
            raise FptError(f"--metric {path}: the result has no '{key}' there (keys: "
                           f"{', '.join(value) if isinstance(value, dict) else 'none'}); e.g. test/mse, test/score")
        value = value[key]
    return float(value)


def side(result: dict[str, Any]) -> str:
    versions = result.get("versions", {})
    return (f"{result.get('precision', '?')}, {result.get('machine', 'host not recorded')}, "
            f"torch {versions.get('torch', '?')}, fpt {versions.get('fpt', '?')}")


def compare(a: Path, b: Path, path: str, only: list[str]) -> list[str]:
    """The report as Markdown lines."""
    left, right = results(a), results(b)
    names = [n for n in left if n in right and (not only or any(fnmatch.fnmatchcase(n, p) for p in only))]
    if not names:
        raise FptError(f"no finished run is in both '{a}' and '{b}'" + (f" matching {' '.join(only)}" if only else ""))
    lines = [f"| run | A: {a} | B: {b} | B - A |", "|---|---|---|---|"]
    differences = []
    for name in names:
        x, y = metric(left[name], path), metric(right[name], path)
        differences.append(y - x)
        lines.append(f"| {name} | {x:.5f} | {y:.5f} | {y - x:+.5f} |")
    result = paired(differences)
    shown = ("too few pairs for an interval (2 at least)" if result.n < 2
             else "no difference shown (the interval includes zero)" if result.low <= 0 <= result.high
             else "B higher" if result.low > 0 else "B lower")
    sides = sorted({side(left[n]) for n in names}), sorted({side(right[n]) for n in names})
    return [*lines, "",
            f"{path}, B - A over {result.n} pairs: {result.mean:+.5f} [{result.low:+.5f}, {result.high:+.5f}] "
            f"(95% t interval), p = {result.p:.3f}: {shown}",
            f"A ran as: {'; '.join(sides[0])}", f"B ran as: {'; '.join(sides[1])}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--metric", default="test/score", help="a path into result.json (default: test/score)")
    parser.add_argument("--only", action="append", default=[], help="run names matching this shell pattern")
    args = parser.parse_args(argv)
    try:
        print("\n".join(compare(args.a, args.b, args.metric, args.only)))
    except FptError as err:
        print(f"paired_runs: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
