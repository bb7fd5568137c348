"""Each difference's interval and verdict (docs/statistics.md); accuracy interval, McNemar, Holm."""

from __future__ import annotations

import math
from collections import namedtuple
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import ConfigDict, Field

from cnnvsmlp.outputs import Record

CONFIDENCE = 0.95
ALPHA = 0.05
MARGIN = 0.01  # one point of accuracy
McNemar = namedtuple("McNemar", "only_a_correct only_b_correct p_value")  # an exact test


class Interval(Record):
    """An estimate with its confidence interval and method: ``Interval(mean, low, high, "t")``."""

    model_config = ConfigDict(frozen=True)

    estimate: float = Field(description="The point estimate.")
    low: float = Field(description="The bounds of the `confidence` interval.")
    high: float = Field(description="The bounds of the `confidence` interval.")
    method: str
    """`t` (Student t over repeats), `wilson` (Wilson score interval of a proportion over the test
    images)."""

    def __init__(self, estimate: float, low: float, high: float, method: str) -> None:
        super().__init__(estimate=estimate, low=low, high=high, method=method)


def accuracy_interval(correct: list[int], n: int) -> Interval:
    """Accuracy from each repeat's ``correct`` of ``n``: t over repeats, Wilson for one run."""
    from scipy import stats
    from statsmodels.stats.proportion import proportion_confint

    if len(correct) < 2:
        low, high = proportion_confint(correct[0], n, alpha=1 - CONFIDENCE, method="wilson")
        return Interval(correct[0] / n, float(low), float(high), "wilson")
    values = np.array([c / n for c in correct], dtype=float)
    mean, sem = float(values.mean()), float(stats.sem(values))
    if sem == 0.0:
        return Interval(mean, mean, mean, "t")
    low, high = stats.t.interval(CONFIDENCE, len(values) - 1, loc=mean, scale=sem)
    return Interval(mean, float(low), float(high), "t")


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """Exact (binomial) McNemar test of two per-image correctness vectors (p 1 if none differ)."""
    from scipy.stats import binom

    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if correct_a.shape != correct_b.shape:
        raise ValueError(
            f"correctness vectors of different lengths: {correct_a.size} and {correct_b.size}"
        )
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    p_value = binom.cdf(min(only_a, only_b), only_a + only_b, 0.5) * 2
    return McNemar(only_a, only_b, float(min(p_value, 1.0)))


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values of one family, in the order given (capped at 1)."""
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(p_values, alpha=ALPHA, method="holm")[1]]


Method = Literal["seeds-and-images", "images", "seeds-and-images-bound"]
Verdict = Literal["different", "equivalent", "inconclusive"]


class RepeatTest(Record):
    """McNemar's exact test of the two networks of one repeat (a detail: fixed networks)."""

    repeat: int = Field(description="The repeat.")
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

    a: str = Field(description="The two variants.")
    b: str = Field(description="The two variants.")
    shift: int = Field(default=0, description="Pixels the test images were moved; 0: as they are.")
    n_train: int | None = Field(default=None, description="Training images; None: all.")
    estimate: float = Field(description="Mean over seeds of the accuracy difference (fraction).")
    low: float = Field(description="The interval and its confidence, `1 - alpha / family`.")
    high: float = Field(description="The interval and its confidence, `1 - alpha / family`.")
    level: float = Field(description="Confidence of [low, high]: 1 - alpha / family.")
    se: float = Field(description="Standard error and (Satterthwaite's) degrees of freedom.")
    df: float = Field(description="Standard error and (Satterthwaite's) degrees of freedom.")
    p_value: float = Field(description="Two-sided test of no difference.")
    p_adjusted: float = Field(description="Bonferroni over the family.")
    margin: float = Field(description="Equivalence margin (fraction).")
    p_equivalence: float = Field(description="Two one-sided tests of |difference| >= margin.")
    p_equivalence_adjusted: float
    """Bonferroni, each one-sided test at alpha / (2 k): below alpha iff [low, high] in +-margin."""
    family: int = Field(description="Differences in the family this one is adjusted over.")
    seeds: int = Field(description="Repeats and test images.")
    images: int = Field(description="Repeats and test images.")
    method: Method
    """`seeds-and-images` (crossed random effects), `images` (one seed: the test images only),
    `seeds-and-images-bound` (from per-repeat counts, the image term bounded; conservative)."""
    verdict: Verdict = Field(description="`different`, `equivalent` or `inconclusive`.")
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


# A difference before its family is known: the mean, its standard error and df.
Estimate = namedtuple(
    "Estimate",
    "a b estimate se df seeds images method per_seed shift n_train tests",
    defaults=(0, None, ()),
)


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
    df_res = (seeds - 1) * (images - 1)
    ms_res = float(np.sum(residual**2)) / df_res
    by_ms = {(ms_res, df_res): 1.0}  # coefficient of each mean square in the variance
    for ms, df in ((ms_seed, seeds - 1), (ms_image, images - 1)):
        if ms > ms_res:  # the component's estimate (ms - ms_res) / n is positive
            by_ms[(ms, df)] = by_ms.get((ms, df), 0.0) + 1.0
            by_ms[(ms_res, df_res)] -= 1.0
    total = sum(c * ms for (ms, _), c in by_ms.items())
    if total <= 0:
        return mean, 0.0, math.inf
    spread = sum((c * ms) ** 2 / df for (ms, df), c in by_ms.items() if c and df > 0)
    return mean, math.sqrt(total / (seeds * images)), total**2 / spread if spread > 0 else math.inf


def estimate(
    a: str,
    b: str,
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    repeats: Sequence[int] | None = None,
    **where,
) -> Estimate:
    """``a - b`` from ``(seeds, images)`` correctness; with ``repeats``, McNemar's test of each."""
    ca, cb = np.atleast_2d(correct_a).astype(bool), np.atleast_2d(correct_b).astype(bool)
    x = ca.astype(np.int8) - cb.astype(np.int8)
    method = "images" if len(x) == 1 else "seeds-and-images"
    per_seed = tuple(float(d) for d in x.mean(axis=1))
    tests: tuple[RepeatTest, ...] = ()
    if repeats is not None:
        mcnemar = [mcnemar_exact(ra, rb) for ra, rb in zip(ca, cb, strict=True)]
        adjusted = holm([t.p_value for t in mcnemar])
        tests = tuple(
            RepeatTest(repeat=r, difference=float(d), p_holm=p, **t._asdict())
            for r, d, t, p in zip(repeats, per_seed, mcnemar, adjusted, strict=True)
        )
    return Estimate(a, b, *crossed(x), len(x), x.shape[1], method, per_seed, tests=tests, **where)


def bounded(
    a: str, b: str, per_seed: Sequence[float], disagree: Sequence[float], images: int, **where
) -> Estimate:
    """The difference from each repeat's ``d_s`` and share disagreed on ``q_s`` (or a bound).

    The image term's variance is at most the mean of ``q_s - d_s**2``: a conservative interval.
    """
    d, q = np.asarray(per_seed, dtype=float), np.asarray(disagree, dtype=float)
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


def decide(estimates: Sequence[Estimate], margin: float = MARGIN) -> list[Difference]:
    """The family's differences: intervals, tests and verdicts, Bonferroni over all of them."""
    from scipy.stats import t

    k = max(len(estimates), 1)
    out = []
    for e in estimates:
        if e.se == 0:
            p = 1.0 if e.estimate == 0 else 0.0
            p_eq = 0.0 if abs(e.estimate) < margin else 1.0
        else:  # two-sided p of no difference; the two one-sided tests' p of equivalence
            p = float(2 * t.sf(abs(e.estimate) / e.se, e.df))
            above, below = (e.estimate + margin) / e.se, (e.estimate - margin) / e.se
            p_eq = max(float(t.sf(above, e.df)), float(t.cdf(below, e.df)))
        half = e.se * float(t.ppf(1 - ALPHA / (2 * k), e.df)) if e.se > 0 else 0.0
        p_adj, p_eq_adj = min(1.0, k * p), min(1.0, 2 * k * p_eq)
        verdict: Verdict = (
            "different" if p_adj < ALPHA else "equivalent" if p_eq_adj < ALPHA else "inconclusive"
        )
        out.append(
            Difference(
                **{**e._asdict(), "df": min(e.df, 1e9)},
                low=e.estimate - half,
                high=e.estimate + half,
                level=1 - ALPHA / k,
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
