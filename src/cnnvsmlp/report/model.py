"""The comparison's record: what ``comparison.json`` holds (docs/comparison-schema.md)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import Field

from cnnvsmlp.errors import UserError
from cnnvsmlp.outputs import Record
from cnnvsmlp.pairwise import Difference, Interval
from cnnvsmlp.provenance import Provenance
from cnnvsmlp.records import Epoch, Hardware

SCHEMA_VERSION = "3.0"
SPREAD_LIMIT = 0.01
_BEST = "The highest validation accuracy of the run and its epoch (1-based; the first on a tie)."
_ASKED = "The data set and the variants asked for (failed ones included)."


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
    """The repeat's index; runs of different variants with the same index are paired."""
    seed: int = Field(description="The seed the run trained with.")
    test_accuracy: float = Field(description="`test_correct / n_test`.")
    test_correct: int = Field(description="Test images predicted right.")
    test_loss: float = Field(description="Test loss.")
    best_val_accuracy: float = Field(description=_BEST)
    best_epoch: int = Field(description=_BEST)
    final_val_accuracy: float = Field(description="Validation accuracy and loss of the last epoch.")
    final_val_loss: float = Field(description="Validation accuracy and loss of the last epoch.")
    epochs: int = Field(description="Epochs in the run's history.")
    train_time_s: float
    """Sum of the epochs' wall times (a resumed run counts the epochs before the resume too)."""
    epoch_time_s: float = Field(description="`train_time_s / epochs`.")
    train_images_per_s: float = Field(description="Training throughput.")
    inference_images_per_s: float = Field(description="Inference throughput.")
    hardware: str = Field(description="The name of the machine it trained on.")
    inference_hardware: str = Field(description="The name of the machine it was evaluated on.")
    history: list[Epoch]
    """Per epoch: `epoch`, `loss`, `accuracy`, `val_loss`, `val_accuracy`, `time_s` (the learning
    curves)."""


class ReferenceComparison(Record):
    """A seed's published number for a variant, and how far ours is from it."""

    accuracy: float = Field(description="The accuracy the seed write-up reports.")
    loss: float | None = Field(description="The loss it reports.")
    split: str
    """`test`, or `validation` where the seed scored a validation split (seed 000 printed its
    validation accuracy as test accuracy)."""
    note: str
    """Where the seed's claim does not hold, why (seed 004's batch normalisation never added; seed
    000's validation reported as test); empty otherwise."""
    test_difference: float = Field(description="Our mean test accuracy minus `accuracy`.")
    validation_difference: float | None
    """Our mean final validation accuracy minus `accuracy`, when `split` is `validation`; null
    otherwise."""


class VariantSummary(Record):
    """A variant over all its repeats."""

    variant: str = Field(description="The variant's name.")
    params: int = Field(description="Trainable and non-trainable parameters.")
    model_size_bytes: int = Field(description="Size of the saved `.keras` model.")
    test_accuracy: Interval
    """Mean test accuracy and its CI: method `t` over the repeats when there are two or more,
    `wilson` over the test images for a single run."""
    test_loss: float = Field(description="Mean test loss.")
    best_val_accuracy: float = Field(description="Mean of each run's best validation accuracy.")
    final_val_accuracy: float
    """Mean of each run's last-epoch validation accuracy."""
    final_val_loss: float = Field(description="Mean of each run's last-epoch validation loss.")
    epoch_time_s: float = Field(description="Mean wall time of a training epoch.")
    train_time_s: float = Field(description="Mean wall time of a run's training (all its epochs).")
    train_images_per_s: float = Field(description="Mean training throughput.")
    inference_images_per_s: float
    """Mean inference throughput on the test split."""
    per_class_recall: list[float]
    """Test accuracy of each class (recall), from `confusion`."""
    confusion: list[list[int]]
    """Confusion matrix summed over the repeats; rows: true class, columns: predicted class."""
    hardware: list[Hardware]
    """Each distinct machine the runs trained on (training times and throughput are measured
    there)."""
    inference_hardware: list[Hardware]
    """Each distinct machine the runs were evaluated on (inference throughput is measured there)."""
    runs: list[RunSummary] = Field(description="One per repeat, by repeat.")
    reference: ReferenceComparison | None
    """The seed write-up's number for this variant; null when the seeds report none."""
    test_accuracy_spread: float = 0.0
    """Max - min of the runs' test accuracies (0 for a single run)."""
    spread_flag: str = ""
    """When `test_accuracy_spread` exceeds `spread_limit`, one sentence saying so, as the verdicts
    print it; empty otherwise."""


class FailedRun(Record):
    """A run that failed for good, with the error that stopped it."""

    variant: str = Field(description="The run.")
    repeat: int = Field(description="The run.")
    seed: int = Field(description="The run.")
    stage: str = Field(description="`train` or `evaluate`: where it failed.")
    error: str
    """The error's class name, e.g. `TrainingDiverged`, `StorageError`, `ResourceExhaustedError`."""
    message: str = Field(description="The error's message, on one line.")


class ShiftAccuracy(Record):
    """A variant's test accuracy on the test images shifted by ``shift`` pixels, over repeats."""

    variant: str = Field(description="The variant.")
    shift: int = Field(description="Pixels moved (evaluate.py); 0: the test images as they are.")
    accuracy: Interval = Field(description="Mean accuracy over the repeats and its interval.")


class RunConfig(Record):
    """How the runs were trained: the experiment config's numbers that a reader asks for."""

    dataset: str = Field(description=_ASKED)
    variants: list[str] = Field(description=_ASKED)
    epochs: int = Field(description="Per run.")
    batch_size: int = Field(description="Per run.")
    optimizer: str = Field(description="Null: the optimizer's Keras default.")
    learning_rate: float | None = Field(description="None: the optimizer's default.")
    validation_fraction: float
    """Share of the official training split held out for validation."""
    limit: int | None = Field(description="Images used of each official split; None: all.")
    repeats: int = Field(description="Runs per variant and their seeds, by repeat.")
    seeds: list[int] = Field(description="Runs per variant and their seeds, by repeat.")
    vary_seeds: list[str] = ["init", "order", "dropout"]
    """What the repeats' seeds changed: initial weights, image order, dropout."""
    model_sources: dict[str, str] = {}
    """Each user module's source (module:function variants)."""


class Comparison(Record):
    """Everything the comparison step computed."""

    schema_version: str = Field(description='`"3.0"`.')
    experiment: str
    """The experiment config's `name` (`fashion-mnist`, `emnist-letters`, ...)."""
    description: str = Field(description="The config's `description`, on one line.")
    dataset: str = Field(description="The data set every run was trained and scored on.")
    classes: list[str] = Field(description="Class names; the index is the label.")
    n_test: int
    """Test images; every run was scored on the same ones, in the same order."""
    repeats: int = Field(description="Runs per variant (every variant has the same repeats).")
    epochs: int = Field(description="Epochs per run, from the config.")
    confidence: float = Field(description="Coverage of every confidence interval: `0.95`.")
    alpha: float = Field(description="Significance level of the verdicts: `0.05`.")
    verdict_rule: str
    """How a difference is estimated and when a pair is called different, equivalent or
    inconclusive, in words."""
    variants: list[VariantSummary] = Field(description="One per variant, in the config's order.")
    pairs: list[Difference]
    """Every pair of variants on the test images as they are: the verdicts, one family."""
    margin: float = Field(default=0.01, description="The equivalence margin (fraction).")
    spread_limit: float = SPREAD_LIMIT
    """The largest spread of a variant's repeats (`test_accuracy_spread`) that is not flagged:
    `0.01`."""
    reproducibility: str = ""
    """In words, the numerics every run trained with (CPU or GPU, instruction-set extensions,
    TensorFlow build, oneDNN, threads) and on what a rerun with the same seeds gives bit- identical
    numbers; the reports print it under "Reproducibility"."""
    status: Literal["complete", "partial", "failed"] = "complete"
    """`complete`: every run finished; `partial`: some runs failed for good and their variants are
    left out of `variants` and `pairs`; `failed`: every variant had a failed run, so `variants` and
    `pairs` are empty (and no plots are drawn)."""
    failures: list[FailedRun] = []
    """The runs that failed for good, in the config's order of variants, then by repeat; empty when
    `status` is `complete`."""
    provenance: Provenance = Field(default_factory=Provenance)
    """What produced the runs: run id, start, project version and commit, runner and how it shared
    the machine."""
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
        major, minor = (int(x) for x in SCHEMA_VERSION.split("."))
        found = ""
        try:
            found = str(json.loads(text).get("schema_version", ""))
            their_major, their_minor = (int(x) for x in found.split("."))
        except (ValueError, AttributeError):
            their_major, their_minor = -1, -1
        if their_major != major or their_minor > minor:
            raise ReportError(
                f"{path}: comparison schema {found or '(none)'}; this cnnvsmlp reads "
                f"{major}.0 to {SCHEMA_VERSION}: read it with the cnnvsmlp that wrote it"
            )
        return cls.model_validate_json(text)


def failure_summary(comparison: Comparison) -> str:
    """One line saying which runs failed and what is compared without them; empty when none."""
    failures = comparison.failures
    if not failures:
        return ""
    runs = "; ".join(f"{f.variant}-r{f.repeat} ({f.error}: {f.message})" for f in failures)
    out = list(dict.fromkeys(f.variant for f in failures))
    left = f"variant{'s' if len(out) > 1 else ''} {', '.join(out)} left out"
    rest = ", ".join(v.variant for v in comparison.variants)
    tail = f"{left}; {rest} compared" if rest else f"{left}; nothing left to compare"
    return f"{len(failures)} run{'s' if len(failures) > 1 else ''} failed for good: {runs}; {tail}."


def check_complete(path: str | Path) -> None:
    """Raise RunsFailed, naming the failed runs, when a written comparison is not complete."""
    comparison = Comparison.read(path)
    if comparison.status != "complete":
        raise RunsFailed(f"{comparison.status} comparison ({path}): {failure_summary(comparison)}")
