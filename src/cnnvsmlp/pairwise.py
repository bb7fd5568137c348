"""Every difference the project states, its interval and verdict: one way (docs/statistics.md).

From per-image correctness or, for records that kept only counts, bounded from them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from cnnvsmlp.jsonmodel import Record

ALPHA = 0.05
MARGIN = 0.01  # one point of accuracy

Method = Literal["seeds-and-images", "images", "seeds-and-images-bound"]
Verdict = Literal["different", "equivalent", "inconclusive"]


class RepeatTest(Record):
    """McNemar's exact test of the two networks of one repeat (a detail: fixed networks)."""

    repeat: int
    """The repeat."""
    difference: float
    """Accuracy of `a` minus accuracy of `b` in this repeat: `(only_a_correct - only_b_correct) /
    n_test`."""
    only_a_correct: int
    """Discordant counts: test images only `a`, only `b`, predicted right."""
    only_b_correct: int
    """Discordant counts: test images only `a`, only `b`, predicted right."""
    p_value: float
    """Two-sided exact McNemar p-value (binomial on the discordant images); 1 when the two never
    disagree."""
    p_holm: float = Field(description="Holm-adjusted over this pair's repeats.")


class Difference(Record):
    """Accuracy of ``a`` minus ``b``, paired by seed, with its interval and verdict."""

    a: str
    """The two variants."""
    b: str
    """The two variants."""
    shift: int = Field(default=0, description="Pixels the test images were moved; 0: as they are.")
    n_train: int | None = Field(default=None, description="Training images; None: all.")
    estimate: float = Field(description="Mean over seeds of the accuracy difference (fraction).")
    low: float
    """The interval and its confidence, `1 - alpha / family`."""
    high: float
    """The interval and its confidence, `1 - alpha / family`."""
    level: float = Field(description="Confidence of [low, high]: 1 - alpha / family.")
    se: float
    """Standard error and (Satterthwaite's) degrees of freedom."""
    df: float
    """Standard error and (Satterthwaite's) degrees of freedom."""
    p_value: float = Field(description="Two-sided test of no difference.")
    p_adjusted: float = Field(description="Bonferroni over the family.")
    margin: float = Field(description="Equivalence margin (fraction).")
    p_equivalence: float = Field(description="Two one-sided tests of |difference| >= margin.")
    p_equivalence_adjusted: float
    """Bonferroni, each one-sided test at alpha / (2 k): below alpha iff [low, high] in +-margin."""
    family: int = Field(description="Differences in the family this one is adjusted over.")
    seeds: int
    """Repeats and test images."""
    images: int
    """Repeats and test images."""
    method: Method
    """`seeds-and-images` (crossed random effects), `images` (one seed: the test images only),
    `seeds-and-images-bound` (from per-repeat counts, the image term bounded; conservative)."""
    verdict: Verdict
    """`different`, `equivalent` or `inconclusive`."""
    per_seed: list[float] = Field(description="The difference in each repeat, in repeat order.")
    tests: list[RepeatTest] = Field(default=[], description="Per repeat, McNemar's exact test.")

    def flipped(self) -> Difference:
        """The same difference stated as ``b - a``."""
        tests = [
            t.model_copy(
                update={
                    "difference": -t.difference,
                    "only_a_correct": t.only_b_correct,
                    "only_b_correct": t.only_a_correct,
                }
            )
            for t in self.tests
        ]
        return self.model_copy(
            update={
                "a": self.b,
                "b": self.a,
                "estimate": -self.estimate,
                "low": -self.high,
                "high": -self.low,
                "per_seed": [-d for d in self.per_seed],
                "tests": tests,
            }
        )


@dataclass(frozen=True)
class Estimate:
    """A difference before its family is known: the mean, its standard error and df."""

    a: str
    b: str
    estimate: float
    se: float
    df: float
    seeds: int
    images: int
    method: Method
    per_seed: tuple[float, ...]
    shift: int = 0
    n_train: int | None = None
    tests: tuple[RepeatTest, ...] = ()


def crossed(x: np.ndarray) -> tuple[float, float, float]:
    """Mean, SE and Satterthwaite df of a seeds x images table, both random (crossed ANOVA).

    Each variance component is clamped at 0; with one seed it is the paired t over images.
    """
    x = np.asarray(x, dtype=np.float64)
    seeds, images = x.shape
    mean = float(x.mean())
    if seeds == 1:
        var = float(x[0].var(ddof=1)) if images > 1 else 0.0
        return mean, math.sqrt(var / images), float(images - 1)
    rows, cols = x.mean(axis=1), x.mean(axis=0)
    ms_seed = images * float(np.sum((rows - mean) ** 2)) / (seeds - 1)
    ms_image = seeds * float(np.sum((cols - mean) ** 2)) / (images - 1)
    residual = x - rows[:, None] - cols[None, :] + mean
    ms_res = float(np.sum(residual**2)) / ((seeds - 1) * (images - 1))
    terms = [(ms_res, (seeds - 1) * (images - 1), 1.0)]
    for ms, df in ((ms_seed, seeds - 1), (ms_image, images - 1)):
        if ms > ms_res:  # the component's estimate (ms - ms_res) / n is positive
            terms += [(ms, df, 1.0), (ms_res, (seeds - 1) * (images - 1), -1.0)]
    return (mean, *_satterthwaite(terms, seeds * images))


def _satterthwaite(terms: list[tuple[float, float, float]], scale: float) -> tuple[float, float]:
    """SE and df of ``sum(c * ms) / scale`` for mean squares ``ms`` with ``df`` each."""
    by_ms: dict[tuple[float, float], float] = {}
    for ms, df, c in terms:
        by_ms[(ms, df)] = by_ms.get((ms, df), 0.0) + c
    total = sum(c * ms for (ms, _), c in by_ms.items())
    if total <= 0:
        return 0.0, math.inf
    spread = sum((c * ms) ** 2 / df for (ms, df), c in by_ms.items() if c and df > 0)
    return math.sqrt(total / scale), (total**2 / spread if spread > 0 else math.inf)


def estimate(
    a: str,
    b: str,
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    repeats: Sequence[int] | None = None,
    **where,
) -> Estimate:
    """``a - b`` from ``(seeds, images)`` correctness; with ``repeats``, McNemar's test of each."""
    from cnnvsmlp.stats import holm, mcnemar_exact

    ca, cb = np.atleast_2d(correct_a).astype(bool), np.atleast_2d(correct_b).astype(bool)
    x = ca.astype(np.int8) - cb.astype(np.int8)
    mean, se, df = crossed(x)
    method = "images" if len(x) == 1 else "seeds-and-images"
    per_seed = tuple(float(d) for d in x.mean(axis=1))
    tests: tuple[RepeatTest, ...] = ()
    if repeats is not None:
        mcnemar = [mcnemar_exact(ra, rb) for ra, rb in zip(ca, cb, strict=True)]
        adjusted = holm([t.p_value for t in mcnemar])
        tests = tuple(
            RepeatTest(repeat=r, difference=float(d), p_holm=p, **vars(t))
            for r, d, t, p in zip(repeats, per_seed, mcnemar, adjusted, strict=True)
        )
    return Estimate(a, b, mean, se, df, len(x), x.shape[1], method, per_seed, tests=tests, **where)


def bounded(
    a: str,
    b: str,
    per_seed: Sequence[float],
    disagree: Sequence[float],
    images: int,
    **where,
) -> Estimate:
    """The difference from each repeat's ``d_s`` and share disagreed on ``q_s`` (or a bound).

    The image term's variance is at most the mean of ``q_s - d_s**2``: a conservative interval.
    """
    d = np.asarray(per_seed, dtype=float)
    q = np.asarray(disagree, dtype=float)
    image_var = max(float(np.mean(q - d**2)), 0.0)
    var = image_var / images + (float(np.var(d, ddof=1)) / len(d) if len(d) > 1 else 0.0)
    df = float(len(d) - 1) if len(d) > 1 else float(images - 1)
    method = "seeds-and-images-bound" if len(d) > 1 else "images"
    return Estimate(
        a, b, float(d.mean()), math.sqrt(var), df, len(d), images, method, tuple(d), **where
    )


def from_counts(
    found: Sequence[tuple[str, str, Sequence[RepeatTest | dict], dict]], images: int
) -> list[Difference]:
    """A family restated by :func:`bounded` from ``(a, b, tests, where)``'s McNemar counts."""
    estimates = []
    for a, b, counts, where in found:
        tests = tuple(RepeatTest.model_validate(t) for t in counts)
        d = [t.difference for t in tests]
        q = [(t.only_a_correct + t.only_b_correct) / images for t in tests]
        estimates.append(bounded(a, b, d, q, images, tests=tests, **where))
    return decide(estimates)


def decide(
    estimates: Sequence[Estimate], margin: float = MARGIN, alpha: float = ALPHA
) -> list[Difference]:
    """The family's differences: intervals, tests and verdicts, Bonferroni over all of them."""
    from scipy import stats as scipy_stats

    k = max(len(estimates), 1)
    out = []
    for e in estimates:
        p, p_eq = _p_values(e.estimate, e.se, e.df, margin)
        half = e.se * float(scipy_stats.t.ppf(1 - alpha / (2 * k), e.df)) if e.se > 0 else 0.0
        p_adj, p_eq_adj = min(1.0, k * p), min(1.0, 2 * k * p_eq)
        verdict: Verdict = (
            "different" if p_adj < alpha else "equivalent" if p_eq_adj < alpha else "inconclusive"
        )
        out.append(
            Difference(
                **{**vars(e), "df": min(e.df, 1e9)},
                low=e.estimate - half,
                high=e.estimate + half,
                level=1 - alpha / k,
                p_value=p,
                p_adjusted=p_adj,
                margin=margin,
                p_equivalence=p_eq,
                p_equivalence_adjusted=p_eq_adj,
                family=k,
                verdict=verdict,
            )
        )
    return out


def _p_values(mean: float, se: float, df: float, margin: float) -> tuple[float, float]:
    """Two-sided p of no difference and the two one-sided tests' p of equivalence."""
    from scipy.stats import t

    if se == 0:
        return (1.0 if mean == 0 else 0.0), (0.0 if abs(mean) < margin else 1.0)
    p = float(2 * t.sf(abs(mean) / se, df))
    p_eq = max(float(t.sf((mean + margin) / se, df)), float(t.cdf((mean - margin) / se, df)))
    return p, p_eq
