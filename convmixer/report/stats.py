"""The statistics behind every verdict: intervals, tests and their corrections, from scipy.stats.

Accuracies are in percentage points. A difference's uncertainty has two parts: the spread of
accuracy from seed to seed (measured by our runs, with few degrees of freedom) and the binomial
sampling error of a finite test split (`binomial_variance`, with as good as infinite ones). The
t quantile of their sum takes the Welch-Satterthwaite degrees of freedom (`satterthwaite`), so
that two seeds give the wide interval they deserve, not a normal one.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats

LEVEL = 0.95  # every interval
ALPHA = 1 - LEVEL  # every test, after Holm's correction across the claims of one report
POWER = 0.8  # for the smallest effect an inconclusive comparison could have detected
BOOTSTRAP_SAMPLES = 4000
BOOTSTRAP_SEED = 0  # a verdict is the same every time its records are read


@dataclasses.dataclass(frozen=True)
class Estimate:
    """An effect with its 95% interval, a two-sided p-value for "no effect", and how they were got."""

    effect: float
    low: float
    high: float
    p: float
    test: str  # the method, in words
    se: float = math.nan
    df: float = math.inf

    def detectable(self) -> float:
        """The smallest effect a test with this standard error and these degrees of freedom detects
        with probability POWER at level ALPHA (two-sided): (t_{1-alpha/2} + t_{power}) x se."""
        return (stats.t.ppf(1 - ALPHA / 2, self.df) + stats.t.ppf(POWER, self.df)) * self.se


def binomial_variance(accuracy: float, images) -> float:
    """The sampling variance (points squared) of an accuracy measured on `images` test images."""
    return accuracy * (100 - accuracy) / images if images else 0.0


def satterthwaite(parts: list[tuple[float, float]]) -> float:
    """Degrees of freedom of a sum of variances, each (variance, its degrees of freedom)."""
    total = sum(v for v, _ in parts)
    denominator = sum(v**2 / df for v, df in parts if v > 0 and math.isfinite(df))
    return math.inf if denominator == 0 else total**2 / denominator


def t_estimate(effect: float, parts: list[tuple[float, float]], test: str) -> Estimate:
    """`effect` with the t interval and p of the variance `parts` ((variance, df) each)."""
    variance = sum(v for v, _ in parts)
    if not variance > 0:
        return Estimate(effect, math.nan, math.nan, math.nan, test)
    se, df = math.sqrt(variance), satterthwaite(parts)
    half = stats.t.ppf(1 - ALPHA / 2, df) * se
    p = 2 * stats.t.sf(abs(effect) / se, df)
    return Estimate(effect, effect - half, effect + half, float(p), test, se, df)


def welch(a: np.ndarray, b: np.ndarray) -> Estimate:
    """mean(a) - mean(b) by Welch's t-test (scipy's ttest_ind with equal_var=False)."""
    result = stats.ttest_ind(a, b, equal_var=False)
    interval = result.confidence_interval(LEVEL)
    se = (np.mean(a) - np.mean(b)) / result.statistic if result.statistic else math.nan
    return Estimate(
        float(np.mean(a) - np.mean(b)),
        float(interval.low),
        float(interval.high),
        float(result.pvalue),
        f"Welch's t ({len(a)} and {len(b)} seeds, {result.df:.1f} df)",
        float(abs(se)),
        float(result.df),
    )


def mcnemar(first_correct: np.ndarray, second_correct: np.ndarray) -> Estimate:
    """The difference in accuracy (points) of two classifiers scored on the same images, with the
    exact McNemar test: under "no difference" each image that only one of them gets right is
    equally likely to favour either (a binomial test on the discordant images). The interval is
    the Wald interval of a paired difference of proportions."""
    only_first = int(np.sum(first_correct & ~second_correct))
    only_second = int(np.sum(~first_correct & second_correct))
    images = len(first_correct)
    discordant = only_first + only_second
    p = stats.binomtest(only_first, discordant, 0.5).pvalue if discordant else 1.0
    effect = 100 * (only_first - only_second) / images
    se = 100 * math.sqrt(max(discordant - (only_first - only_second) ** 2 / images, 0.0)) / images
    half = stats.norm.ppf(1 - ALPHA / 2) * se
    test = f"exact McNemar ({only_first} vs {only_second} of {images:,} images right on one side only)"
    return Estimate(effect, effect - half, effect + half, float(p), test, se)


def paired_bootstrap(first: np.ndarray, second: np.ndarray) -> Estimate:
    """The difference in mean accuracy (points) of two settings with several seeds each, every run
    scored on the same test images: `first` and `second` are (seeds, images) arrays of correct
    answers. Each bootstrap sample draws the images once for both sides (the pairing) and each
    side's seeds with replacement (the seed spread); the interval is the percentile interval, the
    p-value twice the smaller tail of the sample beyond zero."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    images = first.shape[1]
    a, b = first.astype(np.float32), second.astype(np.float32)
    samples = np.empty(BOOTSTRAP_SAMPLES)
    for i in range(BOOTSTRAP_SAMPLES):
        picked = rng.integers(0, images, images)
        seeds_a = rng.integers(0, len(a), len(a))
        seeds_b = rng.integers(0, len(b), len(b))
        samples[i] = a[seeds_a][:, picked].mean() - b[seeds_b][:, picked].mean()
    samples *= 100
    effect = 100 * float(a.mean() - b.mean())
    low, high = np.quantile(samples, [ALPHA / 2, 1 - ALPHA / 2])
    p = min(1.0, 2 * min(np.mean(samples <= 0), np.mean(samples >= 0)))
    test = f"paired bootstrap over {images:,} images and {len(a)} and {len(b)} seeds"
    return Estimate(effect, float(low), float(high), float(p), test, float(samples.std(ddof=1)))


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment of `pvalues` (NaN stays NaN): the family-wise error of all of them
    together stays at the level each is read at. scipy has Benjamini-Hochberg (false_discovery_control)
    but not Holm, which controls the family-wise error, hence these few lines."""
    order = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p))
        adjusted[i] = running
    return adjusted


REPRODUCED, DIFFERS, INCONCLUSIVE = "reproduced", "differs", "inconclusive"


def equivalence(estimate: Estimate, bound: float) -> str:
    """Published against reproduced: `reproduced` when the whole interval of the difference lies
    within +-bound, `differs` when it lies wholly beyond the bound (so beyond zero too),
    `inconclusive` otherwise."""
    if math.isnan(estimate.low):
        return INCONCLUSIVE
    if -bound <= estimate.low and estimate.high <= bound:
        return REPRODUCED
    if estimate.low > bound or estimate.high < -bound:
        return DIFFERS
    return INCONCLUSIVE
