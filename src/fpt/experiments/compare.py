"""`fpt compare`: does a frozen language model help on this data, and against what?

    fpt compare --task bit-xor                      # every default arm, 5 seeds, a verdict card
    fpt.compare(task="data.npz", arms="fpt,random-init,logistic", seeds=3)

One command plans a sweep (fpt.experiments.sweep) of the contenders that a reviewer asks for,
runs it (resumable: the same command again continues where it stopped), and writes the
report (fpt.experiments.report) with a verdict card on top. The protocol:

  - each contender's learning rate is chosen on validation from its own small grid, on the
    first seed; the other seeds run at the chosen rate only (the arena's `lr_seeds`);
  - every run stops early on validation (`--patience` evaluations without a better score)
    under a step cap (`--steps`), or a wall-clock budget the same for every arm
    (`--time-budget`); the card says per contender whether it converged (its best validation
    came before its last evaluation, or it stopped early) or ran out of budget;
  - test is touched once per final run; verdicts are paired over seeds with the 95% t
    interval (fpt.experiments.stats): "wins"/"loses" only when it excludes zero.

A contender that cannot run on the task (a forecasting baseline on classes, a CNN on a shape
that is not an image) is skipped before anything runs, its reason in the card.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from fpt.errors import FptError
from fpt.experiments import arena
from fpt.experiments.report import report
from fpt.experiments.results import Row, collect, converged, mean_se, trained_once
from fpt.experiments.sweep import sweep, threads_per_run
from fpt.options import FPT_DEFAULT_GROUPS
from fpt.registry import Registry
from fpt.storage.files import atomic_write

REFERENCE = "fpt"
SERIES = ("forecast", "smape", "imputation", "reconstruction")  # series models' objectives: windows in, a horizon or the window out
WIDE = (1e-4, 1e-3, 1e-2)  # the lr grid of arms whose trained parameters start fresh
ONCE = (1e-3,)             # the one (unused) lr of contenders fitted once or that do not train
# For the estimate printed at the start (an early-stopped run's share of its cap: early_stop_share): the
# share of its cap an lr search's loser takes, pruned once past a third of the cap behind its sibling's
# curve (--prune-against);
# the seconds a run spends outside its training loop (forked with torch imported, fpt.experiments.workers:
# it builds the task and model and tests it, about 2 s on the 2-core EPYC); a fit of trees or MiniRocket.
PRUNED_SHARE = 0.4
RUN_OVERHEAD_SECONDS = 3.0
FIT_SECONDS = 30.0


@dataclass(frozen=True)
class Contender:
    """One row of a comparison: an arm (or a model of the catalogue) with its own lr grid."""

    name: str
    settings: dict[str, Any]   # fpt train keys: method, init, model
    lrs: tuple[float, ...]
    question: str              # what a reader learns from it
    objectives: tuple[str, ...] = ()  # the objectives (fpt.objectives) it can serve; (): any
    once: bool = False         # fitted in one go or nothing trains: one run per seed, no lr to choose
    # given FPT's probe and its own: why its runs would repeat FPT's ("": they would not); None: never checked
    repeats: Callable[[Probe, Probe], str] | None = None


def repeats_fpt(fpt: Probe, ln_tuning: Probe) -> str:
    """Why LN tuning would train exactly FPT's parameters ("" where it would not): on a backbone without
    a learned position table (RoPE: Llama, SmolLM2, Qwen, ...) FPT trains the input and output layers and
    the norms, and peft's LN tuning trains the same input and output layers and a copy of the same norms,
    from the same values; its runs repeat FPT's to the last digit (SmolLM2's first two cards: 10 of 10 seeds)."""
    def trained(probe: Probe, group: str) -> int:
        return probe.counts.get(group, {}).get("trainable", 0)

    if not (trained(fpt, "total") > 0 and trained(fpt, "position") == 0
            and trained(ln_tuning, "total") == trained(fpt, "total")
            and trained(ln_tuning, "adapter") == trained(fpt, "layernorm")):
        return ""
    return (f"it would train exactly FPT's {trained(fpt, 'total'):,} parameters on this backbone (the input and "
            "output layers and a copy of every norm; no learned position table for FPT to train besides): its "
            "runs would repeat FPT's")


CONTENDERS: Registry[Contender] = Registry("contender", "--arms", hint="see `fpt compare --help`")
for _c in (
    Contender(REFERENCE, {}, WIDE, "the frozen pretrained transformer (the paper's recipe)"),
    Contender("random-init", {"init": "random"}, WIDE,
              "does the language pretraining matter? the same backbone with random weights, frozen"),
    Contender("no-lm", {"method": "no-lm"}, WIDE, "does the backbone matter at all? the input layer straight "
              "to the head (Tan et al.)"),
    Contender("full", {"method": "full"}, (1e-5, 1e-4), "full fine-tuning of the pretrained backbone"),
    Contender("lora", {"method": "lora"}, (1e-4, 1e-3), "peft LoRA adapters on the frozen backbone"),
    Contender("ln-tuning", {"method": "ln-tuning"}, WIDE, "peft LN tuning: trained copies of the layer norms",
              repeats=repeats_fpt),
    Contender("logistic", {"method": "logistic"}, WIDE, "a linear model on the flattened input"),
    Contender("mlp", {"method": "mlp"}, WIDE, "a 256-unit MLP on the flattened input"),
    Contender("cnn", {"method": "cnn"}, WIDE, "a small CNN (2-D on images, 1-D over tokens)"),
    Contender("trees", {"method": "trees"}, ONCE, "gradient-boosted trees on the flattened input (scikit-learn), "
              "fitted once per seed", once=True),
    Contender("minirocket", {"method": "minirocket"}, ONCE, "MiniRocket features and a ridge classifier (sktime), "
              "fitted once per seed: the series-classification baseline", once=True),
    Contender("fpt+ffn", {"train": f"{FPT_DEFAULT_GROUPS},feedforward"}, WIDE, "One Fits All's imputation recipe: "
              "fpt with the feed-forward layers trained too (--mlp 1 in every one of their imputation scripts)"),
    Contender("linear", {"model": "linear"}, (1e-3, 1e-2), "a linear map from the window to the horizon (imputation: "
              "to the whole window rebuilt)", objectives=SERIES),
    Contender("dlinear", {"model": "dlinear"}, (1e-3, 1e-2), "DLinear: a linear map each from the window's trend "
              "and remainder (the baseline of every forecasting table; imputation: each channel's own, shared)", objectives=SERIES),
    Contender("repeat-last", {"model": "repeat-last"}, ONCE, "the window's last value, repeated (nothing trains)",
              objectives=("forecast", "smape"), once=True),
    Contender("seasonal-naive", {"model": "seasonal-naive"}, ONCE, "the window's last season, repeated (period from "
              "the data's dates; nothing trains)", objectives=("forecast", "smape"), once=True),
    Contender("patchtst", {"model": "patchtst"}, (1e-4, 1e-3), "a PatchTST-style transformer trained from scratch",
              objectives=SERIES),
    Contender("pattn", {"method": "pattn"}, WIDE, "Tan et al.'s PAttn: patches, one attention layer, no positions",
              objectives=SERIES),
    Contender("chronos-bolt", {"model": "chronos-bolt-small"}, ONCE, "Chronos-Bolt (small), a time-series "
              "foundation model, zero-shot (nothing trains; fpt.tsfm, pip install 'fpt[tsfm]' and the hub's weights)",
              objectives=("forecast", "smape"), once=True),
    Contender("chronos-bolt-fpt", {"model": "chronos-bolt-small", "train": FPT_DEFAULT_GROUPS}, WIDE,
              "the FPT recipe on Chronos-Bolt: a transformer pretrained on series, not language, with fpt's groups "
              "trained", objectives=("forecast", "smape")),
    Contender("chronos-bolt-ft", {"model": "chronos-bolt-small", "train": "all"}, (1e-5, 1e-4),
              "Chronos-Bolt fine-tuned whole", objectives=("forecast", "smape")),
    *(Contender(rule, {"model": rule}, ONCE, f"{what} (nothing trains)", objectives=("imputation",), once=True)
      for rule, what in (("interpolate", "linear interpolation between each channel's nearest observed points"),
                         ("locf", "the last observed value carried forward"),
                         ("channel-mean", "each channel's mean over the window's observed points"))),
):
    CONTENDERS.register(_c)

# The default contenders, by the task's objective (fpt.objectives); "other" for the rest.
DEFAULTS = {"forecast": ("fpt", "random-init", "no-lm", "linear", "dlinear", "repeat-last", "seasonal-naive",
                         "patchtst", "pattn", "chronos-bolt"),
            "smape": ("fpt", "random-init", "no-lm", "linear", "dlinear", "repeat-last", "seasonal-naive", "patchtst",
                      "chronos-bolt"),
            "imputation": ("fpt", "fpt+ffn", "random-init", "no-lm", "linear", "dlinear", "patchtst", "interpolate",
                           "locf", "channel-mean"),
            "reconstruction": ("fpt", "random-init", "no-lm", "linear", "dlinear", "patchtst"),
            "other": ("fpt", "random-init", "no-lm", "full", "lora", "ln-tuning", "logistic", "mlp", "cnn", "trees",
                      "minirocket")}
KIND_NAMES = {"forecast": "forecasting", "smape": "short-term forecasting", "imputation": "imputation",
              "reconstruction": "anomaly detection", "other": "other tasks"}


def defaults_for(objective_name: str) -> tuple[str, ...]:
    """The default contenders of a task with this objective."""
    return DEFAULTS.get(objective_name, DEFAULTS["other"])


def markdown_table() -> str:
    """The contenders as a Markdown table (docs/COMPARE.md holds it; a test keeps the two equal)."""
    lines = ["| contender | fpt train settings | lr grid | default for | what it answers |", "|---|---|---|---|---|"]
    for c in CONTENDERS.values():
        settings = ", ".join(f"--{k} {v}" for k, v in c.settings.items()) or "(none: the defaults)"
        default = ", ".join(KIND_NAMES[kind] for kind, names in DEFAULTS.items() if c.name in names)
        grid = "- (fitted once)" if c.once else ", ".join(f"{lr:g}" for lr in c.lrs)
        lines.append(f"| `{c.name}` | {settings} | {grid} | {default or '-'} | "
                     f"{c.question} |")
    return "\n".join(lines)


@dataclass
class Comparison:
    """What `fpt compare` found: the card's sentences, one row per contender, and where it all is."""

    verdict: list[str]                   # the card's sentences
    table: list[dict[str, Any]]          # per contender: score, interval against fpt, verdict, cost, seeds converged
    skipped: dict[str, str]              # contender -> why it did not run
    report: Path
    failed: list[str] = field(default_factory=list)
    span_seconds: float = 0.0            # from the first run's start to the last run's end (result files)
    busy_seconds: float = 0.0            # the union of the runs' start-to-end intervals: the span less idle gaps
    runs: int = 0                        # finished runs, lr search included
    pruned: int = 0                      # of which lr-search runs stopped behind a sibling lr (--prune-against)


def choose_contenders(arms: str, objective_name: str) -> list[Contender]:
    """default (the objective's) | all | a comma-separated list of contender names (fpt always first)."""
    if arms == "default":
        names = list(defaults_for(objective_name))
    elif arms == "all":
        names = list(CONTENDERS)
    else:
        names = [a.strip() for a in arms.split(",") if a.strip()]
        for name in names:
            CONTENDERS.find(name)
        names = [REFERENCE] + [n for n in names if n != REFERENCE]
    return [CONTENDERS[n] for n in dict.fromkeys(names)]


@dataclass
class Probe:
    """What building a contender's model once, on the CPU, tells before anything runs."""

    reason: str = ""            # why it cannot run on this task ("" if it can)
    run_seconds: float = 0.0    # one run's training to its step cap, estimated from one timed training step
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # per group: total and trainable parameters


def probe(contender: Contender, task: Any, config: Any, threads: int | None = None) -> Probe:
    """Build `contender`'s model exactly as its runs will (`config`: its runs' TrainConfig), and time
    a training step as the loop takes it (forward, backward, clipping, Adam's update; after two untimed
    steps) on a batch of the task's mean size, on the torch threads each of its runs will get (`threads`;
    None: this process's). A run to its step cap is that times the steps, plus its evaluations: a forward pass
    over the validation set (about a third of a step's cost per batch) and the checkpoints written
    after it (timed: the trained parameters once; last.safetensors holds them and Adam's two moments,
    model.safetensors them again when validation improved)."""
    import torch

    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads or threads_before)
    try:
        return _probe(contender, task, config)
    finally:
        torch.set_num_threads(threads_before)


CHECKPOINT_COPIES = 3.5  # the trained parameters' copies written per evaluation: 3 in last.safetensors, half a best
SAMPLED_BATCHES = 32     # training batches drawn to find a batch of the mean size to time


def _probe(contender: Contender, task: Any, config: Any) -> Probe:
    import tempfile

    import torch

    from fpt.arms.fitted import fitted_head
    from fpt.model import assemble_model
    from fpt.objectives import objective
    from fpt.run.train import make_optimizer
    from fpt.storage.checkpoints import save_tensors

    kind = objective(task.spec.objective)
    if contender.objectives and kind.name not in contender.objectives:
        return Probe(f"a model for {', '.join(KIND_NAMES.get(o, o) for o in contender.objectives)}; this task's "
                     f"outputs are {kind.outputs}")
    try:
        model = assemble_model(task.spec, config.model_options, "cpu", task.pad_id)
    except FptError as err:
        return Probe(str(err))
    trained = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if not trained:  # fitted once, or nothing trains
        return Probe("", FIT_SECONDS if fitted_head(model) is not None else 0.0)
    optimizer = make_optimizer(trained.values(), config)
    # Tasks that bucket by length draw batches of very different sizes (ListOps: 24 to 99 tokens in the
    # first eight): time the batch nearest the mean size of the first few, scaled to that mean.
    sample = [task.train_batch(i, config.batch_size, config.seed) for i in range(SAMPLED_BATCHES)]
    mean_size = sum(b.mask.numel() for b in sample) / len(sample)
    batch = min(sample, key=lambda b: abs(b.mask.numel() - mean_size))
    step = 0.0
    for _ in range(3):
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        kind.loss(model(batch.x, batch.mask), batch.y).backward()
        if config.clip > 0:
            torch.nn.utils.clip_grad_norm_(list(trained.values()), config.clip)
        optimizer.step()
        step = (time.perf_counter() - started) * mean_size / batch.mask.numel()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        save_tensors(Path(tmp) / "probe.safetensors", trained, {})
        checkpoint = (time.perf_counter() - started) * CHECKPOINT_COPIES
    evaluations = math.ceil(config.steps / config.eval_every)
    val_batches = math.ceil(task.split_size("val") / config.batch_size)
    return Probe("", step * (config.steps + evaluations * val_batches / 3) + evaluations * checkpoint,
                 getattr(model, "counts", {}))


def early_stop_share(config: Any) -> float:
    """The share of its step cap a run with early stopping is assumed to take: midway between the
    first step it can stop at (first evaluation, then `patience` evaluations without a better score)
    and the cap. (A flat half of the cap put ETTh1 imputation's card at 55 min against its 2 h 19 min:
    its FPT runs, evaluated every 100 of 1,000 steps with patience 5, cannot stop before step 600.)"""
    if config.patience <= 0 or config.steps <= 0:
        return 1.0
    earliest = min(config.steps, config.eval_every * (1 + config.patience))
    return (earliest + config.steps) / 2 / config.steps


def plan(task: str, task_options: dict[str, Any], contenders: list[Contender], seeds: int,
         base: dict[str, Any]) -> dict[str, Any]:
    """The sweep spec of a comparison: every contender's lrs on seed 0, the other seeds at the chosen lr."""
    lrs = sorted({lr for c in contenders for lr in c.lrs})
    return {
        "description": f"fpt compare on {task}: {', '.join(c.name for c in contenders)}; lr chosen on "
                       f"validation on seed 0, {seeds} seeds, paired 95% t intervals against {REFERENCE}",
        "base": {"task": task, **({"task_options": task_options} if task_options else {}), **base},
        "grid": {"lr": lrs, "seed": list(range(seeds))},
        "variants": {c.name: {**c.settings, "grid": {"lr": list(c.lrs)}} for c in contenders},
        "arena": {"reference": REFERENCE, "lr_seeds": [0], "prune": True},
    }


def compare(task: str, task_options: dict[str, Any] | None = None, model: str = "minilm", arms: str = "default",
            seeds: int = 5, out: str | Path | None = None, workers: int | None = None, steps: int | None = None,
            patience: int = 5, time_budget: float = 0.0, extra: dict[str, Any] | None = None,
            lrs: tuple[float, ...] | None = None, progress: bool = True,
            say: Callable[[str], None] | None = None, dry_run: bool = False) -> Comparison | None:
    """Run (or resume) the comparison and return its verdict; see the module docstring.

    workers: runs side by side (None: default_workers());
    extra: further fpt train keys for every run (eval_every, batch_size, precision, ...);
    lrs: one learning-rate grid for every contender instead of each one's own;
    dry_run: say the plan and the estimate, then return None (nothing runs, nothing is written)."""
    from fpt.options import is_count
    from fpt.run.config import build_config
    from fpt.run.setup import data_dir
    from fpt.run.distributed import launched_world
    from fpt.tasks import build_task, parse_options, resolve, task_label

    world = launched_world()  # under torchrun: the runs spread over the ranks, rank 0 writes the report
    say = say or (lambda line: print(line, file=sys.stderr) if world.is_main else None)
    workers = workers or default_workers()
    if not is_count(seeds, 2):
        raise FptError(f"--seeds must be an integer >= 2 (paired intervals need two seeds at least), got {seeds!r}")
    base: dict[str, Any] = {"model": model, "patience": patience, "time_budget": time_budget, **(extra or {})}
    if steps is not None:
        base["steps"] = steps
    cfg = build_config({"task": task, "task_options": dict(task_options or {}), **base})  # every flag checked
    built_task = build_task(cfg.task, cfg.task_options, cfg.data_seed, data_dir(cfg))
    spec = built_task.spec
    # typed as the task reads them, so that n_bits=5 from the command line and from Python are one setting
    entry = resolve(cfg.task)
    parsed = parse_options(entry.options, cfg.task_options, cfg.task)
    typed_options = {k: getattr(parsed, k) for k in cfg.task_options}
    contenders = choose_contenders(arms, spec.objective)
    if lrs:
        contenders = [c if c.once else dataclasses.replace(c, lrs=tuple(float(lr) for lr in lrs)) for c in contenders]
    skipped, capped, expected, overhead = {}, 0.0, 0.0, 0.0
    threads = threads_per_run(workers, world.size)
    reference = Probe()  # fpt's, probed first
    for c in list(contenders):
        # its runs' config as the sweep will build it (not cfg.to_dict(), whose explicit trained groups would
        # stand over the contender's method: full fine-tuning was probed training FPT's groups, 4x too cheap)
        run_config = build_config({"task": task, "task_options": dict(task_options or {}), **base, **c.settings})
        found = probe(c, built_task, run_config, threads)
        if c.name == REFERENCE:
            reference = found
        elif c.repeats is not None and not found.reason and (why := c.repeats(reference, found)):
            found = Probe(why)
        if found.reason:
            if c.name == REFERENCE:
                raise FptError(f"fpt compare: the FPT arm itself cannot run on this task: {found.reason}")
            skipped[c.name] = found.reason
            contenders.remove(c)
            continue
        capped += found.run_seconds * (len(c.lrs) + seeds - 1)
        share = 1.0 if c.once else early_stop_share(run_config)
        expected += found.run_seconds * (share * seeds + PRUNED_SHARE * (len(c.lrs) - 1))
        overhead += RUN_OVERHEAD_SECONDS * (len(c.lrs) + seeds - 1)
    out = Path(out or Path("runs") / "compare" / f"{task_label(cfg.task)}-{Path(model.rstrip('/')).name}")
    spec_yaml = plan(cfg.task, typed_options, contenders, seeds, base)
    runs = sum(len(c.lrs) + seeds - 1 for c in contenders)
    say(f"compare: {len(contenders)} contender{'s' if len(contenders) != 1 else ''} "
        f"({', '.join(c.name for c in contenders)}) x their lrs on seed 0, then {seeds - 1} more seeds at each "
        f"chosen lr: {runs} runs on {workers} worker(s) -> {out}")
    # A step is timed on the threads each run will get, so the runs side by side (one per worker, up to one per
    # core) divide both their training and their overhead. (Timed on every core, with the sum not divided, the
    # first SmolLM2 bit-xor card was put at 2.8x its real time.)
    side_by_side = max(1, min(workers * world.size, os.cpu_count() or 1))
    expected, capped, overhead = expected / side_by_side, capped / side_by_side, overhead / side_by_side
    estimate = _duration(expected + overhead)
    say(f"compare: about {estimate} on this machine (every run to its step cap: "
        f"{_duration(capped + overhead)}; timed from a training step of each contender (Adam's update included, "
        f"a batch of the task's mean size) on {threads} thread(s) per run, early stopping assumed to end runs "
        f"midway between their first chance to stop and their cap, pruned lr runs at {PRUNED_SHARE:.0%})")
    for name, reason in skipped.items():
        say(f"compare: skipping {name}: {reason}")
    if dry_run:
        return None
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "compare.yaml"
    atomic_write(spec_path, yaml.safe_dump(spec_yaml, sort_keys=False).encode())
    started = time.perf_counter()
    failed = sweep(spec_path, out, workers=workers, progress=progress and world.is_main)
    path = out / "report" / "REPORT.md"
    if world.is_main:
        path = report([out], out / "report", command=f"fpt compare --task {task} (see compare.yaml)")
    result = verdict(collect([out])[0], skipped, path, failed)
    if world.is_main:
        text = path.read_text()
        lines = card(result, time.perf_counter() - started, estimate)
        atomic_write(path, ("\n".join(lines) + "\n" + text).encode())
    return result


def default_workers() -> int:
    """Runs side by side when none are asked for: on a CPU one per core, up to 4 (each run gets its share
    of the cores; on 2 cores, two one-threaded bit-xor runs train 1.4x faster than one after the other on
    both cores: `fpt train --task bit-xor --steps 200` trained 18 s each side by side against 12.5 s alone,
    the 2-core EPYC, 2026-12-03); where a GPU trains, 1 (its runs would queue on it; torchrun spreads a
    comparison over several)."""
    import torch

    return 1 if torch.cuda.is_available() else max(1, min(os.cpu_count() or 1, 4))


def _duration(seconds: float) -> str:
    seconds = round(seconds)  # whole seconds first: 539.6 s reads 9 min 00 s, never 8 min 60 s
    if seconds >= 5400:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    return f"{int(seconds // 60)} min {seconds % 60:02d} s" if seconds >= 90 else f"{seconds} s"


def verdict(rows: list[Row], skipped: dict[str, str], path: Path, failed: list[str]) -> Comparison:
    """The comparison's table and sentences from the runs' result files."""
    arenas = arena.choose(rows)
    if len(arenas) != 1:
        raise FptError(f"fpt compare: expected one task and setting in the sweep, found {len(arenas)}")
    arms = next(iter(arenas.values()))
    if REFERENCE not in arms:
        raise FptError("fpt compare: the FPT arm has no finished runs; see the logs in the sweep directory")
    kind = arms[REFERENCE].row.objective
    means = {name: mean_se(list(a.tests().values())) for name, a in arms.items()}
    ranked = sorted(means, key=lambda n: (-means[n][0], n != REFERENCE))  # FPT first among equals
    table = []
    for name in ranked:
        a = arms[name]
        results = a.row.results
        comparison = arena.paired(a, arms[REFERENCE]) if name != REFERENCE else None
        table.append({
            "contender": name, "lr": a.lr, "seeds": len(results), "score": kind.show_stats(*means[name]),
            "mean": means[name][0], "versus_fpt": kind.show_interval(comparison) if comparison else "-",
            "p": comparison.p if comparison else math.nan, "verdict": comparison.verdict if comparison else "reference",
            "train_seconds": mean_se([r["wall_seconds"] for r in results])[0],
            "train_gflops": mean_se([r.get("train_flops", {}).get("total", 0) / 1e9 for r in results])[0],
            "converged": converged(results), "once": trained_once(results[0]),
            "trainable_params": results[0]["trainable_params"]})
    by_name = {row["contender"]: row for row in table}
    lines = []
    for twin, question in (("random-init", "Does the language pretraining matter here?"),
                           ("no-lm", "Does the language model matter at all?")):
        if twin in by_name:
            c = arena.paired(arms[REFERENCE], arms[twin])  # FPT minus the twin: positive means FPT is better
            word = {"wins": "Yes: FPT beats", "loses": "No: FPT loses to", "tie": "Not shown: FPT ties with"}.get(
                c.verdict, "Not enough seeds to say: FPT against")
            lines.append(f"{question} {word} {twin} ({kind.show_interval(c)}, p = {c.p:.3f}).")
    if all("detection" in r for r in arms[REFERENCE].row.results):
        lines.insert(0, detection_sentence(arms))
    fpt_row = by_name[REFERENCE]
    top = [n for n in ranked if means[n][0] == means[ranked[0]][0]]  # every contender at the best mean
    if REFERENCE in top:
        others = [n for n in top if n != REFERENCE]
        lines.append(f"FPT has the best mean test score of {len(ranked)} contenders ({fpt_row['score']})"
                     + (f", equalled by {', '.join(others)}." if others else "."))
    else:
        best = by_name[top[0]]
        lines.append(f"The best contender is {' = '.join(top)} ({best['score']}, verdict against FPT: "
                     f"{best['verdict']}); FPT ranks {ranked.index(REFERENCE) + 1} of {len(ranked)} "
                     f"({fpt_row['score']}).")
    # the cheapest contender at least as good as FPT by the verdict (ties included), for the cost
    rivals = [r for r in table if r["contender"] != REFERENCE and r["verdict"] in ("wins", "tie")]
    if rivals:
        cheap = min(rivals, key=lambda r: r["train_seconds"])
        lines.append(f"Cost: FPT trained {fpt_row['train_seconds']:.0f} s and {fpt_row['train_gflops']:,.0f} GFLOPs "
                     f"per run; the cheapest contender that FPT does not beat, {cheap['contender']} "
                     f"({cheap['verdict']}), {cheap['train_seconds']:.0f} s and {cheap['train_gflops']:,.0f} GFLOPs.")
    else:
        lines.append(f"Cost: FPT trained {fpt_row['train_seconds']:.0f} s and {fpt_row['train_gflops']:,.0f} GFLOPs "
                     "per run, and beats every other contender.")
    limits = [f"{r['contender']} converged in {r['converged']} of {r['seeds']} seeds" for r in table
              if r["converged"] != r["seeds"]]
    limits += [f"{r['contender']} has {r['seeds']} seed(s) of {fpt_row['seeds']}" for r in table
               if r["seeds"] < fpt_row["seeds"]]
    limits += [f"{name} skipped: {why}" for name, why in skipped.items()]
    limits += [f"{len(failed)} run(s) failed: {', '.join(failed[:3])}"] if failed else []
    lines.append("Limits: " + ("; ".join(limits) if limits else "every contender converged in every seed") + ".")
    results = [r for row in rows for r in row.results]
    span, busy = run_time(rows)
    return Comparison(lines, table, skipped, path, failed, span, busy, len(results),
                      sum(bool(r.get("pruned")) for r in results))


def detection_sentence(arms: dict[str, arena.Arm]) -> str:
    """Anomaly detection's own verdict, from the runs' `detection` records (fpt.tasks.anomaly): AUC-PR on the
    test points, each contender paired against FPT by seed, beside the baselines scored on the same points.
    The card's table ranks the reconstruction MSE, which is not the detection question."""
    from fpt.experiments import stats

    def auc(arm: arena.Arm) -> dict[int, float]:
        return {r["seed"]: 100 * r["detection"]["model"]["auc_pr"] for r in arm.row.results if "detection" in r}

    reference = auc(arms[REFERENCE])
    parts = []
    for name, arm in sorted(arms.items(), key=lambda item: -mean_se(list(auc(item[1]).values()) or [math.nan])[0]):
        ours = auc(arm)
        if not ours:
            continue
        mean = mean_se(list(ours.values()))[0]
        if name == REFERENCE:
            parts.append(f"{name} {mean:.1f}")
            continue
        c = stats.paired([ours[s] - reference[s] for s in sorted(ours.keys() & reference.keys())])
        parts.append(f"{name} {mean:.1f} ({c.verdict if c.n > 1 else 'n=1'} against FPT)")
    first = arms[REFERENCE].row.results
    baselines = ", ".join(f"{name} {100 * mean_se([r['detection'][name]['auc_pr'] for r in first])[0]:.1f}"
                          for name in ("random", "isolation-forest", "pca"))
    return (f"Which contender detects the anomalies? AUC-PR (%) on the test points, no threshold: {'; '.join(parts)}; "
            f"without a model, on the same points: {baselines}. The sentences and table below compare the reconstruction "
            "MSE, not detection; F1 under each threshold and adjustment is in the report's anomaly section.")


def card(result: Comparison, seconds: float, estimate: str = "") -> list[str]:
    """The verdict card: the sentences, then one small table, at the top of REPORT.md."""
    rows = ["| contender | test score | vs FPT (paired, 95% interval) | p | verdict | converged | train s | lr |",
            "|---|---|---|---|---|---|---|---|"]
    for r in result.table:
        p = "-" if math.isnan(r["p"]) else f"{r['p']:.3f}"
        converged = r["once"] or f"{r['converged']} of {r['seeds']}"
        rows.append(f"| {r['contender']} | {r['score']} | {r['versus_fpt']} | {p} | {r['verdict']} | "
                    f"{converged} | {r['train_seconds']:.0f} | {'-' if r['once'] else r['lr']} |")
    span = run_time_sentence(result.span_seconds, result.busy_seconds)
    pruned = (f" {result.pruned} of the {result.runs} runs were lr-search runs stopped early behind a sibling "
              "lr's validation curve (pruned; never the chosen lr)." if result.pruned else "")
    return ["## Verdict", "", *(f"- {line}" for line in result.verdict), "", *rows, "",
            f"{span}this invocation of `fpt compare` took {_duration(seconds)}"
            f"{f' (estimate printed at its start: about {estimate})' if estimate else ''}.{pruned}", ""]


def run_time_sentence(span: float, busy: float) -> str:
    """The card's words for how long the runs took: busy time, and the span too where they differ."""
    if not span:
        return ""
    sentence = (f"The runs ran for {_duration(busy)} of wall-clock time (the union of their start-to-end intervals, "
                "from their result files' finished_at less wall_seconds)")
    if span > 1.05 * busy:   # gaps: setup between runs, or the hours before a resumed invocation
        sentence += (f", spread over {_duration(span)} from the first start to the last end (the rest is time when "
                     "no run was training: loading, probes, or the gap before a resumed invocation)")
    return sentence + "; "


def run_time(rows: list[Row]) -> tuple[float, float]:
    """(span, busy) seconds of the runs behind the rows: span from the earliest start (finished_at -
    wall_seconds) to the latest end; busy the length of the union of the runs' intervals, which leaves
    out the hours between a compare and its resumption."""
    from datetime import datetime

    intervals = []
    for row in rows:
        for r in row.results:
            try:
                end = datetime.strptime(r["finished_at"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
            except (KeyError, ValueError):
                continue
            intervals.append((end - r.get("wall_seconds", 0.0), end))
    if not intervals:
        return 0.0, 0.0
    intervals.sort()
    busy, (start, end) = 0.0, intervals[0]
    for a, b in intervals[1:]:
        if a > end:                       # a gap: close the merged interval
            busy, start = busy + end - start, a
        end = max(end, b)
    busy += end - start
    return end - intervals[0][0], busy
