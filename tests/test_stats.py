"""The statistics against cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnvsmlp import stats

Z = 1.959963984540054  # the 97.5% quantile of the standard normal


def test_mcnemar_exact_known_p_value():
    # b = 1 image only A gets right, c = 9 only B: two-sided exact binomial
    # p = 2 * P(X <= 1 | n = 10, 1/2) = 2 * (1 + 10) / 1024.
    a = np.array([True] * 50 + [True] * 1 + [False] * 9 + [False] * 40)
    b = np.array([True] * 50 + [False] * 1 + [True] * 9 + [False] * 40)
    result = stats.mcnemar_exact(a, b)
    assert (result.only_a, result.only_b) == (1, 9)
    assert result.p_value == pytest.approx(22 / 1024)


def test_mcnemar_identical_models():
    same = np.array([True, False, True])
    assert stats.mcnemar_exact(same, same).p_value == 1.0


def test_t_interval_by_hand():
    values = [0.90, 0.91, 0.92]
    # mean 0.91, sd 0.01, t(0.975, df=2) = 4.302652729911275
    half = 4.302652729911275 * 0.01 / math.sqrt(3)
    interval = stats.t_interval(values)
    assert interval.estimate == pytest.approx(0.91)
    assert (interval.low, interval.high) == pytest.approx((0.91 - half, 0.91 + half))
    assert interval.method == "t"


def test_wilson_interval_by_hand():
    n, k = 100, 90
    p = k / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2)) / (1 + Z**2 / n)
    interval = stats.accuracy_interval([0.9], n)
    assert interval.method == "wilson"
    assert (interval.low, interval.high) == pytest.approx((centre - half, centre + half))


def test_paired_difference_interval_by_hand():
    # 30 images only A gets right, 10 only B, of 1000.
    se = math.sqrt(30 + 10 - (30 - 10) ** 2 / 1000) / 1000
    interval = stats.paired_difference_interval(30, 10, 1000)
    assert interval.estimate == pytest.approx(0.02)
    assert (interval.low, interval.high) == pytest.approx((0.02 - Z * se, 0.02 + Z * se))


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, 2 * 0.03, max(1 * 0.04, 0.06)
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([]) == []


def test_t_interval_needs_two_values():
    with pytest.raises(ValueError, match="at least two"):
        stats.t_interval([0.9])
