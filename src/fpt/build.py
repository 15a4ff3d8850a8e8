"""`fpt.build_model`: an FPT model for your own data and your own training loop.

    model = fpt.build_model("minilm", token_dim=4, n_outputs=3)

It checks its arguments, describes the input format as a TaskSpec and calls
`fpt.model.assemble_model`, as `fpt train` and `FPTModel.from_pretrained` do.
"""

from __future__ import annotations

from typing import Any

import torch

from fpt.errors import FptError
from fpt.model import FPTModel, assemble_model
from fpt.objectives import objective as objective_entry
from fpt.options import ModelOptions, is_count
from fpt.tasks.base import TaskSpec


def build_model(backbone: str = "minilm", *, token_dim: int | None = None, vocab_size: int | None = None,
                n_outputs: int, objective: str = "classification", seq_len: int | None = None,
                readout_tokens: int = 1, pad_id: int | None = None, device: torch.device | str = "cpu",
                name: str = "custom", **options: Any) -> FPTModel:
    """A frozen pretrained transformer for your own data, ready for a plain PyTorch loop.

    Inputs are `token_dim` floats per token (x of shape (B, L, token_dim)) or integer ids
    below `vocab_size` (x of shape (B, L)). The model returns (B, n_outputs) logits (or
    values for regression), or (B, readout_tokens, n_outputs) for the per-token `bits`
    objective. `seq_len` is the longest input it must take (default: every position the
    backbone has).

    `options` are the fields of `fpt.ModelOptions` besides `model` (the backbone): `train`,
    `init`, `readout`, `attention`, `dropout`, `backbone_dropout`, `precision`, `seed`,
    `layers`, `method` (the arm: lora, ia3, bitfit, ..., see `fpt arms`) and the `lora_*`
    settings. They mean what the `fpt train` flags of the same names mean, with the same
    defaults (the paper's: input, output, layer norms and positions train).
    Only the parameters of the chosen groups have requires_grad; pass those to the optimiser:
    `torch.optim.Adam(p for p in model.parameters() if p.requires_grad)`.
    """
    if (token_dim is None) == (vocab_size is None):
        raise FptError("build_model: give exactly one of token_dim (float tokens, x of shape (B, L, D)) "
                       "or vocab_size (integer ids, x of shape (B, L))")
    for label, value in (("token_dim", token_dim), ("vocab_size", vocab_size), ("n_outputs", n_outputs),
                         ("seq_len", seq_len), ("readout_tokens", readout_tokens)):
        if value is not None and not is_count(value):
            raise FptError(f"build_model: {label} must be a positive integer, got {value!r}")
    try:
        kind = objective_entry(objective)
    except FptError as err:
        raise FptError(f"build_model: {err}") from None
    if kind.horizon:
        raise FptError(f"build_model: objective {objective!r} forecasts series windows, which fpt builds from a "
                       "CSV: use fpt train --task forecast --task-opt path=FILE.csv (or objective='regression')")
    if readout_tokens > 1 and not kind.per_token:
        raise FptError(f"build_model: readout_tokens={readout_tokens} reads one output per token, which is the "
                       "bits objective; use objective='bits' or readout_tokens=1")
    model_options = ModelOptions.build(options, "build_model", model=backbone)
    # seq_len 0: the backbone's own position count, known once it is loaded (assemble_model).
    spec = TaskSpec(name=name, seq_len=seq_len or 0, objective=objective,  # type: ignore[arg-type]
                    n_outputs=n_outputs, token_dim=token_dim, vocab_size=vocab_size,
                    readout_tokens=readout_tokens, description="built with fpt.build_model", source="your data")
    return assemble_model(spec, model_options, device, pad_id)
