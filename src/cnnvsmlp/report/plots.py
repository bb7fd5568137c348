"""The comparison's plots: learning curves, confusion matrices, per-class accuracy, cost."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from cnnvsmlp.report.model import Comparison

# File name (without .png) and caption of each plot, in report order.
PLOTS = {
    "test_accuracy": "Test accuracy of each variant",
    "learning_curves": "Learning curves",
    "confusion_matrices": "Confusion matrices",
    "per_class_accuracy": "Per-class accuracy",
    "accuracy_vs_cost": "Accuracy against parameters and training time",
}


def _colours(comparison: Comparison) -> dict[str, str]:
    return {v.variant: f"C{i}" for i, v in enumerate(comparison.variants)}


def _test_accuracy(comparison: Comparison) -> Figure:
    colours = _colours(comparison)
    n = len(comparison.variants)
    fig = Figure(figsize=(max(6.0, 1.5 * n + 2), 3.0), layout="constrained")
    ax = fig.subplots()
    rng = np.random.default_rng(0)
    for i, v in enumerate(comparison.variants):
        acc = v.test_accuracy
        colour = colours[v.variant]
        ax.errorbar(
            i,
            100 * acc.estimate,
            yerr=[[100 * (acc.estimate - acc.low)], [100 * (acc.high - acc.estimate)]],
            fmt="s",
            ms=7,
            capsize=6,
            lw=2,
            color=colour,
            zorder=3,
        )
        if len(v.runs) > 1:
            jitter = rng.uniform(-0.12, 0.12, len(v.runs))
            ax.scatter(
                i + 0.25 + jitter,
                [100 * r.test_accuracy for r in v.runs],
                s=14,
                color=colour,
                alpha=0.7,
                zorder=2,
            )
        ax.annotate(
            f"{100 * acc.estimate:.2f}",
            (i, 100 * acc.high),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            fontsize=9,
        )
    ax.set_xticks(range(n), [v.variant for v in comparison.variants])
    ax.set_xlim(-0.5, n - 0.5)
    low = min(v.test_accuracy.low for v in comparison.variants)
    high = max(v.test_accuracy.high for v in comparison.variants)
    pad = max(0.2, 8 * (high - low))
    ax.set_ylim(100 * low - pad, 100 * high + pad)
    what = (
        f"mean of {comparison.repeats} repeats (dots: each run), {comparison.confidence:.0%} "
        "t-interval over the repeats"
        if comparison.repeats > 1
        else f"single run, {comparison.confidence:.0%} Wilson interval over the test images"
    )
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Test accuracy: {what}", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return fig


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
    # About 0.12 inch a class: 100 class names at 6 points still stand apart.
    size = 4.5 if k <= 10 else min(max(6.5, 0.12 * k), 14.0)
    label_size = 7 if k <= 40 else 6
    fig = Figure(figsize=(size * cols, size * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, v in zip(axes.flat, comparison.variants, strict=False):
        counts = np.array(v.confusion, dtype=float)
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(k), classes, rotation=90, fontsize=label_size)
        ax.set_yticks(range(k), classes, fontsize=label_size)
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
    wide = min(max(8.0, 0.3 * k * max(n, 2)), 20.0)
    fig = Figure(figsize=(wide, 4.5 if k <= 30 else 5.5), layout="constrained")
    ax = fig.subplots()
    width = 0.6 / max(n - 1, 1)
    for i, v in enumerate(comparison.variants):
        x = np.arange(k) + (i - (n - 1) / 2) * width if n > 1 else np.arange(k)
        recall = 100 * np.asarray(v.per_class_recall)
        ax.plot(x, recall, "o", ms=5, label=v.variant, color=colours[v.variant])
    if k <= 10:
        ax.set_xticks(range(k), comparison.classes, rotation=45, ha="right")
    else:  # upright names would overlap: each class has about 0.2 inch at 100 classes
        ax.set_xticks(range(k), comparison.classes, rotation=90, fontsize=7 if k <= 40 else 6)
    ax.set_ylabel("test accuracy of the class (recall, %)")
    # Dots, not bars: a bar's length would read from the axis' cut-off, not from 0.
    low = min(min(v.per_class_recall) for v in comparison.variants)
    ax.set_ylim(max(0.0, 10 * np.floor(10 * low - 0.5)), 100.5)
    for boundary in np.arange(k - 1) + 0.5:
        ax.axvline(boundary, color="0.9", lw=0.8, zorder=0)
    ax.legend(ncols=n, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return fig


def _accuracy_vs_cost(comparison: Comparison, time_label: str = "") -> Figure:
    colours = _colours(comparison)
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = [
        ("params", "parameters (log scale)", True),
        ("train_time_s", time_label or "training time of a run (s)", False),
    ]
    for ax, (field, label, log) in zip(axes, panels, strict=True):
        # Labels of points close together alternate above and below them.
        ordered = sorted(comparison.variants, key=lambda v: getattr(v, field))
        for i, v in enumerate(ordered):
            x, acc = getattr(v, field), v.test_accuracy
            ax.errorbar(
                x,
                100 * acc.estimate,
                yerr=[[100 * (acc.estimate - acc.low)], [100 * (acc.high - acc.estimate)]],
                fmt="o",
                capsize=4,
                color=colours[v.variant],
            )
            ax.annotate(
                v.variant,
                (x, 100 * acc.estimate),
                xytext=(6, 8 if i % 2 == 0 else -14),
                textcoords="offset points",
                fontsize=9,
                color=colours[v.variant],
            )
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1e6:g}M"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(x=0.15, y=0.15)
        ax.set_xlabel(label)
        ax.set_ylabel(f"test accuracy (%, {comparison.confidence:.0%} CI)")
        ax.grid(alpha=0.3)
    axes[0].set_title("Accuracy against model size", fontsize=10)
    axes[1].set_title("Accuracy against training time", fontsize=10)
    return fig


SHIFT_PLOT = ("accuracy_vs_shift", "Test accuracy against shift of the test images")
"""The name and caption of the shift plot, drawn when the runs were scored on shifted images."""


def _accuracy_vs_shift(comparison: Comparison) -> Figure:
    colours = _colours(comparison)
    fig = Figure(figsize=(7.0, 3.6), layout="constrained")
    ax = fig.subplots()
    n = len(comparison.variants)
    for i, v in enumerate(comparison.variants):
        points = sorted(
            (p for p in comparison.shift_accuracy if p.variant == v.variant), key=lambda p: p.shift
        )
        offset = 0.04 * (i - (n - 1) / 2)
        ax.errorbar(
            [p.shift + offset for p in points],
            [100 * p.accuracy.estimate for p in points],
            yerr=[
                [100 * (p.accuracy.estimate - p.accuracy.low) for p in points],
                [100 * (p.accuracy.high - p.accuracy.estimate) for p in points],
            ],
            fmt="o-",
            ms=5,
            capsize=3,
            color=colours[v.variant],
            label=v.variant,
        )
    ax.set_xticks(sorted({p.shift for p in comparison.shift_accuracy}))
    ax.set_xlabel("shift of the test images (pixels along each moved axis)")
    ax.set_ylabel(f"test accuracy (%, {comparison.confidence:.0%} CI)")
    ax.set_title("Accuracy on the test images moved by 0 to 4 pixels", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def write_plots(comparison: Comparison, out_dir: Path, time_label: str = "") -> dict[str, Path]:
    """Draw the comparison's plots as PNG files (matplotlib's Agg renderer).

    Args:
        comparison: what to draw.
        out_dir: the folder to write ``<name>.png`` into; made when missing.
        time_label: the training-time axis' label, saying what shared the
            machine (:func:`cnnvsmlp.report.render.speed_note`).

    Returns:
        The path of each plot, by the names of :data:`PLOTS`, and the shift
        plot's (:data:`SHIFT_PLOT`) when the comparison has shifted scores.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    draw = {
        "test_accuracy": _test_accuracy,
        "learning_curves": _learning_curves,
        "confusion_matrices": _confusion_matrices,
        "per_class_accuracy": _per_class_accuracy,
        "accuracy_vs_cost": lambda c: _accuracy_vs_cost(c, time_label),
    }
    files = {}
    for name in PLOTS:
        files[name] = out_dir / f"{name}.png"
        draw[name](comparison).savefig(files[name], dpi=90, format="png")
    if comparison.shift_accuracy:
        name = SHIFT_PLOT[0]
        files[name] = out_dir / f"{name}.png"
        _accuracy_vs_shift(comparison).savefig(files[name], dpi=90, format="png")
    return files
