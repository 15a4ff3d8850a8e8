"""`fpt sweep SPEC.yaml --out DIR`: a grid of training runs, resumable, on several workers.

A spec is YAML:

    description: what question the sweep answers, and the command that runs it
    base:      {steps: 1000, eval_every: 25}       # TrainConfig keys shared by every run
    grid:      {lr: [1.0e-3], seed: [0, 1, 2]}     # TrainConfig keys -> lists; the product is the grid
                                                   # (task_options.KEY: one task option, e.g. a horizon)
    variants:                                      # optional named settings, crossed with the grid
      fpt:    {}
      random: {init: random}
      full:   {method: full, grid: {lr: [1.0e-5, 1.0e-4]}}  # a variant's own values for grid keys
    per_task:  {remote-homology: {lr: 1.0e-4}}     # optional settings for runs of one task
    paper:     {table: table2, rows: {fpt: language (FPT), random: random}}  # optional, for `fpt report`
    arena:     {reference: fpt, lr_seeds: [0]}     # optional: lr chosen per arm on validation, paired verdicts;
                                                   # lr_seeds: every lr on these seeds, the rest at the chosen lr;
                                                   # prune: true: an lr run stops once behind a sibling
                                                   # lr's validation curve (train's --prune-against)
    tiny:      {steps: 4, eval_every: 2}           # optional: `--tiny` shrinks every run to a smoke test
    workers:   2

Precedence, lowest first: base, variant, per_task, grid values, tiny, --set.

Each run trains in its own process (fpt.experiments.workers: forked from a server that has
torch imported) into DIR/runs/NAME with --resume, so killing
the sweep and starting it again skips finished runs and continues unfinished
ones from their last checkpoint. DIR/index.json maps run names to their variant
and grid values; `fpt report DIR` reads only that and the runs' result files.

Under torchrun (`torchrun --nproc-per-node N -m fpt sweep ...`), each of the N ranks
runs every N-th unfinished run, each on its own GPU (cuda:LOCAL_RANK), and the ranks
wait for each other at the end: one sweep spread over N devices.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml
from tqdm import tqdm

from fpt.experiments.workers import Worker, start
from fpt.storage.files import atomic_write, atomic_write_json
from fpt.run.config import build_config, check_keys, resumable_fields, saved_settings
from fpt.run.distributed import World, launched_world
from fpt.errors import FptError

# What torchrun tells its processes; a sweep's training runs are single-process runs.
LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
                      "ROLE_WORLD_SIZE", "GROUP_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

SPEC_KEYS = {"description", "base", "grid", "variants", "per_task", "paper", "workers", "tiny", "arena", "exclude"}


@dataclass(frozen=True)
class Run:
    name: str
    variant: str
    values: dict[str, Any]   # the grid values of this run
    config: dict[str, Any]   # the full TrainConfig overrides (base <- variant <- grid values)


@dataclass
class SweepSpec:
    description: str = ""
    base: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = field(default_factory=lambda: {"default": {}})
    per_task: dict[str, dict[str, Any]] = field(default_factory=dict)
    paper: dict[str, Any] = field(default_factory=dict)
    arena: dict[str, Any] = field(default_factory=dict)  # the arena protocol in the report (fpt.experiments.arena)
    workers: int = 1
    tiny: dict[str, Any] = field(default_factory=dict)  # overrides that shrink every run to a smoke test
    # grid points not run, each a mapping of grid keys to values (all must match), e.g. a few-shot cut
    # that leaves no training window: [{task_options.train_fraction: 0.05, task_options.horizon: 720}]
    exclude: list[dict[str, Any]] = field(default_factory=list)

    def runs(self, tiny: bool = False, overrides: dict[str, Any] | None = None) -> list[Run]:
        """Every (variant, grid point) run; `tiny` shrinks them, `overrides` win over everything."""
        keys = list(self.grid)
        runs = []
        for variant, settings in self.variants.items():
            grid = {**self.grid, **(settings.get("grid") or {})}  # a variant may have its own values (lrs)
            settings = {k: v for k, v in settings.items() if k != "grid"}
            for combo in itertools.product(*(grid[k] for k in keys)):
                values = dict(zip(keys, combo))
                if excluded(values, self.exclude):
                    continue
                task = values.get("task", settings.get("task", self.base.get("task")))
                layers = [self.base, settings, self.per_task.get(task, {}), values, self.tiny if tiny else {},
                          overrides or {}]
                config = {k: v for layer in layers for k, v in layer.items() if not k.startswith(TASK_OPTION)}
                # task options merge key by key: a grid over task_options.horizon keeps base's path
                options = {k: v for layer in layers for k, v in (layer.get("task_options") or {}).items()}
                options.update({k[len(TASK_OPTION):]: v for layer in layers for k, v in layer.items()
                                if k.startswith(TASK_OPTION)})
                if options:
                    config["task_options"] = options
                runs.append(Run(_run_name(variant, values), variant, values, config))
        return runs


TASK_OPTION = "task_options."  # grid key prefix for one task option, e.g. task_options.horizon: [96, 192]


def excluded(point: dict[str, Any], exclude: list[dict[str, Any]]) -> bool:
    """Whether a grid point matches an entry of a spec's `exclude` (every key the entry gives, equal)."""
    return any(all(point.get(k) == v for k, v in entry.items()) for entry in exclude)


def _run_name(variant: str, values: dict[str, Any]) -> str:
    parts = [variant] + [f"{k.removeprefix(TASK_OPTION)}={Path(str(v)).stem if k == 'task' else v}"
                         for k, v in values.items()]
    return "__".join(parts).replace("/", "-").replace(" ", "")


def load_spec(path: str | Path) -> SweepSpec:
    """Parse and check a sweep spec; every run's config is validated before anything runs."""
    path = Path(path)
    if not path.is_file():
        raise FptError(f"no such sweep spec '{path}'")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise FptError(f"cannot read sweep spec '{path}' as YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise FptError(f"sweep spec '{path}' must be a mapping with keys {sorted(SPEC_KEYS)}")
    unknown = set(data) - SPEC_KEYS
    if unknown:
        raise FptError(f"sweep spec '{path}': unknown key(s) {sorted(unknown)}; allowed: {sorted(SPEC_KEYS)}")
    for key in ("base", "grid", "variants", "per_task", "tiny", "paper", "arena"):
        if not isinstance(data.get(key) or {}, dict):
            raise FptError(f"sweep spec '{path}': {key} must be a mapping, got {type(data[key]).__name__}")
    for key in ("variants", "per_task"):
        for name, settings in (data.get(key) or {}).items():
            if not isinstance(settings or {}, dict):
                raise FptError(f"sweep spec '{path}': {key}.{name} must be a mapping of settings")
    spec = SweepSpec(**{k: v for k, v in data.items() if v is not None})
    for key, values in spec.grid.items():
        if not isinstance(values, list) or not values:
            raise FptError(f"sweep spec '{path}': grid.{key} must be a non-empty list")
    if not isinstance(spec.workers, int) or spec.workers < 1:
        raise FptError(f"sweep spec '{path}': workers must be a positive integer")
    for where, mapping in [("base", spec.base), ("grid", spec.grid), ("tiny", spec.tiny),
                           *((f"variants.{n}", {k: x for k, x in (v or {}).items() if k != "grid"})
                             for n, v in spec.variants.items()),
                           *((f"per_task.{n}", v or {}) for n, v in spec.per_task.items())]:
        check_keys([k for k in mapping if not k.startswith(TASK_OPTION)], f"'{path}' ({where})")
    spec.variants = {n: (v or {}) for n, v in spec.variants.items()}
    for name, settings in spec.variants.items():
        own = settings.get("grid")
        if own is None:
            continue
        if not isinstance(own, dict) or not own or not set(own) <= set(spec.grid) or \
                not all(isinstance(v, list) and v for v in own.values()):
            raise FptError(f"sweep spec '{path}': variants.{name}.grid must map keys of the spec's grid "
                           f"({', '.join(spec.grid) or 'none'}) to non-empty lists, got {own!r}")
    if not isinstance(spec.exclude, list) or not all(isinstance(p, dict) and p and set(p) <= set(spec.grid)
                                                      for p in spec.exclude):
        raise FptError(f"sweep spec '{path}': exclude must be a list of mappings from keys of the spec's grid "
                       f"({', '.join(spec.grid) or 'none'}) to the values of a grid point, got {spec.exclude!r}")
    _check_arena(spec, path)
    return spec


ARENA_KEYS = {"reference", "lr_seeds", "prune"}


def _check_arena(spec: SweepSpec, path: Path) -> None:
    unknown = set(spec.arena) - ARENA_KEYS
    if unknown:
        raise FptError(f"sweep spec '{path}': unknown arena key(s) {sorted(unknown)}; allowed: {sorted(ARENA_KEYS)}")
    reference = spec.arena.get("reference")
    if reference is not None and reference not in spec.variants:
        raise FptError(f"sweep spec '{path}': arena.reference '{reference}' is not a variant; "
                       f"variants: {sorted(spec.variants)}")
    if not isinstance(spec.arena.get("prune", False), bool):
        raise FptError(f"sweep spec '{path}': arena.prune must be true or false, got {spec.arena['prune']!r}")
    lr_seeds = spec.arena.get("lr_seeds")
    if lr_seeds is not None:
        if not isinstance(lr_seeds, list) or not lr_seeds or not all(isinstance(s, int) for s in lr_seeds):
            raise FptError(f"sweep spec '{path}': arena.lr_seeds must be a non-empty list of seeds, e.g. [0]")
        if "lr" not in spec.grid or "seed" not in spec.grid:
            raise FptError(f"sweep spec '{path}': arena.lr_seeds needs lr and seed in the grid")
        if not set(lr_seeds) <= set(spec.grid["seed"]):
            raise FptError(f"sweep spec '{path}': arena.lr_seeds {lr_seeds} must be seeds of grid.seed "
                           f"{spec.grid['seed']}")


def check_runs(runs: list[Run], where: str) -> None:
    """Validate every run's config and task options now (no data is read), naming the run,
    rather than failing after hours."""
    from fpt.tasks import parse_options, resolve

    for run in runs:
        try:
            cfg = build_config(dict(run.config))
            entry = resolve(cfg.task)
            if entry.data_file is None:  # a data file's options are checked with its arrays
                parse_options(entry.options, cfg.task_options, cfg.task)
        except FptError as err:
            raise FptError(f"{where}, run {run.name}: {err}") from None


def changed_settings(run_dir: Path, config: dict[str, Any]) -> list[str] | None:
    """None if the run has no result; else each setting its result was made with that differs from
    these, as 'key: was X, now Y' (a data file named by two spellings of its path is one setting)."""
    result_file = run_dir / "result.json"
    if not result_file.exists():
        return None
    saved = saved_settings(json.loads(result_file.read_text()).get("config", {}))
    wanted = build_config(dict(config)).to_dict()
    ignore = resumable_fields() - {"steps"}  # what may differ without changing the result
    return [f"{key}: was {saved.get(key)!r}, now {value!r}" for key, value in wanted.items()
            if key not in ignore and not _same_setting(saved.get(key), value)]


def _same_setting(saved: Any, wanted: Any) -> bool:
    """Equal, or task options equal once each path to an existing file is read as that file."""
    if isinstance(saved, dict) and isinstance(wanted, dict) and saved.keys() == wanted.keys():
        return all(saved[k] == wanted[k] or _same_file(saved[k], wanted[k]) for k in wanted)
    return saved == wanted


def _same_file(a: Any, b: Any) -> bool:
    if not (isinstance(a, str) and isinstance(b, str)):
        return False
    try:
        return Path(a).is_file() and Path(b).is_file() and Path(a).samefile(b)
    except OSError:
        return False


def sweep(spec_path: str | Path, out: str | Path, workers: int | None = None, tiny: bool = False,
          overrides: dict[str, Any] | None = None, limit: int | None = None, progress: bool = True,
          only: list[str] | None = None) -> list[str]:
    """Run every run of the spec not yet finished; return the names of runs that failed.

    tiny: apply the spec's `tiny` overrides (a smoke test); overrides: KEY=VALUE for every run;
    limit: only the first N runs of the grid; only: only runs whose name matches one of these
    shell patterns (e.g. 'linear__*'). The index lists the whole grid either way, so that runs
    made by several partial invocations all reach the report.
    """
    spec = load_spec(spec_path)
    out = Path(out)
    check_keys(list(overrides or {}), "--set")
    grid = spec.runs(tiny=tiny, overrides=overrides)
    runs = [r for r in grid if not only or any(fnmatch.fnmatchcase(r.name, p) for p in only)][:limit]
    if not runs:
        raise FptError(f"--only {' '.join(only or [])}: no run of the grid matches; its runs are named like "
                       f"{grid[0].name}")
    check_runs(runs, f"sweep spec '{spec_path}'")
    changes = {r.name: changed_settings(out / "runs" / r.name, r.config) for r in runs}
    done = {name: None if changed is None else not changed for name, changed in changes.items()}
    stale = [name for name, same in done.items() if same is False]
    if stale:  # refused before anything in the sweep directory is touched
        raise FptError(f"{len(stale)} finished run(s) in '{out}' were made with other settings (e.g. {stale[0]}: "
                       f"{'; '.join(changes[stale[0]])}; the spec, --set, --tiny or fpt's defaults changed; pin old "
                       "defaults in the spec's base); use another --out or delete those runs")
    (out / "configs").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    atomic_write(out / "sweep.yaml", Path(spec_path).read_bytes())
    atomic_write_json(out / "index.json", {r.name: {"variant": r.variant, "values": r.values} for r in grid})
    unfinished = sum(not d for d in done.values())
    world = launched_world()
    if world.parallel:
        _join(world)
    # Under torchrun each rank owns every size-th run of the grid, whatever has finished meanwhile.
    todo = [r for r in runs[world.rank::world.size] if not done[r.name]]
    workers = workers or spec.workers
    share = f" ({len(todo)} of them on rank {world.rank} of {world.size})" if world.parallel else ""
    lr_seeds = spec.arena.get("lr_seeds")
    total = len(runs) if lr_seeds is None else _arena_runs(runs, lr_seeds)  # the runs that will exist in the end
    finished = len(runs) - unfinished
    arena_note = (f" ({len(runs)} in the grid: every lr on seed(s) {lr_seeds}, the other seeds at each arm's chosen "
                  "lr only)" if total < len(runs) else "")
    print(f"sweep: {total} runs{arena_note}, {finished} already finished, {max(total - finished, 0)} to run{share} "
          f"on {workers} worker(s) -> {out}", file=sys.stderr)
    if todo and world.is_main:
        for line in host_changes(out, grid, todo):
            print(f"sweep: warning: {line}", file=sys.stderr)
    threads = threads_per_run(workers, world.size)
    bar = tqdm(total=total, initial=min(finished, total), desc="runs", disable=not progress,
               file=sys.stderr)
    try:
        if lr_seeds is None:
            failed = _run_queue(todo, out, workers, threads, world, bar)
        else:  # the arena's two stages: every lr on the lr seeds, then the other seeds at each arm's chosen lr
            first = [r for r in todo if _seed(r) in lr_seeds]
            prune = bool(spec.arena.get("prune"))
            rivals = (lambda run: [str(out / "runs" / r.name) for r in _siblings(run, runs)]) if prune else None
            failed = _run_queue(_middle_lr_first(first) if prune else first, out, workers, threads, world, bar, rivals)
            if world.parallel:  # every rank's lr runs must be finished before any rank chooses
                import torch.distributed as dist
                dist.barrier()
            chosen = chosen_lrs(runs, out, lr_seeds)
            second = [r for r in todo if _seed(r) not in lr_seeds and chosen.get(_lr_group(r)) == _lr(r)]
            skipped = len(todo) - len(first) - len(second)
            print(f"sweep: learning rates chosen on seed(s) {lr_seeds}: {len(second)} run(s) at the chosen lrs "
                  f"to run, {skipped} at other lrs skipped", file=sys.stderr)
            failed += _run_queue(second, out, workers, threads, world, bar)
    finally:
        bar.close()
    return failed if not world.parallel else _after_every_rank(failed, world)


def host_changes(out: Path, runs: list[Run], todo: list[Run]) -> list[str]:
    """What differs between the hosts the sweep's finished runs trained on and this one: other machines
    (their timings are not this host's), and runs at precision auto that trained in bf16 on a host with
    bf16 in hardware where this host would train the runs to do in fp32 (one table would mix precisions;
    a baseline that replaces the whole model trains in fp32 anywhere)."""
    from fpt.catalog import lookup
    from fpt.precision import native_bf16, resolve_device
    from fpt.provenance import machine

    def with_backbone_at_auto(run: Run) -> bool:
        cfg = build_config(dict(run.config))
        named = lookup(cfg.model)
        return cfg.precision == "auto" and not (named and named.whole_model)

    here = machine()
    hosts: dict[str, int] = {}
    in_bf16 = 0
    for run in runs:
        result_file = out / "runs" / run.name / "result.json"
        if not result_file.exists():
            continue
        result = json.loads(result_file.read_text())
        host = result.get("machine")
        if host and host != here:
            hosts[host] = hosts.get(host, 0) + 1
        in_bf16 += result.get("precision") == "bf16" and result.get("config", {}).get("precision") == "auto"
    lines = [f"{n} finished run(s) trained on {host}; this host is {here}: the report names both, and their "
             "train seconds are not comparable" for host, n in hosts.items()]
    if in_bf16 and any(map(with_backbone_at_auto, todo)) and not native_bf16(resolve_device("auto")):
        lines.append(f"{in_bf16} finished run(s) at precision auto trained in bf16 (their host has bf16 in hardware); "
                     "this host has not, so the rest would train in fp32 and one table would mix precisions: finish "
                     "the sweep on a host like theirs, or pin the precision in the spec's base and use a new --out")
    return lines


def threads_per_run(workers: int, ranks: int = 1) -> int:
    """The torch threads each run gets: its share of this machine's cores, one at least."""
    return max(1, (os.cpu_count() or 1) // (workers * ranks))


def _run_queue(todo: list[Run], out: Path, workers: int, threads: int, world: World, bar: tqdm,
               rivals: Callable[[Run], list[str]] | None = None) -> list[str]:
    """Train these runs, `workers` at a time, each in its own process; return the names that failed.

    rivals (an lr search that prunes): a run's siblings, given to it as --prune-against; a run whose
    sibling is training waits while another run can start, so that the sibling's curve is ahead of it."""
    failed: list[str] = []
    running: dict[str, tuple[Run, Worker]] = {}
    queue = list(todo)
    try:
        while queue or running:
            while queue and len(running) < workers:
                run = _next(queue, [r for r, _ in running.values()]) if rivals else queue.pop(0)
                against = rivals(run) if rivals else []
                extra = {"prune_against": ",".join(against)} if against else {}
                running[run.name] = run, _launch(run, out, threads, world, extra)
                bar.set_postfix_str(", ".join(running), refresh=True)
            time.sleep(0.2)
            for name, (_, proc) in list(running.items()):
                code = proc.poll()
                if code is not None:
                    del running[name]
                    bar.update(1)
                    if code != 0:
                        failed.append(name)
                        print(f"sweep: run {name} failed (exit {code}); see {out}/logs/{name}.log", file=sys.stderr)
    finally:
        for _, proc in running.values():  # interrupted: stop workers; their runs resume next time
            proc.terminate()
        for _, proc in running.values():
            proc.wait()
    return failed


def _next(queue: list[Run], running: list[Run]) -> Run:
    """The first queued run none of whose siblings (its lr group, on its seed) is training; else the first."""
    busy = {(_lr_group(r), _seed(r)) for r in running}
    for i, run in enumerate(queue):
        if (_lr_group(run), _seed(run)) not in busy:
            return queue.pop(i)
    return queue.pop(0)


def _middle_lr_first(runs: list[Run]) -> list[Run]:
    """Each lr group's middle lr (of 2, the larger) before its others: the paper's 1e-3 in the default
    grids, the likeliest winner, whose curve then prunes the rest."""
    lrs: dict[tuple[str, Any], list[Any]] = {}
    for r in runs:
        lrs.setdefault((_lr_group(r), _seed(r)), []).append(_lr(r))
    middle = {key: sorted(values)[len(values) // 2] for key, values in lrs.items()}
    return sorted(runs, key=lambda r: _lr(r) != middle[(_lr_group(r), _seed(r))])  # stable: grid order within


def _siblings(run: Run, runs: list[Run]) -> list[Run]:
    """The runs of `run`'s lr group on its seed at other lrs: finished, training or still to start (the run
    reads their curves at each evaluation, so one that starts later still counts)."""
    key = (_lr_group(run), _seed(run))
    return [r for r in runs if r.name != run.name and (_lr_group(r), _seed(r)) == key]


def _arena_runs(runs: list[Run], lr_seeds: list[int]) -> int:
    """How many runs an arena sweep trains: every lr on the lr seeds, one lr per arm on the others."""
    others = {(_lr_group(r), _seed(r)) for r in runs if _seed(r) not in lr_seeds}
    return sum(_seed(r) in lr_seeds for r in runs) + len(others)


def _seed(run: Run) -> Any:
    return run.values.get("seed", run.config.get("seed", 0))


def _lr(run: Run) -> Any:
    return run.values.get("lr", run.config.get("lr"))


def _lr_group(run: Run) -> str:
    """The runs that compete for one lr: the same variant and grid values but lr and seed."""
    rest = {k: v for k, v in run.values.items() if k not in ("lr", "seed")}
    return json.dumps([run.variant, rest], sort_keys=True, default=str)


def chosen_lrs(runs: list[Run], out: Path, lr_seeds: list[int]) -> dict[str, Any]:
    """Per lr group, the lr whose finished runs on the lr seeds have the best mean validation score."""
    scores: dict[str, dict[Any, list[float]]] = {}
    for run in runs:
        if _seed(run) not in lr_seeds:
            continue
        result = out / "runs" / run.name / "result.json"
        if result.exists():
            score = json.loads(result.read_text()).get("best_val", {}).get("score")
            if score is not None and not math.isnan(score):  # NaN never wins
                scores.setdefault(_lr_group(run), {}).setdefault(_lr(run), []).append(score)
    return {group: max(by_lr, key=lambda lr: sum(by_lr[lr]) / len(by_lr[lr])) for group, by_lr in scores.items()}


def _join(world: World) -> None:
    """A CPU process group for the end-of-sweep handshake. Ranks may finish hours apart, so the
    group waits for days rather than the default 30 minutes."""
    import datetime

    import torch.distributed as dist

    dist.init_process_group(backend="gloo", timeout=datetime.timedelta(days=30))


def _after_every_rank(failed: list[str], world: World) -> list[str]:
    """Wait for the other ranks' runs; return the failed runs of every rank."""
    import torch.distributed as dist

    try:
        every: list[list[str] | None] = [None] * world.size
        dist.all_gather_object(every, failed)
    finally:
        dist.destroy_process_group()
    return [name for names in every for name in names or []]


def _launch(run: Run, out: Path, threads: int, world: World = World(),
            extra: dict[str, Any] | None = None) -> Worker:
    config = {**run.config, **(extra or {}), "out": str(out / "runs" / run.name), "resume": True, "progress": False}
    config_path = out / "configs" / f"{run.name}.yaml"
    atomic_write(config_path, yaml.safe_dump(config, sort_keys=False).encode())
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if world.parallel:  # one device per rank: the run sees only this rank's GPU as cuda:0
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = visible.split(",") if visible else [str(world.local_rank)]
        env["CUDA_VISIBLE_DEVICES"] = devices[world.local_rank % len(devices)]
    return start(["train", "--config", str(config_path)], out / "logs" / f"{run.name}.log", env, threads)
