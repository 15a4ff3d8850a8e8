"""Training, top to bottom: setup -> (resume) -> fit -> test -> result.json.

What the run directory holds, and when a run may be resumed, is `fpt.run.rundir`'s business.

Determinism: the batch of step t is a pure function of (seed, t), and the
global RNG (dropout) is re-seeded from (seed, t) before every step, so a run
resumed from its last checkpoint replays exactly the steps it would have run.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from fpt.arms import fitted
from fpt.errors import FptError
from fpt.groups import format_counts
from fpt.metrics import Metrics
from fpt.model import FPTModel
from fpt.objectives import Objective, objective
from fpt.saved import load_trained, save_adapter
from fpt.run import distributed, rundir
from fpt.run.cached_features import cached, can_cache
from fpt.run.config import LR_SCHEDULES, TrainConfig
from fpt.run.loggers import Logger, make_loggers
from fpt.run.rundir import TrainState
from fpt.run.setup import Setup, describe, setup
from fpt.storage.files import append_jsonl, atomic_write_json, exclusive
from fpt.tasks.base import Batch, derive_seed


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@torch.no_grad()
def evaluate(built: Setup, split: str, batch_size: int) -> dict[str, float]:
    """One full pass over `split`. Under torchrun the batches go round-robin to the ranks and the
    counts are summed; in the last round a rank without a batch of its own runs one uncounted,
    because under FSDP every rank takes part in every forward pass."""
    model, spec, world = built.model, built.task.spec, built.world
    was_training = model.training
    model.eval()
    metrics = Metrics(objective(spec.objective))
    for round_ in _rounds(built.task.eval_batches(split, batch_size), world.size):
        mine = world.rank < len(round_)
        batch = round_[world.rank if mine else 0].to(built.device)
        outputs = model(batch.x, batch.mask)
        if mine:
            metrics.update(outputs, batch.y)
    model.train(was_training)
    return distributed.merge_metrics(metrics, world, built.device, spec.n_outputs).compute()


@torch.no_grad()
def assess(built: Setup) -> dict[str, Any]:
    """The task's further results of the finished model (Task.assess: anomaly detection's metrics)."""
    model = built.model
    was_training = model.training
    model.eval()
    try:
        def quantiles(batch: Batch) -> tuple[list[float], torch.Tensor]:
            levels, values = model.forecast_quantiles(batch.x.to(built.device), batch.mask.to(built.device))
            return levels, values.cpu()

        probabilistic = getattr(model, "forecasts_quantiles", False)
        return built.task.assess(lambda batch: model(batch.x.to(built.device), batch.mask.to(built.device)).cpu(),
                                 quantiles if probabilistic else None)
    finally:
        model.train(was_training)


def _rounds(batches: Iterator[Batch], size: int) -> Iterator[list[Batch]]:
    """Consecutive groups of `size` batches (the last may be shorter)."""
    group: list[Batch] = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) the training described by `cfg`; return the result record.

    Under torchrun every rank calls this; rank 0 alone writes to the run directory.
    """
    world, rank_device = distributed.init(cfg.device)
    if world.parallel:
        if cfg.batch_size % (world.size * cfg.grad_accum):
            raise FptError(f"--batch-size {cfg.batch_size} does not split evenly into {world.size} processes x "
                           f"--grad-accum {cfg.grad_accum}; use a multiple of {world.size * cfg.grad_accum}")
        cfg = dataclasses.replace(cfg, device=rank_device)
    out, device = cfg.out_dir, torch.device(rank_device if world.parallel else "cpu")  # collectives' device
    finished = rundir.check_out_dir(cfg, out)
    if finished is not None:
        return finished
    fsdp = world.parallel and cfg.parallel == "fsdp"
    # Every input check happens in setup, before any write; rank 0 goes first (it alone downloads).
    built = dataclasses.replace(distributed.main_first(world, device, lambda: setup(cfg, on_device=not fsdp)),
                                world=world)
    if fsdp:
        distributed.shard_frozen_weights(built.model, built.device)
    with ExitStack() as lock:
        def claim() -> dict[str, Any] | None:  # rank 0 holds the directory; every rank looks again
            lock.enter_context(exclusive(out))
            return rundir.check_out_dir(cfg, out)  # another process may have finished it meanwhile

        finished = distributed.main_first(world, device, claim, lambda: rundir.check_out_dir(cfg, out))
        return finished if finished is not None else _train(built, out)


def _train(built: Setup, out: Path) -> dict[str, Any]:
    cfg, main = built.config, built.world.is_main
    say = log if main else _quiet
    say(describe(built) + (f" | {built.world.size} processes" if built.world.parallel else ""))
    say(format_counts(built.counts, built.info.position))
    if cfg.cache_features and can_cache(built):
        say("only the head trains: computing the frozen features once (--no-cache-features to recompute)")
        built = cached(built, cfg.batch_size * 4)
    trainable = [p for p in built.model.parameters() if p.requires_grad]
    if not trainable:  # fitted once (trees, MiniRocket), or nothing to learn (repeat-last): validated, tested
        state, best_params = rundir.start_or_resume(built, None, out)
        if fitted.fitted_head(built.model) is not None:
            state.wall_seconds = fitted.fit(built.model, built.task, cfg.seed, cfg.batch_size * 4, cfg.progress and main)
        else:
            say("nothing trains: validating and testing the model as built")
        state.best_val = evaluate(built, "val", cfg.batch_size * 4)
        if main:
            rundir.save_best(built, best_params, out, 0, state.best_val)
    else:
        optimizer = make_optimizer(trainable, cfg)
        state, best_params = rundir.start_or_resume(built, optimizer, out)
        if state.step:
            say(f"resumed {out} at step {state.step}")
        loggers = make_loggers(cfg.loggers, out, cfg.to_dict(), cfg.wandb_project) if main else []
        try:
            state, best_params = fit(built, optimizer, state, best_params, out, loggers)
        finally:
            for logger in loggers:
                logger.close()
        if state.pruned:
            say(f"stopped at step {state.step}: validation behind a --prune-against run's by the same step")

    load_trained(built.model, best_params, out / "model.safetensors")
    if main and isinstance(built.model, FPTModel):
        save_adapter(built.model, out)  # the peft arms' adapter, in peft's own format, beside fpt's files
        rundir.save_attention(built, out)
    test = evaluate(built, "test", cfg.batch_size * 4)
    result = rundir.result_record(built, state, test)
    variants = {name: test if built.task.is_test_itself(name) else evaluate(built, name, cfg.batch_size * 4)
                for name in built.task.test_variants()}
    if variants:
        result["test_variants"] = variants
    result.update(assess(built))
    if main:
        atomic_write_json(out / "result.json", result)
    distributed.barrier(built.world)  # no rank returns before the result is on disk
    padded = f" | padding {result['padding_fraction']:.1%} of tokens" if result["padding_fraction"] else ""
    say(f"test {_fmt(test)} | best val step {state.best_step} | {state.wall_seconds:.1f}s{padded} | "
        f"{out}/result.json")
    return result


def make_optimizer(trainable: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer every run trains with (fpt compare's probe times a step of the same)."""
    return torch.optim.Adam(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _quiet(message: str) -> None:
    """Ranks other than 0 print nothing: one log per run."""


def fit(built: Setup, optimizer: torch.optim.Optimizer, state: TrainState, best_params: dict[str, torch.Tensor],
        out: Path, loggers: Sequence[Logger] = ()) -> tuple[TrainState, dict[str, torch.Tensor]]:
    """The optimisation loop: train steps, periodic validation and checkpoints."""
    cfg, model, task, world = built.config, built.model, built.task, built.world
    kind = objective(task.spec.objective)
    trainable = [p for p in model.parameters() if p.requires_grad]
    # Under torchrun the trained parameters' gradients are averaged over the ranks' batch shards:
    # by DDP, or (with --parallel fsdp, whose frozen weights are sharded) by one all_reduce per step.
    ddp = world.parallel and cfg.parallel == "ddp"
    forward = distributed.data_parallel(model) if ddp else model
    window = Metrics(kind)  # training metrics since the last evaluation
    model.train()
    started = time.perf_counter() - state.wall_seconds
    bar = tqdm(total=cfg.steps, initial=state.step, desc=task.spec.name, disable=not (cfg.progress and world.is_main),
               dynamic_ncols=True, file=sys.stderr)
    for step in range(state.step, cfg.steps):
        if state.stopped_early or state.out_of_time or state.pruned:
            break
        torch.manual_seed(derive_seed("dropout", cfg.seed, step, *([world.rank] if world.rank else [])))
        batch = task.train_batch(step, cfg.batch_size, cfg.seed)
        state.tokens += batch.mask.numel()
        state.padding_tokens += int((~batch.mask).sum())
        optimizer.zero_grad(set_to_none=True)
        micro_batches = batch.split(world.size)[world.rank].split(cfg.grad_accum)
        # FLOPs of one step, counted once (not under FSDP, whose sharded tensors the counter does not see)
        count = not state.flops_per_step and not (world.parallel and cfg.parallel == "fsdp")
        counter = FlopCounterMode(display=False) if count else nullcontext()
        with counter:
            finite, loss = _accumulate(micro_batches, forward, built, world, ddp, cfg, kind, window)
        if isinstance(counter, FlopCounterMode):
            state.flops_per_step = int(counter.get_total_flops()) * world.size
        if not finite and cfg.nan_policy == "stop":
            raise FptError(
                f"the training loss became {loss.item()} at step {step + 1}; the last good checkpoint is kept "
                f"in {out}. Lower --lr (now {cfg.lr}) in a new --out, check the data for NaN/inf, or "
                "continue with --resume --nan-policy skip")
        if finite:
            if world.parallel and not ddp:
                distributed.average_gradients(trainable, world)
            if cfg.clip > 0:
                torch.nn.utils.clip_grad_norm_(trainable, cfg.clip)
            for group in optimizer.param_groups:  # a function of the step alone, so a resumed run continues it
                group["lr"] = cfg.lr * LR_SCHEDULES[cfg.lr_schedule](step / cfg.steps)
            optimizer.step()
        else:
            state.skipped_steps += 1
        bar.update(1)

        done = step + 1
        out_of_time = cfg.time_budget > 0 and distributed.any_across(
            time.perf_counter() - started >= cfg.time_budget, world, built.device)  # every rank stops together
        if done % cfg.eval_every == 0 or done == cfg.steps or out_of_time:
            val = evaluate(built, "val", cfg.batch_size * 4)
            train_stats = distributed.merge_metrics(window, world, built.device, task.spec.n_outputs).compute()
            window = Metrics(kind)
            if not state.best_val or val["score"] > state.best_val["score"]:
                state.best_val, state.best_step = val, done
                best_params = built.trained_state()
                if world.is_main:
                    rundir.save_best(built, best_params, out, done, val)
            if state.steps_to_threshold is None and val["score"] >= cfg.threshold:
                state.steps_to_threshold = done
            state.step = done
            # with --patience, a run also stops once validation is perfect: no later score can be better
            state.stopped_early = cfg.patience > 0 and (done - state.best_step >= cfg.patience * cfg.eval_every
                                                        or state.best_val["score"] >= kind.perfect)
            state.out_of_time = out_of_time
            # past a third of the cap, behind what a rival had reached by this step: this lr has lost. Under
            # torchrun the ranks may read a rival's growing curve at different moments: they stop together.
            behind = 3 * done >= cfg.steps and state.best_val["score"] < max(
                (_best_by(rundir.best_so_far(Path(d)), done) for d in cfg.rivals), default=-math.inf)
            state.pruned = bool(cfg.rivals) and distributed.any_across(behind, world, built.device)
            state.wall_seconds = time.perf_counter() - started
            if world.is_main:
                record = {"step": done, "train": train_stats, "val": val, "wall_seconds": round(state.wall_seconds, 3)}
                append_jsonl(out / "metrics.jsonl", record)
                for logger in loggers:
                    logger.log(done, record)
                rundir.save_last(built, optimizer, state, out)
            bar.set_postfix(loss=f"{train_stats['loss']:.4f}", **{k: f"{v:.4f}" for k, v in kind.progress(val).items()})
    bar.close()
    return state, best_params


def _best_by(curve: list[tuple[int, float]], step: int) -> float:
    """A rival's best validation score at or before `step` (its last, once its curve has ended; while it
    trains behind this run, the best it has so far)."""
    reached = [score for at, score in curve if at <= step]
    return reached[-1] if reached else -math.inf


def _accumulate(micro_batches: list[Batch], forward: torch.nn.Module, built: Setup, world: distributed.World,
                ddp: bool, cfg: TrainConfig, kind: Objective, window: Metrics) -> tuple[bool, torch.Tensor]:
    """Forward and backward over one step's micro-batches, gradients summed; (all losses finite, last loss)."""
    for i, micro in enumerate(micro_batches):
        micro = micro.to(built.device)
        outputs = forward(micro.x, micro.mask)
        loss = kind.loss(outputs, micro.y)
        if distributed.any_across(not math.isfinite(loss.item()), world, built.device):
            return False, loss
        sync_now = i == len(micro_batches) - 1 or not ddp
        with nullcontext() if sync_now else forward.no_sync():  # all-reduce once, after the last
            (loss / cfg.grad_accum).backward()
        window.update(outputs, micro.y, loss.detach())
    return True, loss


def _fmt(metrics: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "score")

