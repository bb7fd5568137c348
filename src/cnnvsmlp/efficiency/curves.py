"""The study's settings, runs, record (``efficiency/2``), learning curves and data multipliers.

Default sizes: eight halvings of the split (375 to 48,000 on Fashion-MNIST), >= 3 images a class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field, ValidationError, field_validator

from cnnvsmlp import pairwise
from cnnvsmlp.config import ConfigError, ExperimentConfig, Int, RunSpec, StoppingRule
from cnnvsmlp.errors import UserError
from cnnvsmlp.outputs import Record
from cnnvsmlp.provenance import Provenance
from cnnvsmlp.records import Hardware, RunFailure

SCHEMA_VERSION = "efficiency/2"
N_REF = 1000.0
BOOTSTRAP_SAMPLES = 1000
FAMILIES = {"power": "a * (n/1000)^-b", "power+floor": "a * (n/1000)^-b + c"}


class EfficiencyConfig(Record):
    """The training-set sizes of the study and the rule that ends every training."""

    sizes: list[Int] | None = Field(default=None, min_length=1)
    """Training images per run, increasing (at or above the split: all of it); null: halvings."""
    stopping: StoppingRule = StoppingRule()
    """The rule every training of the study stops by (its train.early_stopping)."""

    @field_validator("sizes")
    @classmethod
    def _increasing(cls, sizes: list[int] | None) -> list[int] | None:
        if any(s < 1 for s in sizes or ()):
            raise ValueError(f"sizes must be at least 1, got {min(sizes)}")
        if sizes and any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)):
            raise ValueError(f"sizes must increase, got {sizes}")
        return sizes


def parse_efficiency_json(text: str) -> EfficiencyConfig:
    """Validate the pipeline's ``efficiency_json``; a ConfigError names the field at fault."""
    try:
        return EfficiencyConfig.model_validate_json(text)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"efficiency_json: {where + ': ' if where else ''}{msg}") from None


def settle(config: ExperimentConfig, efficiency: EfficiencyConfig) -> ExperimentConfig:
    """The experiment as the study trains it: ``train.early_stopping`` by the study's rule."""
    recipe = config.train.model_copy(update={"early_stopping": efficiency.stopping})
    return config.model_copy(update={"train": recipe})


def effective_sizes(sizes: list[int] | None, available: int, classes: int = 1) -> list[int]:
    """The sizes below ``available``, then the whole split once; None: the halvings."""
    if sizes is None:
        halvings = {round(available / 2**k) for k in range(8)}
        return sorted(n for n in halvings if n >= 3 * classes) or [available]
    kept = [s for s in sizes if s < available]
    return kept + [available] if len(kept) < len(sizes) else kept


def plan_runs(
    config: ExperimentConfig, efficiency: EfficiencyConfig, available: int, classes: int
) -> list[RunSpec]:
    """Every (variant, size, repeat) run, by step time times size, the longest first."""
    from cnnvsmlp.models import get_variant

    sizes = effective_sizes(efficiency.sizes, available, classes)
    if sizes[0] < classes:
        raise UserError(
            f"efficiency.sizes: {sizes[0]} images cannot hold one of each of the {classes} "
            f"classes; use sizes of at least {classes}"
        )
    runs = [
        RunSpec(variant=v, repeat=r, seed=config.seed + r, n_train=n)
        for v in config.variants
        for n in sizes
        for r in range(config.repeats)
    ]
    return sorted(runs, key=lambda run: -get_variant(run.variant).step_ms * run.n_train)


class CurveFit(Record):
    """A fitted learning curve of one family."""

    family: str = Field(description="A key of FAMILIES.")
    params: dict[str, float]
    sizes: list[int] = Field(description="The sizes it was fitted on.")
    rmse: float = Field(description="Root mean square of the residuals, as a fraction.")

    def error(self, n: float | np.ndarray) -> float | np.ndarray:
        """The fitted error at ``n`` training images."""
        return _curve(np.asarray(n, dtype=float) / N_REF, **self.params)


def _curve(x: np.ndarray, a: float, b: float, c: float = 0.0) -> np.ndarray:
    return a * x**-b + c


def fit(family: str, sizes: Sequence[float], errors: Sequence[float]) -> CurveFit:
    """Fit one family to (size, error) points; ValueError or RuntimeError when it cannot."""
    from scipy.optimize import curve_fit

    if family not in FAMILIES:
        raise ValueError(f"unknown curve family {family!r}; known: {', '.join(FAMILIES)}")
    n, e = np.asarray(sizes, dtype=float), np.asarray(errors, dtype=float)
    needed = 3 if family == "power+floor" else 2
    if len(np.unique(n)) < needed:
        raise ValueError(f"a {family} curve needs {needed} sizes or more")
    x = n / N_REF
    slope, intercept = np.polyfit(np.log(x), np.log(np.maximum(e, 1e-6)), 1)
    if family == "power":
        params = {"a": float(math.exp(intercept)), "b": float(-slope)}
    else:
        c0 = float(np.clip(e.min() * 0.5, 0.0, 1.0))
        p0 = [max(math.exp(intercept) - c0, 1e-3), max(-slope, 0.05), c0]
        bounds = ([0.0, 0.0, 0.0], [np.inf, 5.0, 1.0])
        found, _ = curve_fit(_curve, x, e, p0=p0, bounds=bounds, method="trf", maxfev=20000)
        params = dict(zip("abc", (float(v) for v in found), strict=True))
    return CurveFit(
        family=family,
        params=params,
        sizes=sorted({int(v) for v in n}),
        rmse=float(np.sqrt(np.mean((e - _curve(x, **params)) ** 2))),
    )


class Holdout(Record):
    """A family fitted without the largest size, predicting it."""

    variant: str
    family: str
    fitted_on: list[int]
    size: int = Field(description="The held-out size: the largest trained.")
    predicted: float | None = Field(None, description="The fitted error at the held-out size.")
    observed: float = Field(description="The mean error of its repeats there.")
    miss: float | None = Field(None, description="predicted - observed, as a fraction.")
    error: str = Field(default="", description="Why there is no fit, if there is none.")


def holdout(variant: str, family: str, sizes: Sequence[int], errors: np.ndarray) -> Holdout:
    """Fit ``family`` on every size but the largest of ``errors`` (sizes x repeats), predict it."""
    sizes, errors = list(sizes), np.asarray(errors, dtype=float)
    flat = np.repeat(sizes[:-1], errors.shape[1])
    found = Holdout(
        variant=variant,
        family=family,
        fitted_on=sizes[:-1],
        size=sizes[-1],
        observed=float(errors[-1].mean()),
    )
    try:
        predicted = float(fit(family, flat, errors[:-1].ravel()).error(sizes[-1]))
    except (ValueError, RuntimeError) as err:
        return found.model_copy(update={"error": str(err)})
    return found.model_copy(update={"predicted": predicted, "miss": predicted - found.observed})


class Multiplier(Record):
    """The data multiplier at one size, with its bootstrap range; None: outside the data."""

    n_train: int
    target: float = Field(description="The variant's mean test accuracy at n_train.")
    estimate: float | None = Field(description="Baseline images needed / n_train; None: outside.")
    where: Literal["inside", "beyond", "below"] = "inside"
    """beyond: the largest size does not reach the target; below: the smallest is above it."""
    low: float | None = Field(description="None: below the data in some bootstrap samples.")
    high: float | None = Field(description="None: beyond the data in some bootstrap samples.")
    beyond_fraction: float = Field(description="Share of bootstrap samples outside the sizes.")
    samples: int
    repeats: int = Field(default=0, description="Repeats resampled; few give a rough range.")


def size_for(sizes: Sequence[int], accuracy: Sequence[float], target: float) -> float:
    """Images at which the running maximum of ``accuracy`` reaches ``target``; inf or 0 outside."""
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
    sizes: Sequence[int], baseline: np.ndarray, other: np.ndarray, samples: int = BOOTSTRAP_SAMPLES
) -> list[Multiplier]:
    """The data multiplier at each size, bootstrapped over the repeats (columns) of both."""
    baseline, other = np.asarray(baseline, float), np.asarray(other, float)
    repeats = baseline.shape[1]

    def at(pick: np.ndarray) -> np.ndarray:
        base, mine = baseline[:, pick].mean(axis=1), other[:, pick].mean(axis=1)
        return np.array([size_for(sizes, base, t) for t in mine]) / np.asarray(sizes)

    estimate = at(np.arange(repeats))
    rng = np.random.default_rng(0)
    draws = np.array([at(rng.integers(0, repeats, size=repeats)) for _ in range(samples)])
    tail = (1.0 - pairwise.CONFIDENCE) / 2
    low = np.quantile(draws, tail, axis=0, method="lower")
    high = np.quantile(draws, 1 - tail, axis=0, method="higher")
    beyond = np.mean((draws == 0) | ~np.isfinite(draws), axis=0)
    return [
        Multiplier(
            n_train=int(n),
            target=float(other[j].mean()),
            estimate=_inside(estimate[j]),
            where="inside" if _inside(estimate[j]) else "below" if estimate[j] == 0 else "beyond",
            low=_inside(low[j]),
            high=_inside(high[j]),
            beyond_fraction=float(beyond[j]),
            samples=samples,
            repeats=repeats,
        )
        for j, n in enumerate(sizes)
    ]


def _inside(x: float) -> float | None:
    return float(x) if 0 < x < math.inf else None


class RunPoint(Record):
    """One training of one variant on one subset, as the comparison sees it."""

    repeat: int
    seed: int
    test_accuracy: float
    epochs: int = Field(description="Epochs trained.")
    stop_epoch: int = Field(description="Where the stopping rule stops on this history.")
    best_epoch: int = Field(description="The epoch whose validation loss was best by the rule.")
    capped_improving: bool = Field(description="The cap came while val_loss still improved.")
    stopped_by: str = Field("", description="patience (converged) or cap; empty: not stopped.")
    shifted_accuracy: dict[int, float] = Field({}, description="Accuracy, images shifted k px.")


class SizeSummary(Record):
    """A variant at one training-set size, over its repeats."""

    variant: str
    n_train: int
    accuracy: pairwise.Interval
    runs: list[RunPoint]


class ShiftPoint(Record):
    """A variant at one size on the test images shifted by ``shift`` pixels, over its repeats."""

    variant: str
    n_train: int
    shift: int = Field(description="Pixels moved; 0: the test images as they are.")
    accuracy: pairwise.Interval


class VariantMultipliers(Record):
    """How many times more data the baseline needs to match a variant, at each size."""

    variant: str
    baseline: str
    multipliers: list[Multiplier]
    error: str = ""


class EfficiencyAnalysis(Record):
    """Everything the data-efficiency comparison computed (``comparison.json``)."""

    schema_version: str = SCHEMA_VERSION
    experiment: str
    dataset: str
    n_test: int
    variants: list[str]
    baseline: str
    sizes: list[int]
    repeats: int
    stopping: StoppingRule
    max_epochs: int
    confidence: float = pairwise.CONFIDENCE
    alpha: float = pairwise.ALPHA
    margin: float = pairwise.MARGIN
    points: list[SizeSummary]
    gaps: list[pairwise.Difference] = Field(description="Variant - baseline per size; a family.")
    curves: list[CurveFit] = Field(description="Each variant's fit of each family, every size.")
    holdouts: list[Holdout] = []
    multipliers: list[VariantMultipliers]
    shift_points: list[ShiftPoint] = []
    shift_gaps: list[pairwise.Difference] = Field([], description="Per size and shift >= 1.")
    status: str = "complete"
    failures: list[RunFailure] = []
    provenance: Provenance = Field(default_factory=Provenance)
    hardware: list[Hardware] = Field([], description="Each distinct machine the runs used.")
