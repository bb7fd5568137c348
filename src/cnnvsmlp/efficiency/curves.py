"""Learning curves checked out of sample, and the data multiplier read off the data.

Two curve families describe test error against training-set size ``n``
(``x = n / 1000``): a power law ``a * x**-b`` and a power law with a floor
``a * x**-b + c``. Each is fitted on every size but the largest and scored
on predicting the largest (:func:`holdout`): a family that misses there says
nothing beyond the sizes trained. No number is read off a curve.

The data multiplier at size ``n`` (:func:`multipliers`): how many times ``n``
images the baseline needs to reach the mean accuracy the other variant has at
``n``, interpolated between the sampled sizes on the baseline's observed mean
accuracies (log size, the running maximum so it never falls). Outside the
sampled sizes it is not given: "beyond the data". Its interval comes from a
bootstrap over whole repeats (a repeat's nested subsets and both variants'
trainings on them stay together).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field

from cnnvsmlp.jsonmodel import Record

N_REF = 1000.0
BOOTSTRAP_SAMPLES = 1000
CONFIDENCE = 0.95
FAMILIES = {
    "power": "a * (n/1000)^-b",
    "power+floor": "a * (n/1000)^-b + c",
}


class CurveFit(Record):
    """A fitted learning curve of one family."""

    family: str = Field(description="A key of FAMILIES.")
    params: dict[str, float]
    sizes: list[int] = Field(description="The sizes it was fitted on.")
    rmse: float = Field(description="Root mean square of the residuals, as a fraction.")

    def error(self, n: float | np.ndarray) -> float | np.ndarray:
        """The fitted error at ``n`` training images."""
        return _curve(self.family, np.asarray(n, dtype=float) / N_REF, **self.params)


def _curve(family: str, x: np.ndarray, a: float, b: float, c: float = 0.0) -> np.ndarray:
    return a * x**-b + (c if family == "power+floor" else 0.0)


def fit(family: str, sizes: Sequence[float], errors: Sequence[float]) -> CurveFit:
    """Fit one family to (size, error) points, each repeat a point.

    Raises:
        ValueError: an unknown family, too few sizes, or lengths that differ.
        RuntimeError: the fit did not converge.
    """
    from scipy.optimize import curve_fit

    if family not in FAMILIES:
        raise ValueError(f"unknown curve family {family!r}; known: {', '.join(FAMILIES)}")
    n, e = np.asarray(sizes, dtype=float), np.asarray(errors, dtype=float)
    if n.shape != e.shape:
        raise ValueError(f"{n.size} sizes but {e.size} errors")
    needed = 3 if family == "power+floor" else 2
    if len(np.unique(n)) < needed:
        raise ValueError(f"a {family} curve needs {needed} sizes or more")
    x = n / N_REF
    slope, intercept = np.polyfit(np.log(x), np.log(np.maximum(e, 1e-6)), 1)
    if family == "power":
        params = {"a": float(math.exp(intercept)), "b": float(-slope)}
    else:
        c0 = float(np.clip(e.min() * 0.5, 0.0, 1.0))
        found, _ = curve_fit(
            lambda x, a, b, c: a * x**-b + c,
            x,
            e,
            p0=[max(math.exp(intercept) - c0, 1e-3), max(-slope, 0.05), c0],
            bounds=([0.0, 0.0, 0.0], [np.inf, 5.0, 1.0]),
            method="trf",
            maxfev=20000,
        )
        params = dict(zip("abc", (float(v) for v in found), strict=True))
    residuals = e - _curve(family, x, **params)
    return CurveFit(
        family=family,
        params=params,
        sizes=sorted({int(v) for v in n}),
        rmse=float(np.sqrt(np.mean(residuals**2))),
    )


class Holdout(Record):
    """A family fitted without the largest size, predicting it."""

    variant: str
    family: str
    fitted_on: list[int]
    size: int = Field(description="The held-out size: the largest trained.")
    predicted: float | None = Field(description="The fitted error at the held-out size.")
    observed: float = Field(description="The mean error of its repeats there.")
    miss: float | None = Field(description="predicted - observed, as a fraction.")
    error: str = Field(default="", description="Why there is no fit, if there is none.")


def holdout(variant: str, family: str, sizes: Sequence[int], errors: np.ndarray) -> Holdout:
    """Fit ``family`` on every size but the largest and predict the largest.

    Args:
        variant: whose curve.
        family: a key of :data:`FAMILIES`.
        sizes: the sizes trained, ascending, one per row of ``errors``.
        errors: test error, ``(sizes, repeats)``.
    """
    sizes = list(sizes)
    errors = np.asarray(errors, dtype=float)
    observed = float(errors[-1].mean())
    flat = np.repeat(sizes[:-1], errors.shape[1])
    predicted, error = None, ""
    try:
        predicted = float(fit(family, flat, errors[:-1].ravel()).error(sizes[-1]))
    except (ValueError, RuntimeError) as err:
        error = str(err)
    return Holdout(
        variant=variant,
        family=family,
        fitted_on=sizes[:-1],
        size=sizes[-1],
        predicted=predicted,
        observed=observed,
        miss=None if predicted is None else predicted - observed,
        error=error,
    )


class Multiplier(Record):
    """The data multiplier at one size, with its bootstrap range; None: outside the data."""

    n_train: int
    target: float = Field(description="The variant's mean test accuracy at n_train.")
    estimate: float | None = Field(
        description="Baseline images needed / n_train; None when the target lies outside the "
        "baseline's sampled sizes (where says which side)."
    )
    where: Literal["inside", "beyond", "below"] = Field(
        default="inside",
        description="beyond: the baseline's largest size does not reach the target; below: "
        "its smallest size is already above it (the multiplier is under sizes[0] / n_train).",
    )
    low: float | None = Field(description="None: below the data in some bootstrap samples.")
    high: float | None = Field(description="None: beyond the data in some bootstrap samples.")
    beyond_fraction: float = Field(
        description="Share of bootstrap samples in which the target lies outside the sampled sizes."
    )
    samples: int
    repeats: int = Field(default=0, description="Repeats resampled; few give a rough range.")


def size_for(sizes: Sequence[int], accuracy: Sequence[float], target: float) -> float:
    """Training images at which the baseline's observed accuracy reaches ``target``.

    Linear in log size between sampled sizes, on the running maximum of the
    mean accuracies; ``inf`` when ``target`` lies above the largest size's
    accuracy (beyond the data), 0 when below the smallest's (below it).
    """
    reach = np.maximum.accumulate(np.asarray(accuracy, dtype=float))
    if target > reach[-1]:
        return math.inf
    if target < reach[0]:
        return 0.0
    k = int(np.searchsorted(reach, target, side="left"))
    if k == 0 or reach[k] == target:
        return float(sizes[k])
    lo, hi = math.log(sizes[k - 1]), math.log(sizes[k])
    share = (target - reach[k - 1]) / (reach[k] - reach[k - 1])
    return math.exp(lo + share * (hi - lo))


def multipliers(
    sizes: Sequence[int],
    baseline: np.ndarray,
    other: np.ndarray,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> list[Multiplier]:
    """The data multiplier at each sampled size, with a bootstrap over whole repeats.

    Args:
        sizes: the sizes trained, ascending, one per row.
        baseline: the baseline's test accuracy, ``(sizes, repeats)``.
        other: the other variant's, on the same repeats (the same subsets).
        samples: bootstrap samples.
        seed: seed of the resampling.
        confidence: coverage of the percentile interval.
    """
    baseline, other = np.asarray(baseline, float), np.asarray(other, float)
    repeats = baseline.shape[1]

    def at(pick: np.ndarray) -> np.ndarray:
        base, mine = baseline[:, pick].mean(axis=1), other[:, pick].mean(axis=1)
        needed = [size_for(sizes, base, t) for t in mine]
        return np.array(
            [math.inf if m is None else m / n for m, n in zip(needed, sizes, strict=True)]
        )

    estimate = at(np.arange(repeats))
    rng = np.random.default_rng(seed)
    draws = np.array([at(rng.integers(0, repeats, size=repeats)) for _ in range(samples)])
    tail = (1.0 - confidence) / 2
    out = []
    for j, n in enumerate(sizes):
        column = draws[:, j]
        low = float(np.quantile(column, tail, method="lower"))
        high = float(np.quantile(column, 1 - tail, method="higher"))
        inside = 0 < estimate[j] < math.inf
        out.append(
            Multiplier(
                n_train=int(n),
                target=float(other[j].mean()),
                estimate=float(estimate[j]) if inside else None,
                where="inside" if inside else "below" if estimate[j] == 0 else "beyond",
                low=low if 0 < low < math.inf else None,
                high=high if 0 < high < math.inf else None,
                beyond_fraction=float(np.mean((column == 0) | ~np.isfinite(column))),
                samples=samples,
                repeats=repeats,
            )
        )
    return out
