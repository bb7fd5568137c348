"""The comparison computed: runs grouped by variant, summarised, and every pair tested.

The statistics are in :mod:`cnnvsmlp.stats`; the record is
:class:`~cnnvsmlp.report.model.Comparison`.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np

from cnnvsmlp import stats
from cnnvsmlp.config import ExperimentConfig
from cnnvsmlp.data.spec import get_spec
from cnnvsmlp.data.store import labels_digest
from cnnvsmlp.provenance import Provenance
from cnnvsmlp.records import EvalResult, Hardware, RunFailure
from cnnvsmlp.report.model import (
    SCHEMA_VERSION,
    Comparison,
    FailedRun,
    PairComparison,
    ReferenceComparison,
    RepeatTest,
    ReportError,
    RunConfig,
    RunSummary,
    ShiftAccuracy,
    ShiftDifference,
    VariantSummary,
)
from cnnvsmlp.report.verdict import VERDICT_RULE, envelope, flag_spread, verdict

# ---------------------------------------------------------------- grouping


def _group(
    results: list[EvalResult], config: ExperimentConfig, labels: np.ndarray
) -> dict[str, list[EvalResult]]:
    """Check that the runs fit together and group them by variant, in the config's order."""
    if not results:
        raise ReportError("compare: no runs to compare")
    digest = labels_digest(labels)
    classes = results[0].classes
    grouped: dict[str, dict[int, EvalResult]] = defaultdict(dict)
    for r in results:
        run = f"compare: run {r.run.run_id}"
        if r.dataset != config.dataset:
            raise ReportError(f"{run} is on {r.dataset}, not on {config.dataset}")
        if r.labels_sha256 != digest:
            raise ReportError(
                f"{run} was scored on other test labels (sha256 {r.labels_sha256[:12]}) than "
                f"the data set's ({digest[:12]}); evaluate it again on this data set"
            )
        if len(r.predictions) != len(labels):
            raise ReportError(
                f"{run} has {len(r.predictions)} predictions for {len(labels)} test images"
            )
        if r.classes != classes:
            raise ReportError(f"{run} names other classes than run {results[0].run.run_id}")
        if r.predictions and not 0 <= min(r.predictions) <= max(r.predictions) < len(classes):
            raise ReportError(f"{run} predicts classes outside 0..{len(classes) - 1}")
        if r.run.variant not in config.variants:
            raise ReportError(
                f"{run} is of variant {r.run.variant}, which experiment {config.name} does not "
                f"list ({', '.join(config.variants)})"
            )
        if r.run.repeat in grouped[r.run.variant]:
            raise ReportError(f"{run} appears twice")
        grouped[r.run.variant][r.run.repeat] = r
    missing = [v for v in config.variants if v not in grouped]
    if missing:
        raise ReportError(f"compare: no run of variant {', '.join(missing)}")
    first = config.variants[0]
    for variant in config.variants:
        if set(grouped[variant]) != set(grouped[first]):
            raise ReportError(
                f"compare: variant {variant} has repeats {sorted(grouped[variant])} but {first} "
                f"has {sorted(grouped[first])}; every variant needs the same repeats to pair them"
            )
    return {v: [grouped[v][rep] for rep in sorted(grouped[v])] for v in config.variants}


# ---------------------------------------------------------------- numbers


def _run_summary(r: EvalResult, labels: np.ndarray) -> RunSummary:
    history = r.training.history
    best = max(history, key=lambda e: e.val_accuracy)
    correct = int(np.sum(np.asarray(r.predictions) == labels))
    train_time = float(sum(e.time_s for e in history))
    return RunSummary(
        repeat=r.run.repeat,
        seed=r.run.seed,
        test_accuracy=correct / len(labels),
        test_correct=correct,
        test_loss=r.loss,
        best_val_accuracy=best.val_accuracy,
        best_epoch=best.epoch,
        final_val_accuracy=history[-1].val_accuracy,
        final_val_loss=history[-1].val_loss,
        epochs=len(history),
        train_time_s=train_time,
        epoch_time_s=train_time / len(history),
        train_images_per_s=r.training.train_images_per_s,
        inference_images_per_s=r.inference_images_per_s,
        hardware=r.training.hardware.name,
        inference_hardware=r.hardware.name,
        history=history,
    )


def _reference(
    variant: str, config: ExperimentConfig, test_accuracy: float, final_val_accuracy: float
) -> ReferenceComparison | None:
    ref = config.references.get(variant)
    if ref is None:
        return None
    return ReferenceComparison(
        accuracy=ref.accuracy,
        loss=ref.loss,
        split=ref.split,
        note=" ".join(ref.note.split()),
        test_difference=test_accuracy - ref.accuracy,
        validation_difference=(
            final_val_accuracy - ref.accuracy if ref.split == "validation" else None
        ),
    )


def _summarise(
    variant: str, runs: list[EvalResult], config: ExperimentConfig, labels: np.ndarray
) -> VariantSummary:
    summaries = [_run_summary(r, labels) for r in runs]
    accuracy = stats.accuracy_interval([s.test_correct for s in summaries], len(labels))
    k = len(runs[0].classes)
    confusion = np.zeros((k, k), dtype=int)
    for r in runs:
        np.add.at(confusion, (labels, np.asarray(r.predictions)), 1)
    recall = np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1)
    final_val = float(np.mean([s.final_val_accuracy for s in summaries]))

    def distinct(machines: list[Hardware]) -> list[Hardware]:
        return list({h.model_dump_json(): h for h in machines}.values())

    def mean(field: str) -> float:
        return float(np.mean([getattr(s, field) for s in summaries]))

    return VariantSummary(
        variant=variant,
        params=runs[0].params,
        model_size_bytes=runs[0].model_size_bytes,
        test_accuracy=accuracy,
        test_loss=mean("test_loss"),
        best_val_accuracy=mean("best_val_accuracy"),
        final_val_accuracy=final_val,
        final_val_loss=mean("final_val_loss"),
        epoch_time_s=mean("epoch_time_s"),
        train_time_s=mean("train_time_s"),
        train_images_per_s=mean("train_images_per_s"),
        inference_images_per_s=mean("inference_images_per_s"),
        per_class_recall=recall.tolist(),
        confusion=confusion.tolist(),
        hardware=distinct([r.training.hardware for r in runs]),
        inference_hardware=distinct([r.hardware for r in runs]),
        runs=summaries,
        reference=_reference(variant, config, accuracy.estimate, final_val),
    )


def _pairs(
    grouped: dict[str, list[EvalResult]],
    summaries: dict[str, VariantSummary],
    labels: np.ndarray,
) -> list[PairComparison]:
    # Pairs in the config's order, the better variant first in each.
    pairs = [
        (a, b)
        if summaries[a].test_accuracy.estimate >= summaries[b].test_accuracy.estimate
        else (b, a)
        for a, b in itertools.combinations(summaries, 2)
    ]
    correct = {
        v: [np.asarray(r.predictions) == labels for r in runs] for v, runs in grouped.items()
    }
    repeats = [r.run.repeat for r in next(iter(grouped.values()))]
    tests = {
        (a, b): [stats.mcnemar_exact(ca, cb) for ca, cb in zip(correct[a], correct[b], strict=True)]
        for a, b in pairs
    }
    # Holm over all pairs, one family per repeat.
    adjusted = {pair: [0.0] * len(repeats) for pair in pairs}
    for i in range(len(repeats)):
        for pair, p in zip(
            pairs, stats.holm([tests[pair][i].p_value for pair in pairs]), strict=True
        ):
            adjusted[pair][i] = p
    n = len(labels)
    out = []
    for a, b in pairs:
        repeat_tests = [
            RepeatTest(
                repeat=rep,
                difference=(t.only_a - t.only_b) / n,
                only_a_correct=t.only_a,
                only_b_correct=t.only_b,
                p_value=t.p_value,
                p_holm=p,
            )
            for rep, t, p in zip(repeats, tests[(a, b)], adjusted[(a, b)], strict=True)
        ]
        out.append(pair_comparison(a, b, repeat_tests, n, len(pairs)))
    return out


def _shifted(
    grouped: dict[str, list[EvalResult]], pairs: list[PairComparison], labels: np.ndarray
) -> tuple[list[ShiftAccuracy], list[ShiftDifference]]:
    """Accuracy per variant and difference per pair at every shift all runs were scored on.

    Shift 0 is the test split as it is; nothing when some run has no shifted scores.
    """
    runs = [r for rs in grouped.values() for r in rs]
    found = [{s.shift: s for s in r.shifted if len(s.predictions) == len(labels)} for r in runs]
    shifts = sorted(set.intersection(*(set(f) for f in found))) if found else []
    if not shifts:
        return [], []
    n = len(labels)

    def predictions(r: EvalResult, shift: int) -> np.ndarray:
        if shift == 0:
            return np.asarray(r.predictions)
        return np.asarray(next(s.predictions for s in r.shifted if s.shift == shift))

    accuracy = [
        ShiftAccuracy(
            variant=v,
            shift=s,
            accuracy=stats.accuracy_interval(
                [int(np.sum(predictions(r, s) == labels)) for r in rs], n
            ),
        )
        for v, rs in grouped.items()
        for s in (0, *shifts)
    ]
    differences = []
    for p in pairs:
        for s in (0, *shifts):
            tests = [
                stats.mcnemar_exact(predictions(ra, s) == labels, predictions(rb, s) == labels)
                for ra, rb in zip(grouped[p.a], grouped[p.b], strict=True)
            ]
            differences.append(
                ShiftDifference(
                    a=p.a, b=p.b, shift=s, difference=stats.difference_interval(tests, n)
                )
            )
    return accuracy, differences


def pair_comparison(a: str, b: str, tests: list[RepeatTest], n: int, pairs: int) -> PairComparison:
    """A pair's record from its per-repeat tests: the intervals, the verdict and its interval.

    Args:
        a: the variant with the higher mean accuracy.
        b: the other variant.
        tests: per repeat, McNemar's test with its Holm-adjusted p.
        n: test images per repeat.
        pairs: pairs in each repeat's Holm family.

    Returns:
        The pair, its verdict printing the interval its tests imply
        (:func:`cnnvsmlp.stats.verdict_interval`).
    """
    mcnemar = [stats.McNemar(t.only_a_correct, t.only_b_correct, t.p_value) for t in tests]
    differences = [t.difference for t in tests]
    p_holm = [t.p_holm for t in tests]
    interval = stats.verdict_interval(
        [(t.only_a_correct, t.only_b_correct, t.p_value, t.p_holm) for t in tests], n, pairs
    )
    return PairComparison(
        a=a,
        b=b,
        difference=stats.difference_interval(mcnemar, n),
        tests=tests,
        significant=stats.significant(p_holm, differences),
        verdict=verdict(a, b, interval, p_holm, differences),
        interval=interval,
    )


def restate(comparison: Comparison) -> Comparison:
    """A comparison of an older schema in this one: its pairs' intervals and verdicts made anew.

    The per-repeat tests it stores (discordant counts, raw and Holm p) are
    all the pairs need; nothing is retrained or re-evaluated.

    Args:
        comparison: a comparison read from an older ``comparison.json``.

    Returns:
        The same numbers with each pair's verdict interval, under this
        version's verdict rule and schema version.
    """
    pairs = [
        pair_comparison(p.a, p.b, p.tests, comparison.n_test, len(comparison.pairs))
        for p in comparison.pairs
    ]
    return comparison.model_copy(
        update={"pairs": pairs, "verdict_rule": VERDICT_RULE, "schema_version": SCHEMA_VERSION}
    )


def run_config(config: ExperimentConfig, repeats: int) -> RunConfig:
    """The numbers of the experiment config a reader of the report asks for."""
    return RunConfig(
        dataset=config.dataset,
        variants=list(config.variants),
        epochs=config.train.epochs,
        batch_size=config.train.batch_size,
        optimizer=config.train.optimizer,
        learning_rate=config.train.learning_rate,
        validation_fraction=config.split.validation_fraction,
        limit=config.limit,
        repeats=repeats,
        seeds=[config.seed + r for r in range(repeats)],
        model_sources=dict(config.model_sources),
    )


def compare(
    results: list[EvalResult | RunFailure], config: ExperimentConfig, test_labels: np.ndarray
) -> Comparison:
    """Summarise every variant and test every pair of variants.

    A variant with a failed run (a :class:`~cnnvsmlp.records.RunFailure`
    among ``results``) is left out of the statistics, since pairs need the
    same repeats of every variant; its failures are listed, and the
    comparison's status is ``partial``, or ``failed`` when no variant is left.

    Args:
        results: every run's evaluation or failure record, in any order.
        config: the experiment: its variants, in report order, and the seeds' numbers.
        test_labels: the true labels of the test split the runs were scored on.

    Returns:
        The comparison, every number in it.

    Raises:
        ReportError: no runs; a run of another data set, of another variant,
            or twice; predictions that do not belong to these test labels;
            variants with different repeats.
    """
    labels = np.asarray(test_labels).astype(int)
    failures, kept, variants = _split_failures(results, config)
    if not variants:
        return _failed_comparison(config, labels, failures)
    scored = config.model_copy(update={"variants": variants})
    grouped = _group(kept, scored, labels)
    summaries = {v: _summarise(v, runs, scored, labels) for v, runs in grouped.items()}
    summaries = {v: flag_spread(s) for v, s in summaries.items()}
    pairs = _pairs(grouped, summaries, labels)
    shift_accuracy, shift_differences = _shifted(grouped, pairs, labels)
    return Comparison(
        schema_version=SCHEMA_VERSION,
        experiment=config.name,
        description=" ".join(config.description.split()),
        dataset=config.dataset,
        classes=kept[0].classes,
        n_test=len(labels),
        repeats=len(next(iter(grouped.values()))),
        epochs=config.train.epochs,
        confidence=stats.CONFIDENCE,
        alpha=stats.ALPHA,
        verdict_rule=VERDICT_RULE,
        variants=list(summaries.values()),
        pairs=pairs,
        reproducibility=envelope(list(summaries.values())),
        status="partial" if failures else "complete",
        failures=failures,
        provenance=config.provenance or Provenance(),
        config=run_config(config, len(next(iter(grouped.values())))),
        shift_accuracy=shift_accuracy,
        shift_differences=shift_differences,
    )


# ---------------------------------------------------------------- failed runs


def _split_failures(
    results: list[EvalResult | RunFailure], config: ExperimentConfig
) -> tuple[list[FailedRun], list[EvalResult], list[str]]:
    """The failed runs, the evaluations of the variants without one, and those variants."""
    failed = [r for r in results if isinstance(r, RunFailure)]
    for f in failed:
        if f.dataset != config.dataset:
            raise ReportError(
                f"compare: run {f.run.run_id} is on {f.dataset}, not on {config.dataset}"
            )
    out = {f.run.variant for f in failed}
    failures = [
        FailedRun(
            variant=f.run.variant,
            repeat=f.run.repeat,
            seed=f.run.seed,
            stage=f.stage,
            error=f.error,
            message=f.message,
        )
        for f in sorted(failed, key=lambda f: (_order(config, f.run.variant), f.run.repeat))
    ]
    kept = [r for r in results if isinstance(r, EvalResult) and r.run.variant not in out]
    if not results:
        raise ReportError("compare: no runs to compare")
    return failures, kept, [v for v in config.variants if v not in out]


def _order(config: ExperimentConfig, variant: str) -> int:
    return config.variants.index(variant) if variant in config.variants else len(config.variants)


def _failed_comparison(
    config: ExperimentConfig, labels: np.ndarray, failures: list[FailedRun]
) -> Comparison:
    """A comparison of nothing: every variant had a failed run."""
    return Comparison(
        schema_version=SCHEMA_VERSION,
        experiment=config.name,
        description=" ".join(config.description.split()),
        dataset=config.dataset,
        classes=list(get_spec(config.dataset).classes),
        n_test=len(labels),
        repeats=config.repeats,
        epochs=config.train.epochs,
        confidence=stats.CONFIDENCE,
        alpha=stats.ALPHA,
        verdict_rule=VERDICT_RULE,
        variants=[],
        pairs=[],
        status="failed",
        failures=failures,
        provenance=config.provenance or Provenance(),
        config=run_config(config, config.repeats),
    )
