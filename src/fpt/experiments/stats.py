"""Paired comparisons over seeds: the verdict rule every fpt report uses.

Two arms run on the same seeds (same data order, same initialisation seed) are compared by
their per-seed differences d_1..d_n (arm minus reference). The 95% interval of the mean
difference is mean ± t(0.975, n-1) * SE, with SE = sd / sqrt(n) and t from Student's t
distribution with n-1 degrees of freedom; "wins" or "loses" only when that interval excludes
zero, "tie" otherwise. The two-sided p-value of the same t statistic is reported beside it.

Student's t is computed here (regularised incomplete beta function, Lentz's continued
fraction, as in Numerical Recipes section 6.4) so that reports need no scipy; the tests check
it against scipy.stats.t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CONFIDENCE = 0.95


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1) / (a + b + 2):  # the continued fraction converges fast on this side only
        return 1.0 - _incomplete_beta(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * result / a


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    square = t * t
    if square < df:  # near the centre: the complement, without 1 - x cancelling digits
        tail = 0.5 * (1.0 - _incomplete_beta(0.5, df / 2, square / (df + square)))
    else:
        tail = 0.5 * _incomplete_beta(df / 2, 0.5, df / (df + square))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: int) -> float:
    """The t with P(T <= t) = p (bisection to machine precision; p in (0, 1))."""
    low, high = -1e6, 1e6
    for _ in range(200):
        mid = (low + high) / 2
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2


@dataclass(frozen=True)
class Paired:
    """The comparison of two arms over the seeds both ran."""

    n: int
    mean: float       # mean of the per-seed differences (arm minus reference), in score units
    se: float         # its standard error (nan for n < 2)
    low: float        # the 95% interval, t with n-1 degrees of freedom
    high: float
    p: float          # two-sided p-value of the paired t-test
    verdict: str      # wins | loses | tie | too few paired seeds


def paired(differences: list[float]) -> Paired:
    """The 95% t interval of the mean per-seed difference, its p-value and the verdict (higher-is-better
    scores: "wins" when the whole interval is above zero)."""
    n = len(differences)
    if n < 2:
        mean = differences[0] if differences else float("nan")
        return Paired(n, mean, float("nan"), float("nan"), float("nan"), float("nan"), "too few paired seeds")
    mean = sum(differences) / n
    se = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1) / n)
    if se == 0.0:  # every seed differs by exactly the same amount
        verdict = "tie" if mean == 0 else "wins" if mean > 0 else "loses"
        return Paired(n, mean, 0.0, mean, mean, 1.0 if mean == 0 else 0.0, verdict)
    half = t_quantile(0.5 + CONFIDENCE / 2, n - 1) * se
    p = 2 * (1 - t_cdf(abs(mean) / se, n - 1))
    verdict = "wins" if mean - half > 0 else "loses" if mean + half < 0 else "tie"
    return Paired(n, mean, se, mean - half, mean + half, p, verdict)
