"""The comparison's record: what ``comparison.json`` holds (docs/comparison-schema.md)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import Field

from cnnvsmlp.errors import UserError
from cnnvsmlp.jsonmodel import Record
from cnnvsmlp.pairwise import Difference
from cnnvsmlp.provenance import Provenance
from cnnvsmlp.records import Epoch, Hardware
from cnnvsmlp.stats import Interval

SCHEMA_VERSION = "3.0"
# Repeats of one variant whose test accuracies span more than this (max - min)
# are flagged: their mean says less than the CI suggests about any single run.
SPREAD_LIMIT = 0.01


def distinct(machines: Iterable[Hardware]) -> list[Hardware]:
    """Each machine once, in the order first met."""
    return list({h.model_dump_json(): h for h in machines}.values())


class ReportError(UserError):
    """The runs handed to the comparison do not fit together."""


class RunsFailed(UserError):
    """Some runs failed for good: the comparison is partial, or there is none."""


class RunSummary(Record):
    """One training run of a variant."""

    repeat: int
    seed: int
    test_accuracy: float
    test_correct: int
    test_loss: float
    best_val_accuracy: float
    best_epoch: int
    final_val_accuracy: float
    final_val_loss: float
    epochs: int
    train_time_s: float
    epoch_time_s: float
    train_images_per_s: float
    inference_images_per_s: float
    hardware: str
    inference_hardware: str
    history: list[Epoch]


class ReferenceComparison(Record):
    """A seed's published number for a variant, and how far ours is from it."""

    accuracy: float
    loss: float | None
    split: str
    note: str
    test_difference: float
    validation_difference: float | None


class VariantSummary(Record):
    """A variant over all its repeats."""

    variant: str
    params: int
    model_size_bytes: int
    test_accuracy: Interval
    test_loss: float
    best_val_accuracy: float
    final_val_accuracy: float
    final_val_loss: float
    epoch_time_s: float
    train_time_s: float
    train_images_per_s: float
    inference_images_per_s: float
    per_class_recall: list[float]
    confusion: list[list[int]]
    hardware: list[Hardware]
    inference_hardware: list[Hardware]
    runs: list[RunSummary]
    reference: ReferenceComparison | None
    test_accuracy_spread: float = 0.0
    spread_flag: str = ""


class FailedRun(Record):
    """A run that failed for good, with the error that stopped it."""

    variant: str
    repeat: int
    seed: int
    stage: str
    error: str
    message: str


class ShiftAccuracy(Record):
    """A variant's test accuracy on the test images shifted by ``shift`` pixels, over repeats."""

    variant: str
    shift: int = Field(description="Pixels moved (cnnvsmlp.shift); 0: the test images as they are.")
    accuracy: Interval


class RunConfig(Record):
    """How the runs were trained: the experiment config's numbers that a reader asks for."""

    dataset: str
    variants: list[str]
    epochs: int
    batch_size: int
    optimizer: str
    learning_rate: float | None = Field(description="None: the optimizer's default.")
    validation_fraction: float
    limit: int | None = Field(description="Images used of each official split; None: all.")
    repeats: int
    seeds: list[int]
    vary_seeds: list[str] = ["init", "order", "dropout"]
    """What the repeats' seeds changed: initial weights, image order, dropout."""
    model_sources: dict[str, str] = {}
    """Each user module's source (module:function variants)."""


class Comparison(Record):
    """Everything the comparison step computed."""

    schema_version: str
    experiment: str
    description: str
    dataset: str
    classes: list[str]
    n_test: int
    repeats: int
    epochs: int
    confidence: float
    alpha: float
    verdict_rule: str
    variants: list[VariantSummary]
    pairs: list[Difference]
    """Every pair of variants on the test images as they are: the verdicts, one family."""
    margin: float = Field(default=0.01, description="The equivalence margin (fraction).")
    spread_limit: float = SPREAD_LIMIT
    reproducibility: str = ""
    status: Literal["complete", "partial", "failed"] = "complete"
    failures: list[FailedRun] = []
    provenance: Provenance = Field(default_factory=Provenance)
    config: RunConfig | None = Field(default=None, description="None in files before 2.4.")
    shift_accuracy: list[ShiftAccuracy] = []
    """Accuracy per variant and shift; empty without shifted scores."""
    shift_differences: list[Difference] = []
    """Each pair's difference per shift of 1 pixel or more, one family; empty without them."""

    @classmethod
    def read(cls, path: str | os.PathLike) -> Comparison:
        """Read a ``comparison.json`` of this schema's major version, this minor or older."""
        return cls.parse(Path(path).read_text(), path)

    @classmethod
    def parse(cls, text: str, path: str | os.PathLike) -> Comparison:
        """:meth:`read` of text already read from ``path``."""
        try:
            found = str(json.loads(text).get("schema_version", ""))
        except (ValueError, AttributeError):
            found = ""
        major, minor = (int(x) for x in SCHEMA_VERSION.split("."))
        try:
            their_major, their_minor = (int(x) for x in found.split("."))
        except ValueError:
            their_major, their_minor = -1, -1
        if their_major != major or their_minor > minor:
            raise ReportError(
                f"{path}: comparison schema {found or '(none)'}; this cnnvsmlp reads "
                f"{major}.0 to {SCHEMA_VERSION}: read it with the cnnvsmlp that wrote it"
            )
        return cls.model_validate_json(text)
