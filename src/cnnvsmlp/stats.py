"""The statistics of the comparison, as small pure functions.

Accuracy of a variant: mean over repeats with a t-interval (seed-to-seed
variation); with a single run, a Wilson interval over the test images.

A pair of variants: McNemar's exact test on the per-image correctness of the
two models on the same test images, per repeat, Holm-adjusted over all pairs;
the accuracy difference with a t-interval over the per-repeat differences, or,
with a single run, the Wald interval of a difference of paired proportions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

CONFIDENCE = 0.95
ALPHA = 0.05


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval and how the interval was made."""

    estimate: float
    low: float
    high: float
    method: str


def t_interval(values: list[float] | np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t confidence interval of at least two values."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        raise ValueError("a t-interval needs at least two values")
    mean = float(values.mean())
    sem = float(scipy_stats.sem(values))
    if sem == 0.0:
        return Interval(mean, mean, mean, "t")
    low, high = scipy_stats.t.interval(confidence, len(values) - 1, loc=mean, scale=sem)
    return Interval(mean, float(low), float(high), "t")


def wilson_interval(correct: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Proportion ``correct / n`` with its Wilson score interval."""
    low, high = proportion_confint(correct, n, alpha=1 - confidence, method="wilson")
    return Interval(correct / n, float(low), float(high), "wilson")


def accuracy_interval(accuracies: list[float], n_test: int) -> Interval:
    """Test accuracy over repeats: t-interval, or Wilson for a single run."""
    if len(accuracies) >= 2:
        return t_interval(accuracies)
    return wilson_interval(round(accuracies[0] * n_test), n_test)


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test on two models' correctness on the same images."""

    only_a: int
    only_b: int
    p_value: float


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """Exact (binomial) McNemar test of two boolean correctness vectors.

    Args:
        correct_a: per image, whether model A was right.
        correct_b: per image, whether model B was right, same images in the same order.
    """
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if correct_a.shape != correct_b.shape:
        raise ValueError("correctness vectors of different lengths")
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    both = int(np.sum(correct_a & correct_b))
    neither = int(np.sum(~correct_a & ~correct_b))
    if only_a + only_b == 0:
        return McNemar(0, 0, 1.0)
    result = mcnemar([[both, only_a], [only_b, neither]], exact=True)
    return McNemar(only_a, only_b, float(result.pvalue))


def paired_difference_interval(
    only_a: int, only_b: int, n: int, confidence: float = CONFIDENCE
) -> Interval:
    """Accuracy of A minus B on the same n images, with the Wald interval for paired proportions."""
    diff = (only_a - only_b) / n
    z = scipy_stats.norm.ppf(0.5 + confidence / 2)
    se = math.sqrt(max(only_a + only_b - (only_a - only_b) ** 2 / n, 0.0)) / n
    return Interval(diff, diff - z * se, diff + z * se, "wald-paired")


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given."""
    if not p_values:
        return []
    return [float(p) for p in multipletests(p_values, alpha=ALPHA, method="holm")[1]]


def format_p(p: float) -> str:
    """A p-value as a report prints it."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
