"""The statistics against cases computed by hand."""

from __future__ import annotations

import gc
import math

import numpy as np
import pytest

from cnnvsmlp import stats

Z = 1.959963984540054  # the 97.5% quantile of the standard normal
T_975_DF2 = 4.302652729911275  # the 97.5% quantile of Student's t with 2 degrees of freedom


def correctness(both: int, only_a: int, only_b: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Two per-image correctness vectors with the given 2 x 2 table."""
    a = [True] * both + [True] * only_a + [False] * only_b + [False] * neither
    b = [True] * both + [False] * only_a + [True] * only_b + [False] * neither
    return np.array(a), np.array(b)


def test_mcnemar_exact_known_p_value():
    # b = 1, c = 9: two-sided exact binomial p = 2 * P(X <= 1 | 10, 1/2) = 2 * 11 / 1024.
    result = stats.mcnemar_exact(*correctness(50, 1, 9, 40))
    assert (result.only_a, result.only_b) == (1, 9)
    assert result.p_value == pytest.approx(0.021484375, abs=1e-12)


def test_mcnemar_exact_is_symmetric_and_ignores_concordant_images():
    forward = stats.mcnemar_exact(*correctness(10, 9, 1, 0))
    backward = stats.mcnemar_exact(*correctness(900, 1, 9, 90))
    assert (forward.only_a, forward.only_b) == (9, 1)
    assert forward.p_value == pytest.approx(backward.p_value)


def test_mcnemar_identical_models():
    same = np.array([True, False, True])
    assert stats.mcnemar_exact(same, same) == stats.McNemar(0, 0, 1.0)


def test_mcnemar_refuses_vectors_of_different_lengths():
    with pytest.raises(ValueError, match="different lengths: 3 and 2"):
        stats.mcnemar_exact(np.ones(3, bool), np.ones(2, bool))


def test_t_interval_by_hand():
    # mean 0.91, sample sd 0.01, n 3: 0.91 +- t * 0.01 / sqrt(3)
    half = T_975_DF2 * 0.01 / math.sqrt(3)
    interval = stats.t_interval([0.90, 0.91, 0.92])
    assert interval.estimate == pytest.approx(0.91)
    assert (interval.low, interval.high) == pytest.approx((0.91 - half, 0.91 + half))
    assert interval.method == "t"


def test_t_interval_of_identical_values_has_no_width():
    assert stats.t_interval([0.9, 0.9]) == stats.Interval(0.9, 0.9, 0.9, "t")


def test_t_interval_needs_two_values():
    with pytest.raises(ValueError, match="at least two values, got 1"):
        stats.t_interval([0.9])


def test_accuracy_interval_over_repeats_is_a_t_interval():
    interval = stats.accuracy_interval([900, 910, 920], 1000)
    half = T_975_DF2 * 0.01 / math.sqrt(3)
    assert interval.method == "t"
    assert (interval.low, interval.high) == pytest.approx((0.91 - half, 0.91 + half))


def test_wilson_interval_for_one_repeat_by_hand():
    n, k = 100, 90
    p = k / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2)) / (1 + Z**2 / n)
    interval = stats.accuracy_interval([k], n)
    assert interval.method == "wilson"
    assert interval.estimate == 0.9
    assert (interval.low, interval.high) == pytest.approx((centre - half, centre + half))


def test_paired_wald_interval_by_hand():
    # b = 30 images only A gets right, c = 10 only B, of n = 1000:
    # (b - c) / n +- 1.96 * sqrt(b + c - (b - c)^2 / n) / n = 0.02 +- 1.96 * sqrt(39.6) / 1000
    half = Z * math.sqrt(39.6) / 1000
    interval = stats.paired_difference_interval(30, 10, 1000)
    assert interval.estimate == pytest.approx(0.02)
    assert (interval.low, interval.high) == pytest.approx((0.02 - half, 0.02 + half))
    assert interval.method == "wald-paired"


def test_difference_interval_one_repeat_is_paired_wald():
    interval = stats.difference_interval([stats.McNemar(30, 10, 0.002)], 1000)
    assert interval == stats.paired_difference_interval(30, 10, 1000)


def test_difference_interval_over_repeats_is_a_t_interval():
    # per-repeat differences 0.01, 0.02, 0.03: mean 0.02, sd 0.01
    tests = [stats.McNemar(20, 10, 0.1), stats.McNemar(30, 10, 0.1), stats.McNemar(40, 10, 0.1)]
    interval = stats.difference_interval(tests, 1000)
    half = T_975_DF2 * 0.01 / math.sqrt(3)
    assert interval.method == "t"
    assert (interval.estimate, interval.low, interval.high) == pytest.approx(
        (0.02, 0.02 - half, 0.02 + half)
    )


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, 2 * 0.03, max(1 * 0.04, 0.06); back in the given order
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # capped at 1
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    assert stats.holm([]) == []


@pytest.mark.parametrize(
    ("p_adjusted", "differences", "expected"),
    [
        ([0.001, 0.01, 0.04], [0.02, 0.01, 0.03], True),
        ([0.001], [-0.02], True),
        ([0.001, 0.06, 0.001], [0.02, 0.01, 0.03], False),  # one repeat not significant
        ([0.001, 0.001], [0.02, -0.01], False),  # the sign changes
        ([0.05], [0.01], False),  # p must be below alpha
        ([], [], False),
    ],
)
def test_verdict_rule(p_adjusted, differences, expected):
    assert stats.significant(p_adjusted, differences) is expected


def test_exact_difference_interval_maps_clopper_pearson_of_the_discordant_images():
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(9, 10, alpha=0.05, method="beta")
    interval = stats.exact_difference_interval(9, 1, 100)
    assert interval.estimate == pytest.approx(0.08)
    assert (interval.low, interval.high) == pytest.approx(
        ((2 * low - 1) * 0.1, (2 * high - 1) * 0.1)
    )
    assert interval.method == "exact"
    assert stats.exact_difference_interval(0, 0, 100) == stats.Interval(0.0, 0.0, 0.0, "exact")


def test_holm_confidence_is_bonferroni_when_holm_multiplies_by_the_family():
    assert stats.holm_confidence(0.01, 0.03, 3) == pytest.approx(1 - 0.05 / 3)
    assert stats.holm_confidence(0.2, 0.2, 1) == pytest.approx(0.95)
    assert stats.holm_confidence(0.0, 0.0, 4) == pytest.approx(1 - 0.05 / 4)


@pytest.mark.parametrize("repeats", [1, 3])
def test_a_verdict_interval_excludes_zero_exactly_when_the_verdict_rule_holds(repeats, monkeypatch):
    # statsmodels' Holm runs gc.collect() on every call: seconds each in a test
    # process that holds TensorFlow. Its arithmetic is what is tested here.
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    # Random families of pairs: discordant counts near the edge of significance.
    rng = np.random.default_rng(repeats)
    n, pairs, checked = 10_000, 6, 0
    for _ in range(40):
        per_pair = []
        for _ in range(pairs):
            d = rng.integers(0, 120, repeats)
            a = rng.binomial(d, rng.uniform(0.3, 0.8))
            per_pair.append(list(zip(a.tolist(), (d - a).tolist(), strict=True)))
        raw = [
            [stats.mcnemar_exact(*correctness(0, a, b, 0)).p_value for a, b in counts]
            for counts in per_pair
        ]
        adjusted = np.array([stats.holm(list(col)) for col in np.array(raw).T]).T
        for counts, p, p_holm in zip(per_pair, raw, adjusted, strict=True):
            tests = [(a, b, pv, ph) for (a, b), pv, ph in zip(counts, p, p_holm, strict=True)]
            interval = stats.verdict_interval(tests, n, pairs)
            differences = [(a - b) / n for a, b in counts]
            excludes_zero = interval.low > 0 or interval.high < 0
            assert excludes_zero == stats.significant(list(p_holm), differences), tests
            checked += excludes_zero
    assert checked > 10  # some pairs were significant, so both sides were tested
