"""Bootstrap confidence intervals, paired bootstrap / sign-flip permutation tests and Holm correction (seeded numpy)."""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
from scipy.special import ndtr, ndtri

log = logging.getLogger(__name__)

Statistic = Callable[..., np.ndarray]  # statistic(x, axis=-1) -> reduces the last axis, like np.mean

# Largest number of resampled values held at once (B x n); bigger problems are processed in chunks.
_CHUNK_ELEMENTS = 4_000_000
# Resampled statistics within this relative distance of the observed one count as "as extreme": sign flips
# of the identity (and of symmetric data) reproduce the observed value only up to floating-point rounding.
_TIE_RTOL = 1e-10


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate with a two-sided interval; low/high are NaN when the data cannot support one (n < 2)."""

    estimate: float
    low: float
    high: float
    confidence: float
    method: str  # "bca" | "percentile"
    n: int
    n_resamples: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TestResult:
    """A paired two-sample test of ``a`` against ``b``; ``statistic`` = mean(a - b)."""

    statistic: float
    p_value: float
    n: int
    method: str  # "sign_flip_exact" | "sign_flip_monte_carlo" | "paired_bootstrap"
    n_resamples: int
    alternative: str

    def to_dict(self) -> dict:
        return asdict(self)


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _clean(values) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    bad = ~np.isfinite(x)
    if bad.any():
        # NaN marks "metric undefined for this unit" (e.g. no GT relations): such units carry no information
        log.debug("dropping %d non-finite values of %d", int(bad.sum()), len(x))
        x = x[~bad]
    return x


def _apply(statistic: Statistic, samples: np.ndarray) -> np.ndarray:
    """statistic over the last axis of (B, n) samples, vectorised when the statistic accepts ``axis``."""
    try:
        out = np.asarray(statistic(samples, axis=-1), dtype=np.float64)
        if out.shape == samples.shape[:-1]:
            return out
    except TypeError:
        pass
    return np.asarray([statistic(s) for s in samples], dtype=np.float64)


def bootstrap_distribution(values, statistic: Statistic = np.mean, n_resamples: int = 2000, seed=0) -> np.ndarray:
    """(n_resamples,) statistic of resamples drawn with replacement from ``values`` (chunked, vectorised)."""
    x = _clean(values)
    n = len(x)
    rng = _rng(seed)
    if n == 0:
        return np.full(n_resamples, np.nan)
    out = np.empty(n_resamples)
    step = max(1, _CHUNK_ELEMENTS // n)
    for s in range(0, n_resamples, step):
        b = min(step, n_resamples - s)
        out[s:s + b] = _apply(statistic, x[rng.integers(0, n, size=(b, n))])
    return out


def _jackknife(x: np.ndarray, statistic: Statistic) -> np.ndarray:
    """(n,) leave-one-out statistics, vectorised as an (n, n-1) matrix (chunked rows for large n)."""
    n = len(x)
    out = np.empty(n)
    keep = ~np.eye(n, dtype=bool)
    step = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for s in range(0, n, step):
        rows = keep[s:s + step]
        out[s:s + step] = _apply(statistic, np.broadcast_to(x, rows.shape)[rows].reshape(len(rows), n - 1))
    return out


def bootstrap_ci(values, statistic: Statistic = np.mean, n_resamples: int = 2000, confidence: float = 0.95,
                 method: str = "bca", seed=0) -> ConfidenceInterval:
    """Two-sided bootstrap confidence interval of ``statistic`` over 1-D ``values`` (non-finite ones dropped).

    method "percentile": quantiles of the bootstrap distribution. method "bca": bias-corrected and accelerated
    (Efron 1987; Efron & Tibshirani 1993, ch. 14), with the acceleration from the jackknife; it corrects the
    percentile interval's under-coverage for skewed statistics and small n. ``statistic(x, axis=-1)`` should
    reduce the last axis (np.mean, np.median, ...); other callables are applied row by row.
    """
    if method not in ("bca", "percentile"):
        raise ValueError(f"method must be 'bca' or 'percentile', got {method!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    x = _clean(values)
    n = len(x)
    nan = float("nan")
    if n == 0:
        return ConfidenceInterval(nan, nan, nan, confidence, method, 0, n_resamples)
    est = float(_apply(statistic, x[None, :])[0])
    if n < 2:
        return ConfidenceInterval(est, nan, nan, confidence, method, n, n_resamples)
    boot = bootstrap_distribution(x, statistic, n_resamples, seed)
    alpha = (1.0 - confidence) / 2.0
    probs = np.array([alpha, 1.0 - alpha])
    if method == "bca":
        if np.ptp(boot) == 0.0:  # constant data: every resample equals the estimate
            return ConfidenceInterval(est, est, est, confidence, method, n, n_resamples)
        # ties count half so that a statistic taking few distinct values is not biased by the <= choice
        frac = (np.count_nonzero(boot < est) + 0.5 * np.count_nonzero(boot == est)) / len(boot)
        z0 = ndtri(np.clip(frac, 1.0 / (len(boot) + 1), 1.0 - 1.0 / (len(boot) + 1)))
        jack = _jackknife(x, statistic)
        d = jack.mean() - jack
        denom = 6.0 * np.sum(d ** 2) ** 1.5
        acc = float(np.sum(d ** 3) / denom) if denom > 0 else 0.0
        z = ndtri(probs)
        probs = ndtr(z0 + (z0 + z) / (1.0 - acc * (z0 + z)))
    low, high = np.quantile(boot, probs)
    return ConfidenceInterval(est, float(low), float(high), confidence, method, n, n_resamples)


def _paired(a, b) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    d = a - b
    return d[np.isfinite(d)]  # a pair missing either value is dropped, never imputed


def _p_value(null: np.ndarray, observed: float, alternative: str, exact: bool) -> float:
    tol = _TIE_RTOL * max(abs(observed), 1e-300)
    if alternative == "two-sided":
        hits = np.count_nonzero(np.abs(null) >= abs(observed) - tol)
    elif alternative == "greater":
        hits = np.count_nonzero(null >= observed - tol)
    else:
        hits = np.count_nonzero(null <= observed + tol)
    # Monte Carlo p-values count the observed arrangement too ((k + 1) / (B + 1), Phipson & Smyth 2010) so
    # they are never 0 and remain valid; exact enumeration already contains the identity arrangement.
    return float(hits / len(null)) if exact else float((hits + 1) / (len(null) + 1))


def _check_alternative(alternative: str) -> None:
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")


def paired_permutation_test(a, b, n_resamples: int = 10000, alternative: str = "two-sided",
                            seed=0) -> TestResult:
    """Sign-flip permutation test of mean(a - b) = 0 for paired samples (a[i], b[i]).

    Under the null each difference is symmetric about 0, so flipping its sign is as likely as not. With
    2^n <= n_resamples every sign pattern is enumerated (exact p-value); otherwise ``n_resamples`` random
    patterns are drawn. alternative "greater": mean(a - b) > 0. Pairs with a non-finite value are dropped.
    """
    _check_alternative(alternative)
    d = _paired(a, b)
    n = len(d)
    obs = float(d.mean()) if n else float("nan")
    if n == 0:
        return TestResult(obs, float("nan"), 0, "sign_flip_exact", 0, alternative)
    if np.all(d == 0.0):
        return TestResult(0.0, 1.0, n, "sign_flip_exact", 0, alternative)
    exact = n <= 20 and 2 ** n <= n_resamples
    if exact:
        codes = np.arange(2 ** n, dtype=np.int64)[:, None]
        signs = 1.0 - 2.0 * ((codes >> np.arange(n)) & 1)  # (2^n, n) every sign pattern
        null = signs @ d / n
        return TestResult(obs, _p_value(null, obs, alternative, True), n, "sign_flip_exact", 2 ** n, alternative)
    rng = _rng(seed)
    null = np.empty(n_resamples)
    step = max(1, _CHUNK_ELEMENTS // n)
    for s in range(0, n_resamples, step):
        k = min(step, n_resamples - s)
        signs = 1.0 - 2.0 * rng.integers(0, 2, size=(k, n))
        null[s:s + k] = signs @ d / n
    return TestResult(obs, _p_value(null, obs, alternative, False), n, "sign_flip_monte_carlo", n_resamples,
                      alternative)


def paired_bootstrap_test(a, b, n_resamples: int = 10000, alternative: str = "two-sided", seed=0) -> TestResult:
    """Paired bootstrap test of mean(a - b) = 0: resample the differences re-centred on 0 (the null) and
    count resampled means at least as extreme as the observed one (Efron & Tibshirani 1993, sec. 16.4)."""
    _check_alternative(alternative)
    d = _paired(a, b)
    n = len(d)
    if n == 0:
        return TestResult(float("nan"), float("nan"), 0, "paired_bootstrap", n_resamples, alternative)
    obs = float(d.mean())
    if np.all(d == d[0]):
        # no spread: the re-centred null is a point mass at 0
        p = 1.0 if obs == 0.0 else float(1.0 / (n_resamples + 1))
        return TestResult(obs, p, n, "paired_bootstrap", n_resamples, alternative)
    null = bootstrap_distribution(d - obs, np.mean, n_resamples, seed)
    return TestResult(obs, _p_value(null, obs, alternative, False), n, "paired_bootstrap", n_resamples, alternative)


def holm_correction(p_values) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values (same order as given; NaN entries stay NaN and do not count
    as hypotheses). Controls the family-wise error rate over e.g. all variants compared with the reference."""
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adj, 1.0)
    return out


def compare_paired(a, b, method: str = "permutation", n_resamples: int = 10000, seed=0) -> TestResult:
    """Dispatch to the paired test named in the study config ("permutation" or "bootstrap")."""
    if method == "permutation":
        return paired_permutation_test(a, b, n_resamples, seed=seed)
    if method == "bootstrap":
        return paired_bootstrap_test(a, b, n_resamples, seed=seed)
    raise ValueError(f"test method must be 'permutation' or 'bootstrap', got {method!r}")
