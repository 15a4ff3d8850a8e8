"""The run directory: what `fpt train` finds, refuses, resumes and writes in --out.

    config.json        the resolved config, written when a run starts
    metrics.jsonl      one line per evaluation
    model.safetensors  the best validation step's trained parameters (+ identity header)
    last.safetensors   the last evaluation's parameters and Adam state, for --resume
    result.json        written once, at the end

A finished run is never overwritten, an unfinished one is continued only with --resume,
and a resumed run must keep every setting that changes what it computes (the config
fields marked `resumable` may change: how far it goes and how it is watched).
"""

from __future__ import annotations

import io
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fpt.arms.fitted import fitted_head
from fpt.backbones import gelu_reason
from fpt.dropout import MASKS_REASON, attention_dropout_reason, masks_used
from fpt.errors import FptError
from fpt.precision import attention_kernel_reason, precision_reason
from fpt.saved import load_trained
from fpt.provenance import machine, versions
from fpt.run import distributed
from fpt.run.cached_features import HeadOnly
from fpt.run.config import TrainConfig, resumable_fields, saved_settings
from fpt.run.setup import Setup
from fpt.storage.checkpoints import (
    load_tensors,
    optimizer_tensors,
    restore_optimizer,
    save_tensors,
)
from fpt.storage.files import atomic_write, atomic_write_json, read_jsonl


@dataclass
class TrainState:
    """What the last checkpoint must hold to continue exactly."""

    step: int = 0
    best_step: int = 0
    best_val: dict[str, float] = field(default_factory=dict)
    steps_to_threshold: int | None = None
    wall_seconds: float = 0.0
    skipped_steps: int = 0  # steps whose loss was NaN/inf, under --nan-policy skip
    tokens: int = 0          # token positions the training steps processed, padding included
    padding_tokens: int = 0  # of which padding
    stopped_early: bool = False  # --patience ran out
    out_of_time: bool = False    # --time-budget ran out
    pruned: bool = False         # --prune-against: behind a rival's validation curve
    flops_per_step: int = 0  # of one training step (forward + backward), counted by torch's FlopCounterMode


def check_out_dir(cfg: TrainConfig, out: Path) -> dict[str, Any] | None:
    """Refuse to clobber finished or unfinished runs; return the result of a finished resumed one."""
    result_file, last = out / "result.json", out / "last.safetensors"
    if out.exists() and not out.is_dir():
        raise FptError(f"--out '{out}' is a file, not a directory; choose another --out")
    if result_file.exists():
        if not cfg.resume:
            raise FptError(f"--out '{out}' already holds a finished run (result.json); choose another "
                           "--out, delete it, or pass --resume to get its result")
        result = json.loads(result_file.read_text())
        refuse_changed_settings(result.get("config", {}), cfg.to_dict(), out)
        if result.get("steps") == cfg.steps:
            if distributed.launched_world().is_main:  # said once under torchrun
                print(f"{out} already finished; its result is in {result_file}", file=sys.stderr, flush=True)
            return result
        if result.get("steps", 0) > cfg.steps or not last.exists():
            raise FptError(f"--out '{out}' finished with {result.get('steps')} steps; --resume can only "
                           f"extend it (--steps above {result.get('steps')}), or choose another --out")
        return None  # train further from the last checkpoint
    if last.exists() and not cfg.resume:
        raise FptError(f"--out '{out}' holds an unfinished run; pass --resume to continue it, "
                       "or choose another --out")
    return None


def save_last(built: Setup, optimizer: torch.optim.Optimizer, state: TrainState, out: Path) -> None:
    names = built.trainable_names
    tensors = {f"param/{n}": p for n, p in built.model.named_parameters() if p.requires_grad}
    tensors.update(optimizer_tensors(optimizer, names))
    meta = {**built.identity(), "state": vars(state)}
    save_tensors(out / "last.safetensors", tensors, meta)


def resume(built: Setup, optimizer: torch.optim.Optimizer, out: Path
            ) -> tuple[TrainState, dict[str, torch.Tensor]]:
    tensors, meta = load_tensors(out / "last.safetensors")
    refuse_changed_settings(meta["config"], built.config.to_dict(), out)
    if meta["state"]["step"] > built.config.steps:
        raise FptError(f"--resume: the run in '{out}' is already at step {meta['state']['step']}, past "
                       f"--steps {built.config.steps}; pass --steps {meta['state']['step']} or more")
    if meta["backbone"]["hash"] != built.backbone_hash:
        raise FptError(f"--resume: '{out}/last.safetensors' was trained on a backbone with other weights "
                       f"than --model {built.config.model} gives now")
    params = {k[len("param/"):]: v for k, v in tensors.items() if k.startswith("param/")}
    load_trained(built.model, params, out / "last.safetensors")
    restore_optimizer(optimizer, built.trainable_names, tensors)
    state = TrainState(**meta["state"])
    best_params = load_tensors(out / "model.safetensors")[0]
    if built.world.is_main:
        # Drop metric lines written after the checkpoint: the resumed run writes them again.
        kept = [r for r in read_jsonl(out / "metrics.jsonl") if r.get("step", 0) <= state.step]
        atomic_write(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in kept).encode())
    return state, best_params


def refuse_changed_settings(saved: dict[str, Any], current: dict[str, Any], out: Path) -> None:
    saved = saved_settings(saved)  # keys added since the run was saved read as what they meant then
    changed = sorted(k for k in current if k not in resumable_fields() and saved.get(k) != current[k])
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
        raise FptError(f"--resume: the run in '{out}' was started with other settings ({details}); "
                       "use the original settings or another --out")


def protocol(built: Setup) -> dict[str, Any]:
    """The task's published protocol, if any; a run on a fraction of the training set follows none."""
    recorded = built.task.protocol()
    if recorded and built.config.train_fraction != 1.0:
        recorded = {**recorded, "published": False}
    return recorded


def speed_choices(built: Setup, masks: str) -> dict[str, str]:
    """What fpt chose for speed on this device, and why: precision, how attention computes at the task's
    longest input (shorter, length-bucketed batches may get bf16 products where the longest does not),
    dropout masks, training attention with dropout, and the GELU of a backbone with the tanh approximation."""
    choices = {"precision": precision_reason(built.config.precision, built.device),
               "attention_kernel": attention_kernel_reason(built.device, built.precision, built.task.spec.seq_len),
               "dropout_masks": MASKS_REASON[masks],
               "attention_with_dropout": attention_dropout_reason(masks, built.precision)}
    gelu = gelu_reason(built.model, built.precision, built.device)
    return {**choices, "gelu": gelu} if gelu else choices


def result_record(built: Setup, state: TrainState, test: dict[str, float]) -> dict[str, Any]:
    cfg = built.config
    masks = masks_used(built.device, getattr(built.model, "fast_dropout", False))
    return {
        "task": cfg.task, "model": cfg.model, "init": built.info.init, "train_groups": cfg.train_groups,
        "seed": cfg.seed, "steps": cfg.steps, "steps_run": state.step, "stopped_early": state.stopped_early,
        "out_of_time": state.out_of_time, "pruned": state.pruned,
        "trainable_params": built.counts["total"]["trainable"],
        # counted on the first step by torch.utils.flop_counter (matrix products, convolutions,
        # attention): not an estimate from parameter counts
        "train_flops": {"per_step": state.flops_per_step, "total": state.flops_per_step * state.step},
        "total_params": built.counts["total"]["total"],
        "params_by_group": built.counts,
        "test": test,
        "best_val": {**state.best_val, "step": state.best_step},
        "steps_to_threshold": state.steps_to_threshold,
        "skipped_steps": state.skipped_steps,
        "padding_fraction": round(state.padding_tokens / max(state.tokens, 1), 4),
        "protocol": protocol(built),
        "cached_features": isinstance(built.model, HeadOnly),
        "fitted": fitted_head(built.model) is not None,  # fitted once (trees, MiniRocket), no gradient steps
        "precision": built.precision,
        "dropout_masks": masks,
        "speed_choices": speed_choices(built, masks),
        "threshold": cfg.threshold,
        "wall_seconds": round(state.wall_seconds, 3),
        "task_spec": json.loads(json.dumps(vars(built.task.spec))),  # as it reads back from the file
        "backbone": built.identity()["backbone"],
        "config": cfg.to_dict(),
        "versions": versions(),
        "machine": machine(),  # where it trained: reports name it, sweeps warn when a resume moves host
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def start_or_resume(built: Setup, optimizer: torch.optim.Optimizer | None, out: Path
                    ) -> tuple[TrainState, dict[str, torch.Tensor]]:
    """The state to train from: the last checkpoint's under --resume, else a fresh start in a
    directory cleared of a killed run's leftovers (never appended to)."""
    main = built.world.is_main
    if main:
        for stale in out.glob(".*.tmp"):  # temporary files of writes cut short by a kill
            stale.unlink()
    if built.config.resume and (out / "last.safetensors").exists() and optimizer is not None:
        return resume(built, optimizer, out)
    if main:
        # Leftovers of a run killed before its first checkpoint: start clean, never append to them.
        for stale in (out / "metrics.jsonl", out / "model.safetensors"):
            stale.unlink(missing_ok=True)
        atomic_write_json(out / "config.json", built.config.to_dict())
    return TrainState(), built.trained_state()


def best_so_far(run_dir: Path) -> list[tuple[int, float]]:
    """A run's validation curve from its metrics.jsonl as (step, best score up to that step)."""
    curve: list[tuple[int, float]] = []
    for record in read_jsonl(run_dir / "metrics.jsonl"):
        score = record.get("val", {}).get("score")
        if isinstance(score, (int, float)) and score == score:  # NaN never counts
            curve.append((record["step"], max(score, curve[-1][1]) if curve else score))
    return curve


ATTENTION_FILE = "attention.npy"


def save_attention(built: Setup, out: Path) -> None:
    """The trained model's attention maps on the first 64 test examples, for the report's figure
    (tasks that record them: bit-xor); nothing for a model without attention weights."""
    model = built.model
    sharded = built.world.parallel and built.config.parallel == "fsdp"  # a forward pass needs every rank
    if sharded or not (built.task.records_attention and hasattr(model, "attention_maps")):
        return
    batch = next(built.task.eval_batches("test", 64)).to(built.device)
    maps = model.attention_maps(batch.x, batch.mask)
    if maps is not None:
        buffer = io.BytesIO()
        np.save(buffer, maps.numpy())
        atomic_write(out / ATTENTION_FILE, buffer.getvalue())


def save_best(built: Setup, params: dict[str, torch.Tensor], out: Path, step: int, val: dict[str, float]) -> None:
    """model.safetensors: the best validation step's trained parameters and what identifies them."""
    save_tensors(out / "model.safetensors", params, {**built.identity(), "step": step, "val": val})
