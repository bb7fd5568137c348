"""The comparison artifact: every run of an experiment, summarised, tested and drawn.

:func:`write_comparison` writes into one folder:

- ``comparison.json``: every number (schema in docs/comparison-schema.md);
- ``report.md``: the report the KFP UI renders;
- ``report.html``: the same, self-contained, plots embedded;
- ``plots/*.png``: learning curves, confusion matrices, per-class accuracy,
  accuracy against parameters and against training time.
"""

from __future__ import annotations

import base64
import itertools
from collections import defaultdict
from pathlib import Path

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel, ConfigDict
from tabulate import tabulate

from cnnvsmlp import stats
from cnnvsmlp.config import ExperimentConfig
from cnnvsmlp.data import labels_digest
from cnnvsmlp.errors import UserError
from cnnvsmlp.records import EvalResult, Hardware

SCHEMA_VERSION = "1.0"
VERDICT_RULE = (
    "A difference is called significant when, in every repeat, McNemar's exact test on the "
    f"paired test-image predictions gives a Holm-adjusted p below {stats.ALPHA} (adjusted over "
    "all pairs of variants) and the accuracy difference has the same sign."
)


class ReportError(UserError):
    """The runs handed to the comparison do not fit together."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Interval(_Model):
    """An estimate with its 95% confidence interval."""

    estimate: float
    low: float
    high: float
    method: str


class RunSummary(_Model):
    """One training run of a variant."""

    repeat: int
    seed: int
    test_accuracy: float
    test_loss: float
    best_val_accuracy: float
    best_epoch: int
    final_val_accuracy: float
    epoch_time_s: float
    train_images_per_s: float
    inference_images_per_s: float


class ReferenceComparison(_Model):
    """A seed's published number beside ours on the same split."""

    accuracy: float
    loss: float | None
    split: str
    ours: float
    difference: float
    note: str


class VariantSummary(_Model):
    """A variant over all its repeats."""

    variant: str
    params: int
    model_size_bytes: int
    test_accuracy: Interval
    test_loss: float
    best_val_accuracy: float
    final_val_accuracy: float
    epoch_time_s: float
    train_images_per_s: float
    inference_images_per_s: float
    per_class_recall: list[float]
    hardware: list[Hardware]
    runs: list[RunSummary]
    reference: ReferenceComparison | None


class RepeatTest(_Model):
    """McNemar's test of a pair in one repeat."""

    repeat: int
    difference: float
    only_a_correct: int
    only_b_correct: int
    p_value: float
    p_holm: float


class PairComparison(_Model):
    """Variant ``a`` against variant ``b`` (``a`` has the higher mean accuracy)."""

    a: str
    b: str
    difference: Interval
    tests: list[RepeatTest]
    significant: bool
    verdict: str


class Comparison(_Model):
    """Everything the comparison step computed."""

    schema_version: str
    experiment: str
    dataset: str
    classes: list[str]
    n_test: int
    repeats: int
    epochs: int
    verdict_rule: str
    variants: list[VariantSummary]
    pairs: list[PairComparison]


# ---------------------------------------------------------------- numbers


def _group(results: list[EvalResult], config: ExperimentConfig) -> dict[str, list[EvalResult]]:
    grouped: dict[str, list[EvalResult]] = defaultdict(list)
    for result in results:
        grouped[result.run.variant].append(result)
    order = [v for v in config.variants if v in grouped] + sorted(
        set(grouped) - set(config.variants)
    )
    return {v: sorted(grouped[v], key=lambda r: r.run.repeat) for v in order}


def _summarise(variant: str, runs: list[EvalResult], config: ExperimentConfig) -> VariantSummary:
    summaries = []
    for r in runs:
        history = r.training.history
        best = max(history, key=lambda e: e.val_accuracy)
        summaries.append(
            RunSummary(
                repeat=r.run.repeat,
                seed=r.run.seed,
                test_accuracy=r.accuracy,
                test_loss=r.loss,
                best_val_accuracy=best.val_accuracy,
                best_epoch=best.epoch,
                final_val_accuracy=history[-1].val_accuracy,
                epoch_time_s=float(np.mean([e.time_s for e in history])),
                train_images_per_s=r.training.train_images_per_s,
                inference_images_per_s=r.inference_images_per_s,
            )
        )
    accuracy = stats.accuracy_interval([s.test_accuracy for s in summaries], runs[0].n_test)
    final_val = float(np.mean([s.final_val_accuracy for s in summaries]))
    reference = None
    if variant in config.references:
        ref = config.references[variant]
        ours = accuracy.estimate if ref.split == "test" else final_val
        reference = ReferenceComparison(
            accuracy=ref.accuracy,
            loss=ref.loss,
            split=ref.split,
            ours=ours,
            difference=ours - ref.accuracy,
            note=ref.note.strip(),
        )
    recall = np.mean([[c.recall for c in r.per_class] for r in runs], axis=0)
    hardware = list({h.model_dump_json(): h for h in (r.hardware for r in runs)}.values())
    return VariantSummary(
        variant=variant,
        params=runs[0].params,
        model_size_bytes=runs[0].model_size_bytes,
        test_accuracy=Interval(**accuracy.__dict__),
        test_loss=float(np.mean([s.test_loss for s in summaries])),
        best_val_accuracy=float(np.mean([s.best_val_accuracy for s in summaries])),
        final_val_accuracy=final_val,
        epoch_time_s=float(np.mean([s.epoch_time_s for s in summaries])),
        train_images_per_s=float(np.mean([s.train_images_per_s for s in summaries])),
        inference_images_per_s=float(np.mean([s.inference_images_per_s for s in summaries])),
        per_class_recall=recall.tolist(),
        hardware=hardware,
        runs=summaries,
        reference=reference,
    )


def _verdict(
    a: str, b: str, diff: stats.Interval, tests: list[RepeatTest], significant: bool
) -> str:
    points = (
        f"{100 * diff.estimate:.1f} points, 95% CI [{100 * diff.low:.1f}, {100 * diff.high:.1f}]"
    )
    n = len(tests)
    if significant:
        worst = max(t.p_holm for t in tests)
        where = f"in all {n} repeats" if n > 1 else "in its single run"
        p = "p < 0.001" if worst < 0.001 else f"p <= {worst:.3f}"
        return f"{a} beats {b} by {points}, {p} {where}."
    above = sum(t.p_holm >= stats.ALPHA for t in tests)
    return (
        f"No significant difference between {a} and {b} ({a} - {b} = {points}; "
        f"p >= {stats.ALPHA} in {above} of {n} repeat{'s' if n > 1 else ''})."
    )


def _pairs(
    grouped: dict[str, list[EvalResult]], summaries: dict[str, VariantSummary], labels: np.ndarray
) -> list[PairComparison]:
    ordered = sorted(summaries, key=lambda v: -summaries[v].test_accuracy.estimate)
    pairs = list(itertools.combinations(ordered, 2))
    raw: dict[tuple[str, str], list[tuple[int, float, stats.McNemar]]] = {}
    for a, b in pairs:
        by_repeat_b = {r.run.repeat: r for r in grouped[b]}
        rows = []
        for run_a in grouped[a]:
            run_b = by_repeat_b.get(run_a.run.repeat)
            if run_b is None:
                continue
            correct_a = np.asarray(run_a.predictions) == labels
            correct_b = np.asarray(run_b.predictions) == labels
            rows.append(
                (
                    run_a.run.repeat,
                    run_a.accuracy - run_b.accuracy,
                    stats.mcnemar_exact(correct_a, correct_b),
                )
            )
        raw[(a, b)] = rows
    # Holm over all pairs, separately within each repeat.
    adjusted: dict[tuple[str, str, int], float] = {}
    repeats = sorted({rep for rows in raw.values() for rep, _, _ in rows})
    for rep in repeats:
        keys = [(a, b) for (a, b), rows in raw.items() for r, _, _ in rows if r == rep]
        ps = [t.p_value for (a, b) in keys for r, _, t in raw[(a, b)] if r == rep]
        for (a, b), p in zip(keys, stats.holm(ps), strict=True):
            adjusted[(a, b, rep)] = p
    out = []
    for a, b in pairs:
        rows = raw[(a, b)]
        if not rows:
            continue
        tests = [
            RepeatTest(
                repeat=rep,
                difference=d,
                only_a_correct=t.only_a,
                only_b_correct=t.only_b,
                p_value=t.p_value,
                p_holm=adjusted[(a, b, rep)],
            )
            for rep, d, t in rows
        ]
        if len(rows) >= 2:
            diff = stats.t_interval([t.difference for t in tests])
        else:
            t = rows[0][2]
            diff = stats.paired_difference_interval(t.only_a, t.only_b, len(labels))
        signs = {np.sign(t.difference) for t in tests}
        significant = (
            all(t.p_holm < stats.ALPHA for t in tests) and len(signs) == 1 and 0 not in signs
        )
        out.append(
            PairComparison(
                a=a,
                b=b,
                difference=Interval(**diff.__dict__),
                tests=tests,
                significant=significant,
                verdict=_verdict(a, b, diff, tests, significant),
            )
        )
    return out


def compare(
    results: list[EvalResult], config: ExperimentConfig, test_labels: np.ndarray
) -> Comparison:
    """Summarise every variant and test every pair.

    Raises:
        ReportError: no runs, runs of another data set, or predictions that
            do not belong to these test labels.
    """
    if not results:
        raise ReportError("compare: no runs to compare")
    test_labels = np.asarray(test_labels)
    digest = labels_digest(test_labels)
    for r in results:
        if r.labels_sha256 != digest or len(r.predictions) != len(test_labels):
            raise ReportError(
                f"compare: run {r.run.run_id} was scored on other test labels than the data set's"
            )
        if r.dataset != config.dataset:
            raise ReportError(
                f"compare: run {r.run.run_id} is on {r.dataset}, not {config.dataset}"
            )
    grouped = _group(results, config)
    summaries = {v: _summarise(v, runs, config) for v, runs in grouped.items()}
    return Comparison(
        schema_version=SCHEMA_VERSION,
        experiment=config.name,
        dataset=config.dataset,
        classes=results[0].classes,
        n_test=len(test_labels),
        repeats=max(len(runs) for runs in grouped.values()),
        epochs=config.train.epochs,
        verdict_rule=VERDICT_RULE,
        variants=list(summaries.values()),
        pairs=_pairs(grouped, summaries, test_labels),
    )


# ---------------------------------------------------------------- pictures


def _plots(
    comparison: Comparison, grouped: dict[str, list[EvalResult]], out: Path
) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    colours = {v.variant: f"C{i}" for i, v in enumerate(comparison.variants)}
    files: dict[str, Path] = {}

    # Learning curves: mean over repeats, band from min to max.
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True)
    panels = [
        ("accuracy", "train accuracy"),
        ("val_accuracy", "validation accuracy"),
        ("loss", "train loss"),
        ("val_loss", "validation loss"),
    ]
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        for variant, runs in grouped.items():
            curves = np.array([[getattr(e, key) for e in r.training.history] for r in runs])
            epochs = np.arange(1, curves.shape[1] + 1)
            ax.plot(
                epochs, curves.mean(axis=0), marker="o", ms=3, color=colours[variant], label=variant
            )
            if len(runs) > 1:
                ax.fill_between(
                    epochs,
                    curves.min(axis=0),
                    curves.max(axis=0),
                    color=colours[variant],
                    alpha=0.2,
                )
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0, 0].legend()
    fig.suptitle(f"{comparison.experiment}: learning curves (band: min-max over repeats)")
    fig.tight_layout()
    files["learning_curves"] = out / "learning_curves.png"
    fig.savefig(files["learning_curves"], dpi=90)
    plt.close(fig)

    # Confusion matrices, summed over repeats, rows normalised to recall.
    k = len(comparison.classes)
    n = len(grouped)
    cols = min(n, 2)
    rows = (n + cols - 1) // cols
    size = 4.5 if k <= 10 else 6.5
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for ax, (variant, runs) in zip(axes.flat, grouped.items(), strict=False):
        matrix = np.sum([r.confusion for r in runs], axis=0).astype(float)
        matrix /= np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(k), comparison.classes, rotation=90, fontsize=7)
        ax.set_yticks(range(k), comparison.classes, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(variant)
        if k <= 10:
            for i, j in itertools.product(range(k), range(k)):
                ax.text(
                    j,
                    i,
                    f"{matrix[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if matrix[i, j] > 0.5 else "black",
                )
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    files["confusion_matrices"] = out / "confusion_matrices.png"
    fig.savefig(files["confusion_matrices"], dpi=90)
    plt.close(fig)

    # Per-class accuracy (recall) by variant.
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * k * max(n, 2)), 4.5))
    width = 0.8 / n
    for i, v in enumerate(comparison.variants):
        ax.bar(
            np.arange(k) + (i - (n - 1) / 2) * width,
            v.per_class_recall,
            width,
            label=v.variant,
            color=colours[v.variant],
        )
    ax.set_xticks(range(k), comparison.classes, rotation=45 if k <= 10 else 0, ha="right")
    ax.set_ylabel("test accuracy of the class (recall)")
    low = min(min(v.per_class_recall) for v in comparison.variants)
    ax.set_ylim(max(0.0, low - 0.05), 1.0)
    ax.legend(ncols=n, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    files["per_class_accuracy"] = out / "per_class_accuracy.png"
    fig.savefig(files["per_class_accuracy"], dpi=90)
    plt.close(fig)

    # Accuracy against cost.
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (attr, label, log) in zip(
        axes,
        [("params", "parameters", True), ("epoch_time_s", "training time per epoch (s)", False)],
        strict=True,
    ):
        for v in comparison.variants:
            acc = v.test_accuracy
            ax.errorbar(
                getattr(v, attr),
                acc.estimate,
                yerr=[[acc.estimate - acc.low], [acc.high - acc.estimate]],
                fmt="o",
                capsize=4,
                color=colours[v.variant],
                label=v.variant,
            )
            ax.annotate(
                v.variant,
                (getattr(v, attr), acc.estimate),
                textcoords="offset points",
                xytext=(6, 4),
                fontsize=8,
            )
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (95% CI)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    files["accuracy_vs_cost"] = out / "accuracy_vs_cost.png"
    fig.savefig(files["accuracy_vs_cost"], dpi=90)
    plt.close(fig)
    return files


# ---------------------------------------------------------------- text


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _p(p: float) -> str:
    return "<1e-300" if p == 0 else f"{p:.2g}"


def _ci(i: Interval) -> str:
    return f"{_pct(i.estimate)} [{_pct(i.low)}, {_pct(i.high)}]"


def main_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the main table: one row per variant."""
    headers = [
        "variant",
        "params",
        "test acc % (95% CI)",
        "runs",
        "test loss",
        "best val % (epoch)",
        "final val %",
        "s/epoch",
        "train img/s",
        "infer img/s",
    ]
    rows = []
    for v in comparison.variants:
        epochs = ",".join(str(r.best_epoch) for r in v.runs)
        rows.append(
            [
                v.variant,
                f"{v.params:,}",
                _ci(v.test_accuracy),
                " ".join(_pct(r.test_accuracy) for r in v.runs),
                f"{v.test_loss:.4f}",
                f"{_pct(v.best_val_accuracy)} ({epochs})",
                _pct(v.final_val_accuracy),
                f"{v.epoch_time_s:.1f}",
                f"{v.train_images_per_s:,.0f}",
                f"{v.inference_images_per_s:,.0f}",
            ]
        )
    return headers, rows


def reference_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and rows comparing the seeds' numbers with ours on the same split."""
    headers = ["variant", "seed reported %", "split", "ours %", "difference (points)", "note"]
    rows = [
        [
            v.variant,
            _pct(v.reference.accuracy),
            v.reference.split,
            _pct(v.reference.ours),
            f"{100 * v.reference.difference:+.2f}",
            v.reference.note or "",
        ]
        for v in comparison.variants
        if v.reference
    ]
    return headers, rows


def pair_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the pairwise tests."""
    headers = ["pair", "difference, points (95% CI)", "McNemar p per repeat (Holm)", "significant"]
    rows = [
        [
            f"{p.a} vs {p.b}",
            f"{100 * p.difference.estimate:.2f} [{100 * p.difference.low:.2f}, "
            f"{100 * p.difference.high:.2f}]",
            ", ".join(f"{t.p_holm:.2g}" for t in p.tests),
            "yes" if p.significant else "no",
        ]
        for p in comparison.pairs
    ]
    return headers, rows


def terminal_table(comparison: Comparison) -> str:
    """The main table and the verdicts, for a terminal."""
    headers, rows = main_table(comparison)
    lines = [
        f"{comparison.experiment}: {comparison.repeats} repeat(s), {comparison.epochs} epochs, "
        f"{comparison.n_test:,} test images",
        tabulate(rows, headers=headers, disable_numparse=True),
        "",
        *(f"- {p.verdict}" for p in comparison.pairs),
    ]
    return "\n".join(lines)


def _render(comparison: Comparison, plots: dict[str, Path], html: bool) -> str:
    env = Environment(
        loader=PackageLoader("cnnvsmlp", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    fmt = "html" if html else "github"
    tables = {
        name: tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)
        for name, (headers, rows) in (
            ("main", main_table(comparison)),
            ("reference", reference_table(comparison)),
            ("pairs", pair_table(comparison)),
        )
    }
    if html:
        images = {
            k: "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode()
            for k, p in plots.items()
        }
    else:
        images = {k: f"plots/{p.name}" for k, p in plots.items()}
    hardware = sorted({h.name for v in comparison.variants for h in v.hardware})
    template = env.get_template("report.html.j2" if html else "report.md.j2")
    return template.render(c=comparison, tables=tables, images=images, hardware=hardware)


def write_comparison(
    results: list[EvalResult], config: ExperimentConfig, test_labels: np.ndarray, out_dir: Path
) -> Comparison:
    """Compare the runs and write the JSON, the reports and the plots into ``out_dir``.

    Args:
        results: every run's evaluation, in any order.
        config: the experiment, for its variant order and the seeds' numbers.
        test_labels: the true labels of the test split the runs were scored on.
        out_dir: the folder to write.

    Returns:
        The comparison written to ``out_dir/comparison.json``.
    """
    comparison = compare(results, config, test_labels)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = _plots(comparison, _group(results, config), out_dir / "plots")
    (out_dir / "comparison.json").write_text(comparison.model_dump_json(indent=1))
    (out_dir / "report.md").write_text(_render(comparison, plots, html=False))
    (out_dir / "report.html").write_text(_render(comparison, plots, html=True))
    return comparison
