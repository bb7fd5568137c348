"""The reports' plots: the comparison's and the data-efficiency study's, as PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from cnnvsmlp.report.blocks import PLOTS, SHIFT_PLOT
from cnnvsmlp.report.model import Comparison

if TYPE_CHECKING:
    from cnnvsmlp.efficiency.curves import EfficiencyAnalysis

EFFICIENCY_PLOTS = {
    "accuracy_vs_size": "Test accuracy against training-set size",
    "gap_vs_size": "Gap to the baseline at each training-set size",
    "accuracy_vs_shift": "Test accuracy against shift",
}


def _figure(width: float, height: float, *grid: int, **options):
    """A constrained-layout figure and its axes (one, unless ``grid`` asks for more)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(*grid, **options)


def _finish(ax, ylabel: str, title: str = "", fontsize: int = 9, legend=None, **grid) -> None:
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=fontsize)
    ax.grid(alpha=0.3, **grid)
    if legend is not None:
        ax.legend(**legend)


def _bars(ax, x, intervals: list, **style) -> None:
    """Estimates in points at ``x``, their intervals as error bars."""
    below = [100 * (i.estimate - i.low) for i in intervals]
    above = [100 * (i.high - i.estimate) for i in intervals]
    ax.errorbar(x, [100 * i.estimate for i in intervals], yerr=[below, above], **style)


def _label(ax, text: str, xy: tuple, offset: tuple, **style) -> None:
    ax.annotate(text, xy, xytext=offset, textcoords="offset points", **style)


def _save(drawers: dict, subject, out_dir: Path) -> dict[str, Path]:
    """Draw each of ``subject``'s figures as ``<name>.png`` in ``out_dir`` (made when missing)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, draw in drawers.items():
        draw(subject).savefig(out_dir / f"{name}.png", dpi=90, format="png")
    return {name: out_dir / f"{name}.png" for name in drawers}


def _test_accuracy(comparison: Comparison) -> Figure:
    n = len(comparison.variants)
    fig, ax = _figure(max(6.0, 1.5 * n + 2), 3.0)
    rng = np.random.default_rng(0)
    for i, v in enumerate(comparison.variants):
        acc, colour = v.test_accuracy, f"C{i}"
        _bars(ax, i, [acc], fmt="s", ms=7, capsize=6, lw=2, color=colour, zorder=3)
        if len(v.runs) > 1:
            jitter = rng.uniform(-0.12, 0.12, len(v.runs))
            y = [100 * r.test_accuracy for r in v.runs]
            ax.scatter(i + 0.25 + jitter, y, s=14, color=colour, alpha=0.7, zorder=2)
        high = (i, 100 * acc.high)
        _label(ax, f"{100 * acc.estimate:.2f}", high, (0, 4), ha="center", fontsize=9)
    ax.set_xticks(range(n), [v.variant for v in comparison.variants])
    low = min(v.test_accuracy.low for v in comparison.variants)
    high = max(v.test_accuracy.high for v in comparison.variants)
    pad = max(0.2, 8 * (high - low))
    ax.set(xlim=(-0.5, n - 0.5), ylim=(100 * low - pad, 100 * high + pad))
    what = (
        f"mean of {comparison.repeats} repeats (dots: each run), {comparison.confidence:.0%} "
        "t-interval over the repeats"
        if comparison.repeats > 1
        else f"single run, {comparison.confidence:.0%} Wilson interval over the test images"
    )
    _finish(ax, "test accuracy (%)", f"Test accuracy: {what}", 10, axis="y")
    return fig


def _learning_curves(comparison: Comparison) -> Figure:
    fig, axes = _figure(11, 7.5, 2, 2, sharex=True)
    for ax, key in zip(axes.flat, ["accuracy", "val_accuracy", "loss", "val_loss"], strict=True):
        for i, v in enumerate(comparison.variants):
            length = min(len(r.history) for r in v.runs)
            curves = np.array([[getattr(e, key) for e in r.history[:length]] for r in v.runs])
            epochs = [e.epoch for e in v.runs[0].history[:length]]
            ax.plot(epochs, curves.mean(axis=0), marker="o", ms=3, color=f"C{i}", label=v.variant)
            if len(v.runs) > 1:
                low, high = curves.min(axis=0), curves.max(axis=0)
                ax.fill_between(epochs, low, high, color=f"C{i}", alpha=0.2)
        ax.set_title(key.replace("val_", "validation ") if "val_" in key else f"train {key}")
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
    fig, axes = _figure(size * cols, size * rows, rows, cols, squeeze=False)
    for ax, v in zip(axes.flat, comparison.variants, strict=False):
        counts = np.array(v.confusion, dtype=float)
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(k), classes, rotation=90, fontsize=label_size)
        ax.set_yticks(range(k), classes, fontsize=label_size)
        ax.set(xlabel="predicted", ylabel="true", title=v.variant)
        for i, j in np.ndindex(share.shape) if k <= 10 else ():
            colour = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i, f"{share[i, j]:.2f}", ha="center", va="center", fontsize=6, color=colour)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    summed = f"summed over {comparison.repeats} repeats, " if comparison.repeats > 1 else ""
    fig.suptitle(f"Confusion matrices ({summed}each row: share of the true class)")
    return fig


def _per_class_accuracy(comparison: Comparison) -> Figure:
    k, n = len(comparison.classes), len(comparison.variants)
    fig, ax = _figure(min(max(8.0, 0.3 * k * max(n, 2)), 20.0), 4.5 if k <= 30 else 5.5)
    width = 0.6 / max(n - 1, 1)
    for i, v in enumerate(comparison.variants):
        x = np.arange(k) + (i - (n - 1) / 2) * width if n > 1 else np.arange(k)
        ax.plot(x, 100 * np.asarray(v.per_class_recall), "o", ms=5, label=v.variant, color=f"C{i}")
    if k <= 10:
        ax.set_xticks(range(k), comparison.classes, rotation=45, ha="right")
    else:  # upright names would overlap: each class has about 0.2 inch at 100 classes
        ax.set_xticks(range(k), comparison.classes, rotation=90, fontsize=7 if k <= 40 else 6)
    # Dots, not bars: a bar's length would read from the axis' cut-off, not from 0.
    low = min(min(v.per_class_recall) for v in comparison.variants)
    ax.set_ylim(max(0.0, 10 * np.floor(10 * low - 0.5)), 100.5)
    for boundary in np.arange(k - 1) + 0.5:
        ax.axvline(boundary, color="0.9", lw=0.8, zorder=0)
    legend = {"ncols": n, "loc": "lower center", "bbox_to_anchor": (0.5, 1.0), "frameon": False}
    _finish(ax, "test accuracy of the class (recall, %)", legend=legend, axis="y")
    return fig


def _accuracy_vs_cost(comparison: Comparison) -> Figure:
    at_once = comparison.provenance.trainings_at_once or 1
    share = f", {at_once} trainings at once" if at_once > 1 else ""
    colours = {v.variant: f"C{i}" for i, v in enumerate(comparison.variants)}
    fig, axes = _figure(11, 4.5, 1, 2)
    panels = [
        ("params", "parameters (log scale)", "Accuracy against model size"),
        ("train_time_s", f"training time of a run (s{share})", "Accuracy against training time"),
    ]
    for ax, (field, label, title) in zip(axes, panels, strict=True):
        # Labels of points close together alternate above and below them.
        ordered = sorted(comparison.variants, key=lambda v: getattr(v, field))
        for i, v in enumerate(ordered):
            x, acc, colour = getattr(v, field), v.test_accuracy, colours[v.variant]
            _bars(ax, x, [acc], fmt="o", capsize=4, color=colour)
            offset = (6, 8 if i % 2 == 0 else -14)
            _label(ax, v.variant, (x, 100 * acc.estimate), offset, fontsize=9, color=colour)
        if field == "params":
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1e6:g}M"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(x=0.15, y=0.15)
        ax.set_xlabel(label)
        _finish(ax, f"test accuracy (%, {comparison.confidence:.0%} CI)", title, 10)
    return fig


def _by_shift(ax, points: list, offset: float, style: str = "-", **line) -> None:
    """Accuracy against shift of one variant, its points moved by ``offset`` to stand apart."""
    points = sorted(points, key=lambda p: p.shift)
    x, found = [p.shift + offset for p in points], [p.accuracy for p in points]
    _bars(ax, x, found, fmt="o", ls=style, ms=5, capsize=3, **line)


def _shift_axes(ax, points: list, ylabel: str, title: str, fontsize: int) -> None:
    ax.set_xlabel("shift of the test images (pixels along each moved axis)")
    ax.set_xticks(sorted({p.shift for p in points}))
    _finish(ax, ylabel, title, fontsize, legend={"fontsize": 8})


def _accuracy_vs_shift(c: Comparison) -> Figure:
    fig, ax = _figure(7.0, 3.6)
    for i, v in enumerate(c.variants):
        found = [p for p in c.shift_accuracy if p.variant == v.variant]
        offset = 0.04 * (i - (len(c.variants) - 1) / 2)
        _by_shift(ax, found, offset, color=f"C{i}", label=v.variant)
    ylabel = f"test accuracy (%, {c.confidence:.0%} CI)"
    title = "Accuracy on the test images moved by 0 to 4 pixels"
    _shift_axes(ax, c.shift_accuracy, ylabel, title, 10)
    return fig


def write_plots(comparison: Comparison, out_dir: Path) -> dict[str, Path]:
    """Draw the comparison's :data:`PLOTS`, then :data:`SHIFT_PLOT` if it has shifted scores."""
    drawers = [_test_accuracy, _learning_curves, _confusion_matrices, _per_class_accuracy]
    drawers += [_accuracy_vs_cost, *[_accuracy_vs_shift] * bool(comparison.shift_accuracy)]
    return _save(dict(zip([*PLOTS, SHIFT_PLOT[0]], drawers, strict=False)), comparison, out_dir)


def _size_axis(ax, sizes: list[int]) -> None:
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{x / 1000:g}k" if x >= 1000 else f"{x:g}" for x in sizes])
    ax.set_xticks([], minor=True)
    ax.set_xlabel("training images (log scale)")


def _dots(ax, n: int, values: list[float], colour: str) -> None:
    """Each repeat's value as a small dot beside its size, spread on the log axis."""
    y = [100 * x for x in values]
    x = n * np.exp(np.linspace(-0.06, 0.06, len(y))) if len(y) > 1 else np.array([n])
    ax.scatter(x * 1.08, y, s=10, color=colour, alpha=0.6, zorder=2)


def _accuracy_vs_size(a: EfficiencyAnalysis) -> Figure:
    fig, ax = _figure(7.5, 4.2)
    for i, v in enumerate(a.variants):
        points = [p for p in a.points if p.variant == v]
        if not points:
            continue
        n = np.array([p.n_train for p in points], dtype=float)
        found = [p.accuracy for p in points]
        _bars(ax, n, found, fmt="o", ms=6, capsize=4, color=f"C{i}", label=v, zorder=3)
        for p in points:
            _dots(ax, p.n_train, [r.test_accuracy for r in p.runs], f"C{i}")
        ax.plot(n, [100 * p.estimate for p in found], color=f"C{i}", lw=1, alpha=0.8)
    _size_axis(ax, a.sizes)
    title = f"Test accuracy: mean with {a.confidence:.0%} t-interval over repeats, "
    _finish(ax, "test accuracy (%)", title + "dots: each repeat", legend={"loc": "lower right"})
    return fig


def _gap_vs_size(a: EfficiencyAnalysis) -> Figure:
    fig, ax = _figure(7.5, 3.6)
    for i, v in enumerate(a.variants[1:], start=1):
        gaps = [g for g in a.gaps if g.a == v]
        if not gaps:
            continue
        n = np.array([g.n_train for g in gaps], dtype=float)
        _bars(ax, n, gaps, fmt="-", capsize=4, color=f"C{i}", zorder=3, lw=1)
        for g in gaps:
            face = f"C{i}" if g.verdict == "different" else "white"
            y = [100 * g.estimate]
            ax.scatter([g.n_train], y, s=40, facecolors=face, edgecolors=f"C{i}", zorder=4)
            _dots(ax, g.n_train, g.per_seed, f"C{i}")
        ax.plot([], [], color=f"C{i}", label=f"{v} - {a.baseline}")
    ax.axhline(0, color="0.4", lw=0.8)
    _size_axis(ax, a.sizes)
    title = "Gap, simultaneous 95% CI over seeds and test images; filled: shown different; "
    _finish(ax, "gap (accuracy points)", title + "dots: repeats", legend={"loc": "upper right"})
    return fig


def _study_vs_shift(a: EfficiencyAnalysis) -> Figure:
    fig, ax = _figure(7.5, 3.8)
    ends = sorted({a.sizes[0], a.sizes[-1]})
    for i, v in enumerate(a.variants):
        for n, style in zip(reversed(ends), ("-", ":"), strict=False):
            found = [p for p in a.shift_points if (p.variant, p.n_train) == (v, n)]
            offset = 0.05 * (i - (len(a.variants) - 1) / 2)
            if found:
                _by_shift(ax, found, offset, style, color=f"C{i}", label=f"{v}, {n:,} images")
    title = f"Accuracy against shift, mean with {a.confidence:.0%} t-interval over repeats"
    _shift_axes(ax, a.shift_points, "test accuracy (%)", title, 9)
    return fig


def write_efficiency_plots(a: EfficiencyAnalysis, out_dir: Path) -> dict[str, Path]:
    """Draw the study's plots it has data for, by the names of :data:`EFFICIENCY_PLOTS`."""
    drawers = [_accuracy_vs_size, _gap_vs_size, _study_vs_shift]
    found = zip(EFFICIENCY_PLOTS, drawers, [a.points, a.gaps, a.shift_points], strict=True)
    return _save({name: draw for name, draw, data in found if data}, a, out_dir)
