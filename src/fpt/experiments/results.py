"""A sweep's results, as rows: runs that differ only in their seed, read from their files.

Tables (`report`) and figures (`figures`) are both built from these rows, and the
statistics over seeds (mean and standard error of the mean, SE = sample std / sqrt(n))
are computed here once for both.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from fpt.errors import FptError
from fpt.objectives import Objective, objective
from fpt.storage.files import atomic_write, atomic_write_json, read_jsonl


@dataclass
class Row:
    variant: str
    task: str
    setting: dict[str, Any]          # grid values other than seed and task
    results: list[dict[str, Any]]
    curves: list[list[dict[str, Any]]]
    run_dirs: list[Path]
    entries: list[dict[str, Any]] = field(default_factory=list)  # each run's index.json entry

    @property
    def objective(self) -> Objective:
        """The objective entry of the row's task, as its result files recorded it."""
        return objective(self.results[0]["task_spec"]["objective"])

    @property
    def reached(self) -> list[int]:
        """steps_to_threshold of the seeds that reached the threshold."""
        return [x["steps_to_threshold"] for x in self.results if x["steps_to_threshold"] is not None]


def converged(results: list[dict[str, Any]]) -> int:
    """How many seeds' best validation came before their last evaluation, or stopped early (a model
    fitted once, or with nothing to train, counts as converged)."""
    return sum(bool(trained_once(r) or r.get("stopped_early") or r["best_val"].get("step", 0) < r.get("steps_run", 0))
               for r in results)


def converged_of(results: list[dict[str, Any]]) -> str:
    """A table cell: 'K of N' seeds converged (see converged)."""
    return f"{converged(results)} of {len(results)}"


def trained_once(result: dict[str, Any]) -> str:
    """'fitted once' (trees, MiniRocket), 'nothing trains' (repeat-last), or '' for a trained run."""
    return "fitted once" if result.get("fitted") else "nothing trains" if not result["trainable_params"] else ""


def mean_se(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def fmt(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    if not values:
        return "-"
    mean, se = mean_se([v * scale for v in values])
    return f"{mean:.{digits}f}" if math.isnan(se) else f"{mean:.{digits}f} ± {se:.{digits}f}"


def collect(dirs: Sequence[Path]) -> tuple[list[Row], dict[str, Any]]:
    """Group the finished runs of one or more sweep directories into rows; return them with the
    first directory's sweep spec. A run finished in two of the directories is an error: which
    copy counts would be a guess."""
    groups: dict[tuple, Row] = {}
    found_in: dict[str, Path] = {}
    spec: dict[str, Any] = {}
    for number, sweep_dir in enumerate(dirs):
        index_file = sweep_dir / "index.json"
        if not index_file.is_file():
            raise FptError(f"'{sweep_dir}' is not a sweep directory (no index.json); run `fpt sweep SPEC --out DIR` first")
        index = json.loads(index_file.read_text())
        if number == 0 and (sweep_dir / "sweep.yaml").exists():
            spec = yaml.safe_load((sweep_dir / "sweep.yaml").read_text()) or {}
        for name, entry in index.items():
            run_dir = sweep_dir / "runs" / name
            if not (run_dir / "result.json").exists():
                continue
            if name in found_in:
                raise FptError(f"run '{name}' is finished in both '{found_in[name]}' and '{sweep_dir}'; "
                               "report one of the two directories, or delete one copy of the run")
            found_in[name] = sweep_dir
            result = json.loads((run_dir / "result.json").read_text())
            task = result["task_spec"]["name"]
            setting = {k: v for k, v in entry["values"].items() if k not in ("seed", "task")}
            key = (entry["variant"], task, json.dumps(setting, sort_keys=True))
            row = groups.setdefault(key, Row(entry["variant"], task, setting, [], [], []))
            row.results.append(result)
            row.curves.append(read_jsonl(run_dir / "metrics.jsonl"))
            row.run_dirs.append(run_dir)
            row.entries.append(entry)
    if not groups:
        where = " or ".join(f"'{d}/runs'" for d in dirs)
        raise FptError(f"no finished runs in {where}; let `fpt sweep` finish some first")
    return list(groups.values()), spec


def best_by_validation(options: list[Row], score: Callable[[dict[str, float]], float] = lambda m: m["score"]) -> Row:
    """Of rows that differ in one setting (an lr), the one with the best mean validation score,
    compared over the seeds every row ran with: under a sweep's `arena.lr_seeds` the other seeds
    ran only at the chosen lr, and their scores must not unchoose it."""
    seeds = [{x["seed"] for x in r.results} for r in options]
    common = set.intersection(*seeds) or set.union(*seeds)

    def on_common_seeds(row: Row) -> float:
        scores = [score(x["best_val"]) for x in row.results if x["seed"] in common]
        mean = mean_se(scores)[0] if scores else float("-inf")
        return float("-inf") if math.isnan(mean) else mean  # a diverged lr (NaN) is never the best

    return max(options, key=on_common_seeds)


def archive(rows: list[Row], spec_file: Path, out: Path) -> int:
    """Copy each run's result files (result.json, metrics.jsonl, attention.npy: kilobytes, no checkpoints) into
    OUT/runs/NAME/, with an index.json and the sweep spec beside them, so that OUT is itself a
    directory `fpt report` reads: a committed report can be rebuilt, or merged with new runs,
    on a machine that never had the sweep. Runs archived there before and not reported now are
    removed, so the archive always matches the report. Returns how many runs were archived;
    0 (and nothing touched) when OUT is a live sweep directory, whose index lists its whole grid."""
    if (out / "configs").is_dir() or (out / "logs").is_dir():
        return 0
    index: dict[str, dict[str, Any]] = {}
    for row in rows:
        for run_dir, entry in zip(row.run_dirs, row.entries):
            target = out / "runs" / run_dir.name
            index[run_dir.name] = entry
            if target.resolve() == run_dir.resolve():  # reporting the archive into itself
                continue
            target.mkdir(parents=True, exist_ok=True)
            for name in ("result.json", "metrics.jsonl", "attention.npy"):
                if (run_dir / name).exists():
                    atomic_write(target / name, (run_dir / name).read_bytes())
    if spec_file.exists() and spec_file.resolve() != (out / "sweep.yaml").resolve():
        atomic_write(out / "sweep.yaml", spec_file.read_bytes())
    earlier = json.loads((out / "index.json").read_text()) if (out / "index.json").is_file() else {}
    atomic_write_json(out / "index.json", index)
    for name in set(earlier) - set(index):
        stale = out / "runs" / name
        for file in ("result.json", "metrics.jsonl", "attention.npy"):
            (stale / file).unlink(missing_ok=True)
        if stale.is_dir() and not any(stale.iterdir()):
            stale.rmdir()
    return len(index)
