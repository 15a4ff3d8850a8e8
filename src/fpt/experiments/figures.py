"""Figures for `fpt report`, drawn from result and metrics files (PNG, matplotlib Agg).

- learning curves: validation score against step, mean over seeds with a ±SE band;
- steps to threshold: one bar per variant and task, mean ± SE over seeds;
- bit-xor attention: the frozen backbone's attention in every layer (mean over heads and
  64 test examples) of the best trained run, as the run saved it (attention.npy); the paper
  shows each output bit attending to the matching bits of the two inputs.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


from fpt.experiments.results import Row, mean_se  # noqa: E402


def save(fig, path: Path) -> Path:
    """Write a figure as PNG and free it."""
    if fig.get_layout_engine() is None:  # a figure made with layout="constrained" keeps it
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _label(row: Row) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in row.setting.items())
    return f"{row.variant}" + (f" ({extra})" if extra else "")


def learning_curves(rows: list[Row], out: Path) -> list[tuple[str, Path]]:
    by_task: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_task[r.task].append(r)
    figures = []
    for task, task_rows in sorted(by_task.items()):
        fig, ax = plt.subplots(figsize=(6, 3.6))
        kind = task_rows[0].objective
        for r in task_rows:
            curves = [c for c in r.curves if c]
            if not curves:
                continue
            by_step: dict[int, list[float]] = defaultdict(list)   # the seeds' scores at each step
            for c in curves:
                for line in c:
                    by_step[line["step"]].append(kind.curve(line["val"]))
            steps = sorted(by_step)
            stats = [mean_se(by_step[s]) for s in steps]
            mean = np.array([m for m, _ in stats])
            se = np.array([0.0 if np.isnan(e) else e for _, e in stats])  # one seed: no band
            ax.plot(steps, mean, label=_label(r))
            ax.fill_between(steps, mean - se, mean + se, alpha=0.2)
        ax.set(xlabel="step", ylabel=f"validation {kind.axis}",
               title=f"{task}: learning curves")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        figures.append((f"{task} learning curves", save(fig, out / f"curves-{task}.png")))
    return figures


def steps_to_threshold(rows: list[Row], out: Path) -> list[tuple[str, Path]]:
    bars = []
    for r in sorted(rows, key=lambda r: (r.task, r.variant)):
        reached = r.reached
        if reached:
            mean, se = mean_se([float(s) for s in reached])
            bars.append((f"{r.task}\n{_label(r)}", mean, 0.0 if np.isnan(se) else se, len(reached), len(r.results)))
    if not bars:
        return []
    fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(bars)), 3.6))
    ax.bar(range(len(bars)), [b[1] for b in bars], yerr=[b[2] for b in bars], capsize=4)
    ax.set_xticks(range(len(bars)), [f"{b[0]}\n{b[3]}/{b[4]} reached" for b in bars], fontsize=7)
    ax.set(ylabel="steps to threshold", title="Gradient steps to reach the validation threshold")
    return [("steps to threshold", save(fig, out / "steps-to-threshold.png"))]


def bit_xor_attention(rows: list[Row], out: Path) -> list[tuple[str, Path]]:
    # transformers' attention only: not an LSTM, a replacement, a plain or a fitted baseline
    candidates = [(x, d) for r in rows if r.task == "bit-xor" for x, d in zip(r.results, r.run_dirs)
                  if x["backbone"]["model_type"] != "lstm" and x["backbone"].get("attention_impl")]
    if not candidates:
        return []
    # written by the run after training (fpt.run.rundir.save_attention)
    with_maps = [(x, d) for x, d in candidates if (d / "attention.npy").is_file()]
    if not with_maps:
        print(f"report: no bit-xor attention figure (no attention.npy in {candidates[0][1]} or its kind: the runs "
              "predate attention maps in run directories)", file=sys.stderr)
        return []
    best, run_dir = max(with_maps, key=lambda pair: pair[0]["test"]["accuracy"])
    saved = run_dir / "attention.npy"
    attention = np.load(saved)                                           # (layers, L, L)
    layers, n = attention.shape[0], attention.shape[1] // 2
    cols = min(layers, 4)
    rows_ = -(-layers // cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(3.1 * cols, 2.9 * rows_), squeeze=False)
    labels = [f"a{i}" for i in range(n)] + [f"b{i}" for i in range(n)]
    for layer, ax in enumerate(axes.flat):
        if layer >= layers:
            ax.axis("off")
            continue
        ax.imshow(attention[layer], cmap="viridis")
        ax.set_xticks(range(2 * n), labels, fontsize=6)
        ax.set_yticks(range(2 * n), labels, fontsize=6)
        ax.set_title(f"layer {layer + 1}", fontsize=8)
    fig.suptitle(f"bit-xor attention, rows = query tokens (y_i is read at b_i); "
                 f"{best['model']}, {best['init']}", fontsize=9)
    return [("bit-xor attention", save(fig, out / "bit-xor-attention.png"))]


def draw_all(rows: list[Row], out: Path) -> list[tuple[str, Path]]:
    return [*learning_curves(rows, out), *steps_to_threshold(rows, out), *bit_xor_attention(rows, out)]
