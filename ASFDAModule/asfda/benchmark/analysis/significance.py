"""Confidence intervals and tests for the benchmark's comparisons: pure functions of Dice matrices.

A paired comparison is a (seeds x test cases) matrix of differences, arm minus baseline, seed k of both
arms sharing the fine-tuning seed and every arm evaluated on the same test cases. Two sources of variance
enter a conclusion, and each has its test:

- test cases (is the difference the same across the site's cases?): the Wilcoxon signed-rank test on the
  per-case differences averaged over seeds (:func:`wilcoxon_p`);
- seeds, the unit of replication (would a new training run reproduce it?): the Wilcoxon signed-rank test
  on the per-seed mean differences over cases (:func:`wilcoxon_seeds_p`; exact two-sided distribution when
  no two seeds tie, so with n seeds the smallest attainable p is 2 / 2^n, 0.0078 for 8).

Intervals: the two-way bootstrap resamples seeds and cases independently (crossed: a case keeps its
identity across seeds, :func:`paired_bootstrap`); the hierarchical bootstrap resamples seeds, then test
cases within each resampled seed (:func:`hierarchical_bootstrap`). Random's extra draws have no partner:
the all-draws comparison (:func:`draws_bootstrap`, :func:`mann_whitney_p`) takes the mean over every
draw as the reference and resamples each arm's runs on its own. The site endpoint averages over
sub-populations: its interval resamples test cases within their sub-population
(:func:`stratified_bootstrap`) and its case-level test flips the signs of weighted per-case differences
(:func:`weighted_sign_flip_p`). The training noise is a standard deviation over seeds; its interval is
the chi-square one (:func:`sd_interval`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import chi2, mannwhitneyu, wilcoxon

BOOTSTRAP_SAMPLES = 10_000


def interval(means: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def _bootstrap(
    differences: np.ndarray,
    resampled_means: Callable[[np.ndarray, np.random.Generator, int], np.ndarray],
    samples: int,
    seed: int,
    level: float,
) -> tuple[float, float, float]:
    """Mean difference and the percentile interval of ``resampled_means`` (seeds x cases in, one mean per
    bootstrap sample out); NaN for an empty matrix."""
    differences = np.asarray(differences, dtype=np.float64)
    if differences.size == 0:
        return float("nan"), float("nan"), float("nan")
    means = resampled_means(differences, np.random.default_rng(seed), samples)
    return (float(differences.mean()), *interval(means, level))


def _two_way_means(differences: np.ndarray, rng: np.random.Generator, samples: int) -> np.ndarray:
    n_seeds, n_cases = differences.shape
    rows = rng.integers(0, n_seeds, (samples, n_seeds))
    cols = rng.integers(0, n_cases, (samples, n_cases))
    # mean of the resampled submatrix = mean over resampled rows of the row means over resampled columns
    return np.array([differences[r][:, c].mean() for r, c in zip(rows, cols)])


def _nested_means(differences: np.ndarray, rng: np.random.Generator, samples: int) -> np.ndarray:
    n_seeds, n_cases = differences.shape
    rows = rng.integers(0, n_seeds, (samples, n_seeds))
    cols = rng.integers(0, n_cases, (samples, n_seeds, n_cases))  # each resampled seed its own cases
    return differences[rows[:, :, None], cols].mean(axis=(1, 2))


def paired_bootstrap(
    differences: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean difference and its percentile interval, resampling rows (seeds) and columns (cases)."""
    return _bootstrap(differences, _two_way_means, samples, seed, level)


def hierarchical_bootstrap(
    differences: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean difference and its percentile interval, resampling seeds, then test cases within each seed."""
    return _bootstrap(differences, _nested_means, samples, seed, level)


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value on the per-case differences averaged over seeds."""
    differences = np.asarray(differences, dtype=np.float64)
    if differences.size == 0:
        return float("nan")
    return signed_rank_p(differences.mean(axis=0))


def wilcoxon_seeds_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value on the per-seed differences averaged over test cases."""
    differences = np.asarray(differences, dtype=np.float64)
    if differences.size == 0:
        return float("nan")
    return signed_rank_p(differences.mean(axis=1))


def signed_rank_p(values: np.ndarray) -> float:
    """scipy's two-sided Wilcoxon signed-rank p (exact for up to 50 values without ties); 1 for all zeros."""
    values = np.asarray(values, dtype=np.float64)
    if np.allclose(values, 0.0):
        return 1.0
    return float(wilcoxon(values).pvalue)


def draws_bootstrap(
    arm: np.ndarray,
    reference: np.ndarray,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """``arm`` (its runs x cases) minus the mean over every run of ``reference`` (draws x the same cases),
    unpaired: each arm's runs are resampled on their own, the test cases once for both (they share them)."""
    arm, reference = np.asarray(arm, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if arm.size == 0 or reference.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    n_cases = arm.shape[1]
    a = arm[rng.integers(0, len(arm), (samples, len(arm)))].mean(axis=1)  # samples x cases
    b = reference[rng.integers(0, len(reference), (samples, len(reference)))].mean(axis=1)
    cols = rng.integers(0, n_cases, (samples, n_cases))
    means = np.take_along_axis(a - b, cols, axis=1).mean(axis=1)
    return (float(arm.mean() - reference.mean()), *interval(means, level))


def mann_whitney_p(arm: Sequence, reference: Sequence) -> float:
    """Two-sided Mann-Whitney U p-value between two sets of runs' mean Dice (unpaired runs)."""
    if len(arm) == 0 or len(reference) == 0:
        return float("nan")
    return float(mannwhitneyu(arm, reference, alternative="two-sided").pvalue)


def stratified_bootstrap(
    differences: np.ndarray,
    strata: Sequence[Sequence[int]],
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    level: float = 0.95,
    nested: bool = False,
) -> tuple[float, float, float]:
    """The mean over strata of each stratum's mean difference, and its percentile interval.

    ``strata`` are the column indices of each stratum (a sub-population's test cases). Seeds are resampled,
    and test cases *within* their stratum, so every resample keeps each stratum's count and weight, as the
    stratified test split was drawn; ``nested``: each resampled seed its own cases (hierarchical)."""
    differences = np.asarray(differences, dtype=np.float64)
    if differences.size == 0 or not strata:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    n_seeds = differences.shape[0]
    rows = rng.integers(0, n_seeds, (samples, n_seeds))
    means = np.zeros(samples)
    for columns in strata:
        columns = np.asarray(columns)
        if nested:
            picks = columns[rng.integers(0, len(columns), (samples, n_seeds, len(columns)))]
            means += differences[rows[:, :, None], picks].mean(axis=(1, 2))
        else:
            seed_means = differences[rows][:, :, columns].mean(axis=1)  # samples x the stratum's cases
            picks = rng.integers(0, len(columns), (samples, len(columns)))
            means += np.take_along_axis(seed_means, picks, axis=1).mean(axis=1)
    estimate = float(np.mean([differences[:, np.asarray(c)].mean() for c in strata]))
    return (estimate, *interval(means / len(strata), level))


EXACT_SIGN_FLIPS = 16  # up to 2^16 sign vectors are enumerated; more cases draw BOOTSTRAP_SAMPLES of them


def weighted_sign_flip_p(values: np.ndarray, weights: np.ndarray, samples: int = BOOTSTRAP_SAMPLES) -> float:
    """Two-sided paired randomisation test of ``sum(weights * values) = 0``: under the null each case's
    difference is symmetric about zero, so its sign is flipped at random. Exact up to 16 cases, else Monte
    Carlo with the observed signs counted, (1 + hits) / (1 + samples); 1 for all zeros."""
    values, weights = np.asarray(values, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    if values.size == 0:
        return float("nan")
    if np.allclose(values, 0.0):
        return 1.0
    observed = abs(float(values @ weights))
    tolerance = 1e-12 * max(1.0, observed)
    if values.size <= EXACT_SIGN_FLIPS:
        signs = 1 - 2 * ((np.arange(2**values.size)[:, None] >> np.arange(values.size)) & 1)
        return float(np.mean(np.abs(signs @ (values * weights)) >= observed - tolerance))
    signs = np.random.default_rng(0).choice((-1.0, 1.0), (samples, values.size))
    hits = int(np.sum(np.abs(signs @ (values * weights)) >= observed - tolerance))
    return (1 + hits) / (1 + samples)


def sd_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The chi-square confidence interval of the standard deviation of ``values`` (needs two or more):
    exact for normal values, a guide otherwise. With 8 values it spans about 0.66x to 2.0x the sample sd,
    so one set's sd of 0.51 does not tell a true 0.4 from a true 0.7."""
    values = np.asarray(values, dtype=np.float64)
    dof = len(values) - 1
    if dof < 1:
        raise ValueError("an interval of a standard deviation needs two or more values")
    spread = dof * float(np.var(values, ddof=1))
    tail = (1 - level) / 2
    return float(np.sqrt(spread / chi2.ppf(1 - tail, dof))), float(np.sqrt(spread / chi2.ppf(tail, dof)))
