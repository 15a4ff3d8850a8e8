"""`fpt report DIR`: tables (Markdown + CSV) and figures, built only from a sweep's result files.

Runs that differ only in their seed form one row: mean and standard error of the
mean (SE = sample std / sqrt(n)) over seeds. When the grid has several learning
rates, a second table picks, per variant and task, the learning rate with the
best mean validation score (Rothermel et al.'s protocol) and reports its test
accuracy. Where the sweep spec names a paper table, the published number stands
next to ours.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections import Counter, defaultdict
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import yaml

from fpt.experiments import arena, figures, stats
from fpt.experiments.results import Row, archive, best_by_validation, collect, converged_of, fmt, mean_se
from fpt.experiments.sweep import excluded
from fpt.storage.files import atomic_write
from fpt.errors import FptError


def paper_numbers() -> dict[str, Any]:
    return yaml.safe_load(resources.files("fpt.experiments").joinpath("paper_numbers.yaml").read_text())


def main_table(rows: list[Row], spec: dict[str, Any]) -> tuple[str, list[list[Any]]]:
    paper = spec.get("paper") or {}
    table = paper_numbers().get(paper.get("table", ""), {})
    paper_rows = paper.get("rows", {})
    settings = sorted({k for r in rows for k in r.setting})
    unit = table.get("unit", "%")
    header = ["variant", "task", *settings, "seeds", "test score %", "best val %", "steps to threshold",
              "train seconds", "trainable params", f"paper ({unit})", "ours vs paper"]
    body = []
    for r in sorted(rows, key=lambda r: (r.task, r.variant, json.dumps(r.setting, sort_keys=True))):
        tests = [r.objective.headline_of(x["test"]) for x in r.results]
        vals = [r.objective.headline_of(x["best_val"]) for x in r.results]
        reached = r.reached
        steps = (fmt([float(s) for s in reached], 1.0, 0) + f" ({len(reached)}/{len(r.results)} reached)"
                 if reached else f"not reached in {r.results[0]['steps']}")
        row_name = paper_rows.get(r.variant) or f"{r.variant} {r.setting.get('model', '')}".strip()
        published = table.get("rows", {}).get(row_name, {}).get(r.task, "")
        body.append([r.variant, r.task, *[r.setting.get(k, "") for k in settings], len(r.results),
                     fmt(tests), fmt(vals), steps, fmt([x["wall_seconds"] for x in r.results], 1.0, 0),
                     r.results[0]["trainable_params"], published,
                     _versus(tests, published) if unit == "%" else ""])
    return _markdown(header, body), [header, *body]


# The setting of the published forecasting numbers: every other run's published columns stay empty.
PUBLISHED_PROTOCOL = {"seq_len": 336, "features": "all", "train_fraction": 1.0}
# The forecasting task's option defaults when runs did not yet record their protocol (before
# 2026-12-03): what an option left out of those runs' config meant.
DEFAULTS_BEFORE_THE_RECORD = {"seq_len": 336, "features": "all", "split": "auto", "train_fraction": 1.0}


def on_published_protocol(result: dict[str, Any]) -> bool:
    """Whether a forecasting run used the published numbers' setting (all channels, 336 steps in,
    the benchmark's own split, every training window), as its result file records it; result
    files from before that record are judged from their config."""
    recorded = result.get("protocol")
    if recorded is not None:
        return bool(recorded.get("published"))
    options = {**DEFAULTS_BEFORE_THE_RECORD, **(result.get("config", {}).get("task_options") or {})}
    return (all(options.get(k) == v for k, v in PUBLISHED_PROTOCOL.items())
            and options.get("split") in ("auto", "ett-hour", "ett-minute")
            and result.get("config", {}).get("train_fraction", 1.0) == 1.0)


def forecast_table(rows: list[Row]) -> tuple[str, list[list[Any]]]:
    """Forecasting runs: test MSE and MAE (mean ± SE over seeds) beside the published numbers."""
    published = paper_numbers()["forecasting"]["rows"]
    settings = sorted({k for r in rows for k in r.setting if k != "task_options.horizon"})  # its own column
    references = [name for name, by_task in published.items()  # PatchTST, an average only, is in the horizon table
                  if any(isinstance(h, int) for numbers in by_task.values() for h in numbers)]
    # runs with --task-opt mase=true or wql=true: their scores and the ratios to seasonal naive's
    scaled = [m for m in ("mase", "wql") if any("model" in x.get(m, {}) for r in rows for x in r.results)]
    header = ["variant", "data", "horizon", *settings, "seeds", "test MSE", "test MAE",
              *(name for m in scaled for name in (m.upper(), f"{m.upper()} / seasonal naive")), "best val MSE",
              "train seconds", "trainable params", *(f"{name} MSE/MAE" for name in references),
              "MSE vs One Fits All"]
    body = []
    for r in sorted(rows, key=lambda r: (r.task, r.results[0]["task_spec"]["n_outputs"], r.variant,
                                         json.dumps(r.setting, sort_keys=True))):
        horizon = r.results[0]["task_spec"]["n_outputs"]
        mses = [x["test"]["mse"] for x in r.results]
        comparable = on_published_protocol(r.results[0])
        cited = [published[name].get(r.task, {}).get(horizon) if comparable else None for name in references]
        ofa = cited[0][0] if cited[0] else None
        body.append([r.variant, r.task, horizon, *[r.setting.get(k, "") for k in settings], len(r.results),
                     fmt(mses, 1.0, 3), fmt([x["test"]["mae"] for x in r.results], 1.0, 3),
                     *(fmt([x[m][key] for x in r.results if "model" in x.get(m, {})], 1.0, 3)
                       for m in scaled for key in ("model", "relative")),
                     fmt([x["best_val"]["mse"] for x in r.results], 1.0, 3),
                     fmt([x["wall_seconds"] for x in r.results], 1.0, 0), r.results[0]["trainable_params"],
                     *(f"{c[0]:.3f} / {c[1]:.3f}" if c else "" for c in cited),
                     f"{100 * (mean_se(mses)[0] / ofa - 1):+.1f}%" if ofa else ""])
    return _markdown(header, body), [header, *body]


# The horizons the long-term forecasting benchmarks average over (One Fits All's Table 3, PatchTST's).
BENCHMARK_HORIZONS = (96, 192, 336, 720)


def horizon_table(rows: list[Row], spec: dict[str, Any]) -> str:
    """Forecasting runs pivoted: one line per variant (and setting), one column per horizon, test
    MSE ± SE / MAE over seeds ('not run' where no run finished); the published numbers below, for
    the horizons the sweep ran ('-' where none is published). When the sweep ran all four benchmark
    horizons, an 'average' column as the papers' tables have: the mean over the four horizons of
    the seed means, its SE from the four independent SEs (sqrt(sum SE^2) / 4); the published
    average where a paper gives one (PatchTST is published only so), else the mean of its four.
    A line whose missing horizons the spec excludes (One Fits All's 5% cut has no 720 window) is
    averaged over the horizons it ran, as One Fits All's 5% table is, and says which.
    Empty unless a task was forecast at more than one horizon."""
    settings = sorted({k for r in rows for k in r.setting if k != "task_options.horizon"})
    order = list(spec.get("variants") or {})  # the spec's own order of arms
    published = paper_numbers()["forecasting"]["rows"]
    few_shot = paper_numbers()["forecasting-few-shot"]["rows"]  # by fraction of training rows, then data set
    lines: list[str] = []
    for task in sorted({r.task for r in rows}):
        of_task = [r for r in rows if r.task == task]
        horizons = sorted({r.results[0]["task_spec"]["n_outputs"] for r in of_task})
        if len(horizons) < 2:
            continue
        averaged = set(BENCHMARK_HORIZONS) <= set(horizons)
        columns: list[int | str] = [*horizons, *(["average"] if averaged else [])]
        varying = [k for k in settings if len({json.dumps(r.setting.get(k)) for r in of_task}) > 1]  # the file: one
        most_seeds = max(len(r.results) for r in of_task)
        cells: dict[str, dict[int | str, str]] = defaultdict(dict)
        setting_of: dict[str, dict[str, Any]] = {}  # a line's grid setting, for the spec's excluded points
        stats: dict[str, dict[int, tuple[float, float, float]]] = defaultdict(dict)  # mse mean, mse SE, mae mean
        for r in sorted(of_task, key=lambda r: (order.index(r.variant) if r.variant in order else len(order),
                                                r.variant, json.dumps(r.setting, sort_keys=True))):
            extra = ", ".join(f"{k.removeprefix('task_options.')}={r.setting[k]}" for k in varying if k in r.setting)
            name = f"{r.variant} ({extra})" if extra else r.variant
            setting_of[name] = r.setting
            mses, maes = ([x["test"][m] for x in r.results] for m in ("mse", "mae"))
            mae = mean_se(maes)[0]
            fewer = f" ({len(r.results)} of {most_seeds} seeds)" if len(r.results) < most_seeds else ""
            horizon = r.results[0]["task_spec"]["n_outputs"]
            cells[name][horizon] = f"{fmt(mses, 1.0, 3)} / {mae:.3f}{fewer}"
            stats[name][horizon] = (*mean_se(mses), mae)
        exclusions = spec.get("exclude") or []
        def cut(name: str, horizon: int | str) -> bool:  # the spec excludes this line's run at this horizon
            return excluded({**setting_of.get(name, {}), "task_options.horizon": horizon}, exclusions)

        for name, by_h in stats.items():
            ran = [h for h in BENCHMARK_HORIZONS if h in by_h]
            dropped = [h for h in BENCHMARK_HORIZONS if h not in by_h and cut(name, h)]
            if averaged and len(ran) > 1 and len(ran) + len(dropped) == len(BENCHMARK_HORIZONS):
                over = f" (over {', '.join(map(str, ran))}; {', '.join(map(str, dropped))} excluded)" if dropped else ""
                cells[name]["average"] = _average_cell([by_h[h] for h in ran]) + over
        comparable = any(on_published_protocol(x) for r in of_task for x in r.results)
        for reference, numbers in published.items():
            shown = _published_cells(numbers.get(task, {}) if comparable else {}, horizons, averaged)
            if shown:
                cells[f"published: {reference}"] = shown
        fractions = sorted({x["protocol"]["few_shot"] for r in of_task for x in r.results
                            if "few_shot" in (x.get("protocol") or {})})  # runs on One Fits All's few-shot cut
        for fraction in fractions:
            for reference, numbers in few_shot.items():
                shown = _published_cells(numbers.get(fraction, {}).get(task, {}), horizons, averaged)
                if shown:
                    cells[f"published, {fraction:.0%} of rows: {reference}"] = shown
        header = ["arm", *(f"{task} {h}" for h in columns)]
        def missing(name: str, horizon: int | str) -> str:
            if name.startswith("published") or horizon == "average":
                return "-"
            return "excluded by the spec" if cut(name, horizon) else "not run"

        lines += [_markdown(header, [[name, *(by_h.get(h, missing(name, h)) for h in columns)]
                                     for name, by_h in cells.items()]), ""]
    return "\n".join(lines)


def is_fpt_arm(result: dict[str, Any]) -> bool:
    """A run of the FPT recipe itself: a pretrained backbone, attention and feed-forward frozen."""
    return (result["config"].get("method", "fpt") == "fpt" and result.get("init") == "pretrained"
            and not {"attention", "feedforward"} & set(result.get("train_groups", [])))


def forecast_verdicts(rows: list[Row]) -> str:
    """Each forecasting arm (at its best lr on validation, where a sweep ran several: arena.choose) against
    the FPT arm of the same data, horizon and setting (test_path included), paired by seed (arena.paired):
    the MSE difference FPT minus arm, its 95% t interval (n-1 degrees of freedom) and p-value, and the
    verdict for the arm ('wins': its MSE is lower beyond the interval, 'loses': higher, 'tie' otherwise).
    Empty without exactly one FPT arm per group."""
    first = {r.variant: i for i, r in reversed(list(enumerate(rows)))}  # the arms in the rows' own order
    groups = []
    for (task, rest), arms in arena.choose(rows).items():
        references = [a for a in arms.values() if all(is_fpt_arm(x) for x in a.row.results)]
        if len(references) != 1:
            continue
        setting = ", ".join(f"{k.removeprefix('task_options.')}={v}" for k, v in sorted(json.loads(rest).items())
                            if k != "task_options.horizon")
        groups.append((task, references[0].row.results[0]["task_spec"]["n_outputs"], setting, references[0], arms))
    body, names = [], set()
    for task, horizon, setting, reference, arms in sorted(groups, key=lambda g: g[:3]):
        names.add(reference.variant)
        fpt = reference.tests()                                           # seed -> score: minus the MSE
        for arm in sorted(arms.values(), key=lambda a: first[a.variant]):
            if arm is reference:
                continue
            theirs = arm.tests()
            seeds = sorted(fpt.keys() & theirs.keys())
            test = arena.paired(arm, reference)  # arm minus FPT in score: FPT minus arm in MSE
            interval = (f"{test.mean:+.3f} [{test.low:+.3f}, {test.high:+.3f}]" if len(seeds) > 1
                        else f"{test.mean:+.3f}" if seeds else "-")
            body.append([task, horizon, setting or "-", arm.variant, len(seeds),
                         f"{sum(-fpt[k] for k in seeds) / max(len(seeds), 1):.3f}",
                         f"{sum(-theirs[k] for k in seeds) / max(len(seeds), 1):.3f}", interval,
                         f"{test.p:.3f}" if len(seeds) > 1 else "-", test.verdict])
    if not body:
        return ""
    fpt_name = f"FPT ({names.pop()})" if len(names) == 1 else "FPT"
    header = ["data", "horizon", "setting", "arm", "paired seeds", f"{fpt_name} MSE", "arm MSE",
              "FPT minus arm [95% interval]", "p", "the arm"]
    return _markdown(header, body)


def transfer_table(rows: list[Row]) -> str:
    """Forecasting runs tested on another file (`test_path`): for each direction source -> target, each
    arm's test MSE ± SE / MAE there beside the same arm trained on the target (runs whose test_path is
    their own file, or with none), the ratio of the two, and each arm against the FPT arm on the
    transfer, paired by seed (MSE difference FPT minus arm, 95% t interval; 'wins': the arm's MSE is
    lower beyond the interval). Empty without transfer runs."""
    from fpt.experiments.stats import paired

    def target_of(result: dict[str, Any]) -> str:
        test_path = (result.get("protocol") or {}).get("test_path") or \
            result["config"].get("task_options", {}).get("test_path")
        return Path(test_path).stem if test_path else ""

    cells: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = defaultdict(dict)  # (arm, source, target) -> seed
    reference: set[str] = set()
    for r in rows:
        for x in r.results:
            target = target_of(x) or r.task
            cells[(r.variant, r.task, target)][x["seed"]] = x["test"]
            if is_fpt_arm(x):
                reference.add(r.variant)
    directions = sorted({(s, t) for (_, s, t) in cells if s.lower() != t.lower()})
    if not directions:
        return ""
    arms = list(dict.fromkeys(a for (a, _, _) in cells))
    fpt = sorted(reference)[0] if len(reference) == 1 else None
    header = ["arm", "trained on", "tested on", "seeds", "test MSE / MAE", "trained on the target: MSE / MAE",
              "transfer / target-trained MSE", *(["vs FPT on the transfer: MSE difference [95% interval], p"]
                                                 if fpt else [])]
    body = []
    for source, target in directions:
        for arm in arms:
            moved = cells.get((arm, source, target))
            if not moved:
                continue
            home = next((by for (a, s, t), by in cells.items() if a == arm and s.lower() == t.lower() == target.lower()), {})
            mses = [m["mse"] for m in moved.values()]
            line = [arm, source, target, len(moved),
                    f"{fmt(mses, 1.0, 3)} / {mean_se([m['mae'] for m in moved.values()])[0]:.3f}"]
            if home:
                home_mses = [m["mse"] for m in home.values()]
                line += [f"{fmt(home_mses, 1.0, 3)} / {mean_se([m['mae'] for m in home.values()])[0]:.3f}",
                         f"{mean_se(mses)[0] / mean_se(home_mses)[0]:.2f}x"]
            else:
                line += ["not run", "-"]
            if fpt:
                ours = cells.get((fpt, source, target), {})
                seeds = sorted(set(ours) & set(moved))
                if arm == fpt:
                    line.append("(the FPT arm)")
                elif len(seeds) < 2:
                    line.append("too few paired seeds")
                else:
                    test = paired([ours[k]["mse"] - moved[k]["mse"] for k in seeds])
                    line.append(f"{test.verdict}: {test.mean:+.3f} [{test.low:+.3f}, {test.high:+.3f}], "
                                f"p = {test.p:.3f}")
            body.append(line)
    return _markdown(header, body)


def _published_cells(cited: dict[int | str, list[float]], horizons: list[int], averaged: bool) -> dict[int | str, str]:
    """A published line's cells, 'MSE / MAE' by horizon: those the sweep ran, and the average where the
    sweep ran all four (the paper's own average, else the mean of its four)."""
    shown: dict[int | str, str] = {h: f"{cited[h][0]:.3f} / {cited[h][1]:.3f}" for h in horizons if h in cited}
    if averaged and "average" in cited:
        shown["average"] = f"{cited['average'][0]:.3f} / {cited['average'][1]:.3f}"
    elif averaged and all(h in cited for h in BENCHMARK_HORIZONS):
        shown["average"] = " / ".join(f"{sum(cited[h][i] for h in BENCHMARK_HORIZONS) / 4:.3f}" for i in (0, 1))
    return shown


def imputation_table(rows: list[Row]) -> str:
    """Imputation runs: masked test MSE ± SE / MAE at each of the four published mask ratios (every
    run is tested at all four, fpt.tasks.impute), one line per variant, data and the ratio it trained
    at (a gap filler, which trains nothing, gives the same numbers whatever ratio its run was named for:
    one line), with how many seeds converged (best validation before the step cap, or stopped early);
    then, where runs trained at each of the four ratios (the published protocol: one model per ratio),
    their own-ratio numbers averaged beside the published averages."""
    from fpt.tasks.impute import RATIOS, VARIANT

    ratios = [f"{VARIANT}{r:g}" for r in RATIOS]
    settings = sorted({k for r in rows for k in r.setting if k != "task_options.mask_ratio"})  # its own column
    header = ["variant", "data", *settings, "trained at", "seeds", "converged",
              *(f"{r:.1%} MSE / MAE" for r in RATIOS), "train seconds"]
    body, diagonal, untrained_shown = [], {}, set()
    seeds_at: dict[tuple[str, str], dict[str, dict[int, float]]] = {}  # (variant, data) -> ratio -> seed -> MSE
    fpt_arms, untrained_arms = set(), set()
    for r in sorted(rows, key=lambda r: (r.task, r.variant, r.results[0].get("protocol", {}).get("mask_ratio", 0),
                                         json.dumps(r.setting, sort_keys=True))):
        protocol = r.results[0].get("protocol", {})
        trained = protocol.get("mask_ratio")
        cells = []
        for name in ratios:
            scored = [x["test_variants"][name] for x in r.results if name in x.get("test_variants", {})]
            if not scored:
                cells.append("-")
                continue
            mses = [m["mse"] for m in scored]
            mae = sum(m["mae"] for m in scored) / len(scored)
            cells.append(f"{fmt(mses, 1.0, 3)} / {mae:.3f}")
            if f"{VARIANT}{trained:g}" == name and protocol.get("published"):
                key = (r.variant, protocol.get("benchmark", r.task))
                diagonal.setdefault(key, {})[name] = (*mean_se(mses), mae)
                seeds_at.setdefault(key, {})[name] = {x["seed"]: x["test_variants"][name]["mse"] for x in r.results}
                if all(is_fpt_arm(x) for x in r.results):
                    fpt_arms.add(key)
        untrained = not any(x["trainable_params"] for x in r.results)
        if untrained:
            untrained_arms.add((r.variant, protocol.get("benchmark", r.task)))
            line_key = (r.variant, r.task, *[str(r.setting.get(k, "")) for k in settings])
            if line_key in untrained_shown:
                continue
            untrained_shown.add(line_key)
        body.append([r.variant, r.task, *[r.setting.get(k, "") for k in settings],
                     "nothing trains" if untrained else f"{trained:.1%}" if trained else "-", len(r.results),
                     "-" if untrained else converged_of(r.results), *cells,
                     fmt([x["wall_seconds"] for x in r.results], 1.0, 0)])
    lines = [_markdown(header, body)]
    complete = {key: by for key, by in diagonal.items() if len(by) == len(ratios)}
    if complete:
        published = paper_numbers()["imputation"]
        references = list(published["rows"])
        head = ["variant", "data", "average MSE ± SE / MAE (each ratio its own model)",
                "FPT minus arm [95% interval]", "the arm", *(f"{name} MSE / MAE" for name in references)]
        averaged = []
        for (variant, data), by in sorted(complete.items()):
            cell = _average_cell([by[name] for name in ratios])
            fpt = [key for key in complete if key in fpt_arms and key[1] == data]
            versus = (_imputation_versus(seeds_at[fpt[0]], seeds_at[(variant, data)], (variant, data) in untrained_arms)
                      if len(fpt) == 1 and fpt[0] != (variant, data) else None)
            cited = [published["rows"][name].get(data) for name in references]
            averaged.append([variant, data, cell,
                             f"{versus.mean:+.3f} [{versus.low:+.3f}, {versus.high:+.3f}]" if versus else "",
                             versus.verdict if versus else "",
                             *(f"{c[0]:.3f} / {c[1]:.3f}" if c and c[1] is not None
                               else f"{c[0]:.3f} / -" if c else "" for c in cited)])
        lines += ["", "Averaged over the four ratios, as the published table is, beside the FPT arm (each seed's "
                  "four models averaged, paired by seed: the MSE difference FPT minus arm, 95% t interval with n-1 "
                  "degrees of freedom; the arm 'wins' or 'loses' only when it excludes zero; a gap filler, which "
                  "trains nothing, scores the same for every seed) and the published table (its source: "
                  f"{published['source']}):", "", _markdown(head, averaged)]
    return "\n".join(lines)


def _imputation_versus(fpt: dict[str, dict[int, float]], arm: dict[str, dict[int, float]],
                       untrained: bool) -> stats.Paired:
    """An arm against FPT on the published protocol's average: per seed, the mean over the four ratios of
    each ratio's own model (ratio -> seed -> MSE); an arm that trains nothing has one value for every seed."""
    def per_seed(by_ratio: dict[str, dict[int, float]]) -> dict[int, float]:
        seeds = set.intersection(*(set(by) for by in by_ratio.values()))
        return {s: sum(by[s] for by in by_ratio.values()) / len(by_ratio) for s in seeds}

    ours, theirs = per_seed(fpt), per_seed(arm)
    if untrained and theirs:
        theirs = dict.fromkeys(ours, next(iter(theirs.values())))
    return stats.paired([ours[s] - theirs[s] for s in sorted(ours.keys() & theirs.keys())])


SHORT_TERM_LEGEND = (
    "The M4 competition's measures on the test values (fpt.m4), mean ± SE over seeds: sMAPE (%), MASE (scaled by "
    "each series' in-sample seasonal difference) and OWA (the mean of sMAPE and MASE relative to Naive2's, so Naive2 "
    "is 1 and lower is better); Naive2 on the same series beside them. Runs validate on the last horizon of each "
    "training series, never on the test values.")


def short_term_table(rows: list[Row]) -> str:
    """Short-term forecasting runs: sMAPE, MASE and OWA per variant, Naive2's on the same series."""
    settings = sorted({k for r in rows for k in r.setting})
    header = ["variant", "data", *settings, "seeds", "converged", "sMAPE", "MASE", "OWA", "train seconds"]
    body = []
    for task in sorted({r.task for r in rows}):
        of_task = sorted((r for r in rows if r.task == task), key=lambda r: (r.variant, json.dumps(r.setting,
                                                                                                 sort_keys=True)))
        for r in of_task:
            found = [x["short_term"] for x in r.results if "short_term" in x]
            body.append([r.variant, task, *[r.setting.get(k, "") for k in settings], len(found),
                         converged_of(r.results),
                         *(fmt([m[key] for m in found], 1.0, 3) if found else "-" for key in ("smape", "mase", "owa")),
                         fmt([x["wall_seconds"] for x in r.results], 1.0, 0)])
        first = next((x["short_term"] for r in of_task for x in r.results if "short_term" in x), None)
        if first:  # Naive2 depends on the data alone
            body.append(["(Naive2)", task, *["" for _ in settings], "", "", f"{first['naive2_smape']:.3f}",
                         f"{first['naive2_mase']:.3f}", "1.000", ""])
    return _markdown(header, body)


DETECTION_LEGEND = (
    "F1 and AUC-PR in %, mean ± SE over seeds, on the test points (fpt.detection): **F1** with the threshold from "
    "the training and validation scores only, no point adjustment; **F1-PA** the same threshold, point-adjusted; "
    "**F1 published** and **F1-PA published** with the threshold from the training and test scores together (One "
    "Fits All's protocol; F1-PA published is the number its Table 2 reports); **AUC-PR** needs no threshold. The "
    "random, isolation-forest and PCA rows score the same points without the model: random scores show how much of "
    "a number the protocol alone gives.")


def detection_table(rows: list[Row]) -> str:
    """Anomaly-detection runs: each variant's detection metrics beside the baselines' on the same points
    (random scores, isolation forest, PCA; from the runs' own result files) and the published F1-PA."""
    from fpt.detection import HEADLINES

    published = paper_numbers()["anomaly"]["rows"]
    settings = sorted({k for r in rows for k in r.setting})
    header = ["variant", "data", *settings, "seeds", "converged", "F1", "F1-PA", "F1 published", "F1-PA published",
              "AUC-PR", *(f"{name} (F1-PA published)" for name in published)]
    body, run_benchmarks = [], set()
    for task in sorted({r.task for r in rows}):
        of_task = sorted((r for r in rows if r.task == task), key=lambda r: (r.variant, json.dumps(r.setting, sort_keys=True)))
        first = of_task[0].results[0]
        benchmark = first.get("protocol", {}).get("benchmark", "")
        run_benchmarks.add(benchmark)
        cited = [published[name].get(benchmark, "") if first.get("protocol", {}).get("published") else ""
                 for name in published]
        for r in of_task:
            found = [x["detection"]["model"] for x in r.results if "detection" in x]
            body.append([r.variant, task, *[r.setting.get(k, "") for k in settings], len(found),
                         converged_of(r.results), *(fmt([m[key] for m in found]) if found else "-" for key in HEADLINES), *cited])
        # the baselines depend on the data and the seed only: one run per seed, of one variant (fpt's if there)
        variant = "fpt" if any(r.variant == "fpt" for r in of_task) else of_task[0].variant
        by_seed = {x["seed"]: x for r in of_task if r.variant == variant for x in r.results if "detection" in x}
        for baseline in ("random", "isolation-forest", "pca"):
            found = [x["detection"][baseline] for x in by_seed.values()]
            if found:
                body.append([f"({baseline})", task, *["" for _ in settings], len(found), "",
                             *(fmt([m[key] for m in found]) for key in HEADLINES), *["" for _ in published]])
    benchmarks = sorted({b for numbers in published.values() for b in numbers})
    missing = [b for b in benchmarks if b not in run_benchmarks]
    cited = "; ".join(f"{name}: " + ", ".join(f"{b.upper()} {numbers[b]}" for b in missing if b in numbers)
                      for name, numbers in published.items())
    note = (f"\n\nPublished benchmarks not run in this sweep ({cited}): their files are not here; "
            "`fpt train --task anomaly --task-opt path=DIR` reads each release's directory. A published column "
            "is filled only beside a run on that benchmark with its protocol (result.json `protocol.published`)."
            if missing else "")
    return _markdown(header, body) + note


def _average_cell(per_horizon: list[tuple[float, float, float]]) -> str:
    """MSE ± SE / MAE averaged over horizons: independent runs, so the SEs add in quadrature."""
    n = len(per_horizon)
    mse = sum(m for m, _, _ in per_horizon) / n
    se = math.sqrt(sum(s ** 2 for _, s, _ in per_horizon)) / n
    mae = sum(a for _, _, a in per_horizon) / n
    return (f"{mse:.3f} / {mae:.3f}" if math.isnan(se) else f"{mse:.3f} ± {se:.3f} / {mae:.3f}")


def best_lr_table(rows: list[Row]) -> str:
    """Per (variant, task): the lr with the best mean validation score, and its test accuracy."""
    by_key: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        if "lr" in r.setting:
            rest = {k: v for k, v in r.setting.items() if k != "lr"}
            by_key[(r.variant, r.task, json.dumps(rest, sort_keys=True))].append(r)
    if not any(len(v) > 1 for v in by_key.values()):
        return ""
    header = ["variant", "task", "best lr (by val)", "val %", "test %", "lrs tried"]
    body = []
    for (variant, task, _), candidates in sorted(by_key.items()):
        headline = candidates[0].objective.headline_of
        best = best_by_validation(candidates, headline)
        body.append([variant, task, best.setting["lr"], fmt([headline(x["best_val"]) for x in best.results]),
                     fmt([headline(x["test"]) for x in best.results]), len(candidates)])
    return _markdown(header, body)


def steps_ratio_lines(rows: list[Row]) -> list[str]:
    """Mean steps to threshold of each variant relative to the first variant, per task."""
    lines = []
    by_task: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in rows:  # compare variants only at equal settings (model, lr, ...)
        by_task[(r.task, json.dumps(r.setting, sort_keys=True))].append(r)
    for (task, setting), task_rows in sorted(by_task.items()):
        where = task + (f" ({setting})" if setting != "{}" else "")
        means = {}
        for r in task_rows:
            reached = r.reached
            if len(reached) == len(r.results):
                means[r.variant] = mean_se([float(s) for s in reached])[0]
        if len(means) > 1:
            base_variant, base = next(iter(means.items()))
            for variant, value in list(means.items())[1:]:
                lines.append(f"- {where}: {variant} needs {value / base:.1f}x the steps of {base_variant} "
                             f"({value:.0f} vs {base:.0f}, mean over seeds)")
    return lines


def paper_steps_lines(rows: list[Row], spec: dict[str, Any]) -> list[str]:
    """The paper's compute-efficiency comparison, where a spec maps variants to the steps table's
    FPT and random-init rows: random init's steps over FPT's, beside the paper's ratio. A random
    init that did not reach the threshold in every seed gives a lower bound (its step budget)."""
    paper = spec.get("paper") or {}
    if paper.get("table") != "steps":
        return []
    by_row = {row: variant for variant, row in (paper.get("rows") or {}).items()}
    fpt_variant, random_variant = by_row.get("FPT"), by_row.get("random init")
    published = paper_numbers()["steps"]["rows"]
    lines = []
    for task in sorted({r.task for r in rows}):
        found = {r.variant: r for r in rows if r.task == task and not r.setting}
        fpt_row, random_row = found.get(fpt_variant), found.get(random_variant)
        if fpt_row is None or random_row is None or len(fpt_row.reached) < len(fpt_row.results):
            continue
        base = mean_se([float(s) for s in fpt_row.reached])[0]
        ours = _paper_ratio(published, task)
        if len(random_row.reached) == len(random_row.results):
            value = mean_se([float(s) for s in random_row.reached])[0]
            lines.append(f"- {task}: {random_variant} (random init) needs {value / base:.1f}x the steps of "
                         f"{fpt_variant} (FPT): {value:.0f} vs {base:.0f}, mean over seeds{ours}")
        else:
            budget = max(int(x["steps"]) for x in random_row.results)
            n, reached = len(random_row.results), random_row.reached
            at_least = (sum(reached) + budget * (n - len(reached))) / n  # the unreached seeds at their budget
            lines.append(f"- {task}: {random_variant} (random init) reached the threshold in {len(reached)} of "
                         f"{n} seeds within {budget} steps, {fpt_variant} (FPT) in {base:.0f} on average: at "
                         f"least {at_least / base:.1f}x the steps{ours}")
    return lines


def _paper_ratio(published: dict[str, dict[str, float]], task: str) -> str:
    fpt, random = published.get("FPT", {}).get(task), published.get("random init", {}).get(task)
    if not fpt or not random:
        return ""
    return f" (paper, GPT-2: {random:.0f} vs {fpt:.0f} steps, {random / fpt:.0f}x)"


def _versus(tests: list[float], published: Any) -> str:
    """'consistent' when within 2 points (or 2 SE) of the paper, else the gap: it did not reproduce here."""
    if published == "" or not tests:
        return ""
    mean, se = mean_se([100 * t for t in tests])
    gap = mean - float(published)
    margin = max(2.0, 0.0 if math.isnan(se) else 2 * se)
    return f"consistent ({gap:+.1f} pts)" if abs(gap) <= margin else f"does not reproduce: {gap:+.1f} pts"


def provenance_lines(rows: list[Row]) -> list[str]:
    """Where the runs trained and in which precision, as their result files recorded it (not the host
    building the report): one machine line, or each machine with its count of runs; the precisions,
    and the rows whose seeds did not all train in the same one."""
    results = [r for row in rows for r in row.results]
    versions = results[0]["versions"]
    stack = f"torch {versions['torch']}, transformers {versions['transformers']}, fpt {versions['fpt']}"
    hosts = Counter(r.get("machine", "") for r in results)
    if len(hosts) == 1 and "" not in hosts:
        where = f"- machine: {next(iter(hosts))}"
    else:
        where = "- machines: " + "; ".join(
            f"{host or 'not recorded (fpt before 2026-12-07 did not record the host)'}: {n} run{'s' * (n > 1)}"
            for host, n in sorted(hosts.items(), key=lambda item: (not item[0], -item[1], item[0])))
    precisions = Counter(r.get("precision", "unknown") for r in results)
    mixed = sorted({f"{row.variant} ({row.task})" for row in rows if len({r.get("precision") for r in row.results}) > 1})
    precision = "- precision: " + ", ".join(f"{name} ({n} run{'s' * (n > 1)})" for name, n in sorted(precisions.items()))
    if mixed:
        precision += "; seeds of one row trained in different precisions (not comparable as one sample): " + ", ".join(mixed)
    return [f"{where}; {stack}", precision]


def _markdown(header: list[str], body: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in body]
    return "\n".join(lines)


def report(sweep_dirs: str | Path | Sequence[str | Path], out: str | Path | None = None, command: str = "") -> Path:
    """Write REPORT.md, results.csv, figures and an archive of the result files for one sweep
    directory, or several merged (e.g. a committed report's archive and a sweep of new arms);
    return the report's path."""
    dirs = [Path(sweep_dirs)] if isinstance(sweep_dirs, (str, Path)) else [Path(d) for d in sweep_dirs]
    sweep_dir = dirs[0]
    out = Path(out) if out else sweep_dir / "report"
    rows, spec = collect(dirs)  # fails on a wrong directory before anything is created
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FptError(f"cannot create the report directory '{out}': {err.strerror}; choose another --out") from None
    forecasts = [r for r in rows if r.objective.name == "forecast"]  # tabled by horizon, MSE and MAE
    short_terms = [r for r in rows if r.objective.name == "smape"]  # tabled by M4's measures
    imputations = [r for r in rows if r.objective.name == "imputation"]  # tabled by mask ratio
    detections = [r for r in rows if r.objective.name == "reconstruction"]  # tabled by detection metric
    series = forecasts + short_terms + imputations + detections
    rows = [r for r in rows if r not in series]
    table_md, table_csv = main_table(rows, spec) if rows else ("", [])
    paper = spec.get("paper") or {}
    published = paper_numbers().get(paper.get("table", ""), {})
    description = (spec.get("description") or "").strip()
    parts = [
        f"# {sweep_dir.name}",
        "",
        *(f"> {line}" for line in description.splitlines()),
        "",
        f"- command: `{command or 'fpt report ' + ' '.join(map(str, dirs))}`",
        *provenance_lines(rows + series),
        f"- date: {time.strftime('%Y-%m-%d')}; runs: {sum(len(r.results) for r in rows + series)} finished",
        "- numbers: test score (full pass over the test split) and best validation score, in percent: "
        "accuracy (per bit for bit tasks), or R^2 x 100 for regression; mean ± standard error over seeds; "
        "train seconds: wall-clock time of each run's training loop, evaluations included (comparable "
        "between runs that did not share the machine)",
    ]
    if published:
        parts.append(f"- paper column: {published['title']} ({published['source']}); the paper used "
                     "GPT-2 on the full tasks. 'does not reproduce' marks a mean more than 2 points (and 2 SE) "
                     "from the paper's: at this scale the claim did not hold")
    if spec.get("arena"):
        parts += ["", *arena.tables(rows + series, spec)]
    if forecasts:
        cited = paper_numbers()["forecasting"]
        forecast_md, forecast_csv = forecast_table(forecasts)
        parts += ["- forecasting: test MSE and MAE over every window of the test split (none dropped), "
                  f"mean ± SE over seeds; published columns (only for runs on the published setting: all "
                  f"channels, 336 steps in, the benchmark's split, every training window): {cited['source']}", "", "## Forecasting", "",
                  forecast_md, ""]
        pivot = horizon_table(forecasts, spec)
        if pivot:
            parts += ["## Forecasting by horizon", "",
                      "Test MSE ± SE / MAE (mean over seeds); published numbers only beside runs on their setting.",
                      "", pivot]
        verdicts = forecast_verdicts(forecasts)
        if verdicts:
            parts += ["", "## Against the FPT arm", "",
                      "Each arm against the FPT arm on the same data, horizon and setting, paired by seed: test MSE "
                      "difference FPT minus arm, 95% t interval with n-1 degrees of freedom; the arm 'wins' (lower "
                      "MSE) or 'loses' only when the interval excludes zero, else 'tie'.", "", verdicts]
        moved = transfer_table(forecasts)
        if moved:
            parts += ["", "## Transfer", "",
                      "Trained and validated on one file, tested on another's test split (standardised with the "
                      "target's own training rows unless the run says test_scale=source); beside it the same arm "
                      "trained on the target. Against the FPT arm: per-seed MSE differences (FPT minus arm), "
                      "95% t interval with n-1 degrees of freedom; 'wins' and 'loses' only when it excludes zero.",
                      "", moved]
        buffer = io.StringIO()
        csv.writer(buffer).writerows(forecast_csv)
        atomic_write(out / "forecasts.csv", buffer.getvalue().encode())
    if short_terms:
        parts += ["", "## Short-term forecasting", "", SHORT_TERM_LEGEND, "", short_term_table(short_terms), ""]
    if imputations:
        parts += ["", "## Imputation", "", "Masked test MSE ± SE / MAE (mean over seeds) on the hidden points only, "
                  "standardised values, at each mask ratio (one draw per point by the task's mask_seed: every arm is "
                  "scored on the same points).", "", imputation_table(imputations), ""]
    if detections:
        parts += ["", "## Anomaly detection", "", DETECTION_LEGEND, "", detection_table(detections), ""]
    if rows:
        parts += ["", table_md, ""]
    best = best_lr_table(rows)
    if best:
        parts += ["## Best learning rate by validation", "", best, ""]
    ratios = paper_steps_lines(rows, spec) + steps_ratio_lines(rows)
    if ratios:
        parts += ["## Steps to threshold, relative", "", *ratios, ""]
    parts += ["## Figures", ""]
    drawn = figures.draw_all(rows + series, out) + (arena.compute_figures(rows + series, out)
                                                       if spec.get("arena") else [])
    for title, path in drawn:
        parts.append(f"![{title}]({path.name})")
    if table_csv:
        buffer = io.StringIO()
        csv.writer(buffer).writerows(table_csv)
        atomic_write(out / "results.csv", buffer.getvalue().encode())
    archived = archive(rows + series, sweep_dir / "sweep.yaml", out)
    if archived:
        parts += ["", f"Result files of the {archived} runs (no checkpoints) are in `runs/` beside this report, "
                  f"indexed by `index.json`: `fpt report {out} --out {out}` rebuilds it, and "
                  f"`fpt report {out} NEW_SWEEP_DIR --out {out}` adds new runs to it."]
    atomic_write(out / "REPORT.md", ("\n".join(parts) + "\n").encode())
    return out / "REPORT.md"
