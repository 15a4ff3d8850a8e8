"""The paired t rule behind every verdict: Student's t as scipy computes it, and the verdicts."""

from __future__ import annotations

import math

import pytest

from fpt.experiments.stats import paired, t_cdf, t_quantile


@pytest.mark.parametrize("df", [1, 2, 4, 9, 29, 200])
def test_t_distribution_matches_scipy(df):
    stats = pytest.importorskip("scipy.stats")
    for t in (-12.0, -2.5, -0.3, 0.0, 0.7, 1.96, 4.3, 30.0):
        assert t_cdf(t, df) == pytest.approx(stats.t.cdf(t, df), abs=1e-12)
    for p in (0.025, 0.5, 0.9, 0.975, 0.995):
        assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9, abs=1e-9)


def test_three_seeds_need_more_than_two_standard_errors():
    """n=3: the 95% interval is mean ± 4.303 SE, so '2 SE' (about 82% confidence) is not enough."""
    result = paired([0.030, 0.050, 0.010])          # mean 0.03, SE 0.01155: 2.6 SE
    assert result.mean == pytest.approx(0.03) and result.se == pytest.approx(0.02 / math.sqrt(3))
    assert result.low == pytest.approx(0.03 - 4.302653 * result.se, rel=1e-6)
    assert result.verdict == "tie" and 0.05 < result.p < 0.2
    assert paired([0.030, 0.034, 0.026]).verdict == "wins"   # 13 SE
    assert paired([-0.030, -0.034, -0.026]).verdict == "loses"


def test_against_scipys_paired_t_test():
    stats = pytest.importorskip("scipy.stats")
    a, b = [0.91, 0.88, 0.93, 0.90, 0.89], [0.87, 0.88, 0.90, 0.86, 0.88]
    result = paired([x - y for x, y in zip(a, b)])
    assert result.p == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)


def test_degenerate_cases():
    assert paired([0.1]).verdict == "too few paired seeds" and math.isnan(paired([]).mean)
    assert paired([0.2, 0.2, 0.2]).verdict == "wins"       # no spread at all: the sign decides
    assert paired([0.0, 0.0]).verdict == "tie"
