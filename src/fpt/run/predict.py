"""`fpt predict`: a trained run's predictions for new inputs.

    fpt predict --run runs/mydata-minilm-pretrained-s0 --input new.npz --out predictions.npy [--probs]

The input is an .npz holding `x` (or `x_test` when it has no `x`; so a training file
works too) and optionally `pad_id`, or a bare .npy array. It must fit the run's token
format: float (N, L, D) with the run's D, or integer ids (N, L) below its vocab_size;
at most the run's seq_len tokens (shorter is fine, the model reads real tokens only).
The output is one .npy array, written atomically:
    classification  class ids (N,) int64;            --probs: probabilities (N, C) float32
    bits            0/1 per bit (N, k, n) uint8;     --probs: P(bit = 1) (N, k, n) float32
    regression      values (N, K) float32
    forecast        (N, horizon, K) float32 in the data's units (see fpt.run.predict_series;
                    --input may be a CSV, --out FILE.csv writes one forecast as CSV)
    imputation      (N, seq_len, K) float32: the input windows (NaN at the gaps) with the gaps
                    filled; --input gaps.csv --out filled.csv writes the CSV back, empty cells filled
A run trained on a table (fpt.tasks.table) also reads a CSV or Parquet table with its feature
columns (others, the target among them, are ignored), encoded as its training rows were; its
regression values are in the target's units, and --out FILE.csv writes a `prediction` column
(class labels, or values) or with --probs a `p(LABEL)` column per class.
From Python: `fpt.predict(run_dir, x)`, or `predict_loaded(fpt.FPTModel.from_pretrained(run_dir), x)`
to load once.
Neither reads the training data: the input format is recorded in the saved model.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fpt.errors import FptError
from fpt.model import FPTModel
from fpt.objectives import objective
from fpt.options import is_count
from fpt.run.predict_series import check_series, fill_csv, forecast, forecast_csv, impute, read_window_csv
from fpt.run.setup import Setup, load_run
from fpt.storage.checkpoints import read_meta
from fpt.storage.files import atomic_write
from fpt.tasks import is_data_file
from fpt.tasks.arrays import Arrays
from fpt.tasks.base import TaskSpec
from fpt.tasks.inputs import check_pad_id, check_tokens, load_arrays, token_lengths
from fpt.tasks.table import encode_rows, is_table


def load_input(path: str | Path) -> tuple[np.ndarray, int | None]:
    """x and pad_id from an .npz (array x, else x_test) or a bare .npy."""
    path = Path(path)
    arrays, present = load_arrays(path, ("x", "x_test", "pad_id"), "--input")
    x = arrays.get("x", arrays.get("x_test"))
    if x is None:
        raise FptError(f"--input: '{path}' has no array x (nor x_test); it holds {', '.join(present) or 'none'}; "
                       "save the inputs with numpy.savez(path, x=...)")
    return x, check_pad_id(arrays.get("pad_id"), f"--input '{path}'")


def prepare(spec: TaskSpec, x: np.ndarray | torch.Tensor, pad_id: int | None,
            where: str = "x") -> tuple[torch.Tensor, torch.Tensor]:
    """Check `x` against the run's token format; return tokens (N, L, D) or (N, L) and lengths (N,)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = check_tokens(np.asarray(x), where)
    if spec.token_dim is not None:
        if x.ndim != 3:
            raise FptError(f"{where}: the run reads float tokens (N, L, {spec.token_dim}), got integer ids of "
                           f"shape {x.shape}; convert with x.astype(np.float32)[..., None] or check the run")
        if x.shape[2] != spec.token_dim:
            raise FptError(f"{where}: the run reads tokens of D={spec.token_dim} features, got D={x.shape[2]} "
                           f"(shape {x.shape}); pass inputs in the training data's format")
        if pad_id is not None:
            raise FptError(f"{where}: pad_id applies to integer token ids, but the run reads float features; drop it")
        lengths = np.full(len(x), x.shape[1], dtype=np.int64)
    else:
        if x.ndim != 2:
            raise FptError(f"{where}: the run reads integer token ids (N, L) below {spec.vocab_size}, got float "
                           f"features of shape {x.shape}")
        lengths = token_lengths(x, pad_id, where)
        real = np.arange(x.shape[1])[None, :] < lengths[:, None]            # (N, L)
        if (x[real] >= spec.vocab_size).any():
            raise FptError(f"{where}: token id {int(x[real].max())} is not below the run's vocab_size "
                           f"{spec.vocab_size}; the model has no embedding for it")
        x = np.where(real, x, 0)[:, :int(lengths.max())]  # padding -> any valid id; it is masked
    if int(lengths.max()) > spec.seq_len:
        raise FptError(f"{where}: {int(lengths.max())} tokens, but the run was trained on at most {spec.seq_len}; "
                       "shorten or split the inputs")
    if int(lengths.min()) < spec.readout_tokens:
        raise FptError(f"{where}: the run reads out the last {spec.readout_tokens} tokens, but an input has only "
                       f"{int(lengths.min())}")
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(lengths)


@torch.inference_mode()
def predict_loaded(model: FPTModel | Setup, x: np.ndarray | torch.Tensor, batch_size: int = 64,
                   probs: bool = False, pad_id: int | None = None, progress: bool = False,
                   where: str = "x") -> np.ndarray:
    """Predictions of an already loaded model (an FPTModel, or a run's Setup); see the module
    docstring for the output shapes."""
    if isinstance(model, Setup):
        model = model.model
    spec, device = model.spec, next(model.parameters()).device
    if not is_count(batch_size):
        raise FptError(f"--batch-size must be a positive integer, got {batch_size!r}")
    kind = objective(spec.objective)
    if probs and not kind.probabilities:
        raise FptError(f"--probs: task {spec.name} is a regression, its outputs are values; drop --probs")
    if pad_id is None and spec.vocab_size:
        pad_id = model.pad_id  # the training file's (npz tasks)
    model.eval()

    def run(inputs: Arrays, probs: bool) -> np.ndarray:
        outputs = []
        starts = range(0, len(inputs), batch_size)
        for start in tqdm(starts, desc="predict", unit="batch", disable=not progress, file=sys.stderr):
            batch = inputs.batch(torch.arange(start, min(start + batch_size, len(inputs)))).to(device)
            out = model(batch.x, batch.mask).cpu()                          # (B, C) | (B, k, n) | (B, K)
            outputs.append(kind.predict(out, probs).numpy())
        return np.concatenate(outputs)

    if spec.series_len:
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        if kind.name == "reconstruction":
            raise FptError(f"{where}: an anomaly detection run's scores and metrics come from its training "
                           "(result.json's detection); fpt predict does not score new series yet")
        if kind.horizon or kind.reconstructs:
            fill = forecast if kind.horizon else impute
            return fill(spec, x, lambda w: torch.from_numpy(run(Arrays.full_length(w, torch.zeros(len(w))), False)),
                        where)
        series = torch.from_numpy(check_series(spec, x, where).astype(np.float32))
        return run(Arrays.full_length(series, torch.zeros(len(series))), probs)
    tokens, lengths = prepare(spec, x, pad_id, where)
    predictions = run(Arrays(tokens, torch.zeros(len(tokens)), lengths), probs)  # no targets: y is a placeholder
    if spec.channel_mean and not kind.probabilities:  # a table's regression target was standardised: its units
        predictions = predictions * np.array(spec.channel_std, dtype=np.float32) + np.array(spec.channel_mean,
                                                                                             dtype=np.float32)
    return predictions


def table_csv(spec: TaskSpec, predictions: np.ndarray, probs: bool) -> bytes:
    """A table run's predictions as CSV, a row per input row: `prediction` (the class label, or the value
    in the target's units), or with --probs one column `p(LABEL)` per class."""
    import pandas as pd

    if probs:
        frame = pd.DataFrame(predictions, columns=[f"p({c})" for c in spec.classes])
    elif spec.classes:
        frame = pd.DataFrame({"prediction": np.array(spec.classes, dtype=object)[predictions]})
    else:
        frame = pd.DataFrame({"prediction" if predictions.shape[1] == 1 else f"prediction_{k}": predictions[:, k]
                              for k in range(predictions.shape[1])})
    return frame.to_csv(index=False).encode()


def predict(run_dir: str | Path, x: np.ndarray | torch.Tensor, batch_size: int = 64, device: str = "auto",
            probs: bool = False, pad_id: int | None = None, progress: bool = False) -> np.ndarray:
    """Load the run in `run_dir` (on its original backbone) and predict `x`."""
    return predict_loaded(open_run(run_dir, device), x, batch_size, probs, pad_id, progress)


def open_run(run_dir: str | Path, device: str = "auto") -> FPTModel:
    """The trained model of a run (or of save_pretrained), without its training data, with the
    failures that are specific to predicting named in its terms."""
    run_dir = Path(run_dir)
    if not (run_dir / "model.safetensors").is_file():
        raise FptError(f"--run: '{run_dir}' holds no model.safetensors; pass the directory of a run that has "
                       "validated at least once (its --out)")
    meta = read_meta(run_dir / "model.safetensors")
    if "task" in meta:
        return FPTModel.from_pretrained(run_dir, device)
    task = meta["config"].get("task", "") if isinstance(meta.get("config"), dict) else ""
    if is_data_file(task) and not Path(task).is_file():  # an older checkpoint
        raise FptError(f"--run: '{run_dir}' was trained on '{task}', which predict reads again to rebuild the "
                       "model's input format (the run predates input formats in checkpoints), but it is not "
                       "there (a relative path counts from where training ran); run fpt predict from that "
                       "directory or put the file back")
    return load_run(run_dir, device).model


def predict_cli(run: str, input: str, out: str, batch_size: int = 64, device: str = "auto",
                probs: bool = False) -> int:
    """`fpt predict`: read --input, predict, write --out atomically; print a one-line JSON summary."""
    out_path = Path(out)
    if out_path.is_dir() or not out_path.parent.is_dir():
        raise FptError(f"--out '{out}': must be a file in an existing directory, e.g. predictions.npy")
    model = open_run(run, device)
    spec = model.spec
    if spec.objective == "imputation" and input.endswith(".csv"):
        return _fill_csv_cli(model, Path(input), out_path, batch_size)
    forecasting = objective(spec.objective).horizon
    if out.endswith(".csv") and not (forecasting or spec.table_encoding):
        raise FptError(f"--out '{out}': CSV output is for forecasts and tables; write an .npy")
    if forecasting and input.endswith(".csv"):
        x, pad_id = read_window_csv(spec, Path(input)), None
    elif is_table(input):
        x, pad_id = encode_rows(spec, Path(input)), None
    else:
        x, pad_id = load_input(input)
    result = predict_loaded(model, x, batch_size, probs, pad_id, progress=True, where=f"--input '{input}'")
    if out.endswith(".csv"):
        atomic_write(out_path, table_csv(spec, result, probs) if spec.table_encoding else forecast_csv(spec, result))
    else:
        buffer = io.BytesIO()
        np.save(buffer, result)
        atomic_write(out_path, buffer.getvalue())
    print(json.dumps({"out": str(out_path), "examples": len(result), "shape": list(result.shape),
                      "dtype": str(result.dtype)}))
    return 0


def _fill_csv_cli(model: FPTModel, path: Path, out: Path, batch_size: int) -> int:
    """An imputation run on a CSV with empty cells: the CSV written back to --out with them filled."""
    if out.suffix != ".csv":
        raise FptError(f"--out '{out}': an imputation run fills a CSV's empty cells and writes the CSV: use "
                       "--out FILE.csv")
    if out.resolve() == path.resolve():
        raise FptError(f"--out '{out}' is the input itself; write the filled CSV to another file")
    text, filled = fill_csv(model.spec, path, lambda windows: predict_loaded(model, windows, batch_size,
                                                                             where=f"--input '{path}'"))
    atomic_write(out, text)
    print(json.dumps({"out": str(out), "cells_filled": filled}))
    return 0


def add_predict_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="DIR", help="run directory (the --out of fpt train)")
    parser.add_argument("--input", required=True, metavar="FILE.npz",
                        help="inputs: array x (or x_test) of an .npz, optional pad_id; or a .npy array; for a "
                             "forecasting run also a CSV with its channels (its last seq_len rows); for a run "
                             "trained on a table, a CSV or Parquet table with its feature columns")
    parser.add_argument("--out", required=True, metavar="FILE.npy",
                        help="where to write the predictions (.npy; for one forecast or a table also .csv)")
    parser.add_argument("--batch-size", type=int, default=64, help="examples per forward pass (default: 64)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    parser.add_argument("--probs", action="store_true",
                        help="write class probabilities (N, C) or per-bit P(1) instead of class ids or 0/1 bits")
