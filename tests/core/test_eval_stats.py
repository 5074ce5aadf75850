"""Statistics of the evaluation on simulated data: CI coverage, null uniformity and power of the paired tests."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from g2vlm_core.eval.stats import (bootstrap_ci, compare_paired, holm_correction, paired_bootstrap_test,
                                   paired_permutation_test)


@pytest.mark.parametrize("method", ["bca", "percentile"])
def test_bootstrap_ci_covers_true_mean_at_nominal_rate(method):
    # 1000 datasets, n = 40 from a skewed (exponential, mean 1) law: skew is where bootstrap intervals
    # under-cover, so this is the informative case (both methods sit near 0.93 here, the known small-sample
    # shortfall for this law). Binomial sd of the coverage at 1000 trials is ~0.8 %, so the band
    # [0.91, 0.98] leaves ~2.5 sd below the expected rate. 1000 resamples suffice for 2.5 % / 97.5 %
    # quantiles at this tolerance and keep the test at about a second.
    rng = np.random.default_rng(7)
    data = rng.exponential(1.0, size=(1000, 40))
    covered = 0
    for i, x in enumerate(data):
        ci = bootstrap_ci(x, n_resamples=1000, method=method, seed=i)
        covered += ci.low <= 1.0 <= ci.high
    assert 0.91 <= covered / len(data) <= 0.98


def test_bootstrap_ci_normal_data_coverage_and_width():
    rng = np.random.default_rng(11)
    data = rng.normal(3.0, 2.0, size=(300, 30))
    cis = [bootstrap_ci(x, n_resamples=1000, seed=i) for i, x in enumerate(data)]
    coverage = np.mean([c.low <= 3.0 <= c.high for c in cis])
    assert 0.91 <= coverage <= 0.98
    # width close to the t-interval's 2 * 2.045 * sigma / sqrt(n) = 1.49 (bootstrap is a little narrower)
    width = np.mean([c.high - c.low for c in cis])
    assert 1.2 < width < 1.6


def test_bootstrap_ci_generic_statistic_and_edge_cases():
    x = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    med = bootstrap_ci(x, statistic=np.median, n_resamples=500, seed=0)
    assert med.estimate == 3.0 and med.low <= 3.0 <= med.high
    # a statistic without an axis argument is applied row by row
    trimmed = bootstrap_ci(x, statistic=lambda v: float(np.sort(v)[1:-1].mean()), n_resamples=200, seed=0,
                           method="percentile")
    assert trimmed.estimate == pytest.approx(3.0)
    const = bootstrap_ci(np.full(10, 0.5), seed=0)
    assert (const.low, const.estimate, const.high) == (0.5, 0.5, 0.5)
    one = bootstrap_ci([2.0], seed=0)
    assert one.estimate == 2.0 and np.isnan(one.low) and np.isnan(one.high)
    empty = bootstrap_ci([np.nan, np.inf], seed=0)
    assert empty.n == 0 and np.isnan(empty.estimate)
    # seeded: identical calls give identical intervals
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    with pytest.raises(ValueError, match="method"):
        bootstrap_ci(x, method="studentized")


def _null_p_values(test, n_datasets: int, n: int, n_resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n_datasets, n))
    b = rng.normal(size=(n_datasets, n))
    return np.array([test(a[i], b[i], n_resamples=n_resamples, seed=seed * 1000 + i).p_value
                     for i in range(n_datasets)])


def test_permutation_p_values_uniform_under_null():
    # 400 null datasets of n = 30 pairs, 999 sign flips each: p-values on a 1/1000 grid, close enough to
    # continuous for a KS test; the rejection rate at 5 % is checked as well (binomial sd ~1.1 %)
    p = _null_p_values(paired_permutation_test, 400, 30, 999, 1)
    assert sps.kstest(p, "uniform").pvalue > 0.01
    assert 0.02 <= np.mean(p < 0.05) <= 0.09


def test_exact_sign_flip_null_and_values():
    # n = 8 enumerates all 256 sign patterns; the smallest attainable two-sided p is 2/256
    p = _null_p_values(paired_permutation_test, 300, 8, 1000, 2)
    assert 0.01 <= np.mean(p <= 0.05) <= 0.09
    r = paired_permutation_test(np.arange(1.0, 9.0), np.zeros(8), n_resamples=1000)
    assert r.method == "sign_flip_exact" and r.p_value == pytest.approx(2 / 256)
    g = paired_permutation_test(np.arange(1.0, 9.0), np.zeros(8), n_resamples=1000, alternative="greater")
    assert g.p_value == pytest.approx(1 / 256)
    assert paired_permutation_test(np.ones(5), np.ones(5)).p_value == 1.0


def test_paired_bootstrap_p_values_about_uniform_under_null():
    # the bootstrap test is only asymptotically exact (slightly liberal at small n), so a looser check at n = 40
    p = _null_p_values(paired_bootstrap_test, 300, 40, 999, 3)
    assert 0.02 <= np.mean(p < 0.05) <= 0.10
    assert sps.kstest(p, "uniform").pvalue > 0.001


@pytest.mark.parametrize("test", [paired_permutation_test, paired_bootstrap_test])
def test_p_values_small_under_real_difference(test):
    # a shift of 1 sd of the paired differences with n = 50: power is essentially 1
    rng = np.random.default_rng(4)
    ps = []
    for i in range(60):
        b = rng.normal(size=50)
        a = b + 1.0 + rng.normal(size=50)
        ps.append(test(a, b, n_resamples=2000, seed=i).p_value)
    assert np.median(ps) < 0.01
    assert np.mean(np.array(ps) < 0.05) > 0.95


def test_paired_tests_drop_incomplete_pairs_and_validate():
    a = np.array([1.0, 2.0, np.nan, 4.0])
    b = np.array([0.0, 1.0, 1.0, np.nan])
    r = compare_paired(a, b, "permutation", n_resamples=100)
    assert r.n == 2 and r.statistic == 1.0
    with pytest.raises(ValueError, match="equal lengths"):
        paired_permutation_test([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="alternative"):
        paired_bootstrap_test([1.0, 2.0], [0.0, 1.0], alternative="bigger")
    with pytest.raises(ValueError, match="permutation"):
        compare_paired(a, b, "wilcoxon")


def test_holm_correction_exact_values():
    adj = holm_correction([0.01, 0.04, 0.03, np.nan, 0.5])
    # sorted 0.01, 0.03, 0.04, 0.5 with m = 4: 0.04, 0.09, 0.09 (monotone), 0.5
    np.testing.assert_allclose(adj, [0.04, 0.09, 0.09, np.nan, 0.5])
    assert np.all(holm_correction([0.6, 0.7]) == [1.0, 1.0])
    assert holm_correction([]).shape == (0,)
