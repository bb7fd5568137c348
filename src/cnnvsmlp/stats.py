"""The statistics of the comparison, as small pure functions.

Accuracy of a variant: the mean over repeats with a Student-t interval
(seed-to-seed variation); with a single run, a Wilson interval over the test
images (sampling variation of the test set only).

A pair of variants, on the same test images: McNemar's exact test on the
per-image correctness of the two models, one test per repeat, the p-values
Holm-adjusted over all pairs; the accuracy difference with a t-interval over
the per-repeat differences, or, with a single run, the Wald interval of a
difference of paired proportions.

The interval printed beside a test is the test's own: per repeat, the exact
interval of the difference given the images the two models disagree on (the
Clopper-Pearson interval McNemar's exact test inverts), at the confidence
level the Holm adjustment gives that test (:func:`holm_confidence`), so it
excludes 0 exactly when the adjusted p is below ``alpha``.

SciPy and statsmodels are imported in the functions that use them: the
comparison's record (:mod:`cnnvsmlp.report.model`) holds :class:`Interval`,
and reading a record should not load them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import ConfigDict

from cnnvsmlp.jsonmodel import Record

CONFIDENCE = 0.95
ALPHA = 0.05


class Interval(Record):
    """An estimate with its confidence interval and the method that made it.

    A record, as the comparison stores it; made positionally here:
    ``Interval(mean, low, high, "t")``.
    """

    model_config = ConfigDict(frozen=True)

    estimate: float
    low: float
    high: float
    method: str

    def __init__(self, estimate: float, low: float, high: float, method: str) -> None:
        super().__init__(estimate=estimate, low=low, high=high, method=method)


def t_interval(values: list[float] | np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Mean of at least two values with its Student-t confidence interval.

    Args:
        values: one number per repeat.
        confidence: coverage of the interval.

    Returns:
        The mean and the interval, method ``t``. Identical values give a
        zero-width interval.

    Raises:
        ValueError: fewer than two values.
    """
    from scipy import stats as scipy_stats

    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        raise ValueError(f"a t-interval needs at least two values, got {len(values)}")
    mean = float(values.mean())
    sem = float(scipy_stats.sem(values))
    if sem == 0.0:
        return Interval(mean, mean, mean, "t")
    low, high = scipy_stats.t.interval(confidence, len(values) - 1, loc=mean, scale=sem)
    return Interval(mean, float(low), float(high), "t")


def wilson_interval(correct: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Proportion ``correct / n`` with its Wilson score interval.

    Args:
        correct: images classified correctly.
        n: images scored.
        confidence: coverage of the interval.

    Returns:
        The proportion and the interval, method ``wilson``.
    """
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(correct, n, alpha=1 - confidence, method="wilson")
    return Interval(correct / n, float(low), float(high), "wilson")


def accuracy_interval(correct: list[int], n: int, confidence: float = CONFIDENCE) -> Interval:
    """Test accuracy of one variant over its repeats.

    Args:
        correct: per repeat, the test images classified correctly.
        n: test images per repeat.
        confidence: coverage of the interval.

    Returns:
        A t-interval over the repeats' accuracies when there are two or more,
        otherwise the Wilson interval of the single run on the test set.
    """
    if len(correct) >= 2:
        return t_interval([c / n for c in correct], confidence)
    return wilson_interval(correct[0], n, confidence)


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test of two models on the same images.

    ``only_a`` and ``only_b`` are the discordant counts: images only model A
    (only model B) classified correctly.
    """

    only_a: int
    only_b: int
    p_value: float


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """Exact (binomial) McNemar test of two per-image correctness vectors.

    Args:
        correct_a: per image, whether model A was right.
        correct_b: per image, whether model B was right; same images, same order.

    Returns:
        The discordant counts and the two-sided exact p-value (1 when the
        models never disagree).

    Raises:
        ValueError: the vectors differ in length.
    """
    from statsmodels.stats.contingency_tables import mcnemar

    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if correct_a.shape != correct_b.shape:
        raise ValueError(
            f"correctness vectors of different lengths: {correct_a.size} and {correct_b.size}"
        )
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    if only_a + only_b == 0:
        return McNemar(0, 0, 1.0)
    both = int(np.sum(correct_a & correct_b))
    neither = int(np.sum(~correct_a & ~correct_b))
    result = mcnemar([[both, only_a], [only_b, neither]], exact=True)
    return McNemar(only_a, only_b, float(result.pvalue))


def paired_difference_interval(
    only_a: int, only_b: int, n: int, confidence: float = CONFIDENCE
) -> Interval:
    """Accuracy of A minus accuracy of B on the same ``n`` images, with its Wald interval.

    The interval is ``(b - c) / n +- z * sqrt(b + c - (b - c)**2 / n) / n`` with
    ``b = only_a`` and ``c = only_b``, the discordant counts.

    Args:
        only_a: images only A classified correctly.
        only_b: images only B classified correctly.
        n: images both were scored on.
        confidence: coverage of the interval.

    Returns:
        The difference and the interval, method ``wald-paired``.
    """
    from scipy import stats as scipy_stats

    diff = (only_a - only_b) / n
    z = float(scipy_stats.norm.ppf(0.5 + confidence / 2))
    se = math.sqrt(max(only_a + only_b - (only_a - only_b) ** 2 / n, 0.0)) / n
    return Interval(diff, diff - z * se, diff + z * se, "wald-paired")


def difference_interval(tests: list[McNemar], n: int, confidence: float = CONFIDENCE) -> Interval:
    """Accuracy difference of a pair over its repeats.

    Args:
        tests: per repeat, the McNemar test of A against B (its discordant counts).
        n: test images per repeat.
        confidence: coverage of the interval.

    Returns:
        A t-interval over the per-repeat differences ``(only_a - only_b) / n``
        when there are two or more repeats, otherwise the paired Wald interval.
    """
    if len(tests) >= 2:
        return t_interval([(t.only_a - t.only_b) / n for t in tests], confidence)
    return paired_difference_interval(tests[0].only_a, tests[0].only_b, n, confidence)


def exact_difference_interval(
    only_a: int, only_b: int, n: int, confidence: float = CONFIDENCE
) -> Interval:
    """Accuracy of A minus B on ``n`` images, with the interval McNemar's exact test inverts.

    Given the ``d = only_a + only_b`` images the models disagree on, ``only_a``
    is binomial with the share ``s`` of them A gets right, and the difference
    is ``(2 s - 1) d / n``; the Clopper-Pearson interval of ``s`` maps to the
    interval of the difference. It excludes 0 exactly when the exact test's
    p-value is below ``1 - confidence``.

    Args:
        only_a: images only A classified correctly.
        only_b: images only B classified correctly.
        n: images both were scored on.
        confidence: coverage of the interval.

    Returns:
        The difference and the interval, method ``exact``; ``[0, 0]`` when the
        models never disagree.
    """
    from statsmodels.stats.proportion import proportion_confint

    d = only_a + only_b
    diff = (only_a - only_b) / n
    if d == 0:
        return Interval(0.0, 0.0, 0.0, "exact")
    low, high = proportion_confint(only_a, d, alpha=1 - confidence, method="beta")
    return Interval(diff, (2 * float(low) - 1) * d / n, (2 * float(high) - 1) * d / n, "exact")


def holm_confidence(p_value: float, p_holm: float, tests: int, alpha: float = ALPHA) -> float:
    """The confidence level at which a test's own interval agrees with its Holm-adjusted p.

    A test whose raw p is below ``alpha * p_value / p_holm`` has its adjusted p
    below ``alpha``, so its interval at ``1 - alpha * p_value / p_holm``
    excludes the null exactly when the adjusted test rejects it. With one test
    this is ``1 - alpha``; Bonferroni's ``1 - alpha / m`` is the case
    ``p_holm = m * p_value``.

    Args:
        p_value: the test's raw p-value.
        p_holm: its Holm-adjusted p-value.
        tests: tests in the family (used when both p-values underflow to 0).
        alpha: the significance level.

    Returns:
        The confidence level, in ``[1 - alpha, 1)``.
    """
    ratio = p_value / p_holm if p_holm > 0 else 1 / tests
    return 1 - alpha * min(ratio, 1.0)


def verdict_interval(
    tests: list[tuple[int, int, float, float]], n: int, pairs: int, alpha: float = ALPHA
) -> Interval:
    """The interval a verdict prints: the repeats' Holm-adjusted exact intervals, end to end.

    It runs from the lowest to the highest bound of the repeats' intervals
    (:func:`exact_difference_interval` at :func:`holm_confidence`), around the
    mean difference; it excludes 0 exactly when every repeat's adjusted test
    is significant with the same sign, the verdict rule of :func:`significant`.

    Args:
        tests: per repeat, ``(only_a, only_b, p_value, p_holm)``.
        n: test images per repeat.
        pairs: pairs of variants in each repeat's Holm family.
        alpha: the significance level.

    Returns:
        The mean difference and the interval, method ``exact-holm``.
    """
    intervals = [
        exact_difference_interval(a, b, n, holm_confidence(p, p_holm, pairs, alpha))
        for a, b, p, p_holm in tests
    ]
    mean = float(np.mean([i.estimate for i in intervals]))
    low = min(i.low for i in intervals)
    high = max(i.high for i in intervals)
    return Interval(mean, low, high, "exact-holm")


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given.

    Args:
        p_values: one family of tests.

    Returns:
        The adjusted p-values (capped at 1), an empty list for no tests.
    """
    from statsmodels.stats.multitest import multipletests

    if not p_values:
        return []
    return [float(p) for p in multipletests(p_values, alpha=ALPHA, method="holm")[1]]


def significant(p_adjusted: list[float], differences: list[float], alpha: float = ALPHA) -> bool:
    """The verdict rule: is one variant better than the other in every repeat?

    Args:
        p_adjusted: per repeat, the Holm-adjusted McNemar p-value.
        differences: per repeat, the accuracy difference of the pair.
        alpha: the significance level.

    Returns:
        True when every adjusted p-value is below ``alpha`` and every
        difference is nonzero with the same sign.
    """
    signs = {float(np.sign(d)) for d in differences}
    return (
        bool(p_adjusted)
        and all(p < alpha for p in p_adjusted)
        and len(signs) == 1
        and 0.0 not in signs
    )
