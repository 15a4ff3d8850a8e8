"""Saved FPT models: only the trained tensors, and enough to rebuild everything else.

    DIR/model.safetensors   the trained parameters (input layer, head, layer norms, ...)
                            and, in the header, the backbone (name, source, weights hash),
                            the model options and the input format (TaskSpec, pad id)
    DIR/config.json         the same description as JSON, for people (save_pretrained)
    DIR/adapter_config.json, DIR/adapter_model.safetensors
                            the peft arms' adapter in peft's own format (--method lora, ia3,
                            ln-tuning): `peft.PeftModel.from_pretrained(backbone, DIR)` loads it

`fpt train` writes the same header into its run directories' model.safetensors, so
`FPTModel.from_pretrained` opens both (it rebuilds the model, then `attach`es the tensors). The backbone is rebuilt from its name and options and must
hash to the recorded value: a saved model never attaches to other weights. Only
safetensors and JSON are read: loading never executes code from a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save
from torch import Tensor, nn

from fpt.errors import FptError
from fpt.storage.checkpoints import load_tensors, save_tensors
from fpt.storage.files import atomic_write, atomic_write_json
from fpt.tasks.base import TaskSpec

if TYPE_CHECKING:
    from fpt.model import FPTModel

MODEL_FILE = "model.safetensors"


def save_pretrained(model: "FPTModel", directory: str | Path) -> Path:
    """Write `model`'s trained tensors and identity into `directory` (created if needed)."""
    if model.options is None:
        raise FptError("save_pretrained: this FPTModel was not made by fpt.build_model or from_pretrained, "
                       "so fpt does not know how to rebuild its backbone; build it with fpt.build_model")
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FptError(f"save_pretrained: cannot create '{directory}': {err.strerror}") from None
    header = model.identity()
    save_tensors(directory / MODEL_FILE, model.trained_state(), header)
    atomic_write_json(directory / "config.json", {"fpt_model": header})
    save_adapter(model, directory)
    return directory / MODEL_FILE


def save_adapter(model: "FPTModel", directory: Path) -> None:
    """The peft arms' adapter as peft writes it (nothing for other arms)."""
    if model.peft_config is None:
        return
    tensors, config = adapter_files(model.backbone, model.peft_config, model.info.source)
    atomic_write(directory / "adapter_model.safetensors", save(tensors, metadata={"format": "pt"}))
    config.save_pretrained(str(directory))  # adapter_config.json, as peft writes it


def model_file(path: str | Path) -> Path:
    """DIR/model.safetensors for a directory, or the file itself."""
    path = Path(path)
    return path / MODEL_FILE if path.is_dir() else path


def read_header(path: Path, meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], TaskSpec, int | None]:
    """(backbone, config, spec, pad_id) of a saved model's header, or one line saying what is missing."""
    def need(mapping: Any, key: str, where: str) -> Any:
        if not isinstance(mapping, dict) or key not in mapping:
            raise FptError(f"'{path}' is an fpt file without '{where}' in its header: not a model that "
                           "fpt saved (or a damaged one); point at the model.safetensors of a run or of "
                           "save_pretrained")
        return mapping[key]

    backbone, config = need(meta, "backbone", "backbone"), need(meta, "config", "config")
    for key in ("name", "hash"):
        need(backbone, key, f"backbone.{key}")
    if not isinstance(config, dict):
        raise FptError(f"'{path}': its header's config is not a mapping; the file is damaged")
    task = need(meta, "task", "task")
    try:
        spec = TaskSpec.from_dict(need(task, "spec", "task.spec"))
    except TypeError as err:
        raise FptError(f"'{path}': its header's input format does not fit this fpt ({err})") from None
    return backbone, config, spec, task.get("pad_id")


def read_saved(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any], dict[str, Any], TaskSpec, int | None]:
    """(trained tensors, backbone record, config, input format, pad id) of a saved model (a
    save_pretrained directory, a run directory, or the file itself)."""
    file = model_file(path)
    tensors, meta = load_tensors(file)
    if "task" not in meta and "config" in meta:
        raise FptError(f"'{file}' predates input formats in saved models; open its run with "
                       "fpt.run.setup.load_run(run_dir), which rebuilds the format from the training data")
    backbone, config, spec, pad_id = read_header(file, meta)
    return tensors, backbone, config, spec, pad_id


def attach(model: "FPTModel", tensors: dict[str, Tensor], backbone: dict[str, Any], path: Path) -> None:
    """Check the backbone's hash, copy the trained tensors in, switch to eval mode."""
    if model.backbone_hash != backbone["hash"]:
        raise FptError(
            f"'{path}' was trained on backbone {backbone['name']} with weights hash {backbone['hash'][:12]}..., "
            f"but loading it now gives {model.backbone_hash[:12]}...: a different model or version; "
            "load it where the original backbone is available")
    load_trained(model, tensors, path)
    model.eval()


def load_trained(model: nn.Module, tensors: dict[str, Tensor], path: Path) -> None:
    """Copy saved trained parameters into the model, refusing any name or shape that does not fit."""
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    missing, unexpected = set(trainable) - set(tensors), set(tensors) - set(trainable)
    if missing or unexpected:
        raise FptError(f"'{path}' does not match its config: missing {sorted(missing)[:3]}, "
                       f"unexpected {sorted(unexpected)[:3]}")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in tensors.items():
            if params[name].shape != value.shape:
                raise FptError(f"'{path}': parameter {name} has shape {tuple(value.shape)}, "
                               f"the model expects {tuple(params[name].shape)}")
            params[name].copy_(value.to(params[name].device))


def adapter_files(backbone: nn.Module, config: Any, base_model: str) -> tuple[dict[str, Tensor], Any]:
    """The adapter's tensors and config as `peft.PeftModel.save_pretrained` writes them
    (keys under base_model.model., as PeftModel.from_pretrained(backbone, dir) reads them)."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(backbone)
    config.base_model_name_or_path = base_model
    return {f"base_model.model.{k}": v.detach().contiguous() for k, v in state.items()}, config
