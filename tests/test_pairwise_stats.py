"""The statistics against cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnvsmlp import pairwise

Z = 1.959963984540054  # the 97.5% quantile of the standard normal
T_975_DF2 = 4.302652729911275  # the 97.5% quantile of Student's t with 2 degrees of freedom


def correctness(both: int, only_a: int, only_b: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Two per-image correctness vectors with the given 2 x 2 table."""
    a = [True] * both + [True] * only_a + [False] * only_b + [False] * neither
    b = [True] * both + [False] * only_a + [True] * only_b + [False] * neither
    return np.array(a), np.array(b)


def test_mcnemar_exact_known_p_value():
    # b = 1, c = 9: two-sided exact binomial p = 2 * P(X <= 1 | 10, 1/2) = 2 * 11 / 1024.
    result = pairwise.mcnemar_exact(*correctness(50, 1, 9, 40))
    assert (result.only_a_correct, result.only_b_correct) == (1, 9)
    assert result.p_value == pytest.approx(0.021484375, abs=1e-12)


def test_mcnemar_exact_is_symmetric_and_ignores_concordant_images():
    forward = pairwise.mcnemar_exact(*correctness(10, 9, 1, 0))
    backward = pairwise.mcnemar_exact(*correctness(900, 1, 9, 90))
    assert (forward.only_a_correct, forward.only_b_correct) == (9, 1)
    assert forward.p_value == pytest.approx(backward.p_value)


def test_mcnemar_identical_models():
    same = np.array([True, False, True])
    assert pairwise.mcnemar_exact(same, same) == pairwise.McNemar(0, 0, 1.0)


def test_mcnemar_refuses_vectors_of_different_lengths():
    with pytest.raises(ValueError, match="different lengths: 3 and 2"):
        pairwise.mcnemar_exact(np.ones(3, bool), np.ones(2, bool))


def test_accuracy_interval_of_identical_repeats_has_no_width():
    assert pairwise.accuracy_interval([9, 9], 10) == pairwise.Interval(0.9, 0.9, 0.9, "t")


def test_accuracy_interval_over_repeats_is_a_t_interval_by_hand():
    # mean 0.91, sample sd 0.01, n 3: 0.91 +- t * 0.01 / sqrt(3)
    interval = pairwise.accuracy_interval([900, 910, 920], 1000)
    half = T_975_DF2 * 0.01 / math.sqrt(3)
    assert interval.method == "t"
    assert interval.estimate == pytest.approx(0.91)
    assert (interval.low, interval.high) == pytest.approx((0.91 - half, 0.91 + half))


def test_wilson_interval_for_one_repeat_by_hand():
    n, k = 100, 90
    p = k / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2)) / (1 + Z**2 / n)
    interval = pairwise.accuracy_interval([k], n)
    assert interval.method == "wilson"
    assert interval.estimate == 0.9
    assert (interval.low, interval.high) == pytest.approx((centre - half, centre + half))


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, 2 * 0.03, max(1 * 0.04, 0.06); back in the given order
    assert pairwise.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # capped at 1
    assert pairwise.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    assert pairwise.holm([]) == []
