"""The comparison artifact: every run of an experiment, summarised, tested and drawn.

:func:`write_comparison` writes into one folder:

- ``comparison.json``: every number (:class:`Comparison`, documented in
  docs/comparison-schema.md);
- ``report.md``: the report the KFP UI renders;
- ``report.html``: the same, self-contained, plots embedded;
- ``plots/*.png``: learning curves, confusion matrices, per-class accuracy,
  accuracy against parameters and against training time.

The statistics are in :mod:`cnnvsmlp.stats`; this module groups the runs,
applies them, and renders the result.
"""

from __future__ import annotations

import base64
import itertools
from collections import defaultdict
from pathlib import Path
from typing import Literal

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from pydantic import BaseModel, ConfigDict
from tabulate import tabulate

from cnnvsmlp import stats
from cnnvsmlp.config import ExperimentConfig
from cnnvsmlp.data import labels_digest
from cnnvsmlp.errors import UserError
from cnnvsmlp.records import Epoch, EvalResult, Hardware, RunFailure

SCHEMA_VERSION = "2.3"
# Repeats of one variant whose test accuracies span more than this (max - min)
# are flagged: their mean says less than the CI suggests about any single run.
SPREAD_LIMIT = 0.01
VERDICT_RULE = (
    "A pair differs significantly when, in every repeat, McNemar's exact test on the two "
    "variants' per-image correctness gives a Holm-adjusted p below "
    f"{stats.ALPHA:g} (Holm over all pairs of variants, within the repeat) and the accuracy "
    "difference has the same sign in every repeat. Otherwise the verdict says in how many "
    "repeats the test was not significant, or that the sign changed."
)
# File name (without .png) and caption of each plot, in report order.
PLOTS = {
    "learning_curves": "Learning curves",
    "confusion_matrices": "Confusion matrices",
    "per_class_accuracy": "Per-class accuracy",
    "accuracy_vs_cost": "Accuracy against parameters and training time",
}


class ReportError(UserError):
    """The runs handed to the comparison do not fit together."""


class RunsFailed(UserError):
    """Some runs failed for good: the comparison is partial, or there is none."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Interval(_Model):
    """An estimate with its confidence interval and the method that made it."""

    estimate: float
    low: float
    high: float
    method: str


class RunSummary(_Model):
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


class ReferenceComparison(_Model):
    """A seed's published number for a variant, and how far ours is from it."""

    accuracy: float
    loss: float | None
    split: str
    note: str
    test_difference: float
    validation_difference: float | None


class VariantSummary(_Model):
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


class RepeatTest(_Model):
    """McNemar's test of a pair in one repeat."""

    repeat: int
    difference: float
    only_a_correct: int
    only_b_correct: int
    p_value: float
    p_holm: float


class PairComparison(_Model):
    """Variant ``a`` against variant ``b``; ``a`` has the higher mean test accuracy."""

    a: str
    b: str
    difference: Interval
    tests: list[RepeatTest]
    significant: bool
    verdict: str


class FailedRun(_Model):
    """A run that failed for good, with the error that stopped it."""

    variant: str
    repeat: int
    seed: int
    stage: str
    error: str
    message: str


class Comparison(_Model):
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
    pairs: list[PairComparison]
    spread_limit: float = SPREAD_LIMIT
    reproducibility: str = ""
    status: Literal["complete", "partial", "failed"] = "complete"
    failures: list[FailedRun] = []


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
        test_accuracy=Interval(**vars(accuracy)),
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


def _number(x: float, spec: str) -> str:
    """``x`` formatted by ``spec``, with no minus sign on a value that rounds to zero."""
    text = format(x, spec)
    return format(0.0, spec) if float(text) == 0 else text


def _p_text(p: float, relation: str = "=") -> str:
    return "p < 0.001" if p < 0.001 else f"p {relation} {p:.3f}"


def verdict(
    a: str, b: str, difference: stats.Interval, p_holm: list[float], differences: list[float]
) -> str:
    """One sentence saying whether ``a`` beats ``b``, by how much and how surely.

    Args:
        a: the variant with the higher mean accuracy.
        b: the other variant.
        difference: accuracy of ``a`` minus ``b`` (fractions) with its 95% CI.
        p_holm: per repeat, the Holm-adjusted McNemar p-value.
        differences: per repeat, the accuracy difference ``a - b``.

    Returns:
        The verdict under :data:`VERDICT_RULE`, e.g. ``"cnn beats mlp by 1.4
        points, 95% CI [1.1, 1.7], p < 0.001 in all 3 repeats."``.
    """
    points = (
        f"{_number(100 * difference.estimate, '.1f')} points, 95% CI "
        f"[{_number(100 * difference.low, '.1f')}, {_number(100 * difference.high, '.1f')}]"
    )
    n = len(p_holm)
    if stats.significant(p_holm, differences):
        if n == 1:
            return f"{a} beats {b} by {points}, {_p_text(p_holm[0])} in its single repeat."
        return f"{a} beats {b} by {points}, {_p_text(max(p_holm), '<=')} in all {n} repeats."
    not_significant = sum(p >= stats.ALPHA for p in p_holm)
    if not_significant == 0:
        ahead_a = sum(d > 0 for d in differences)
        ahead_b = sum(d < 0 for d in differences)
        return (
            f"No consistent difference between {a} and {b}: p < {stats.ALPHA:g} in every "
            f"repeat, but {a} is ahead in {ahead_a} and {b} in {ahead_b} of {n} repeats "
            f"({a} - {b} = {points})."
        )
    where = (
        f"{_p_text(p_holm[0])} in its single repeat"
        if n == 1
        else f"p >= {stats.ALPHA:g} in {not_significant} of {n} repeats"
    )
    return f"No significant difference between {a} and {b} ({where}; {a} - {b} = {points})."


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
        difference = stats.difference_interval(tests[(a, b)], n)
        differences = [(t.only_a - t.only_b) / n for t in tests[(a, b)]]
        out.append(
            PairComparison(
                a=a,
                b=b,
                difference=Interval(**vars(difference)),
                tests=[
                    RepeatTest(
                        repeat=rep,
                        difference=d,
                        only_a_correct=t.only_a,
                        only_b_correct=t.only_b,
                        p_value=t.p_value,
                        p_holm=p,
                    )
                    for rep, d, t, p in zip(
                        repeats, differences, tests[(a, b)], adjusted[(a, b)], strict=True
                    )
                ],
                significant=stats.significant(adjusted[(a, b)], differences),
                verdict=verdict(a, b, difference, adjusted[(a, b)], differences),
            )
        )
    return out


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
        pairs=_pairs(grouped, summaries, labels),
        reproducibility=envelope(list(summaries.values())),
        status="partial" if failures else "complete",
        failures=failures,
    )


# ---------------------------------------------------------------- reproducibility


def flag_spread(summary: VariantSummary, limit: float = SPREAD_LIMIT) -> VariantSummary:
    """The summary with its repeats' spread of test accuracy, flagged when above ``limit``.

    Args:
        summary: one variant over its repeats.
        limit: the largest max - min of the repeats' test accuracies (a
            fraction) that is not flagged.

    Returns:
        A copy with ``test_accuracy_spread`` set and, when the spread exceeds
        ``limit``, ``spread_flag``: one sentence naming the runs, as the
        verdicts print it.
    """
    accuracies = [r.test_accuracy for r in summary.runs]
    spread = max(accuracies) - min(accuracies)
    flag = ""
    if spread > limit:
        low = min(summary.runs, key=lambda r: r.test_accuracy)
        high = max(summary.runs, key=lambda r: r.test_accuracy)
        flag = (
            f"{summary.variant} is unstable: its {len(accuracies)} repeats span "
            f"{100 * spread:.2f} points of test accuracy (repeat {low.repeat}: "
            f"{_pct(low.test_accuracy)}%, repeat {high.repeat}: {_pct(high.test_accuracy)}%), "
            f"more than {100 * limit:g}; a single run of it says little, and differences "
            "from it smaller than the spread are not evidence."
        )
    return summary.model_copy(update={"test_accuracy_spread": spread, "spread_flag": flag})


def _numerics_text(h: Hardware) -> str:
    if h.onednn is None:
        onednn = "oneDNN not recorded"
    else:
        setting = "unset" if h.onednn_opts is None else h.onednn_opts
        onednn = f"oneDNN {'on' if h.onednn else 'off'} (TF_ENABLE_ONEDNN_OPTS {setting})"
    threads = h.intra_op_threads or h.cpu_count
    build = f"TensorFlow {h.tensorflow}" + (f" ({h.tensorflow_git})" if h.tensorflow_git else "")
    cuda = h.build.get("cuda_version")
    if cuda:
        build += f", CUDA {cuda}, cuDNN {h.build.get('cudnn_version', '?')}"
    flags = " ".join(f for f in h.cpu_flags if f.startswith(("avx", "fma", "amx")))
    machine = h.name if h.device == "gpu" else (h.cpu or h.name)
    return f"{machine} [{flags or 'extensions not recorded'}], {build}, {onednn}, {threads} threads"


def envelope(variants: list[VariantSummary]) -> str:
    """In words, what a rerun of these runs with the same seeds gives the same numbers on.

    Args:
        variants: the variants' summaries, with the machines they trained on.

    Returns:
        A paragraph: the numerics every run trained with, and what keeps a
        rerun bit-identical.
    """
    machines = {h.numerics(): h for v in variants for h in v.hardware}
    described = "; ".join(_numerics_text(h) for h in machines.values())
    if len(machines) == 1:
        where = f"Every run trained with the same numerics: {described}."
    else:
        where = f"The runs trained with {len(machines)} different numerics: {described}."
    return (
        f"{where} A rerun with the same seed gives bit-identical histories and predictions "
        "on a machine that matches in CPU model and instruction-set extensions (or GPU "
        "model), TensorFlow build, oneDNN use and thread count. Another CPU model, another "
        "oneDNN setting (TensorFlow turns oneDNN on by default on CPUs with AVX512-VNNI, "
        "AVX512-BF16, AVX-VNNI or AMX), another thread count or a GPU rounds differently: "
        "its runs are other samples from the same distribution, to be compared through the "
        "spread over repeats, not digit by digit."
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
    from cnnvsmlp.data import get_spec

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
    )


def failure_summary(comparison: Comparison) -> str:
    """One line saying which runs failed and what is compared without them; empty when none.

    Args:
        comparison: the comparison to describe.

    Returns:
        E.g. ``"1 run failed for good: mlp-r0 (TrainingDiverged: loss is nan
        at epoch 2); variant mlp is left out, cnn, cnn-3conv are compared."``
    """
    if not comparison.failures:
        return ""
    runs = "; ".join(
        f"{f.variant}-r{f.repeat} ({f.error}: {f.message})" for f in comparison.failures
    )
    count = len(comparison.failures)
    out = sorted(
        {f.variant for f in comparison.failures}, key=[f.variant for f in comparison.failures].index
    )
    left = f"variant{'s' if len(out) > 1 else ''} {', '.join(out)} left out"
    if comparison.variants:
        rest = ", ".join(v.variant for v in comparison.variants)
        tail = f"{left}; {rest} compared"
    else:
        tail = f"{left}; nothing left to compare"
    return f"{count} run{'s' if count > 1 else ''} failed for good: {runs}; {tail}."


def failure_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the runs that failed for good.

    Args:
        comparison: the comparison to tabulate.

    Returns:
        The column headers and one row per failed run.
    """
    headers = ["run", "seed", "stage", "error", "message"]
    rows = [
        [f"{f.variant}-r{f.repeat}", str(f.seed), f.stage, f.error, f.message]
        for f in comparison.failures
    ]
    return headers, rows


def check_complete(path: str | Path) -> None:
    """Raise when a written comparison is not complete.

    Args:
        path: a ``comparison.json``.

    Raises:
        RunsFailed: its status is ``partial`` or ``failed``; the message
            names the failed runs and where the comparison of the others is.
    """
    comparison = Comparison.model_validate_json(Path(path).read_text(encoding="utf-8"))
    if comparison.status != "complete":
        raise RunsFailed(f"{comparison.status} comparison ({path}): {failure_summary(comparison)}")


# ---------------------------------------------------------------- pictures


def _colours(comparison: Comparison) -> dict[str, str]:
    return {v.variant: f"C{i}" for i, v in enumerate(comparison.variants)}


def _learning_curves(comparison: Comparison) -> Figure:
    colours = _colours(comparison)
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)
    panels = [
        ("accuracy", "train accuracy"),
        ("val_accuracy", "validation accuracy"),
        ("loss", "train loss"),
        ("val_loss", "validation loss"),
    ]
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        for v in comparison.variants:
            length = min(len(r.history) for r in v.runs)
            curves = np.array([[getattr(e, key) for e in r.history[:length]] for r in v.runs])
            epochs = [e.epoch for e in v.runs[0].history[:length]]
            colour = colours[v.variant]
            ax.plot(epochs, curves.mean(axis=0), marker="o", ms=3, color=colour, label=v.variant)
            if len(v.runs) > 1:
                ax.fill_between(
                    epochs, curves.min(axis=0), curves.max(axis=0), color=colour, alpha=0.2
                )
        ax.set_title(title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    axes[0, 0].legend()
    band = ", band: min to max over repeats" if comparison.repeats > 1 else ""
    fig.suptitle(f"{comparison.experiment}: learning curves (mean{band})")
    return fig


def _confusion_matrices(comparison: Comparison) -> Figure:
    classes = comparison.classes
    k, n = len(classes), len(comparison.variants)
    cols = min(n, 2)
    rows = -(-n // cols)
    size = 4.5 if k <= 10 else 6.5
    fig = Figure(figsize=(size * cols, size * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, v in zip(axes.flat, comparison.variants, strict=False):
        counts = np.array(v.confusion, dtype=float)
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(k), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(k), classes, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(v.variant)
        if k <= 10:
            for i, j in itertools.product(range(k), range(k)):
                colour = "white" if share[i, j] > 0.5 else "black"
                ax.text(
                    j, i, f"{share[i, j]:.2f}", ha="center", va="center", fontsize=6, color=colour
                )
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    summed = f"summed over {comparison.repeats} repeats, " if comparison.repeats > 1 else ""
    fig.suptitle(f"Confusion matrices ({summed}each row: share of the true class)")
    return fig


def _per_class_accuracy(comparison: Comparison) -> Figure:
    colours = _colours(comparison)
    k, n = len(comparison.classes), len(comparison.variants)
    fig = Figure(figsize=(min(max(8.0, 0.3 * k * max(n, 2)), 20.0), 4.5), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / n
    for i, v in enumerate(comparison.variants):
        x = np.arange(k) + (i - (n - 1) / 2) * width
        ax.bar(x, v.per_class_recall, width, label=v.variant, color=colours[v.variant])
    if k <= 10:
        ax.set_xticks(range(k), comparison.classes, rotation=45, ha="right")
    else:
        ax.set_xticks(range(k), comparison.classes)
    ax.set_ylabel("test accuracy of the class (recall)")
    low = min(min(v.per_class_recall) for v in comparison.variants)
    ax.set_ylim(max(0.0, low - 0.05), 1.0)
    ax.legend(ncols=n, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return fig


def _accuracy_vs_cost(comparison: Comparison) -> Figure:
    colours = _colours(comparison)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = [
        ("params", "parameters", True),
        ("train_time_s", "training time of a run (s)", False),
    ]
    for ax, (field, label, log) in zip(axes, panels, strict=True):
        for v in comparison.variants:
            x, acc = getattr(v, field), v.test_accuracy
            ax.errorbar(
                x,
                acc.estimate,
                yerr=[[acc.estimate - acc.low], [acc.high - acc.estimate]],
                fmt="o",
                capsize=4,
                color=colours[v.variant],
                label=v.variant,
            )
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(f"test accuracy ({comparison.confidence:.0%} CI)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    return fig


def write_plots(comparison: Comparison, out_dir: Path) -> dict[str, Path]:
    """Draw the comparison's plots as PNG files (matplotlib's Agg renderer).

    Args:
        comparison: what to draw.
        out_dir: the folder to write ``<name>.png`` into; made when missing.

    Returns:
        The path of each plot, by the names of :data:`PLOTS`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    draw = {
        "learning_curves": _learning_curves,
        "confusion_matrices": _confusion_matrices,
        "per_class_accuracy": _per_class_accuracy,
        "accuracy_vs_cost": _accuracy_vs_cost,
    }
    files = {}
    for name in PLOTS:
        files[name] = out_dir / f"{name}.png"
        draw[name](comparison).savefig(files[name], dpi=90, format="png")
    return files


# ---------------------------------------------------------------- tables and text


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _points(x: float) -> str:
    return _number(100 * x, "+.2f")


def _ci(i: Interval) -> str:
    return f"{_pct(i.estimate)} [{_pct(i.low)}, {_pct(i.high)}]"


def main_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the main table: one row per variant, the seed's number beside ours.

    Args:
        comparison: the comparison to tabulate.

    Returns:
        The column headers and one row of strings per variant.
    """
    headers = [
        "variant",
        "params",
        "size MB",
        f"test acc % ({comparison.confidence:.0%} CI)",
        "each run %",
        "test loss",
        "best val % (epoch)",
        "final val %",
        "s/epoch",
        "train img/s",
        "infer img/s",
        "seed %",
        "ours - seed",
    ]
    rows = []
    for v in comparison.variants:
        ref = v.reference
        seed = ""
        if ref:
            seed = _pct(ref.accuracy) + (" (val)" if ref.split == "validation" else "")
            seed += " †" if ref.note else ""
        rows.append(
            [
                v.variant,
                f"{v.params:,}",
                f"{v.model_size_bytes / 1e6:.1f}",
                _ci(v.test_accuracy),
                " ".join(_pct(r.test_accuracy) for r in v.runs),
                f"{v.test_loss:.4f}",
                f"{_pct(v.best_val_accuracy)} ({','.join(str(r.best_epoch) for r in v.runs)})",
                _pct(v.final_val_accuracy),
                f"{v.epoch_time_s:.1f}",
                f"{v.train_images_per_s:,.0f}",
                f"{v.inference_images_per_s:,.0f}",
                seed,
                _points(ref.test_difference) if ref else "",
            ]
        )
    return headers, rows


def reference_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and rows setting the seeds' numbers against ours.

    Args:
        comparison: the comparison to tabulate.

    Returns:
        The column headers and one row per variant the seeds report a number for.
    """
    headers = [
        "variant",
        "seed %",
        "seed loss",
        "seed split",
        "ours test %",
        "test - seed",
        "ours final val %",
        "val - seed",
        "ours loss (seed's split)",
    ]
    rows = []
    for v in comparison.variants:
        ref = v.reference
        if ref is None:
            continue
        on_validation = ref.split == "validation"
        rows.append(
            [
                v.variant,
                _pct(ref.accuracy),
                "" if ref.loss is None else f"{ref.loss:.4f}",
                ref.split,
                _pct(v.test_accuracy.estimate),
                _points(ref.test_difference),
                _pct(v.final_val_accuracy),
                _points(ref.validation_difference) if on_validation else "",
                f"{v.final_val_loss if on_validation else v.test_loss:.4f}",
            ]
        )
    return headers, rows


def _p_cell(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def pair_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the pairwise tests.

    Args:
        comparison: the comparison to tabulate.

    Returns:
        The column headers and one row per pair of variants.
    """
    headers = [
        "a vs b",
        "a - b, points (95% CI)",
        "per repeat: only a right / only b right, p, Holm p",
        "significant",
    ]
    rows = [
        [
            f"{p.a} vs {p.b}",
            f"{_points(p.difference.estimate)} [{_points(p.difference.low)}, "
            f"{_points(p.difference.high)}]",
            "; ".join(
                f"r{t.repeat}: {t.only_a_correct}/{t.only_b_correct}, "
                f"{_p_cell(t.p_value)}, {_p_cell(t.p_holm)}"
                for t in p.tests
            ),
            "yes" if p.significant else "no",
        ]
        for p in comparison.pairs
    ]
    return headers, rows


def hardware_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of what each variant ran on.

    Args:
        comparison: the comparison to tabulate.

    Returns:
        The column headers and one row per variant, stage (training or inference)
        and machine it ran on.
    """
    headers = ["variant", "stage", "device", "hardware", "CPUs", "TensorFlow"]
    rows = [
        [v.variant, stage, h.device, h.name, str(h.cpu_count), h.tensorflow]
        for v in comparison.variants
        for stage, machines in (("training", v.hardware), ("inference", v.inference_hardware))
        for h in machines
    ]
    return headers, rows


def numerics_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of what decides whether each variant's training reruns bit for bit.

    Args:
        comparison: the comparison to tabulate.

    Returns:
        The column headers and one row per variant and machine it trained on,
        with the repeats' spread of test accuracy.
    """
    headers = [
        "variant",
        "spread, points",
        "CPU",
        "extensions",
        "TensorFlow (git)",
        "CUDA / cuDNN",
        "oneDNN (TF_ENABLE_ONEDNN_OPTS)",
        "threads",
    ]
    rows = []
    for v in comparison.variants:
        for h in v.hardware:
            onednn = "?" if h.onednn is None else ("on" if h.onednn else "off")
            cuda = h.build.get("cuda_version", "")
            rows.append(
                [
                    v.variant,
                    f"{100 * v.test_accuracy_spread:.2f}" + (" (!)" if v.spread_flag else ""),
                    h.cpu or h.name,
                    " ".join(f for f in h.cpu_flags if f.startswith(("avx", "fma", "amx"))),
                    f"{h.tensorflow} ({h.tensorflow_git})" if h.tensorflow_git else h.tensorflow,
                    f"{cuda} / {h.build.get('cudnn_version', '')}" if cuda else "",
                    f"{onednn} ({'unset' if h.onednn_opts is None else h.onednn_opts})",
                    str(h.intra_op_threads or h.cpu_count),
                ]
            )
    return headers, rows


def terminal_table(comparison: Comparison) -> str:
    """The main table and the verdicts, for a terminal.

    Args:
        comparison: the comparison to print.

    Returns:
        A heading line, the main table (tabulate's plain format) and one verdict per pair.
    """
    headers, rows = main_table(comparison)
    lines = [
        f"{comparison.experiment}: {comparison.repeats} repeat(s), {comparison.epochs} epochs, "
        f"{comparison.n_test:,} test images",
        tabulate(rows, headers=headers, disable_numparse=True),
    ]
    if comparison.pairs:
        lines += ["", *(f"- {p.verdict}" for p in comparison.pairs)]
    lines += [f"- {v.spread_flag}" for v in comparison.variants if v.spread_flag]
    if comparison.failures:
        lines += ["", f"{comparison.status.upper()}: {failure_summary(comparison)}"]
    return "\n".join(lines)


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _render(comparison: Comparison, images: dict[str, str], html: bool) -> str:
    env = Environment(
        loader=PackageLoader("cnnvsmlp", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    tables = {}
    for name, make in (
        ("main", main_table),
        ("reference", reference_table),
        ("pairs", pair_table),
        ("hardware", hardware_table),
        ("numerics", numerics_table),
        ("failures", failure_table),
    ):
        headers, rows = make(comparison)
        if not html:
            rows = [[_markdown_cell(cell) for cell in row] for row in rows]
        fmt = "html" if html else "github"
        tables[name] = tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)
    notes = [
        (v.variant, v.reference.note)
        for v in comparison.variants
        if v.reference is not None and v.reference.note
    ]
    template = env.get_template("report.html.j2" if html else "report.md.j2")
    return template.render(
        c=comparison,
        spread_flags=[v.spread_flag for v in comparison.variants if v.spread_flag],
        tables=tables,
        failure_summary=failure_summary(comparison),
        notes=notes,
        plots=[(PLOTS[name], src) for name, src in images.items()],
        hardware=sorted(
            {h.name for v in comparison.variants for h in v.hardware + v.inference_hardware}
        ),
    )


def render_markdown(comparison: Comparison, plot_dir: str = "plots") -> str:
    """The Markdown report: GitHub tables, plots linked relative to the report.

    Args:
        comparison: the comparison to report.
        plot_dir: the plots' folder as seen from the report.

    Returns:
        The report's text.
    """
    drawn = PLOTS if comparison.variants else {}
    return _render(comparison, {name: f"{plot_dir}/{name}.png" for name in drawn}, html=False)


def render_html(comparison: Comparison, plots: dict[str, Path]) -> str:
    """The self-contained HTML report: the plots embedded as base64 data URIs.

    Args:
        comparison: the comparison to report.
        plots: the PNG file of each plot, as :func:`write_plots` returns them.

    Returns:
        The HTML document.
    """
    images = {
        name: "data:image/png;base64," + base64.b64encode(plots[name].read_bytes()).decode()
        for name in PLOTS
        if name in plots
    }
    return _render(comparison, images, html=True)


def write_comparison(
    results: list[EvalResult], config: ExperimentConfig, test_labels: np.ndarray, out_dir: Path
) -> Comparison:
    """Compare the runs and write the JSON, the reports and the plots into ``out_dir``.

    Args:
        results: every run's evaluation, in any order.
        config: the experiment: its variants, in report order, and the seeds' numbers.
        test_labels: the true labels of the test split the runs were scored on.
        out_dir: the folder to write ``comparison.json``, ``report.md``,
            ``report.html`` and ``plots/*.png`` into; made when missing.

    Returns:
        The comparison written to ``comparison.json``.

    Raises:
        ReportError: the runs do not fit together (see :func:`compare`);
            nothing is written then. Failed runs are no error: they are
            listed, and the comparison's ``status`` says it is partial.
    """
    comparison = compare(results, config, test_labels)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # With every variant failed there is nothing to draw.
    plots = write_plots(comparison, out_dir / "plots") if comparison.variants else {}
    (out_dir / "comparison.json").write_text(comparison.model_dump_json(indent=1), encoding="utf-8")
    (out_dir / "report.md").write_text(render_markdown(comparison), encoding="utf-8")
    (out_dir / "report.html").write_text(render_html(comparison, plots), encoding="utf-8")
    return comparison
