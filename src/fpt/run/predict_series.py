"""`fpt predict` for series tasks: windows in the data's own units in, the same units out.

    forecast        x (N, seq_len, K) float, the K channels of the training CSV in its units,
                    or a CSV with those columns (its last seq_len rows: one window) ->
                    forecasts (N, horizon, K) in the same units (a CSV of horizon rows for --out FILE.csv)
    smape           (short-term forecasting) x (N, seq_len, 1), each series' last seq_len values ->
                    forecasts (N, horizon, 1) in the same units
    imputation      x (N, seq_len, K) float with NaN at the gaps, in the data's units -> the same
                    windows with the gaps filled (observed values unchanged); or a CSV with empty
                    cells -> the CSV written back with them filled (fill_csv)
    classification  x (N, T, C) float, T <= the run's series length -> as for any classifier

Each channel is standardised with the training rows' mean and std recorded in the run, as
during training; forecasts are mapped back with them.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fpt.errors import FptError
from fpt.objectives import objective
from fpt.series import window_starts
from fpt.tasks.base import TaskSpec
from fpt.tasks.inputs import first_bad


def check_series(spec: TaskSpec, x: np.ndarray, where: str) -> np.ndarray:
    """x (N, T, channels) float64, checked against the run's series format and standardised."""
    x = np.asarray(x)
    horizon = objective(spec.objective).horizon  # forecasts read every channel; classifiers their own
    channels = (len(spec.channel_names) or 1) if horizon else spec.channels  # short-term series: one
    if x.dtype.kind not in "fiu" or x.ndim != 3 or x.shape[2] != channels:
        raise FptError(f"{where}: the run reads series of shape (N, T, {channels}) (windows x steps x channels), "
                       f"got {x.dtype} {x.shape}")
    if horizon and x.shape[1] != spec.series_len:
        raise FptError(f"{where}: the run forecasts from windows of exactly {spec.series_len} steps, got "
                       f"{x.shape[1]}; pass the last {spec.series_len} rows")
    if x.shape[1] > spec.series_len or x.shape[0] == 0:
        raise FptError(f"{where}: {x.shape[1]} steps in {x.shape[0]} series; the run takes 1 or more series "
                       f"of at most {spec.series_len} steps")
    if not np.isfinite(x).all():
        raise FptError(f"{where} holds NaN or inf (first at index {first_bad(x)}); impute them")
    if spec.channel_mean:
        x = (x - np.asarray(spec.channel_mean)) / np.asarray(spec.channel_std)
    return x


def forecast(spec: TaskSpec, x: np.ndarray, run: Callable[[torch.Tensor], torch.Tensor], where: str) -> np.ndarray:
    """Forecasts (N, horizon, K) in original units; `run` maps one-channel windows (M, T, 1)
    to forecasts (M, horizon) of standardised values."""
    z = check_series(spec, x, where)                                       # (N, T, K)
    n, steps, k = z.shape
    windows = torch.from_numpy(z.transpose(0, 2, 1).reshape(n * k, steps, 1).astype(np.float32))
    out = run(windows).numpy().reshape(n, k, -1).transpose(0, 2, 1)        # (N, horizon, K)
    if not spec.channel_mean:  # short-term series train in their own units
        return out.astype(np.float32)
    return (out * np.asarray(spec.channel_std) + np.asarray(spec.channel_mean)).astype(np.float32)


def read_window_csv(spec: TaskSpec, path: Path) -> np.ndarray:
    """The last series_len rows of a CSV with the run's channel columns: x (1, series_len, K)."""
    from fpt.tasks.forecast import read_csv

    names, values, _ = read_csv(path, "all")
    missing = [c for c in spec.channel_names if c not in names]
    if missing:
        raise FptError(f"--input '{path}' has no column(s) {', '.join(missing)}; the run forecasts "
                       f"{', '.join(spec.channel_names)}")
    if len(values) < spec.series_len:
        raise FptError(f"--input '{path}' has {len(values)} rows; the run needs the last {spec.series_len}")
    columns = [names.index(c) for c in spec.channel_names]
    return values[-spec.series_len:, columns][None]


def forecast_csv(spec: TaskSpec, forecasts: np.ndarray) -> bytes:
    """One forecast (1, horizon, K) as CSV: a step column (1..horizon) and the channels."""
    if len(forecasts) != 1:
        raise FptError(f"--out FILE.csv holds one forecast, but the input has {len(forecasts)} windows; "
                       "write an .npy instead")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["step", *spec.channel_names])
    for step, row in enumerate(forecasts[0], start=1):
        writer.writerow([step, *(f"{v:.6g}" for v in row)])
    return text.getvalue().encode()


def impute(spec: TaskSpec, x: np.ndarray, run: Callable[[torch.Tensor], torch.Tensor], where: str) -> np.ndarray:
    """Windows (N, seq_len, K) in original units with NaN gaps -> the same with the gaps filled; `run`
    maps standardised windows with NaN gaps (M, seq_len, K) to rebuilt ones (M, seq_len, K)."""
    x = np.asarray(x)
    channels = len(spec.channel_names)
    if x.dtype.kind not in "fiu" or x.ndim != 3 or x.shape[1:] != (spec.series_len, channels) or not len(x):
        raise FptError(f"{where}: the run imputes windows of shape (N, {spec.series_len}, {channels}) (windows x "
                       f"steps x the channels {', '.join(spec.channel_names)}), NaN at the gaps; got {x.dtype} {x.shape}")
    x = x.astype(np.float64)
    if np.isinf(x).any():
        raise FptError(f"{where} holds inf (first at index {first_bad(np.where(np.isnan(x), 0, x))}); only NaN "
                       "marks a gap")
    mean, std = np.asarray(spec.channel_mean), np.asarray(spec.channel_std)
    rebuilt = run(torch.from_numpy(((x - mean) / std).astype(np.float32))).numpy() * std + mean  # (N, seq_len, K)
    return np.where(np.isnan(x), rebuilt, x).astype(np.float32)


def fill_csv(spec: TaskSpec, path: Path, fill: Callable[[np.ndarray], np.ndarray]) -> tuple[bytes, int]:
    """The CSV at `path` with the empty cells of the run's channels filled, every other cell as it was,
    and the number of cells filled. The rows are covered by windows of seq_len rows, back to back, the
    last one ending at the last row; `fill` maps windows (N, seq_len, K) in the data's units with NaN
    gaps to the same filled (impute() with the run's model)."""
    from fpt.tasks.forecast import read_csv, read_rows

    rows = read_rows(path)
    names, values, _ = read_csv(path, "all", gaps=True, rows=rows)
    missing = [c for c in spec.channel_names if c not in names]
    if missing:
        raise FptError(f"--input '{path}' has no column(s) {', '.join(missing)}; the run imputes "
                       f"{', '.join(spec.channel_names)}")
    steps = spec.series_len
    if len(values) < steps:
        raise FptError(f"--input '{path}' has {len(values)} rows; the run imputes windows of {steps} rows, so it "
                       f"needs {steps} at least")
    columns = [names.index(c) for c in spec.channel_names]
    series = values[:, columns]                                            # (rows, K), NaN: a gap
    starts = window_starts(len(series), steps)
    filled = fill(np.stack([series[s:s + steps] for s in starts]))         # (windows, seq_len, K)
    result = series.copy()
    for start, window in zip(starts, filled):
        gap = np.isnan(series[start:start + steps])
        result[start:start + steps][gap] = window[gap]
    header = [h.strip() for h in rows[0]]
    cells = [header.index(name) for name in spec.channel_names]           # the channels' fields in a line
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(rows[0])
    for r, row in enumerate(rows[1:]):
        for k, cell in enumerate(cells):
            if np.isnan(series[r, k]):                                     # an empty cell (or NaN): a gap
                row[cell] = f"{result[r, k]:.6g}"
        writer.writerow(row)
    return text.getvalue().encode(), int(np.isnan(series).sum())
