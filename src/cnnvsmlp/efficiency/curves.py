"""Learning curves: test error against training-set size, and the data multiplier.

Each variant's error follows ``error(n) = a * (n / n_ref) ** -b + c``: a power
law falling towards a floor ``c``, the error no amount of data removes. With
``n_ref = 1000``, ``a`` is the error above the floor at a thousand images
(the form ``a' * n ** -b + c`` has ``a' = a * n_ref ** b``, a number too large
to read or to fit well). The fit is SciPy's ``curve_fit`` (trust region,
bounds ``a >= 0``, ``0 <= b <= 5``, ``0 <= c <= 1``) over every run, each repeat
a point; its covariance gives the parameters' standard errors.

The data multiplier at size ``n``: how many times more images a variant
needs to reach another's fitted error at ``n``, ``size_needed(slow,
error(fast, n)) / n``; infinite when that error lies below the slow
variant's floor. Its interval comes from a bootstrap over repeats: the
repeats of each size are drawn with replacement, the same repeats for both
variants (they trained on the same subsets), both curves refitted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import Field

from cnnvsmlp.jsonmodel import Record

N_REF = 1000.0
BOUNDS = ([0.0, 0.0, 0.0], [np.inf, 5.0, 1.0])
BOOTSTRAP_SAMPLES = 1000
CONFIDENCE = 0.95


class CurveFit(Record):
    """A fitted learning curve ``error = a * (n / n_ref) ** -b + c``."""

    a: float = Field(description="Error above the floor at n = n_ref.")
    b: float = Field(description="How fast the error falls: the power of n.")
    c: float = Field(description="The floor: the error with unlimited data.")
    n_ref: float = N_REF
    standard_errors: list[float | None] = Field(
        description="Of a, b and c, from the fit's covariance; None where it has none."
    )
    covariance: list[list[float | None]]
    rmse: float = Field(description="Root mean square of the residuals over the points fitted.")
    points: int

    def error(self, n: float | np.ndarray) -> float | np.ndarray:
        """The fitted error at ``n`` training images."""
        return _curve(np.asarray(n, dtype=float) / self.n_ref, self.a, self.b, self.c)

    def size_needed(self, error: float) -> float:
        """Training images at which the fitted error falls to ``error``; inf below the floor."""
        if error <= self.c or self.a <= 0 or self.b <= 0:
            return math.inf
        # In logs: a nearly flat curve (b near 0) needs more images than a float holds.
        log_n = math.log(self.n_ref) + (math.log(self.a) - math.log(error - self.c)) / self.b
        return math.exp(log_n) if log_n < 700 else math.inf


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _curve(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a * x**-b + c


def fit_learning_curve(sizes: Sequence[float], errors: Sequence[float]) -> CurveFit:
    """Fit ``error = a * (n / n_ref) ** -b + c`` to (size, error) points.

    Args:
        sizes: training images of each point (repeats of one size appear once each).
        errors: test error (1 - accuracy) of each point.

    Returns:
        The parameters, their standard errors and covariance, and the fit's RMSE.

    Raises:
        ValueError: fewer than three distinct sizes, or lengths that differ.
        RuntimeError: the fit did not converge.
    """
    from scipy.optimize import curve_fit

    n = np.asarray(sizes, dtype=float)
    e = np.asarray(errors, dtype=float)
    if n.shape != e.shape:
        raise ValueError(f"{n.size} sizes but {e.size} errors")
    if len(np.unique(n)) < 3:
        raise ValueError(f"a learning curve needs three sizes or more, got {len(np.unique(n))}")
    x = n / N_REF
    c0 = float(np.clip(e.min() * 0.5, 0.0, 1.0))
    a0 = float(max(np.interp(1.0, np.sort(x), e[np.argsort(x)]) - c0, 1e-3))
    params, cov = curve_fit(
        _curve, x, e, p0=[a0, 0.5, c0], bounds=BOUNDS, method="trf", maxfev=20000
    )
    residuals = e - _curve(x, *params)
    return CurveFit(
        a=float(params[0]),
        b=float(params[1]),
        c=float(params[2]),
        standard_errors=[_finite_or_none(s) for s in np.sqrt(np.abs(np.diag(cov)))],
        covariance=[[_finite_or_none(v) for v in row] for row in cov],
        rmse=float(np.sqrt(np.mean(residuals**2))),
        points=len(e),
    )


def data_multiplier(slow: CurveFit, fast: CurveFit, n: float) -> float:
    """How many times ``n`` images the slow variant needs to reach the fast one's error at ``n``.

    Args:
        slow: the learning curve of the variant that needs more data (the MLP).
        fast: the learning curve of the other (the CNN).
        n: training images of the fast variant.

    Returns:
        The multiplier (below 1 when ``slow`` is in fact ahead at ``n``), or
        inf when the fast variant's error at ``n`` is below the slow one's floor.
    """
    return slow.size_needed(float(fast.error(n))) / n


class Multiplier(Record):
    """The data multiplier at one size, with its bootstrap interval.

    None stands for infinite: the slow variant's fitted floor is above the
    fast one's error, so no amount of data closes the gap on that curve.
    """

    n_train: int
    target_error: float = Field(description="The fast variant's fitted error at n_train.")
    estimate: float | None
    low: float | None
    high: float | None
    unreachable_fraction: float = Field(
        description="Share of bootstrap samples in which the slow variant never reaches it."
    )
    extrapolated: bool = Field(
        description="The size needed lies beyond the largest size trained: read with care."
    )
    samples: int


def bootstrap_multipliers(
    sizes: Sequence[int],
    slow_errors: np.ndarray,
    fast_errors: np.ndarray,
    at: Sequence[int],
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> list[Multiplier]:
    """The data multiplier at each size of ``at``, with a bootstrap over repeats.

    Args:
        sizes: the sizes trained, one per row of the error arrays.
        slow_errors: test error of the slow variant, ``(sizes, repeats)``; a
            repeat is the same subset for both variants.
        fast_errors: the same for the fast variant.
        at: the sizes to give the multiplier at.
        samples: bootstrap samples.
        seed: seed of the resampling.
        confidence: coverage of the percentile interval.

    Returns:
        One :class:`Multiplier` per size of ``at``.
    """
    sizes = np.asarray(sizes, dtype=float)
    slow_errors, fast_errors = np.asarray(slow_errors, float), np.asarray(fast_errors, float)
    repeats = slow_errors.shape[1]
    flat = np.repeat(sizes, repeats)
    slow = fit_learning_curve(flat, slow_errors.ravel())
    fast = fit_learning_curve(flat, fast_errors.ravel())
    rng = np.random.default_rng(seed)
    draws = np.full((samples, len(at)), np.nan)
    for s in range(samples):
        pick = rng.integers(0, repeats, size=(len(sizes), repeats))
        rows = np.arange(len(sizes))[:, None]
        try:
            slow_s = fit_learning_curve(flat, slow_errors[rows, pick].ravel())
            fast_s = fit_learning_curve(flat, fast_errors[rows, pick].ravel())
        except RuntimeError:  # a resample the fit cannot follow counts as no sample
            continue
        draws[s] = [data_multiplier(slow_s, fast_s, n) for n in at]
    out = []
    tail = (1.0 - confidence) / 2
    for j, n in enumerate(at):
        column = draws[:, j][~np.isnan(draws[:, j])]
        estimate = data_multiplier(slow, fast, n)
        low = np.quantile(column, tail, method="lower") if column.size else math.nan
        high = np.quantile(column, 1 - tail, method="higher") if column.size else math.nan
        out.append(
            Multiplier(
                n_train=int(n),
                target_error=float(fast.error(n)),
                estimate=_finite_or_none(estimate),
                low=_finite_or_none(low),
                high=_finite_or_none(high),
                unreachable_fraction=float(np.mean(np.isinf(column))) if column.size else 1.0,
                extrapolated=not math.isfinite(estimate) or estimate * n > sizes.max(),
                samples=int(column.size),
            )
        )
    return out
