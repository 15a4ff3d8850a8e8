"""fpt: frozen pretrained transformers as universal computation engines.

Take a transformer pretrained on language, freeze its attention and feed-forward
weights, and train only the input layer, output layer, layer norms and position
embeddings on a task that is not language at all.

    import fpt
    model = fpt.build_model("minilm", token_dim=4, n_outputs=3)  # an nn.Module for your own loop
    model.print_trainable_parameters()
    logits = model(x)                                            # x (B, L, 4), mask (B, L) optional
    model.save_pretrained("out/")                                # trained tensors only
    model = fpt.FPTModel.from_pretrained("out/")                 # also opens an `fpt train` run

    result = fpt.train(fpt.TrainConfig(task="bit-xor"))          # the whole `fpt train`
    predictions = fpt.predict("runs/bit-xor-minilm-pretrained-s0", x)

The names below load on first use, so `import fpt` (and the CLI) starts without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from fpt.errors import FptError

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "build_model": "fpt.build",
    "FPTModel": "fpt.model",
    "ModelOptions": "fpt.options",
    "load_backbone": "fpt.backbones",
    "TaskSpec": "fpt.tasks.base",
    "Task": "fpt.tasks.base",
    "build_task": "fpt.tasks",
    "TrainConfig": "fpt.run.config",
}

__all__ = ["FptError", "__version__", "train", "predict", "compare", *_EXPORTS]


def train(config: "TrainConfig | dict[str, Any]") -> dict[str, Any]:
    """Everything `fpt train` does, from Python: build the task and model, train, test, and write
    the run directory (`config.out`, default runs/TASK-MODEL-INIT-sSEED). Returns the result
    record (what result.json holds). `config` is a TrainConfig or a mapping of its fields
    (`{"task": "bit-xor", "steps": 200}`), checked exactly as the command line's flags are."""
    from fpt.run.config import TrainConfig, build_config
    from fpt.run.train import train as run_training

    cfg = config.validate() if isinstance(config, TrainConfig) else build_config(dict(config))
    return run_training(cfg)


def predict(run_dir: str, x: Any, batch_size: int = 64, device: str = "auto", probs: bool = False,
            pad_id: int | None = None) -> Any:
    """Predictions (numpy) of the model saved in `run_dir` (an `fpt train` run or save_pretrained)
    for inputs `x` in its training format: class ids (N,), 0/1 bits (N, k, n) or values (N, K);
    probs=True gives probabilities instead. See `fpt.run.predict` for the checks."""
    from fpt.run.predict import predict as run_predict

    return run_predict(run_dir, x, batch_size=batch_size, device=device, probs=probs, pad_id=pad_id)


def compare(task: str, **options: Any) -> Any:
    """Everything `fpt compare` does, from Python: plan, run (or resume) and report a comparison of
    the FPT arm with the contenders a reviewer asks for, on `task` (anything fpt train takes).
    Returns a `Comparison`: `.verdict` (the card's sentences), `.table` (one dict per contender:
    score, paired 95% interval against FPT, p, verdict, convergence, cost), `.skipped`, `.report`.
    options: task_options, model, arms ("default", "all" or "a,b,c"), seeds, out, workers, steps,
    patience, time_budget, extra (other fpt train keys), progress, dry_run (print the plan and the
    estimate only, return None). See fpt.experiments.compare."""
    from fpt.experiments.compare import compare as run_comparison

    return run_comparison(task, **options)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fpt' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from fpt.backbones import load_backbone  # noqa: F401
    from fpt.build import build_model  # noqa: F401
    from fpt.model import FPTModel  # noqa: F401
    from fpt.options import ModelOptions  # noqa: F401
    from fpt.run.config import TrainConfig  # noqa: F401
    from fpt.tasks import build_task  # noqa: F401
    from fpt.tasks.base import Task, TaskSpec  # noqa: F401
