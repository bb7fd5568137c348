"""The comparison's plots: learning curves, confusion matrices, per-class accuracy, cost."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnnvsmlp.report.model import Comparison

# File name (without .png) and caption of each plot, in report order.
PLOTS = {
    "learning_curves": "Learning curves",
    "confusion_matrices": "Confusion matrices",
    "per_class_accuracy": "Per-class accuracy",
    "accuracy_vs_cost": "Accuracy against parameters and training time",
}


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
