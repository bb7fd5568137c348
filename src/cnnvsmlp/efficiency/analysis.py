"""The data-efficiency comparison: accuracy against size, the gap per size, the fitted curves.

:func:`analyze` turns every run's evaluation into one
:class:`EfficiencyAnalysis`; :func:`write_analysis` writes it as
``comparison.json`` with a short ``report.md``. The baseline is the config's
first variant (the MLP in the data-efficiency preset); every other variant
is compared with it at each size:

- accuracy per variant and size: the mean over repeats with a t-interval
  (:func:`cnnvsmlp.stats.accuracy_interval`);
- the gap (variant - baseline) per size: a t-interval over the per-repeat
  differences, and McNemar's exact test per repeat on the same test images,
  both trained on the same subset; the p-values Holm-adjusted over every
  size and repeat of the pair;
- a learning curve per variant (:mod:`~cnnvsmlp.efficiency.curves`) and the
  baseline's data multiplier at each size, bootstrapped over the repeats
  that finished for both variants at every size;
- where each training stopped by the rule of :mod:`~cnnvsmlp.efficiency.stopping`,
  flagging those that reached the cap on epochs still improving;
- accuracy on the test images shifted by 1 to 4 pixels (:mod:`cnnvsmlp.shift`)
  per variant and size, shift 0 being the test images as they are, and the
  gap at each shift.

:mod:`cnnvsmlp.report.efficiency` draws and renders it.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from pydantic import Field

from cnnvsmlp.config import ExperimentConfig
from cnnvsmlp.efficiency.curves import CurveFit, Multiplier
from cnnvsmlp.efficiency.plan import EfficiencyConfig
from cnnvsmlp.efficiency.stopping import StoppingRule, decide
from cnnvsmlp.errors import UserError
from cnnvsmlp.jsonmodel import Record
from cnnvsmlp.provenance import Provenance
from cnnvsmlp.records import EvalResult, Hardware, RunFailure
from cnnvsmlp.stats import ALPHA, CONFIDENCE, Interval

SCHEMA_VERSION = "efficiency/1"


class EfficiencyRunsFailed(UserError):
    """Some runs of the study failed for good: its comparison is partial, or there is none."""


class RunPoint(Record):
    """One training of one variant on one subset, as the comparison sees it."""

    repeat: int
    seed: int
    test_accuracy: float
    epochs: int = Field(description="Epochs trained.")
    stop_epoch: int = Field(description="Where the stopping rule stops on this history.")
    best_epoch: int = Field(description="The epoch whose validation loss was best by the rule.")
    capped_improving: bool = Field(
        description="The cap on epochs came while validation loss was still improving."
    )
    stopped_by: str = Field(
        default="", description="patience (converged) or cap; empty while the rule had not stopped."
    )
    shifted_accuracy: dict[int, float] = Field(
        default_factory=dict, description="Test accuracy on the images shifted by k pixels."
    )


class SizeSummary(Record):
    """A variant at one training-set size, over its repeats."""

    variant: str
    n_train: int
    accuracy: Interval
    runs: list[RunPoint]


class GapTest(Record):
    """McNemar's exact test of a variant against the baseline in one repeat."""

    repeat: int
    difference: float
    only_variant_correct: int
    only_baseline_correct: int
    p_value: float
    p_holm: float


class SizeGap(Record):
    """Variant minus baseline test accuracy at one size."""

    variant: str
    baseline: str
    n_train: int
    difference: Interval
    tests: list[GapTest]
    significant: bool


class ShiftPoint(Record):
    """A variant at one size on the test images shifted by ``shift`` pixels, over its repeats."""

    variant: str
    n_train: int
    shift: int = Field(description="Pixels moved; 0: the test images as they are.")
    accuracy: Interval


class ShiftGap(Record):
    """Variant minus baseline accuracy at one size on the images shifted by ``shift`` pixels."""

    variant: str
    baseline: str
    n_train: int
    shift: int
    difference: Interval


class VariantCurve(Record):
    """A variant's fitted learning curve, or why there is none."""

    variant: str
    fit: CurveFit | None
    error: str = ""


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
    points: list[SizeSummary]
    gaps: list[SizeGap]
    curves: list[VariantCurve]
    multipliers: list[VariantMultipliers]
    shift_points: list[ShiftPoint] = []
    shift_gaps: list[ShiftGap] = []
    status: str = "complete"
    failures: list[RunFailure] = []
    provenance: Provenance = Field(default_factory=Provenance)
    hardware: list[Hardware] = Field(
        default=[], description="Each distinct machine the runs trained on."
    )


def _point(result: EvalResult, rule: StoppingRule, max_epochs: int) -> RunPoint:
    """A run as the comparison sees it: where its training stopped, as it recorded it.

    A training without early stopping (``train.early_stopping`` null) ran
    every epoch; the rule is then applied to its history after the fact.
    """
    history = result.training.history
    stop = result.training.early_stop
    if stop is not None:
        stop_epoch, best, capped = stop.stopped_epoch, stop.best_epoch, stop.capped_improving
        by = stop.reason
    else:
        decision = decide([e.val_loss for e in history], rule, max_epochs)
        stop_epoch, best, capped = decision.epochs, decision.best_epoch, decision.capped_improving
        by = decision.reason or ""
    return RunPoint(
        repeat=result.run.repeat,
        seed=result.run.seed,
        test_accuracy=result.accuracy,
        epochs=len(history),
        stop_epoch=stop_epoch,
        best_epoch=best,
        capped_improving=capped,
        stopped_by=by,
        shifted_accuracy={s.shift: s.accuracy for s in result.shifted},
    )


def analyze(
    results: list[EvalResult | RunFailure],
    config: ExperimentConfig,
    efficiency: EfficiencyConfig,
    test_labels: np.ndarray,
    bootstrap_samples: int | None = None,
) -> EfficiencyAnalysis:
    """Compare the runs of a data-efficiency study.

    Args:
        results: every run's evaluation or failure record.
        config: the experiment (variants, repeats, the cap ``train.epochs``).
        efficiency: the sizes the plan used (settled to the data) and the rule.
        test_labels: the test labels every run was scored on.
        bootstrap_samples: samples of the multipliers' bootstrap; None: the default.

    Returns:
        The analysis; ``status`` ``partial`` when some runs failed, ``failed``
        when no size has both variants.

    Raises:
        UserError: a run has no training-set size, or was scored on other labels.
    """
    from cnnvsmlp.data.store import labels_digest
    from cnnvsmlp.efficiency.curves import (
        BOOTSTRAP_SAMPLES,
        bootstrap_multipliers,
        fit_learning_curve,
    )
    from cnnvsmlp.stats import (
        accuracy_interval,
        difference_interval,
        holm,
        mcnemar_exact,
        significant,
    )

    digest = labels_digest(test_labels)
    failures = [r for r in results if isinstance(r, RunFailure)]
    by_key: dict[tuple[str, int], dict[int, EvalResult]] = defaultdict(dict)
    for r in results:
        if isinstance(r, RunFailure):
            continue
        if r.run.n_train is None:
            raise UserError(f"{r.run.run_id}: no n_train; not a run of the data-efficiency plan")
        if r.labels_sha256 != digest:
            raise UserError(f"{r.run.run_id}: scored on other test labels than the data set's")
        by_key[(r.run.variant, r.run.n_train)][r.run.repeat] = r
    sizes = sorted({n for _, n in by_key})
    n_test = len(test_labels)
    max_epochs = config.train.epochs
    rule = efficiency.stopping

    points = []
    for v in config.variants:
        for n in sizes:
            runs = by_key.get((v, n))
            if runs:
                ordered = [runs[k] for k in sorted(runs)]
                points.append(
                    SizeSummary(
                        variant=v,
                        n_train=n,
                        accuracy=accuracy_interval(
                            [round(r.accuracy * r.n_test) for r in ordered], n_test
                        ),
                        runs=[_point(r, rule, max_epochs) for r in ordered],
                    )
                )

    baseline, others = config.variants[0], config.variants[1:]
    correct = {
        key: {k: np.asarray(r.predictions) == test_labels for k, r in runs.items()}
        for key, runs in by_key.items()
    }
    gaps: list[SizeGap] = []
    for v in others:
        found = []
        for n in sizes:
            mine, base = correct.get((v, n), {}), correct.get((baseline, n), {})
            shared = sorted(set(mine) & set(base))
            if shared:
                found.append((n, shared, [mcnemar_exact(mine[k], base[k]) for k in shared]))
        adjusted = iter(holm([t.p_value for _, _, tests in found for t in tests]))
        for n, shared, tests in found:
            p_holm = [next(adjusted) for _ in tests]
            diffs = [(t.only_a - t.only_b) / n_test for t in tests]
            gaps.append(
                SizeGap(
                    variant=v,
                    baseline=baseline,
                    n_train=n,
                    difference=difference_interval(tests, n_test),
                    tests=[
                        GapTest(
                            repeat=k,
                            difference=d,
                            only_variant_correct=t.only_a,
                            only_baseline_correct=t.only_b,
                            p_value=t.p_value,
                            p_holm=p,
                        )
                        for k, t, d, p in zip(shared, tests, diffs, p_holm, strict=True)
                    ],
                    significant=significant(p_holm, diffs),
                )
            )

    def errors(variant: str) -> tuple[list[int], list[float]]:
        pairs = [
            (n, 1.0 - r.accuracy) for n in sizes for r in by_key.get((variant, n), {}).values()
        ]
        return [n for n, _ in pairs], [e for _, e in pairs]

    curves = []
    for v in config.variants:
        try:
            curves.append(VariantCurve(variant=v, fit=fit_learning_curve(*errors(v))))
        except (ValueError, RuntimeError) as err:
            curves.append(VariantCurve(variant=v, fit=None, error=str(err)))

    multipliers = []
    for v in others:
        # The bootstrap pairs repeats: those that finished for both variants at every size.
        finished = [set(by_key.get((w, n), {})) for w in (v, baseline) for n in sizes]
        repeats = sorted(set.intersection(*finished))
        if not repeats:
            multipliers.append(
                VariantMultipliers(
                    variant=v,
                    baseline=baseline,
                    multipliers=[],
                    error="no repeat finished at every size for both variants",
                )
            )
            continue
        table = {
            w: np.array([[1.0 - by_key[(w, n)][k].accuracy for k in repeats] for n in sizes])
            for w in (v, baseline)
        }
        try:
            found = bootstrap_multipliers(
                sizes,
                table[baseline],
                table[v],
                sizes,
                samples=bootstrap_samples or BOOTSTRAP_SAMPLES,
            )
            multipliers.append(VariantMultipliers(variant=v, baseline=baseline, multipliers=found))
        except (ValueError, RuntimeError) as err:
            multipliers.append(
                VariantMultipliers(variant=v, baseline=baseline, multipliers=[], error=str(err))
            )

    shift_points, shift_gaps = _shift_results(by_key, config.variants, sizes, test_labels)
    machines = {
        r.training.hardware.model_dump_json(): r.training.hardware
        for runs in by_key.values()
        for r in runs.values()
    }
    status = "complete" if not failures else ("partial" if gaps else "failed")
    return EfficiencyAnalysis(
        experiment=config.name,
        dataset=config.dataset,
        n_test=n_test,
        variants=list(config.variants),
        baseline=baseline,
        sizes=sizes,
        repeats=config.repeats,
        stopping=rule,
        max_epochs=max_epochs,
        points=points,
        gaps=gaps,
        curves=curves,
        multipliers=multipliers,
        shift_points=shift_points,
        shift_gaps=shift_gaps,
        status=status,
        failures=failures,
        provenance=config.provenance or Provenance(),
        hardware=list(machines.values()),
    )


def _shift_results(
    by_key: dict[tuple[str, int], dict[int, EvalResult]],
    variants: list[str],
    sizes: list[int],
    labels: np.ndarray,
) -> tuple[list[ShiftPoint], list[ShiftGap]]:
    """Accuracy and gap at every shift the runs were scored on; shift 0 is the test split."""
    from cnnvsmlp.stats import accuracy_interval, difference_interval, mcnemar_exact

    n_test = len(labels)

    def accuracies(r: EvalResult) -> dict[int, float]:
        found = {s.shift: s.accuracy for s in r.shifted}
        return {0: r.accuracy, **found} if found else {}

    def predictions(r: EvalResult) -> dict[int, np.ndarray]:
        found = {s.shift: np.asarray(s.predictions) for s in r.shifted}
        found = {s: p for s, p in found.items() if len(p) == n_test}
        return {0: np.asarray(r.predictions), **found} if found else {}

    scored = {key: {k: predictions(r) for k, r in runs.items()} for key, runs in by_key.items()}
    scores = {key: {k: accuracies(r) for k, r in runs.items()} for key, runs in by_key.items()}
    shifts = sorted({s for runs in scores.values() for a in runs.values() for s in a})
    points = []
    for v in variants:
        for n in sizes:
            runs = scores.get((v, n), {})
            for s in shifts:
                correct = [round(a[s] * n_test) for a in runs.values() if s in a]
                if correct:
                    points.append(
                        ShiftPoint(
                            variant=v,
                            n_train=n,
                            shift=s,
                            accuracy=accuracy_interval(correct, n_test),
                        )
                    )
    gaps = []
    baseline = variants[0]
    for v in variants[1:]:
        for n in sizes:
            mine, base = scored.get((v, n), {}), scored.get((baseline, n), {})
            for s in shifts:
                shared = [k for k in sorted(set(mine) & set(base)) if s in mine[k] and s in base[k]]
                if shared:
                    tests = [
                        mcnemar_exact(mine[k][s] == labels, base[k][s] == labels) for k in shared
                    ]
                    gaps.append(
                        ShiftGap(
                            variant=v,
                            baseline=baseline,
                            n_train=n,
                            shift=s,
                            difference=difference_interval(tests, n_test),
                        )
                    )
    return points, gaps


def write_analysis(analysis: EfficiencyAnalysis, out_dir: str | Path) -> None:
    """Write ``comparison.json``, ``report.md``, ``report.html`` and ``plots/`` into ``out_dir``.

    The reports are :func:`cnnvsmlp.report.efficiency.efficiency_report`'s layout.
    """
    from cnnvsmlp.report.efficiency import write_efficiency_report

    write_efficiency_report(analysis, out_dir)


def check_complete(path: str | Path) -> None:
    """Raise when a written analysis is not complete.

    Raises:
        EfficiencyRunsFailed: its status is ``partial`` or ``failed``; the
            message names the failed runs.
    """
    analysis = EfficiencyAnalysis.read(path)
    if analysis.status != "complete":
        runs = "; ".join(f"{f.run.run_id} ({f.error}: {f.message})" for f in analysis.failures)
        raise EfficiencyRunsFailed(
            f"{analysis.status} data-efficiency comparison ({path}): "
            f"{len(analysis.failures)} runs failed for good: {runs}"
        )
