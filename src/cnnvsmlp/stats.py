"""The statistics of one variant and of one repeat, as small pure functions.

Accuracy of a variant: the mean over repeats with a Student-t interval
(seed-to-seed variation); with a single run, a Wilson interval over the test
images (sampling variation of the test set only). McNemar's exact test of
two networks on the same test images, and Holm's adjustment. A difference
between variants is :mod:`cnnvsmlp.pairwise`'s.

SciPy and statsmodels are imported in the functions that use them: the
comparison's record (:mod:`cnnvsmlp.report.model`) holds :class:`Interval`,
and reading a record should not load them.
"""

from __future__ import annotations

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
