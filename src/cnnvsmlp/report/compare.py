"""The comparison computed: runs grouped by variant, summarised, every pair's difference stated."""

from __future__ import annotations

import itertools
import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

import cnnvsmlp.report.model as model
from cnnvsmlp import pairwise
from cnnvsmlp.config import ExperimentConfig
from cnnvsmlp.data.spec import get_spec
from cnnvsmlp.data.store import labels_digest
from cnnvsmlp.provenance import Provenance
from cnnvsmlp.records import EvalResult, RunFailure
from cnnvsmlp.report.verdict import BASELINE_FAMILY, VERDICT_RULE, envelope, family, flag_spread


def _misfit(r: EvalResult, first: EvalResult, config: ExperimentConfig, labels, digest) -> str:
    """Why run ``r`` does not fit the comparison; empty when it does."""
    run = f"compare: run {r.run.run_id}"
    if r.dataset != config.dataset:
        return f"{run} is on {r.dataset}, not on {config.dataset}"
    if r.labels_sha256 != digest:
        return (
            f"{run} was scored on other test labels (sha256 {r.labels_sha256[:12]}) than "
            f"the data set's ({digest[:12]}); evaluate it again on this data set"
        )
    if len(r.predictions) != len(labels):
        return f"{run} has {len(r.predictions)} predictions for {len(labels)} test images"
    if r.classes != first.classes:
        return f"{run} names other classes than run {first.run.run_id}"
    if r.predictions and not 0 <= min(r.predictions) <= max(r.predictions) < len(r.classes):
        return f"{run} predicts classes outside 0..{len(r.classes) - 1}"
    if r.run.variant not in config.variants:
        return (
            f"{run} is of variant {r.run.variant}, which experiment {config.name} does not "
            f"list ({', '.join(config.variants)})"
        )
    return ""


def _group(
    results: list[EvalResult], config: ExperimentConfig, labels: np.ndarray
) -> dict[str, list[EvalResult]]:
    """Check that the runs fit together and group them by variant, in the config's order."""
    if not results:
        raise model.ReportError("compare: no runs to compare")
    digest = labels_digest(labels)
    grouped: dict[str, dict[int, EvalResult]] = defaultdict(dict)
    for r in results:
        misfit = _misfit(r, results[0], config, labels, digest)
        if misfit or r.run.repeat in grouped[r.run.variant]:
            raise model.ReportError(misfit or f"compare: run {r.run.run_id} appears twice")
        grouped[r.run.variant][r.run.repeat] = r
    if missing := [v for v in config.variants if v not in grouped]:
        raise model.ReportError(f"compare: no run of variant {', '.join(missing)}")
    first = config.variants[0]
    for variant in config.variants:
        if set(grouped[variant]) != set(grouped[first]):
            raise model.ReportError(
                f"compare: variant {variant} has repeats {sorted(grouped[variant])} but {first} "
                f"has {sorted(grouped[first])}; every variant needs the same repeats to pair them"
            )
    return {v: [grouped[v][rep] for rep in sorted(grouped[v])] for v in config.variants}


def _run_summary(r: EvalResult, labels: np.ndarray) -> model.RunSummary:
    history = r.training.history
    best = max(history, key=lambda e: e.val_accuracy)
    correct = int(np.sum(np.asarray(r.predictions) == labels))
    train_time = float(sum(e.time_s for e in history))
    return model.RunSummary(
        **r.run.model_dump(include={"repeat", "seed"}),
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


def _summarise(
    variant: str, runs: list[EvalResult], config: ExperimentConfig, labels: np.ndarray
) -> model.VariantSummary:
    summaries = [_run_summary(r, labels) for r in runs]
    accuracy = pairwise.accuracy_interval([s.test_correct for s in summaries], len(labels))
    k = len(runs[0].classes)
    confusion = np.zeros((k, k), dtype=int)
    for r in runs:
        np.add.at(confusion, (labels, np.asarray(r.predictions)), 1)
    recall = np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1)
    means = ("test_loss", "best_val_accuracy", "final_val_accuracy", "final_val_loss")
    means += ("epoch_time_s", "train_time_s", "train_images_per_s", "inference_images_per_s")
    mean = {f: float(np.mean([getattr(s, f) for s in summaries])) for f in means}
    reference = None
    if (ref := config.references.get(variant)) is not None:
        reference = model.ReferenceComparison(
            **ref.model_dump(include={"accuracy", "loss", "split"}),
            note=" ".join(ref.note.split()),
            test_difference=accuracy.estimate - ref.accuracy,
            validation_difference=(
                mean["final_val_accuracy"] - ref.accuracy if ref.split == "validation" else None
            ),
        )
    return model.VariantSummary(
        **runs[0].model_dump(include={"params", "model_size_bytes"}),
        **mean,
        variant=variant,
        test_accuracy=accuracy,
        per_class_recall=recall.tolist(),
        confusion=confusion.tolist(),
        hardware=model.distinct([r.training.hardware for r in runs]),
        inference_hardware=model.distinct([r.hardware for r in runs]),
        runs=summaries,
        reference=reference,
    )


def _oriented(a: str, b: str, accuracy: dict[str, float]) -> tuple[str, str]:
    """A pair in the order it is stated: the baseline family second, else the better mean first."""
    fa, fb = family(a), family(b)
    if fa != fb and BASELINE_FAMILY in (fa, fb):
        return (b, a) if fa == BASELINE_FAMILY else (a, b)
    return (a, b) if accuracy[a] >= accuracy[b] else (b, a)


def _correct(
    grouped: dict[str, list[EvalResult]], labels: np.ndarray
) -> dict[tuple[str, int], np.ndarray]:
    """Per variant and shift every run was scored on (0: as is), each repeat's right images."""
    runs = [r for rs in grouped.values() for r in rs]
    found = [{s.shift for s in r.shifted if len(s.predictions) == len(labels)} for r in runs]
    shifts = sorted(set.intersection(*found)) if found else []

    def predictions(r: EvalResult, shift: int) -> list[int]:
        return ({x.shift: x.predictions for x in r.shifted} | {0: r.predictions})[shift]

    return {
        (v, shift): np.array([np.asarray(predictions(r, shift)) == labels for r in rs])
        for v, rs in grouped.items()
        for shift in (0, *shifts)
    }


def read_comparison(path: str | os.PathLike) -> model.Comparison:
    """A ``comparison.json`` in this schema, or restated from schema 2's counts (no shifts)."""
    text = Path(path).read_text()
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict) or not str(record.get("schema_version")).startswith("2."):
        return model.Comparison.parse(text, path)
    found = [(p["a"], p["b"], p["tests"], {}) for p in record["pairs"]]
    pairs = pairwise.from_counts(found, int(record["n_test"]))
    accuracy = {v["variant"]: v["test_accuracy"]["estimate"] for v in record["variants"]}
    pairs = [d if _oriented(d.a, d.b, accuracy) == (d.a, d.b) else d.flipped() for d in pairs]
    record.update(
        schema_version=model.SCHEMA_VERSION,
        pairs=[d.model_dump(mode="json") for d in pairs if accuracy.keys() >= {d.a, d.b}],
        shift_differences=[],
        verdict_rule=VERDICT_RULE,
    )
    return model.Comparison.model_validate(record)


def run_config(config: ExperimentConfig, repeats: int) -> model.RunConfig:
    """The numbers of the experiment config a reader of the report asks for."""
    return model.RunConfig(
        **config.model_dump(
            include={"dataset", "variants", "limit", "vary_seeds", "model_sources"}
        ),
        **config.train.model_dump(include={"epochs", "batch_size", "optimizer", "learning_rate"}),
        validation_fraction=config.split.validation_fraction,
        repeats=repeats,
        seeds=[config.seed + r for r in range(repeats)],
    )


def _analysed(kept: list[EvalResult], config: ExperimentConfig, labels: np.ndarray) -> dict:
    """What the runs of ``config``'s variants show: their summaries, pairs and shifts."""
    grouped = _group(kept, config, labels)
    summaries = [flag_spread(_summarise(v, runs, config, labels)) for v, runs in grouped.items()]
    correct = _correct(grouped, labels)
    repeats = [r.run.repeat for r in next(iter(grouped.values()))]
    accuracy = {s.variant: s.test_accuracy.estimate for s in summaries}
    order = [_oriented(a, b, accuracy) for a, b in itertools.combinations(grouped, 2)]
    pairs = [pairwise.estimate(a, b, correct[(a, 0)], correct[(b, 0)], repeats) for a, b in order]
    # Every pair at every shift: one family, apart from the verdicts' family above.
    shifts = sorted({s for _, s in correct} - {0})
    shifted = [
        pairwise.estimate(a, b, correct[(a, s)], correct[(b, s)], shift=s)
        for s in shifts
        for a, b in order
    ]
    shift_accuracy = [
        model.ShiftAccuracy(
            variant=v,
            shift=s,
            accuracy=pairwise.accuracy_interval([int(c.sum()) for c in found], found.shape[1]),
        )
        for (v, s), found in correct.items()
        if shifts
    ]
    margin = config.equivalence_margin / 100
    return dict(
        classes=kept[0].classes,
        repeats=len(repeats),
        variants=summaries,
        pairs=pairwise.decide(pairs, margin),
        reproducibility=envelope(summaries),
        shift_accuracy=shift_accuracy,
        shift_differences=pairwise.decide(shifted, margin),
    )


def compare(
    results: list[EvalResult | RunFailure],
    config: ExperimentConfig,
    test_labels: np.ndarray,
    provenance: Provenance | None = None,
) -> model.Comparison:
    """Summarise every variant and test every pair; a variant with a failed run is left out."""
    labels = np.asarray(test_labels).astype(int)
    failures, kept, variants = _split_failures(results, config)
    if variants:
        found = _analysed(kept, config.model_copy(update={"variants": variants}), labels)
    else:
        found = {"classes": list(get_spec(config.dataset).classes), "variants": [], "pairs": []}
    repeats = found.pop("repeats", config.repeats)
    return model.Comparison(
        status=("partial" if failures else "complete") if found["variants"] else "failed",
        failures=failures,
        schema_version=model.SCHEMA_VERSION,
        experiment=config.name,
        description=" ".join(config.description.split()),
        dataset=config.dataset,
        n_test=len(labels),
        repeats=repeats,
        epochs=config.train.epochs,
        confidence=pairwise.CONFIDENCE,
        alpha=pairwise.ALPHA,
        verdict_rule=VERDICT_RULE,
        margin=config.equivalence_margin / 100,
        config=run_config(config, repeats),
        provenance=provenance or Provenance(),
        **found,
    )


def _split_failures(
    results: list[EvalResult | RunFailure], config: ExperimentConfig
) -> tuple[list[model.FailedRun], list[EvalResult], list[str]]:
    """The failed runs, the evaluations of the variants without one, and those variants."""
    failed = [r for r in results if isinstance(r, RunFailure)]
    if wrong := next((f for f in failed if f.dataset != config.dataset), None):
        raise model.ReportError(
            f"compare: run {wrong.run.run_id} is on {wrong.dataset}, not on {config.dataset}"
        )
    out = {f.run.variant for f in failed}
    order = {v: i for i, v in enumerate(config.variants)}
    failures = [
        model.FailedRun(
            **f.run.model_dump(include={"variant", "repeat", "seed"}),
            **f.model_dump(include={"stage", "error", "message"}),
        )
        for f in sorted(failed, key=lambda f: (order.get(f.run.variant, len(order)), f.run.repeat))
    ]
    kept = [r for r in results if isinstance(r, EvalResult) and r.run.variant not in out]
    return failures, kept, [v for v in config.variants if v not in out]
