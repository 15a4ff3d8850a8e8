"""A sweep's results, as rows: runs that differ only in their seed, read from their files.

Tables (`report`) and figures (`figures`) are both built from these rows, and the
statistics over seeds (mean and standard error of the mean, SE = sample std / sqrt(n))
are computed here once for both.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from fpt.errors import FptError
from fpt.storage.files import read_jsonl


@dataclass
class Row:
    variant: str
    task: str
    setting: dict[str, Any]          # grid values other than seed and task
    results: list[dict[str, Any]]
    curves: list[list[dict[str, Any]]]
    run_dirs: list[Path]

    @property
    def reached(self) -> list[int]:
        """steps_to_threshold of the seeds that reached the threshold."""
        return [x["steps_to_threshold"] for x in self.results if x["steps_to_threshold"] is not None]


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


def collect(sweep_dir: Path) -> tuple[list[Row], dict[str, Any]]:
    """Group finished runs into rows; return them with the sweep spec."""
    index_file = sweep_dir / "index.json"
    if not index_file.is_file():
        raise FptError(f"'{sweep_dir}' is not a sweep directory (no index.json); run `fpt sweep SPEC --out DIR` first")
    index = json.loads(index_file.read_text())
    spec = yaml.safe_load((sweep_dir / "sweep.yaml").read_text()) if (sweep_dir / "sweep.yaml").exists() else {}
    groups: dict[tuple, Row] = {}
    for name, entry in index.items():
        result_file = sweep_dir / "runs" / name / "result.json"
        if not result_file.exists():
            continue
        result = json.loads(result_file.read_text())
        task = result["task_spec"]["name"]
        setting = {k: v for k, v in entry["values"].items() if k not in ("seed", "task")}
        key = (entry["variant"], task, json.dumps(setting, sort_keys=True))
        row = groups.setdefault(key, Row(entry["variant"], task, setting, [], [], []))
        row.results.append(result)
        row.curves.append(read_jsonl(sweep_dir / "runs" / name / "metrics.jsonl"))
        row.run_dirs.append(sweep_dir / "runs" / name)
    if not groups:
        raise FptError(f"no finished runs in '{sweep_dir}/runs'; let `fpt sweep` finish some first")
    return list(groups.values()), spec


def score_of(metrics: dict[str, float]) -> float:
    """The headline number of a metrics record: accuracy, or R^2 for regression."""
    return metrics.get("accuracy", metrics.get("r2", float("nan")))


def best_by_validation(options: list[Row], score: Callable[[dict[str, float]], float] = lambda m: m["score"]) -> Row:
    """Of rows that differ in one setting (an lr), the one with the best mean validation score,
    compared over the seeds every row ran with: under a sweep's `arena.lr_seeds` the other seeds
    ran only at the chosen lr, and their scores must not unchoose it."""
    seeds = [{x["seed"] for x in r.results} for r in options]
    common = set.intersection(*seeds) or set.union(*seeds)

    def on_common_seeds(row: Row) -> float:
        scores = [score(x["best_val"]) for x in row.results if x["seed"] in common]
        return mean_se(scores)[0] if scores else float("-inf")

    return max(options, key=on_common_seeds)
