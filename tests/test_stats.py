"""The verdicts' statistics against answers worked out by hand or published in textbooks."""

import math

import numpy as np
import pytest

from convmixer.report import stats

pytestmark = pytest.mark.unit


def test_exact_mcnemar_on_a_textbook_table():
    """10 images right only for the first, 2 only for the second: under "no difference" the
    discordant 12 are fair coin flips, p = 2 P(X <= 2 | 12, 1/2) = 2 (1 + 12 + 66) / 4096."""
    first, second = np.zeros(100, bool), np.zeros(100, bool)
    first[:50] = second[:50] = True  # both right
    first[50:60] = True
    second[60:62] = True
    estimate = stats.mcnemar(first, second)
    assert estimate.p == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert estimate.effect == pytest.approx(8.0)  # 60% against 52%
    # Wald interval of a paired difference: sqrt(b + c - (b - c)^2 / n) / n
    half = 1.959964 * 100 * math.sqrt(12 - 64 / 100) / 100
    assert (estimate.low, estimate.high) == pytest.approx((8 - half, 8 + half), abs=1e-4)


def test_welch_on_the_worked_example():
    """The first example of Wikipedia's "Welch's t-test" (two samples of 15): t = -2.46, 24.99 df, p = 0.021."""
    a = np.array([27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4])
    b = np.array([27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4])
    estimate = stats.welch(a, b)
    assert estimate.effect / estimate.se == pytest.approx(-2.46, abs=0.005)
    assert estimate.df == pytest.approx(24.99, abs=0.01)
    assert estimate.p == pytest.approx(0.021, abs=0.0005)
    assert estimate.low < estimate.effect < estimate.high < 0


def test_two_seeds_give_a_t_interval_with_one_degree_of_freedom():
    """s = 1 point over 2 seeds: the interval of the mean is 12.71 standard errors wide each way
    (t with 1 df), not the normal 1.96."""
    estimate = stats.t_estimate(0.0, [(1.0**2 / 2, 1)], "mean of two seeds")
    assert estimate.high == pytest.approx(12.706 * math.sqrt(1 / 2), rel=1e-3)
    # With a binomial part of as much variance the degrees of freedom grow (Welch-Satterthwaite).
    assert stats.satterthwaite([(0.5, 1), (0.5, math.inf)]) == pytest.approx(4.0)


def test_the_equivalence_rule_at_its_three_outcomes():
    def interval(low, high):
        return stats.Estimate((low + high) / 2, low, high, math.nan, "by hand")

    assert stats.equivalence(interval(-1.5, 1.0), bound=2.0) == stats.REPRODUCED
    assert stats.equivalence(interval(2.5, 4.0), bound=2.0) == stats.DIFFERS
    assert stats.equivalence(interval(-4.0, -2.1), bound=2.0) == stats.DIFFERS
    assert stats.equivalence(interval(0.5, 3.0), bound=2.0) == stats.INCONCLUSIVE  # beyond zero, not the bound
    assert stats.equivalence(interval(-3.0, 3.0), bound=2.0) == stats.INCONCLUSIVE  # too wide to say


def test_holm_adjusts_step_down_and_keeps_the_order():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = stats.holm([0.2, math.nan, 0.001])
    assert adjusted[0] == pytest.approx(0.2) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.002)


def test_the_paired_bootstrap_sees_a_difference_that_seed_noise_hides():
    """Two settings scored on the same 2,000 images, 3 seeds each, the first right on 1.5% more
    images: paired, the interval excludes zero; a shift of nothing leaves it around zero."""
    rng = np.random.default_rng(1)
    base = rng.random(2000) < 0.7  # which images the second setting gets right
    second = np.stack([base ^ (rng.random(2000) < 0.03) for _ in range(3)])
    better = base.copy()
    better[np.flatnonzero(~base)[:30]] = True  # 30 more images right
    first = np.stack([better ^ (rng.random(2000) < 0.03) for _ in range(3)])
    estimate = stats.paired_bootstrap(first, second)
    assert estimate.low > 0 and estimate.p < 0.05
    same = stats.paired_bootstrap(second, second[::-1])
    assert same.low < 0 < same.high and same.p > 0.5


def test_the_smallest_detectable_effect():
    """At 80% power and 5% two-sided with a normal test: (1.96 + 0.84) standard errors."""
    estimate = stats.Estimate(0.0, -1, 1, 0.9, "by hand", se=1.0, df=math.inf)
    assert estimate.detectable() == pytest.approx(1.95996 + 0.84162, rel=1e-4)
