"""A variant's accuracy interval, McNemar's exact test of one repeat's two networks, Holm.

SciPy and statsmodels load inside the functions: reading an :class:`Interval` needs neither.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import ConfigDict

from cnnvsmlp.jsonmodel import Record

CONFIDENCE = 0.95
ALPHA = 0.05


class Interval(Record):
    """An estimate with its confidence interval and method: ``Interval(mean, low, high, "t")``."""

    model_config = ConfigDict(frozen=True)

    estimate: float
    """The point estimate."""
    low: float
    """The bounds of the `confidence` interval."""
    high: float
    """The bounds of the `confidence` interval."""
    method: str
    """`t` (Student t over repeats), `wilson` (Wilson score interval of a proportion over the test
    images)."""

    def __init__(self, estimate: float, low: float, high: float, method: str) -> None:
        super().__init__(estimate=estimate, low=low, high=high, method=method)


def t_interval(values: list[float] | np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Mean of at least two values with its Student-t interval (method ``t``)."""
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


def accuracy_interval(correct: list[int], n: int, confidence: float = CONFIDENCE) -> Interval:
    """Accuracy from each repeat's ``correct`` of ``n``: t over repeats, Wilson for one run."""
    from statsmodels.stats.proportion import proportion_confint

    if len(correct) >= 2:
        return t_interval([c / n for c in correct], confidence)
    low, high = proportion_confint(correct[0], n, alpha=1 - confidence, method="wilson")
    return Interval(correct[0] / n, float(low), float(high), "wilson")


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test of two models on the same images; ``only_a_correct``: only A right."""

    only_a_correct: int
    only_b_correct: int
    p_value: float


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """Exact (binomial) McNemar test of two per-image correctness vectors; p 1 if none differ."""
    from scipy.stats import binom

    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if correct_a.shape != correct_b.shape:
        raise ValueError(
            f"correctness vectors of different lengths: {correct_a.size} and {correct_b.size}"
        )
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    if only_a + only_b == 0:
        return McNemar(0, 0, 1.0)
    p_value = binom.cdf(min(only_a, only_b), only_a + only_b, 0.5) * 2
    return McNemar(only_a, only_b, float(min(p_value, 1.0)))


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values of one family, in the order given (capped at 1)."""
    from statsmodels.stats.multitest import multipletests

    if not p_values:
        return []
    return [float(p) for p in multipletests(p_values, alpha=ALPHA, method="holm")[1]]
