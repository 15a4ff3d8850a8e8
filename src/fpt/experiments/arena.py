"""The arena protocol in `fpt report`: each arm at its own best learning rate, paired against FPT.

Turned on by the sweep spec's `arena` key, e.g. `arena: {reference: fpt}`:
  - per task and arm (a variant), the learning rate (a grid value) with the best mean
    validation score is chosen (over the seeds every lr ran with: with `lr_seeds: [0]` the
    sweep runs every lr on seed 0 and the other seeds only at the chosen lr); its test scores
    are the arm's (test touched once per run);
  - every other grid value (data fraction, ...) forms its own comparison;
  - per seed, the arm's test score minus the reference arm's at the same seed; the verdict is
    "wins" or "loses" only where the 95% interval of the mean difference (t distribution, n-1
    degrees of freedom: fpt.experiments.stats) excludes zero, else "tie"; the p-value beside it;
  - the first table answers the user's question per task: the best arm, FPT's rank, the margin;
  - one figure per task: validation score against training FLOPs and against seconds, one
    curve per arm (its chosen lr, mean over seeds), from the metrics and result files.
Scores are higher-is-better: accuracy, R^2, or minus the MSE for forecasts (shown as MSE).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fpt.experiments import stats
from fpt.experiments.results import Row, best_by_validation, mean_se
from fpt.experiments.stats import Paired


@dataclass
class Arm:
    variant: str
    row: Row            # the seeds at the chosen lr
    lr: Any
    lrs_tried: int

    def tests(self) -> dict[int, float]:
        return {r["seed"]: r["test"]["score"] for r in self.row.results}


def choose(rows: list[Row]) -> dict[tuple[str, str], dict[str, Arm]]:
    """(task, other settings) -> arm name -> the arm at its best validation lr."""
    candidates: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for r in rows:
        rest = {k: v for k, v in r.setting.items() if k != "lr"}
        candidates[(r.task, json.dumps(rest, sort_keys=True), r.variant)].append(r)
    arenas: dict[tuple[str, str], dict[str, Arm]] = defaultdict(dict)
    for (task, rest, variant), options in sorted(candidates.items()):
        best = best_by_validation(options)
        arenas[(task, rest)][variant] = Arm(variant, best, best.setting.get("lr", best.results[0]["config"]["lr"]),
                                            len(options))
    return arenas


def paired(arm: Arm, reference: Arm) -> Paired:
    """The per-seed differences (arm - reference) over the seeds both ran, as a paired t comparison."""
    ours, theirs = arm.tests(), reference.tests()
    return stats.paired([ours[s] - theirs[s] for s in sorted(ours.keys() & theirs.keys())])


def tables(rows: list[Row], spec: dict[str, Any]) -> list[str]:
    """The arena's sections of REPORT.md."""
    reference_name = (spec.get("arena") or {}).get("reference", "fpt")
    arenas = choose(rows)
    summary = [(f"| task | setting | best arm | its test score | {reference_name}'s score | {reference_name}'s rank | "
                f"{reference_name} behind the best by |"), "|---|---|---|---|---|---|---|"]
    detail = ["| task | setting | arm | lr (by val) | lrs tried | seeds | test score | trainable params | "
              "train GFLOPs | train seconds | vs " + reference_name + " (paired, 95% interval) | p | verdict |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (task, rest), arms in sorted(arenas.items()):
        kind = next(iter(arms.values())).row.objective
        means = {name: mean_se(list(a.tests().values()))[0] for name, a in arms.items()}
        ranked = sorted(means, key=means.get, reverse=True)
        setting = ", ".join(f"{k}={v}" for k, v in json.loads(rest).items()) or "-"
        reference = arms.get(reference_name)
        if reference is not None:
            gap = means[ranked[0]] - means[reference_name]  # >= 0: how far the reference is behind
            summary.append(f"| {task} | {setting} | {ranked[0]} | {kind.show(means[ranked[0]])} | "
                           f"{kind.show(means[reference_name])} | "
                           f"{ranked.index(reference_name) + 1} of {len(ranked)} | {kind.show_gap(gap)} |")
        for name in ranked:
            arm = arms[name]
            results = arm.row.results
            flops = mean_se([r.get("train_flops", {}).get("total", 0) / 1e9 for r in results])[0]
            if reference is None or name == reference_name:
                versus, p, verdict = "-", "-", "reference" if name == reference_name else ""
            else:
                comparison = paired(arm, reference)
                versus, verdict = kind.show_interval(comparison), comparison.verdict
                p = "-" if math.isnan(comparison.p) else f"{comparison.p:.3f}"
            detail.append(f"| {task} | {setting} | {name} | {arm.lr} | {arm.lrs_tried} | {len(results)} | "
                          f"{kind.show_stats(*mean_se(list(arm.tests().values())))} | {results[0]['trainable_params']:,} | "
                          f"{flops:,.1f} | {mean_se([r['wall_seconds'] for r in results])[0]:.0f} | {versus} | {p} | {verdict} |")
    return ["## The arena: which arm wins, per task", "",
            (f"Each arm at its own learning rate, chosen on validation; verdicts from per-seed paired differences "
             f"against {reference_name}: wins / loses only where the 95% interval of the mean difference "
             f"(t distribution, n-1 degrees of freedom) excludes zero, else tie."), "", *summary, "",
            "## Every arm", "", *detail, ""]


def compute_figures(rows: list[Row], out: Path) -> list[tuple[str, Path]]:
    """Per task: validation score vs training FLOPs and vs seconds, one curve per arm (chosen lr,
    first seed), and each arm's test score (mean over seeds) as a cross at its whole run's cost."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from fpt.experiments.figures import save

    figures = []
    for (task, rest), arms in sorted(choose(rows).items()):
        fig, (by_flops, by_time) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
        kind = next(iter(arms.values())).row.objective
        sign = -1 if kind.lower_is_better else 1  # scores are higher-is-better; forecasts are shown as MSE
        colours = plt.get_cmap("tab20").colors  # 20 distinct colours: one per arm
        for i, (name, arm) in enumerate(arms.items()):
            result, curve = arm.row.results[0], arm.row.curves[0]
            per_step = result.get("train_flops", {}).get("per_step", 0)
            if not curve:
                continue
            scores = [sign * c["val"]["score"] for c in curve]
            colour = colours[(2 * i) % 20 + (2 * i) // 20 % 2]  # the dark shades first, then the light
            by_flops.plot([c["step"] * per_step for c in curve], scores, label=name, color=colour)
            by_time.plot([c["wall_seconds"] for c in curve], scores, color=colour)
            results = arm.row.results
            test = sign * mean_se([r["test"]["score"] for r in results])[0]
            by_flops.scatter([mean_se([r.get("train_flops", {}).get("total", 0) for r in results])[0]], [test],
                             marker="x", color=colour)
            by_time.scatter([mean_se([r["wall_seconds"] for r in results])[0]], [test], marker="x", color=colour)
        for ax, x in ((by_flops, "training FLOPs (counted)"), (by_time, "training seconds")):
            ax.set(xlabel=x, ylabel=kind.axis + " (lines: validation; x: test, mean)",
                   xscale="log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.grid(alpha=0.3)
        fig.legend(*by_flops.get_legend_handles_labels(), loc="outside right center", fontsize=7)
        fig.suptitle(f"{task}{' (' + rest + ')' if rest != '{}' else ''}: score against compute (first seed)")
        path = out / f"compute-{task}-{hashlib.sha1(rest.encode()).hexdigest()[:6]}.png"
        figures.append((f"{task} score against compute", save(fig, path)))
    return figures
