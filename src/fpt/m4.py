"""The M4 competition's accuracy measures and its Naive2 benchmark, as its organisers computed them.

Source: Mcompetitions/M4-methods, "Benchmarks and Evaluation.R" (the competition's own code), whose
definitions these follow step by step:

    sMAPE   200 |y - f| / (|y| + |f|) per forecast value, averaged over horizons and series
    MASE    |y - f| / scale per value, the scale being the in-sample mean absolute difference
            at the seasonal lag m (m = 1: the one-step naive), averaged the same way
    Naive2  the last value of the seasonally adjusted series, re-seasonalised: where m > 1 and the
            series passes the 90% autocorrelation test at lag m, classical multiplicative
            decomposition (R's `decompose`) gives the seasonal indices, else none
    OWA     (sMAPE / sMAPE of Naive2 + MASE / MASE of Naive2) / 2, over the whole data set

Quirks kept, because the published numbers carry them: the seasonality test needs at least 3m
values, and R's `acf` computes lags up to floor(10 log10(n)), so a longer lag m reads as "not
seasonal". A value whose |y| + |f| is 0 counts 0 in sMAPE (R gives NaN there; M4 has no such point).
"""

from __future__ import annotations

import math

import numpy as np

TCRIT = 1.645  # the 90% two-sided limit of the autocorrelation test


def smape(truth: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """sMAPE of each value, in percent (same shape as the inputs)."""
    truth, forecast = np.asarray(truth, dtype=np.float64), np.asarray(forecast, dtype=np.float64)
    denominator = np.abs(truth) + np.abs(forecast)
    safe = np.where(denominator == 0, 1.0, denominator)
    return np.where(denominator == 0, 0.0, 200.0 * np.abs(truth - forecast) / safe)


def mase_scale(insample: np.ndarray, period: int) -> float:
    """The mean absolute difference of a series at lag `period` (nan when the series is too short)."""
    insample = np.asarray(insample, dtype=np.float64)
    if len(insample) <= period:
        return math.nan
    return float(np.abs(insample[period:] - insample[:-period]).mean())


def acf(series: np.ndarray, lags: int) -> np.ndarray:
    """Autocorrelations at lags 1..lags, as R's acf computes them (the full-length denominator)."""
    centred = np.asarray(series, dtype=np.float64) - np.mean(series)
    denominator = float(centred @ centred)
    if denominator == 0:
        return np.zeros(lags)
    return np.array([float(centred[k:] @ centred[:-k]) / denominator for k in range(1, lags + 1)])


def is_seasonal(series: np.ndarray, period: int) -> bool:
    """M4's SeasonalityTest: |acf at lag m| beyond 1.645 / sqrt(n) * sqrt(1 + 2 sum_{k<m} acf_k^2)."""
    n = len(series)
    if period <= 1 or n < 3 * period:
        return False
    max_lag = int(math.floor(10 * math.log10(n)))  # R's default lag.max for one series
    if period > max_lag:
        return False  # R's xacf[ppy] is NA there, which the test reads as not seasonal
    coefficients = acf(series, max_lag)
    limits = TCRIT / math.sqrt(n) * np.sqrt(np.cumsum(np.concatenate([[1.0], 2 * coefficients ** 2])))
    return bool(abs(coefficients[period - 1]) > limits[period - 1])


def seasonal_indices(series: np.ndarray, period: int) -> np.ndarray:
    """R's decompose(type = "multiplicative")$seasonal: one index per value of the series."""
    x = np.asarray(series, dtype=np.float64)
    n = len(x)
    weights = (np.concatenate([[0.5], np.ones(period - 1), [0.5]]) / period if period % 2 == 0
               else np.ones(period) / period)
    half = len(weights) // 2
    trend = np.full(n, np.nan)
    for t in range(half, n - half):  # centred moving average; the ends stay NA
        trend[t] = float(weights @ x[t - half:t + half + 1])
    ratio = x / trend
    figure = np.array([np.nanmean(ratio[i::period]) for i in range(period)])
    figure = figure / figure.mean()
    return figure[np.arange(n) % period]


def naive2(insample: np.ndarray, horizon: int, period: int) -> np.ndarray:
    """M4's Naive2 forecast (horizon,) of one series."""
    x = np.asarray(insample, dtype=np.float64)
    if period > 1 and is_seasonal(x, period):
        seasonal = seasonal_indices(x, period)
        adjusted = x / seasonal
        outlook = np.resize(seasonal[-period:], horizon)  # the last season's indices, repeated
    else:
        adjusted, outlook = x, np.ones(horizon)
    return adjusted[-1] * outlook


def m4_scores(insamples: list[np.ndarray], truths: np.ndarray, forecasts: np.ndarray, period: int) -> dict[str, float]:
    """sMAPE, MASE and OWA of forecasts (S, H) of S series against their truths (S, H), beside
    Naive2's on the same series. Series whose MASE scale is 0 or undefined (constant or too short
    in-sample) are left out of MASE (counted), as R's division would make them inf or NaN."""
    truths, forecasts = np.asarray(truths, dtype=np.float64), np.asarray(forecasts, dtype=np.float64)
    horizon = truths.shape[1]
    benchmark = np.stack([naive2(x, horizon, period) for x in insamples])       # (S, H)
    scales = np.array([mase_scale(x, period) for x in insamples])               # (S,)
    scaled = np.isfinite(scales) & (scales > 0)
    ours_smape, theirs_smape = float(smape(truths, forecasts).mean()), float(smape(truths, benchmark).mean())
    ours_mase = float((np.abs(truths - forecasts)[scaled] / scales[scaled, None]).mean())
    theirs_mase = float((np.abs(truths - benchmark)[scaled] / scales[scaled, None]).mean())
    return {"smape": ours_smape, "mase": ours_mase, "owa": (ours_smape / theirs_smape + ours_mase / theirs_mase) / 2,
            "naive2_smape": theirs_smape, "naive2_mase": theirs_mase, "series": len(insamples),
            "unscaled_series": int((~scaled).sum()), "period": period}
