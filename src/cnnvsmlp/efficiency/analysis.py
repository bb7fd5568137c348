"""The data-efficiency comparison: accuracy against size, the gap per size, the fitted curves.

:func:`analyze` turns every run's evaluation into one :class:`EfficiencyAnalysis`; the
baseline is the config's first variant, and every other variant is compared with it at
each size and shift (:mod:`cnnvsmlp.pairwise`), its curves and data multipliers fitted
(:mod:`~cnnvsmlp.efficiency.curves`). :mod:`cnnvsmlp.report.efficiency` renders it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from cnnvsmlp import pairwise
from cnnvsmlp.config import ExperimentConfig, StoppingRule
from cnnvsmlp.efficiency.curves import FAMILIES, CurveFit, Holdout
from cnnvsmlp.efficiency.plan import EfficiencyConfig
from cnnvsmlp.efficiency.record import (
    SCHEMA_VERSION,
    EfficiencyAnalysis,
    RunPoint,
    ShiftPoint,
    SizeSummary,
    VariantMultipliers,
)
from cnnvsmlp.errors import UserError
from cnnvsmlp.provenance import Provenance
from cnnvsmlp.records import EvalResult, RunFailure
from cnnvsmlp.stopping import decide


class EfficiencyRunsFailed(UserError):
    """Some runs of the study failed for good: its comparison is partial, or there is none."""


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


def _grouped(
    results: list[EvalResult | RunFailure], labels: np.ndarray
) -> dict[tuple[str, int], dict[int, EvalResult]]:
    """The evaluations by variant and size, then repeat; checked to be the study's.

    Raises:
        UserError: a run has no training-set size, or was scored on other labels.
    """
    from cnnvsmlp.data.store import labels_digest

    digest = labels_digest(labels)
    by_key: dict[tuple[str, int], dict[int, EvalResult]] = defaultdict(dict)
    for r in results:
        if isinstance(r, RunFailure):
            continue
        if r.run.n_train is None:
            raise UserError(f"{r.run.run_id}: no n_train; not a run of the data-efficiency plan")
        if r.labels_sha256 != digest:
            raise UserError(f"{r.run.run_id}: scored on other test labels than the data set's")
        by_key[(r.run.variant, r.run.n_train)][r.run.repeat] = r
    return by_key


def _summaries(
    by_key: dict[tuple[str, int], dict[int, EvalResult]],
    variants: list[str],
    sizes: list[int],
    rule: StoppingRule,
    max_epochs: int,
    n_test: int,
) -> list[SizeSummary]:
    """Each variant at each size it has runs at: its accuracy over repeats, and each run."""
    from cnnvsmlp.stats import accuracy_interval

    return [
        SizeSummary(
            variant=v,
            n_train=n,
            accuracy=accuracy_interval([round(r.accuracy * r.n_test) for r in ordered], n_test),
            runs=[_point(r, rule, max_epochs) for r in ordered],
        )
        for v in variants
        for n in sizes
        for ordered in [[by_key[(v, n)][k] for k in sorted(by_key.get((v, n), {}))]]
        if ordered
    ]


def analyze(
    results: list[EvalResult | RunFailure],
    config: ExperimentConfig,
    efficiency: EfficiencyConfig,
    test_labels: np.ndarray,
    bootstrap_samples: int | None = None,
) -> EfficiencyAnalysis:
    """Compare the runs of a data-efficiency study (``efficiency``: its sizes and stopping rule).

    The status is ``partial`` when some runs failed, ``failed`` when no size has both
    variants; ``bootstrap_samples`` None takes the multipliers' default.

    Raises:
        UserError: a run has no training-set size, or was scored on other labels.
    """
    by_key = _grouped(results, test_labels)
    failures = [r for r in results if isinstance(r, RunFailure)]
    sizes = sorted({n for _, n in by_key})
    variants, max_epochs, rule = config.variants, config.train.epochs, efficiency.stopping
    points = _summaries(by_key, variants, sizes, rule, max_epochs, len(test_labels))
    margin = config.equivalence_margin / 100
    estimates = [_size_estimates(by_key, v, variants[0], sizes, test_labels) for v in variants[1:]]
    gaps = [d for found in estimates for d in pairwise.decide(found, margin)]
    scores = {key: {k: r.accuracy for k, r in runs.items()} for key, runs in by_key.items()}
    curves, holdouts, multipliers = _curves(scores, variants, sizes, bootstrap_samples)
    shift_points, shift_gaps = _shift_results(by_key, variants, sizes, test_labels, margin)
    machines = {
        r.training.hardware.model_dump_json(): r.training.hardware
        for runs in by_key.values()
        for r in runs.values()
    }
    return EfficiencyAnalysis(
        experiment=config.name,
        dataset=config.dataset,
        n_test=len(test_labels),
        variants=list(variants),
        baseline=variants[0],
        sizes=sizes,
        repeats=config.repeats,
        stopping=rule,
        max_epochs=max_epochs,
        margin=margin,
        points=points,
        gaps=gaps,
        curves=curves,
        holdouts=holdouts,
        multipliers=multipliers,
        shift_points=shift_points,
        shift_gaps=shift_gaps,
        status="complete" if not failures else ("partial" if gaps else "failed"),
        failures=failures,
        provenance=config.provenance or Provenance(),
        hardware=list(machines.values()),
    )


def _correct(runs: dict[int, EvalResult], labels: np.ndarray, shift: int) -> dict[int, np.ndarray]:
    """Per repeat that has this shift, whether each (shifted) test image was right."""
    out = {}
    for k, r in runs.items():
        found = {0: r.predictions, **{s.shift: s.predictions for s in r.shifted}}
        if len(found.get(shift, [])) == len(labels):
            out[k] = np.asarray(found[shift]) == labels
    return out


def _size_estimates(
    by_key: dict[tuple[str, int], dict[int, EvalResult]],
    variant: str,
    baseline: str,
    sizes: list[int],
    labels: np.ndarray,
    shifts: tuple[int, ...] = (0,),
) -> list[pairwise.Estimate]:
    """``variant - baseline`` at each size (and shift), paired by repeat."""
    found = []
    for n in sizes:
        for s in shifts:
            mine = _correct(by_key.get((variant, n), {}), labels, s)
            base = _correct(by_key.get((baseline, n), {}), labels, s)
            shared = sorted(set(mine) & set(base))
            if shared:
                found.append(
                    pairwise.estimate(
                        variant,
                        baseline,
                        np.array([mine[k] for k in shared]),
                        np.array([base[k] for k in shared]),
                        shared,
                        details=s == 0,
                        n_train=n,
                        shift=s,
                    )
                )
    return found


def _curves(
    scores: dict[tuple[str, int], dict[int, float]],
    variants: list[str],
    sizes: list[int],
    bootstrap_samples: int | None,
) -> tuple[list[CurveFit], list[Holdout], list[VariantMultipliers]]:
    """Each family's fit, its held-out score, and the multipliers, on repeats done at every size.

    ``scores[(variant, n)][repeat]`` is a test accuracy.
    """
    from cnnvsmlp.efficiency.curves import BOOTSTRAP_SAMPLES, fit, holdout, multipliers

    finished = [set(scores.get((v, n), {})) for v in variants for n in sizes]
    repeats = sorted(set.intersection(*finished)) if finished else []
    if not repeats or len(sizes) < 3:
        why = "no repeat finished at every size for every variant" if not repeats else ""
        why = why or "fewer than three sizes"
        return (
            [],
            [],
            [
                VariantMultipliers(variant=v, baseline=variants[0], multipliers=[], error=why)
                for v in variants[1:]
            ],
        )
    accuracy = {
        v: np.array([[scores[(v, n)][k] for k in repeats] for n in sizes]) for v in variants
    }
    curves, holdouts = [], []
    for v in variants:
        for family in FAMILIES:
            try:
                curves.append(fit(family, np.repeat(sizes, len(repeats)), 1 - accuracy[v].ravel()))
            except (ValueError, RuntimeError):
                pass
            holdouts.append(holdout(v, family, sizes, 1 - accuracy[v]))
    found = [
        VariantMultipliers(
            variant=v,
            baseline=variants[0],
            multipliers=multipliers(
                sizes, accuracy[variants[0]], accuracy[v], bootstrap_samples or BOOTSTRAP_SAMPLES
            ),
        )
        for v in variants[1:]
    ]
    return curves, holdouts, found


def _shift_results(
    by_key: dict[tuple[str, int], dict[int, EvalResult]],
    variants: list[str],
    sizes: list[int],
    labels: np.ndarray,
    margin: float,
) -> tuple[list[ShiftPoint], list[pairwise.Difference]]:
    """Accuracy and gap at every shift the runs were scored on; shift 0 is the test split."""
    from cnnvsmlp.stats import accuracy_interval

    n_test = len(labels)
    shifts = sorted({s.shift for runs in by_key.values() for r in runs.values() for s in r.shifted})
    points = []
    for v in variants:
        for n in sizes:
            for s in (0, *shifts) if shifts else ():
                correct = _correct(by_key.get((v, n), {}), labels, s)
                if correct:
                    points.append(
                        ShiftPoint(
                            variant=v,
                            n_train=n,
                            shift=s,
                            accuracy=accuracy_interval(
                                [int(c.sum()) for c in correct.values()], n_test
                            ),
                        )
                    )
    estimates = [
        e
        for v in variants[1:]
        for e in _size_estimates(by_key, v, variants[0], sizes, labels, tuple(shifts))
    ]
    return points, pairwise.decide(estimates, margin)


def read_analysis(path: str | Path, bootstrap_samples: int | None = None) -> EfficiencyAnalysis:
    """An analysis in this schema: read, or restated from ``efficiency/1``.

    An ``efficiency/1`` record kept each repeat's accuracy per size and shift
    and, at shift 0, its McNemar counts, but not which images: the gaps are
    restated by :func:`cnnvsmlp.pairwise.bounded` (the shifted ones with the
    disagreement bounded by the two accuracies), the curves and multipliers
    made again from the accuracies. Nothing is retrained or re-evaluated.
    """
    text = Path(path).read_text()
    record = json.loads(text)
    if not isinstance(record, dict) or record.get("schema_version") != "efficiency/1":
        return EfficiencyAnalysis.model_validate_json(text)
    sizes = [int(n) for n in record["sizes"]]
    runs = {(p["variant"], int(p["n_train"])): p["runs"] for p in record["points"]}
    scores = {key: {r["repeat"]: r["test_accuracy"] for r in found} for key, found in runs.items()}
    curves, holdouts, multipliers = _curves(scores, record["variants"], sizes, bootstrap_samples)
    record.update(
        schema_version=SCHEMA_VERSION,
        gaps=[g.model_dump(mode="json") for g in _restated_gaps(record)],
        shift_gaps=[d.model_dump(mode="json") for d in _restated_shift_gaps(record, runs)],
        curves=[c.model_dump(mode="json") for c in curves],
        holdouts=[h.model_dump(mode="json") for h in holdouts],
        multipliers=[m.model_dump(mode="json") for m in multipliers],
    )
    return EfficiencyAnalysis.model_validate(record)


def _restated_gaps(record: dict) -> list[pairwise.Difference]:
    """An ``efficiency/1`` record's gaps, bounded from McNemar counts; a family per variant."""
    gaps = []
    for v in record["variants"][1:]:
        found = [
            (
                v,
                record["baseline"],
                [_repeat_test(t) for t in g["tests"]],
                {"n_train": int(g["n_train"])},
            )
            for g in record["gaps"]
            if g["variant"] == v
        ]
        gaps += pairwise.from_counts(found, int(record["n_test"]))
    return gaps


def _repeat_test(t: dict) -> pairwise.RepeatTest:
    """An ``efficiency/1`` McNemar test, its counts named by variant and baseline."""
    return pairwise.RepeatTest(
        repeat=t["repeat"],
        difference=t["difference"],
        only_a_correct=t["only_variant_correct"],
        only_b_correct=t["only_baseline_correct"],
        p_value=t["p_value"],
        p_holm=t["p_holm"],
    )


def _restated_shift_gaps(record: dict, runs: dict) -> list[pairwise.Difference]:
    """The shifted gaps from each repeat's two accuracies (their sum bounds the disagreement)."""
    n_test, baseline = int(record["n_test"]), record["baseline"]
    shifted = []
    for v in record["variants"][1:]:
        for n in (int(n) for n in record["sizes"]):
            mine = {r["repeat"]: r["shifted_accuracy"] for r in runs.get((v, n), [])}
            base = {r["repeat"]: r["shifted_accuracy"] for r in runs.get((baseline, n), [])}
            shared = sorted(set(mine) & set(base))
            for shift in sorted({int(s) for k in shared for s in mine[k]}):
                pairs = [(mine[k][str(shift)], base[k][str(shift)]) for k in shared]
                shifted.append(
                    pairwise.bounded(
                        v,
                        baseline,
                        [x - y for x, y in pairs],
                        [min(x + y, 2 - x - y) for x, y in pairs],
                        n_test,
                        n_train=n,
                        shift=shift,
                    )
                )
    return pairwise.decide(shifted)


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
