"""The data-efficiency comparison as a report: its plots and its layout.

:func:`write_efficiency_report` writes, as :func:`cnnvsmlp.report.render_comparison`
does for ``compare``: ``comparison.json`` (the
:class:`~cnnvsmlp.efficiency.analysis.EfficiencyAnalysis`), ``report.md`` (its
plots embedded, so it renders alone in the KFP UI), ``report.html`` and
``plots/*.png``. :func:`efficiency_report` is the layout: the answer in one
sentence, then test accuracy against training-set size, the gap per size,
accuracy against shift, and the tables after the plots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure as MplFigure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from cnnvsmlp.efficiency.analysis import EfficiencyAnalysis
from cnnvsmlp.efficiency.curves import FAMILIES
from cnnvsmlp.pairwise import Difference
from cnnvsmlp.provenance import SYNTHETIC_DATA, SYNTHETIC_LEAD
from cnnvsmlp.report.render import (
    Block,
    Bullets,
    Figure,
    Report,
    Section,
    Table,
    Text,
    machine_text,
    provenance_items,
    render_html,
    render_markdown,
    when_and_code,
)
from cnnvsmlp.stats import Interval

# File name (without .png) and caption of each plot, in report order.
EFFICIENCY_PLOTS = {
    "accuracy_vs_size": "Test accuracy against training-set size",
    "gap_vs_size": "Gap to the baseline at each training-set size",
    "accuracy_vs_shift": "Test accuracy against shift",
}

# ---------------------------------------------------------------- words


def _pts(x: float) -> str:
    return f"{100 * x:+.2f}"


def _pts_ci(i: Interval | Difference) -> str:
    return f"{_pts(i.estimate)} [{_pts(i.low)}, {_pts(i.high)}]"


def _pct_ci(i: Interval) -> str:
    return f"{100 * i.estimate:.2f} [{100 * i.low:.2f}, {100 * i.high:.2f}]"


BEYOND = "beyond the data"


def _times(x: float | None) -> str:
    return BEYOND if x is None else f"{x:.1f}x"


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _size(n: int) -> str:
    return f"{n:,}"


def _interval_words(a: EfficiencyAnalysis) -> str:
    found = a.gaps[0] if a.gaps else None
    if found is None or found.seeds == 1:
        return "95% interval over the test images of a single run"
    bound = ", test-image term bounded" if found.method == "seeds-and-images-bound" else ""
    return (
        f"95% interval over {found.seeds} seeds and the test images{bound}, simultaneous over "
        f"the {found.family} sizes"
    )


def _gaps(a: EfficiencyAnalysis, variant: str) -> list[Difference]:
    return [g for g in a.gaps if g.a == variant]


def _multiplier(a: EfficiencyAnalysis, variant: str, n: int):
    found = next((m for m in a.multipliers if m.variant == variant), None)
    return next((x for x in found.multipliers if x.n_train == n), None) if found else None


def _multiplier_words(x, gap: Difference | None = None) -> str:
    if gap is not None and gap.verdict != "different":
        return "not stated: the gap is not shown at this size"
    if x.where == "beyond":
        return f"{BEYOND} (not reached within the sizes trained)"
    if x.where == "below":
        return "below the sizes trained (the baseline's smallest size already matches it)"
    low = "below the data" if x.low is None else _times(x.low)
    span = "95% bootstrap CI" if x.repeats >= 5 else f"range over resampled {x.repeats} repeats"
    return f"{_times(x.estimate)} [{low}, {_times(x.high)}; {span}]"


def _verdicts_by_size(gaps: list[Difference]) -> str:
    """Each verdict and the sizes that have it, in the order of the sizes."""
    words = []
    for verdict in ("different", "equivalent", "inconclusive"):
        sizes = [_size(g.n_train) for g in gaps if g.verdict == verdict]
        if sizes:
            shown = "every size" if len(sizes) == len(gaps) else ", ".join(sizes)
            words.append(f"{verdict} at {shown}")
    return "; ".join(words)


def _gap_at(a: EfficiencyAnalysis, variant: str, n: int) -> Difference | None:
    return next((g for g in a.gaps if g.a == variant and g.n_train == n), None)


def headline(a: EfficiencyAnalysis) -> str:
    """The answer per compared variant: the gap at the ends with its interval, the multiplier."""
    sentences = []
    for v in a.variants[1:]:
        gaps = _gaps(a, v)
        if not gaps:
            continue
        lo, hi = gaps[0], gaps[-1]
        text = (
            f"{v} - {a.baseline} test accuracy: {_pts_ci(lo)} points with "
            f"{_size(lo.n_train)} training images ({lo.verdict}), {_pts_ci(hi)} with "
            f"{_size(hi.n_train)} ({hi.verdict}; {_interval_words(a)})"
        )
        shown = [g for g in gaps if g.verdict == "different"]
        x = _multiplier(a, v, shown[0].n_train) if shown else None
        if x is not None and x.where == "inside":
            text += (
                f"; to match {v} at {_size(x.n_train)} images {a.baseline} needs "
                f"{_multiplier_words(x)} as many (read off the sizes trained)"
            )
        sentences.append(text + ".")
    return " ".join(sentences) or f"No size has every variant ({a.status} comparison)."


def verdicts(a: EfficiencyAnalysis) -> list[tuple[str, str]]:
    """The verdicts in words: the gap per size, multipliers, curves, shift effect, the cap."""
    out: list[tuple[str, str]] = []
    for v in a.variants[1:]:
        gaps = _gaps(a, v)
        if not gaps:
            continue
        out.append(
            (
                f"{v} vs {a.baseline}:",
                f"the gap is {_pts_ci(gaps[0])} points at {_size(gaps[0].n_train)} images "
                f"and {_pts_ci(gaps[-1])} at {_size(gaps[-1].n_train)} ({_interval_words(a)}); "
                f"{_verdicts_by_size(gaps)}.",
            )
        )
        found = next((m for m in a.multipliers if m.variant == v and m.multipliers), None)
        stated = [
            x
            for x in (found.multipliers if found else [])
            if getattr(_gap_at(a, v, x.n_train), "verdict", "") == "different"
        ]
        if found is not None:
            words = (
                "; ".join(f"at {_size(x.n_train)} images {_multiplier_words(x)}" for x in stated)
                or "not stated: the gap is shown at no size"
            )
            out.append((f"Data multiplier ({a.baseline} to match {v}):", words + "."))
        out += _shift_verdict(a, v, gaps[-1].n_train)
    out += _curve_verdict(a)
    capped = [(p, r) for p in a.points for r in p.runs if r.capped_improving]
    if capped:
        names = ", ".join(f"{p.variant}-n{p.n_train}-r{r.repeat}" for p, r in capped)
        out.append(
            (
                "Cap:",
                f"{len(capped)} trainings reached the cap of {a.max_epochs} epochs while "
                f"still improving ({names}): they may be under-trained.",
            )
        )
    return out


def _shift_verdict(a: EfficiencyAnalysis, variant: str, n: int) -> list[tuple[str, str]]:
    shifted = [g for g in a.shift_gaps if g.a == variant and g.n_train == n]
    base = next((g for g in a.gaps if g.a == variant and g.n_train == n), None)
    if not shifted or base is None:
        return []
    widest = _widest(shifted)
    return [
        (
            "Shift:",
            f"with {_size(n)} training images the gap is {_pts_ci(base)} points on the test "
            f"images as they are and widest at {widest.shift} pixel"
            f"{'s' if widest.shift > 1 else ''}: {_pts_ci(widest)} (intervals simultaneous over "
            f"the {widest.family} shifted gaps; a diagonal move of k pixels is k x 1.41, and at "
            "3-4 pixels part of the object leaves the frame).",
        )
    ]


def _curve_verdict(a: EfficiencyAnalysis) -> list[tuple[str, str]]:
    scored = [h for h in a.holdouts if not h.error]
    if not scored:
        return []
    words = "; ".join(f"{h.variant} {h.family} {100 * h.miss:+.2f}" for h in scored)
    size = _size(scored[0].size)
    return [
        (
            "Learning curves:",
            f"fitted without the largest size, each family's prediction at {size} images "
            f"missed the observed error by (points) {words}. No number here is read off a "
            "curve beyond the sizes trained.",
        )
    ]


# ---------------------------------------------------------------- tables


def gap_table(a: EfficiencyAnalysis) -> Table:
    """Each size: every variant's accuracy, the gap with its verdict, McNemar per repeat."""
    headers = ["pair", "n_train"]
    headers += [f"{v} % ({a.confidence:.0%} CI)" for v in a.variants]
    headers += [
        "gap, points [95% CI]",
        "verdict",
        "per repeat: gap, only variant / only baseline right, McNemar p",
    ]
    accuracy = {(p.variant, p.n_train): p.accuracy for p in a.points}
    rows = []
    for g in a.gaps:
        row = [f"{g.a} - {g.b}", _size(g.n_train)]
        row += [
            _pct_ci(accuracy[(v, g.n_train)]) if (v, g.n_train) in accuracy else ""
            for v in a.variants
        ]
        row += [
            _pts_ci(g),
            g.verdict,
            "; ".join(
                f"r{t.repeat}: {_pts(t.difference)}, {t.only_a_correct}/"
                f"{t.only_b_correct}, {_p(t.p_value)}"
                for t in g.tests
            ),
        ]
        rows.append(row)
    return Table(headers, rows)


def stopping_table(a: EfficiencyAnalysis) -> Table:
    """Where each training stopped, the best epoch kept, and the cap flag."""
    headers = ["run", "test %", "epochs trained", "best epoch", "stopped by", "cap while improving"]
    rows = []
    for p in a.points:
        for r in p.runs:
            by = r.stopped_by or "not stopped"
            rows.append(
                [
                    f"{p.variant}-n{p.n_train}-r{r.repeat}",
                    f"{100 * r.test_accuracy:.2f}",
                    str(r.epochs),
                    str(r.best_epoch),
                    by,
                    "YES (!)" if r.capped_improving else "",
                ]
            )
    return Table(headers, rows)


def _widest(gaps: list[Difference]) -> Difference:
    """The widest of one pair's gaps at one size, over the shifts (the first of equals)."""
    return max(gaps, key=lambda g: abs(g.estimate))


def shift_table(a: EfficiencyAnalysis) -> Table:
    """The gap at each shift and size, its change from no shift to the largest, and its widest."""
    shifts = sorted({g.shift for g in a.shift_gaps})
    headers = [
        "pair at n_train",
        *(f"shift {s} px" for s in (0, *shifts)),
        "change, points",
        "widest, points (shift)",
    ]
    rows = []
    keys = sorted({(g.a, g.n_train) for g in a.shift_gaps})
    for v, n in keys:
        gaps = [g for g in a.shift_gaps if (g.a, g.n_train) == (v, n)]
        found = {g.shift: g for g in gaps}
        base = next((g for g in a.gaps if (g.a, g.n_train) == (v, n)), None)
        if base is not None:
            found[0] = base
        change = (
            _pts(found[shifts[-1]].estimate - found[0].estimate)
            if 0 in found and shifts[-1] in found
            else ""
        )
        widest = _widest(list(found.values()))
        rows.append(
            [
                f"{v} - {a.baseline} at {_size(n)}",
                *(_pts_ci(found[s]) if s in found else "" for s in (0, *shifts)),
                change,
                f"{_pts(widest.estimate)} ({widest.shift} px)",
            ]
        )
    return Table(headers, rows)


def shift_accuracy_table(a: EfficiencyAnalysis) -> Table:
    """Each variant's accuracy at each shift, at the smallest and the full size."""
    shifts = sorted({p.shift for p in a.shift_points})
    ends = sorted({a.sizes[0], a.sizes[-1]}) if a.sizes else []
    headers = ["variant at n_train", *(f"shift {s} px %" for s in shifts)]
    rows = []
    for v in a.variants:
        for n in ends:
            found = {
                p.shift: p.accuracy for p in a.shift_points if (p.variant, p.n_train) == (v, n)
            }
            if found:
                rows.append(
                    [
                        f"{v} at {_size(n)}",
                        *(_pct_ci(found[s]) if s in found else "" for s in shifts),
                    ]
                )
    return Table(headers, rows)


def curve_table(a: EfficiencyAnalysis) -> Table:
    """Each curve family: fitted without the largest size, how far it missed that size."""
    headers = [
        "variant",
        "family",
        "fitted on",
        "size predicted",
        "predicted error %",
        "observed error %",
        "miss, points",
    ]
    rows = []
    for h in a.holdouts:
        fitted = f"{_size(h.fitted_on[0])} to {_size(h.fitted_on[-1])}" if h.fitted_on else ""
        if h.error:
            rows.append(
                [
                    h.variant,
                    FAMILIES.get(h.family, h.family),
                    fitted,
                    _size(h.size),
                    "",
                    f"{100 * h.observed:.2f}",
                    f"no fit: {h.error}",
                ]
            )
            continue
        rows.append(
            [
                h.variant,
                FAMILIES.get(h.family, h.family),
                fitted,
                _size(h.size),
                f"{100 * h.predicted:.2f}",
                f"{100 * h.observed:.2f}",
                f"{100 * h.miss:+.2f}",
            ]
        )
    return Table(headers, rows)


def multiplier_table(a: EfficiencyAnalysis) -> Table:
    """How many times more images the baseline needs to match each variant, per size."""
    headers = ["pair", "n_train", "multiplier [interval]", "bootstrap samples outside the data"]
    rows = []
    for m in a.multipliers:
        if m.error:
            rows.append([f"{m.baseline} to match {m.variant}", "", m.error, ""])
        for x in m.multipliers:
            rows.append(
                [
                    f"{m.baseline} to match {m.variant}",
                    _size(x.n_train),
                    _multiplier_words(x, _gap_at(a, m.variant, x.n_train)),
                    f"{x.beyond_fraction:.0%}",
                ]
            )
    return Table(headers, rows)


# ---------------------------------------------------------------- provenance


def provenance_line(a: EfficiencyAnalysis) -> str:
    """What produced the report: run, date, commit, and the study's settings."""
    p = a.provenance
    machines = "; ".join(machine_text(h) for h in a.hardware) or "no machine recorded"
    return (
        f"Run {p.run_id or '(run id not recorded)'}; {when_and_code(p)}; {a.dataset}, sizes "
        f"{', '.join(_size(n) for n in a.sizes)}, {a.repeats} repeat{'s' * (a.repeats != 1)}, "
        f"{a.n_test:,} test images; "
        f"early stopping on validation loss (patience {a.stopping.patience}, min_delta "
        f"{a.stopping.min_delta:g}, cap {a.max_epochs} epochs, best epoch kept). Trained on "
        f"{machines}."
    )


def _provenance_section(a: EfficiencyAnalysis) -> Section:
    p = a.provenance
    items = provenance_items(p, p.run_id or "(run id not recorded)", a.schema_version)
    items[-1:-1] = [
        ("Experiment:", f"{a.experiment} ({a.dataset})"),
        ("Variants:", f"{', '.join(a.variants)}; baseline {a.baseline}"),
        ("Machines:", "; ".join(machine_text(h) for h in a.hardware) or "none: no run finished"),
    ]
    if p.note:
        items.append(("Note:", p.note))
    return Section("Provenance", [Bullets(items)], folded=True)


# ---------------------------------------------------------------- the layout


def efficiency_report(a: EfficiencyAnalysis) -> Report:
    """The data-efficiency report: the answer, the plots, then the tables.

    Args:
        a: the analysis to report.

    Returns:
        Its :class:`~cnnvsmlp.report.render.Report`.
    """
    lead: list[Block] = [Text(headline(a), style="headline")]
    if a.provenance.synthetic:
        lead.append(Text(SYNTHETIC_DATA, lead=SYNTHETIC_LEAD))
    if a.failures:
        lead.append(
            Text(
                f"{len(a.failures)} runs failed for good and are left out; see Failed runs.",
                lead=f"{a.status.capitalize()} comparison.",
            )
        )
    lead.append(Text(provenance_line(a), style="note"))
    if a.points:
        lead += [Figure("accuracy_vs_size", EFFICIENCY_PLOTS["accuracy_vs_size"])]
    if a.gaps:
        lead += [Figure("gap_vs_size", EFFICIENCY_PLOTS["gap_vs_size"])]
    if a.shift_points:
        lead += [Figure("accuracy_vs_shift", EFFICIENCY_PLOTS["accuracy_vs_shift"])]
    sections = [Section("Verdicts", [Bullets(verdicts(a) or [("", headline(a))])])]
    if a.gaps:
        sections.append(
            Section(
                "The gap at each size",
                [
                    Text(
                        f"Test accuracy per variant ({a.confidence:.0%} t-interval over the "
                        "repeats). The gap is variant minus baseline in accuracy points, paired "
                        f"by repeat (both train on the same subset), with its {_interval_words(a)}"
                        "; verdict: different (the interval excludes 0), equivalent within "
                        f"+-{100 * a.margin:g} point(s) (two one-sided tests) or inconclusive. "
                        "McNemar's exact test per repeat is a detail about that repeat's two "
                        "networks (the test images only)."
                    ),
                    gap_table(a),
                ],
            )
        )
    if a.shift_gaps:
        sections.append(
            Section(
                "Shifted test images",
                [
                    Text(
                        "Every model scored on the test images moved by 1 to 4 pixels in "
                        "random directions (one seed, zero fill: the same images for every "
                        "model); shift 0 is the test split as it is (its gap the verdicts' "
                        "own). A diagonal move of k pixels is k x 1.41, and at 3-4 pixels part "
                        "of the object leaves the frame. The gap per shift is variant minus "
                        "baseline in points, over seeds and test images, its intervals "
                        f"simultaneous over the {len(a.shift_gaps)} shifted gaps; change: from "
                        "no shift to the largest; widest: the largest gap, and where."
                    ),
                    shift_table(a),
                    shift_accuracy_table(a),
                ],
            )
        )
    if a.points:
        sections.append(
            Section(
                "Where each training stopped",
                [
                    Text(
                        f"Early stopping on validation loss: an epoch improves when its loss "
                        f"is below the best by more than {a.stopping.min_delta:g}; training "
                        f"stops after {a.stopping.patience} epochs without improvement, or at "
                        f"the cap of {a.max_epochs} epochs, and keeps the best epoch's "
                        'weights. "YES (!)": the cap came while the loss was still improving.'
                    ),
                    stopping_table(a),
                ],
                folded=not any(r.capped_improving for p in a.points for r in p.runs),
            )
        )
    sections.append(
        Section(
            "Learning curves",
            [
                Text(
                    "Two curve families, test error = a (n/1000)^-b and a (n/1000)^-b + c, "
                    "each fitted by least squares on every size but the largest and scored on "
                    "predicting the largest: a family that misses there cannot be read beyond "
                    "the sizes trained, and nothing here is. The data multiplier: how many "
                    "times n images the baseline needs to reach the variant's mean accuracy "
                    "at n, interpolated (log size) between the baseline's observed means; "
                    f"'{BEYOND}' where the sizes trained do not reach it; stated only where "
                    "the gap is shown different. Its interval: a percentile bootstrap over "
                    "whole repeats (a repeat's nested subsets and both variants stay "
                    "together), a 95% interval from 5 repeats on; with fewer, only the range "
                    "of the resamples (3 repeats give 10 distinct ones), not simultaneous "
                    "over the sizes."
                ),
                curve_table(a),
                multiplier_table(a),
            ],
        )
    )
    if a.failures:
        sections.append(
            Section(
                "Failed runs",
                [
                    Table(
                        ["run", "stage", "error", "message"],
                        [[f.run.run_id, f.stage, f.error, f.message] for f in a.failures],
                    )
                ],
                anchor="failed-runs",
            )
        )
    sections.append(_provenance_section(a))
    title = f"{a.experiment}: data efficiency, run {a.provenance.run_id or '(not recorded)'}"
    return Report(title=title, lead=lead, sections=sections)


# ---------------------------------------------------------------- plots


def _colours(a: EfficiencyAnalysis) -> dict[str, str]:
    return {v: f"C{i}" for i, v in enumerate(a.variants)}


def _size_axis(ax, sizes: list[int]) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sizes))
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda x, _: f"{x / 1000:g}k" if x >= 1000 else f"{x:g}")
    )
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("training images (log scale)")
    ax.grid(alpha=0.3)


def _jitter(n: int, k: int) -> np.ndarray:
    """Spread k points around n on a log axis."""
    return n * np.exp(np.linspace(-0.06, 0.06, k)) if k > 1 else np.array([n])


def _accuracy_vs_size(a: EfficiencyAnalysis) -> MplFigure:
    fig = MplFigure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.subplots()
    colours = _colours(a)
    for v in a.variants:
        points = [p for p in a.points if p.variant == v]
        if not points:
            continue
        colour = colours[v]
        n = np.array([p.n_train for p in points], dtype=float)
        mean = np.array([100 * p.accuracy.estimate for p in points])
        err = [
            [100 * (p.accuracy.estimate - p.accuracy.low) for p in points],
            [100 * (p.accuracy.high - p.accuracy.estimate) for p in points],
        ]
        ax.errorbar(n, mean, yerr=err, fmt="o", ms=6, capsize=4, color=colour, label=v, zorder=3)
        for p in points:
            ax.scatter(
                _jitter(p.n_train, len(p.runs)) * 1.08,
                [100 * r.test_accuracy for r in p.runs],
                s=10,
                color=colour,
                alpha=0.6,
                zorder=2,
            )
        ax.plot(n, mean, color=colour, lw=1, alpha=0.8)
    _size_axis(ax, a.sizes)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(
        f"Test accuracy: mean with {a.confidence:.0%} t-interval over repeats, dots: each repeat",
        fontsize=9,
    )
    ax.legend(loc="lower right")
    return fig


def _gap_vs_size(a: EfficiencyAnalysis) -> MplFigure:
    fig = MplFigure(figsize=(7.5, 3.6), layout="constrained")
    ax = fig.subplots()
    colours = _colours(a)
    for v in a.variants[1:]:
        gaps = _gaps(a, v)
        if not gaps:
            continue
        n = np.array([g.n_train for g in gaps], dtype=float)
        mean = np.array([100 * g.estimate for g in gaps])
        err = [
            [100 * (g.estimate - g.low) for g in gaps],
            [100 * (g.high - g.estimate) for g in gaps],
        ]
        ax.errorbar(n, mean, yerr=err, fmt="-", capsize=4, color=colours[v], zorder=3, lw=1)
        for g in gaps:
            ax.scatter(
                [g.n_train],
                [100 * g.estimate],
                s=40,
                marker="o",
                facecolors=colours[v] if g.verdict == "different" else "white",
                edgecolors=colours[v],
                zorder=4,
            )
            ax.scatter(
                _jitter(g.n_train, len(g.per_seed)) * 1.08,
                [100 * d for d in g.per_seed],
                s=10,
                color=colours[v],
                alpha=0.6,
                zorder=2,
            )
        ax.plot([], [], color=colours[v], label=f"{v} - {a.baseline}")
    ax.axhline(0, color="0.4", lw=0.8)
    _size_axis(ax, a.sizes)
    ax.set_ylabel("gap (accuracy points)")
    ax.set_title(
        "Gap, simultaneous 95% CI over seeds and test images; filled: shown different; "
        "dots: repeats",
        fontsize=9,
    )
    ax.legend(loc="upper right")
    return fig


def _accuracy_vs_shift(a: EfficiencyAnalysis) -> MplFigure:
    fig = MplFigure(figsize=(7.5, 3.8), layout="constrained")
    ax = fig.subplots()
    colours = _colours(a)
    ends = sorted({a.sizes[0], a.sizes[-1]})
    for v in a.variants:
        for n, style in zip(reversed(ends), ("-", ":"), strict=False):
            points = sorted(
                (p for p in a.shift_points if (p.variant, p.n_train) == (v, n)),
                key=lambda p: p.shift,
            )
            if not points:
                continue
            s = np.array([p.shift for p in points], dtype=float)
            offset = 0.05 * (a.variants.index(v) - (len(a.variants) - 1) / 2)
            ax.errorbar(
                s + offset,
                [100 * p.accuracy.estimate for p in points],
                yerr=[
                    [100 * (p.accuracy.estimate - p.accuracy.low) for p in points],
                    [100 * (p.accuracy.high - p.accuracy.estimate) for p in points],
                ],
                fmt="o",
                ls=style,
                ms=5,
                capsize=3,
                color=colours[v],
                label=f"{v}, {_size(n)} images",
            )
    ax.set_xlabel("shift of the test images (pixels along each moved axis)")
    ax.set_xticks(sorted({p.shift for p in a.shift_points}))
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(
        f"Accuracy against shift, mean with {a.confidence:.0%} t-interval over repeats", fontsize=9
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def write_efficiency_plots(a: EfficiencyAnalysis, out_dir: Path) -> dict[str, Path]:
    """Draw the plots the analysis has data for as PNG files in ``out_dir``.

    Returns:
        The path of each plot drawn, by the names of :data:`EFFICIENCY_PLOTS`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    draw = {
        "accuracy_vs_size": (_accuracy_vs_size, bool(a.points)),
        "gap_vs_size": (_gap_vs_size, bool(a.gaps)),
        "accuracy_vs_shift": (_accuracy_vs_shift, bool(a.shift_points)),
    }
    files = {}
    for name, (plot, has_data) in draw.items():
        if has_data:
            files[name] = out_dir / f"{name}.png"
            plot(a).savefig(files[name], dpi=90, format="png")
    return files


def write_efficiency_report(a: EfficiencyAnalysis, out_dir: str | Path) -> None:
    """Write ``comparison.json``, ``report.md``, ``report.html`` and ``plots/`` into ``out_dir``.

    Args:
        a: the analysis.
        out_dir: the folder; made when missing.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = write_efficiency_plots(a, out / "plots")
    a.write(out / "comparison.json")
    markdown = render_markdown(a, plots, layout=efficiency_report)
    (out / "report.md").write_text(markdown, encoding="utf-8")
    html = render_html(a, plots, layout=efficiency_report)
    (out / "report.html").write_text(html, encoding="utf-8")
