"""From a config to a ready model (setup), and from a run directory back to one (load_run).

setup() does every check that can fail on user input before anything is
written, so a bad flag never leaves a half-made run directory behind.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from fpt import __version__
from fpt.backbones import BackboneInfo, load_backbone, set_dropout, weights_hash
from fpt.checkpoint import load_tensors
from fpt.config import TrainConfig, build_config
from fpt.distributed import World, launched_world
from fpt.errors import FptError
from fpt.groups import check_position_group, count_parameters, set_trainable
from fpt.model import FPTModel
from fpt.precision import resolve_precision, store_frozen_matmul_weights
from fpt.tasks import Task, build_task
from fpt.tasks.arrays import ArrayTask
from fpt.tasks.base import Batch, TaskSpec


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
        return {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def identity(self) -> dict[str, Any]:
        """What a saved model needs to re-attach to exactly this backbone, and to rebuild its
        input format without the training data."""
        return {"backbone": {**asdict(self.info), "hash": self.backbone_hash},
                "config": self.config.to_dict(),
                "train_groups": self.config.train_groups,
                "task": {"spec": asdict(self.task.spec), "pad_id": getattr(self.task, "pad_id", None)}}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FptError(f"--device {name}: no CUDA device is available here; use --device cpu")
    return torch.device(name)


def default_data_dir() -> Path:
    """$FPT_DATA_DIR, or ~/.cache/fpt: where datasets are downloaded and generated."""
    return Path(os.environ.get("FPT_DATA_DIR", Path.home() / ".cache" / "fpt")).expanduser()


def data_dir(cfg: TrainConfig) -> Path:
    return Path(cfg.data_dir).expanduser() if cfg.data_dir else default_data_dir()


def setup(cfg: TrainConfig, on_device: bool = True) -> Setup:
    """Task, backbone, model and freezing for `cfg`; raises FptError on any bad input.

    on_device=False leaves the model on the CPU (for FSDP, which moves only shards)."""
    device = resolve_device(cfg.device)
    task = build_task(cfg.task, cfg.task_options, cfg.data_seed, data_dir(cfg))
    if isinstance(task, ArrayTask):
        task.bucketing = cfg.length_bucketing
    return assemble(cfg, task, device, on_device)


def assemble(cfg: TrainConfig, task: Task, device: torch.device, on_device: bool = True) -> Setup:
    """Backbone, model and freezing for `cfg` around a task (or a saved task's spec)."""
    backbone, info = load_backbone(cfg.model, cfg.init, cfg.attention, cfg.seed, layers=cfg.layers,
                                   cache_dir=data_dir(cfg))
    backbone_hash = weights_hash(backbone)
    if cfg.backbone_dropout != "config":
        set_dropout(backbone, float(cfg.backbone_dropout))
    precision = resolve_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)  # the new input layer and head
    model = FPTModel(task.spec, backbone, info, readout=cfg.readout, dropout=cfg.dropout, precision=precision)
    group_of = model.parameter_groups()
    check_position_group(cfg.train, group_of, info.position)
    set_trainable(model, group_of, cfg.train_groups)
    counts = count_parameters(model, group_of)
    if precision == "bf16":  # after hashing and freezing: only the backbone's frozen matmul weights
        store_frozen_matmul_weights(model.backbone, torch.bfloat16)
    if info.model_type == "lstm" and "attention" not in cfg.train_groups and launched_world().is_main:
        print("note: the LSTM's recurrent weights (group 'attention') stay frozen at random init; "
              "the paper's LSTM baseline trains everything: --train all", file=sys.stderr)
    return Setup(cfg, task, model.to(device) if on_device else model, info, backbone_hash, group_of, counts,
                 device, precision)


def cpu_name() -> str:
    """The processor's model name, for reports and benchmarks."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def versions() -> dict[str, str]:
    import transformers
    return {"fpt": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def load_run(run_dir: str | Path, device: str = "cpu") -> Setup:
    """Rebuild a trained model from DIR/model.safetensors, on the backbone it was trained with,
    with its task (and so its data: for evaluation).

    Refuses a backbone whose weights differ from the one recorded at training time.
    """
    path = Path(run_dir) / "model.safetensors"
    tensors, meta = load_tensors(path)
    built = setup(_saved_config(meta, device))
    return _attach(built, tensors, meta, path)


def load_model(run_dir: str | Path, device: str = "cpu") -> Setup:
    """Like load_run, but without reading the training data: the task's spec and pad id come from
    the checkpoint (runs saved before they were recorded there fall back to load_run)."""
    path = Path(run_dir) / "model.safetensors"
    tensors, meta = load_tensors(path)
    cfg = _saved_config(meta, device)
    if "task" not in meta:  # an older checkpoint: rebuild the task from its data, as load_run does
        return _attach(setup(cfg), tensors, meta, path)
    task = SavedTask(TaskSpec(**meta["task"]["spec"]), meta["task"]["pad_id"])
    return _attach(assemble(cfg, task, resolve_device(cfg.device)), tensors, meta, path)


class SavedTask(Task):
    """A trained run's task as its checkpoint recorded it: the input format, no data."""

    def __init__(self, spec: TaskSpec, pad_id: int | None):
        self.spec, self.pad_id = spec, pad_id

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        raise FptError("this run was loaded without its data (load_model); use load_run to train or evaluate")

    def eval_batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        raise FptError("this run was loaded without its data (load_model); use load_run to train or evaluate")

    def split_size(self, split: str) -> int:
        return 0


def _saved_config(meta: dict[str, Any], device: str) -> TrainConfig:
    # Dashboards are for training only: a run logged to W&B loads where wandb is not installed.
    return build_config({**meta["config"], "device": device, "progress": False, "log_to": ""})


def _attach(built: Setup, tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: Path) -> Setup:
    expected = meta["backbone"]["hash"]
    if built.backbone_hash != expected:
        raise FptError(
            f"'{path}' was trained on backbone {meta['backbone']['name']} with weights hash "
            f"{expected[:12]}..., but loading it now gives {built.backbone_hash[:12]}...: "
            "a different model or version; load it where the original backbone is available")
    load_trained(built, tensors, path)
    built.model.eval()
    return built


def load_trained(built: Setup, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Copy saved trained parameters into the model, refusing any name or shape that does not fit."""
    missing = set(built.trainable_names) - set(tensors)
    unexpected = set(tensors) - set(built.trainable_names)
    if missing or unexpected:
        raise FptError(f"'{path}' does not match its config: missing {sorted(missing)[:3]}, "
                       f"unexpected {sorted(unexpected)[:3]}")
    params = dict(built.model.named_parameters())
    with torch.no_grad():
        for name, value in tensors.items():
            if params[name].shape != value.shape:
                raise FptError(f"'{path}': parameter {name} has shape {tuple(value.shape)}, "
                               f"the model expects {tuple(params[name].shape)}")
            params[name].copy_(value.to(params[name].device))


def describe(built: Setup) -> str:
    i = built.info
    return (f"task {built.task.spec.name}: {built.task.spec.shape}, {built.task.spec.objective} | "
            f"backbone {i.name} ({i.model_type}, {i.init}, width {i.hidden_size}, "
            f"{'causal' if i.causal else 'bidirectional'}, {i.layers} blocks, position {i.position}"
            f"{', eager attention: transformers has no SDPA for it' if i.attention_impl == 'eager' else ''}) | "
            f"{i.description + ' | ' if i.description else ''}readout {built.model.readout} | "
            f"device {built.device}, {built.precision}")
