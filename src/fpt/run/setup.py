"""From a config to a ready model (setup), and from a run directory back to one (load_run).

setup() does every check that can fail on user input before anything is
written, so a bad flag never leaves a half-made run directory behind.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fpt.backbones import BackboneInfo
from fpt.errors import FptError
from fpt.model import FPTModel, assemble_model, saved_identity, trained_tensors
from fpt.precision import resolve_device
from fpt.saved import attach, read_header
from fpt.run.config import TrainConfig, build_config
from fpt.run.distributed import World, launched_world
from fpt.storage.checkpoints import load_tensors
from fpt.storage.downloads import default_data_dir
from fpt.tasks import Task, build_task
from fpt.tasks.arrays import ArrayTask


@dataclass
class Setup:
    config: TrainConfig
    task: Task
    model: FPTModel
    info: BackboneInfo
    backbone_hash: str
    group_of: dict[str, str]
    counts: dict[str, dict[str, int]]
    device: torch.device
    precision: str  # fp32 | bf16: what --precision resolved to on this device
    world: World = World()  # this process's place among data-parallel ranks (torchrun)

    @property
    def trainable_names(self) -> list[str]:
        return [n for n, p in self.model.named_parameters() if p.requires_grad]

    def trained_state(self) -> dict[str, torch.Tensor]:
        return trained_tensors(self.model)  # the model may be the head alone (cached features)

    def identity(self) -> dict[str, Any]:
        """The header of this run's checkpoints (see fpt.model.saved_identity)."""
        return saved_identity(self.info, self.backbone_hash, self.config.to_dict(), self.config.train_groups,
                              self.task.spec, self.task.pad_id)


def data_dir(cfg: TrainConfig) -> Path:
    return Path(cfg.data_dir).expanduser() if cfg.data_dir else default_data_dir()


def setup(cfg: TrainConfig, on_device: bool = True) -> Setup:
    """Task, backbone, model and freezing for `cfg`; raises FptError on any bad input.

    on_device=False leaves the model on the CPU (for FSDP, which moves only shards)."""
    device = resolve_device(cfg.device)
    task = build_task(cfg.task, cfg.task_options, cfg.data_seed, data_dir(cfg))
    if isinstance(task, ArrayTask):
        task.bucketing = cfg.length_bucketing
    if cfg.train_fraction < 1:
        task.keep_train_fraction(cfg.train_fraction, cfg.data_seed)
    return assemble(cfg, task, device, on_device)


def assemble(cfg: TrainConfig, task: Task, device: torch.device, on_device: bool = True) -> Setup:
    """Backbone, model and freezing for `cfg` around its task: the
    library's assemble_model, exactly as fpt.build_model uses it."""
    model = assemble_model(task.spec, cfg.model_options, device, task.pad_id, move=on_device,
                           cache_dir=data_dir(cfg))
    if model.info.model_type == "lstm" and "attention" not in cfg.train_groups and launched_world().is_main:
        print("note: the LSTM's recurrent weights (group 'attention') stay frozen at random init; "
              "the paper's LSTM baseline trains everything: --train all", file=sys.stderr)
    return Setup(cfg, task, model, model.info, model.backbone_hash, model.group_of, model.counts,
                 device, model.precision)


def load_run(run_dir: str | Path, device: str = "cpu") -> Setup:
    """Rebuild a trained model from DIR/model.safetensors, on the backbone it was trained with,
    with its task (and so its data: for evaluation).

    Refuses a backbone whose weights differ from the one recorded at training time.
    """
    path = Path(run_dir) / "model.safetensors"
    tensors, meta = load_tensors(path)
    built = setup(_saved_config(meta, device, path))
    return _attach(built, tensors, meta, path)


def _saved_config(meta: dict[str, Any], device: str, path: Path) -> TrainConfig:
    config = meta.get("config")
    if not isinstance(config, dict) or not isinstance(meta.get("backbone"), dict) or "hash" not in meta["backbone"]:
        read_header(path, meta)  # names what is missing, in one line
    if not config.get("task"):
        raise FptError(f"'{path}' holds a model saved with save_pretrained, not an fpt train run; "
                       "open it with fpt.FPTModel.from_pretrained")
    # Dashboards are for training only: a run logged to W&B loads where wandb is not installed.
    return build_config({**config, "device": device, "progress": False, "log_to": ""})


def _attach(built: Setup, tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: Path) -> Setup:
    attach(built.model, tensors, meta["backbone"], path)
    return built


def describe(built: Setup) -> str:
    i = built.info
    return (f"task {built.task.spec.name}: {built.task.spec.shape}, {built.task.spec.objective} | "
            f"backbone {i.name} ({i.model_type}, {i.init}, width {i.hidden_size}, "
            f"{'causal' if i.causal else 'bidirectional'}, {i.layers} blocks, position {i.position}"
            f"{', eager attention: transformers has no SDPA for it' if i.attention_impl == 'eager' else ''}) | "
            f"{i.description + ' | ' if i.description else ''}readout {built.model.readout} | "
            f"device {built.device}, {built.precision}")
