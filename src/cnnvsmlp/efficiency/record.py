"""The data-efficiency study's record: what its ``comparison.json`` holds (``efficiency/2``)."""

from __future__ import annotations

from pydantic import Field

from cnnvsmlp import pairwise
from cnnvsmlp.config import StoppingRule
from cnnvsmlp.efficiency.curves import CurveFit, Holdout, Multiplier
from cnnvsmlp.jsonmodel import Record
from cnnvsmlp.provenance import Provenance
from cnnvsmlp.records import Hardware, RunFailure
from cnnvsmlp.stats import ALPHA, CONFIDENCE, Interval

SCHEMA_VERSION = "efficiency/2"


class RunPoint(Record):
    """One training of one variant on one subset, as the comparison sees it."""

    repeat: int
    seed: int
    test_accuracy: float
    epochs: int = Field(description="Epochs trained.")
    stop_epoch: int = Field(description="Where the stopping rule stops on this history.")
    best_epoch: int = Field(description="The epoch whose validation loss was best by the rule.")
    capped_improving: bool
    """The cap on epochs came while validation loss was still improving."""
    stopped_by: str = ""
    """patience (converged) or cap; empty while the rule had not stopped."""
    shifted_accuracy: dict[int, float] = {}
    """Test accuracy on the images shifted by k pixels."""


class SizeSummary(Record):
    """A variant at one training-set size, over its repeats."""

    variant: str
    n_train: int
    accuracy: Interval
    runs: list[RunPoint]


class ShiftPoint(Record):
    """A variant at one size on the test images shifted by ``shift`` pixels, over its repeats."""

    variant: str
    n_train: int
    shift: int = Field(description="Pixels moved; 0: the test images as they are.")
    accuracy: Interval


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
    confidence: float = CONFIDENCE
    alpha: float = ALPHA
    margin: float = pairwise.MARGIN
    points: list[SizeSummary]
    gaps: list[pairwise.Difference]
    """Each variant minus the baseline at each size; a variant's sizes, one family."""
    curves: list[CurveFit] = Field(description="Each variant's fit of each family, every size.")
    holdouts: list[Holdout] = []
    """Each family fitted without the largest size, predicting it."""
    multipliers: list[VariantMultipliers]
    shift_points: list[ShiftPoint] = []
    shift_gaps: list[pairwise.Difference] = []
    """The gaps per size and shift of 1 pixel or more, one family."""
    status: str = "complete"
    failures: list[RunFailure] = []
    provenance: Provenance = Field(default_factory=Provenance)
    hardware: list[Hardware] = []
    """Each distinct machine the runs trained on."""
