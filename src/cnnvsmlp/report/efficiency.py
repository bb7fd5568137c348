"""The data-efficiency study's report: a second layout over the comparison's blocks."""

from __future__ import annotations

from pathlib import Path

from cnnvsmlp.efficiency.curves import FAMILIES, EfficiencyAnalysis
from cnnvsmlp.pairwise import Difference
from cnnvsmlp.report.blocks import (
    Bullets,
    Figure,
    Report,
    Section,
    Table,
    Text,
    interval,
    lead_blocks,
    machine_text,
    p_cell,
    provenance_section,
    run_label,
    signed,
    when_and_code,
    write_report,
)
from cnnvsmlp.report.plots import EFFICIENCY_PLOTS, write_efficiency_plots
from cnnvsmlp.report.render import shift_rows

BEYOND = "beyond the data"


def _times(x: float | None) -> str:
    return BEYOND if x is None else f"{x:.1f}x"


def _interval_words(a: EfficiencyAnalysis) -> str:
    if not a.gaps or a.gaps[0].seeds == 1:
        return "95% interval over the test images of a single run"
    found = a.gaps[0]
    bound = ", test-image term bounded" if found.method == "seeds-and-images-bound" else ""
    return (
        f"95% interval over {found.seeds} seeds and the test images{bound}, simultaneous over "
        f"the {found.family} sizes"
    )


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


def headline(a: EfficiencyAnalysis) -> str:
    """The answer per compared variant: the gap at the ends with its interval, the multiplier."""
    sentences = []
    for v in a.variants[1:]:
        gaps = [g for g in a.gaps if g.a == v]
        if not gaps:
            continue
        lo, hi = gaps[0], gaps[-1]
        text = (
            f"{v} - {a.baseline} test accuracy: {interval(lo, signed)} points with "
            f"{lo.n_train:,} training images ({lo.verdict}), {interval(hi, signed)} with "
            f"{hi.n_train:,} ({hi.verdict}; {_interval_words(a)})"
        )
        shown = next((g.n_train for g in gaps if g.verdict == "different"), None)
        found = [x for m in a.multipliers if m.variant == v for x in m.multipliers]
        if x := next((x for x in found if x.n_train == shown and x.where == "inside"), None):
            text += (
                f"; to match {v} at {x.n_train:,} images {a.baseline} needs "
                f"{_multiplier_words(x)} as many (read off the sizes trained)"
            )
        sentences.append(text + ".")
    return " ".join(sentences) or f"No size has every variant ({a.status} comparison)."


def _verdicts_by_size(gaps: list[Difference]) -> str:
    """Each verdict and the sizes that have it, in the order of the sizes."""
    words = []
    for verdict in ("different", "equivalent", "inconclusive"):
        sizes = [f"{g.n_train:,}" for g in gaps if g.verdict == verdict]
        if sizes:
            shown = "every size" if len(sizes) == len(gaps) else ", ".join(sizes)
            words.append(f"{verdict} at {shown}")
    return "; ".join(words)


def _variant_verdicts(a: EfficiencyAnalysis, v: str, gaps: list[Difference]) -> list:
    """A variant's gap by size, its data multiplier and, at the largest size, the shift's effect."""
    lo, hi = gaps[0], gaps[-1]
    text = (
        f"the gap is {interval(lo, signed)} points at {lo.n_train:,} images "
        f"and {interval(hi, signed)} at {hi.n_train:,} "
        f"({_interval_words(a)}); {_verdicts_by_size(gaps)}."
    )
    out = [(f"{v} vs {a.baseline}:", text)]
    found = next((m for m in a.multipliers if m.variant == v and m.multipliers), None)
    if found is not None:
        shown = {g.n_train for g in gaps if g.verdict == "different"}
        stated = [
            f"at {x.n_train:,} images {_multiplier_words(x)}"
            for x in found.multipliers
            if x.n_train in shown
        ]
        words = "; ".join(stated) or "not stated: the gap is shown at no size"
        out.append((f"Data multiplier ({a.baseline} to match {v}):", words + "."))
    if shifted := [g for g in a.shift_gaps if g.a == v and g.n_train == hi.n_train]:
        widest = max(shifted, key=lambda g: abs(g.estimate))
        text = (
            f"with {hi.n_train:,} training images the gap is {interval(hi, signed)} points on "
            f"the test images as they are and widest at {widest.shift} pixel"
            f"{'s' if widest.shift > 1 else ''}: {interval(widest, signed)} (intervals "
            f"simultaneous over the {widest.family} shifted gaps; a diagonal move of k pixels is "
            "k x 1.41, and at 3-4 pixels part of the object leaves the frame)."
        )
        out.append(("Shift:", text))
    return out


def verdicts(a: EfficiencyAnalysis) -> list[tuple[str, str]]:
    """The verdicts in words: the gap per size, multipliers, curves, shift effect, the cap."""
    out: list[tuple[str, str]] = []
    for v in a.variants[1:]:
        gaps = [g for g in a.gaps if g.a == v]
        out += _variant_verdicts(a, v, gaps) if gaps else []
    scored = [h for h in a.holdouts if not h.error]
    if scored:
        words = "; ".join(f"{h.variant} {h.family} {100 * h.miss:+.2f}" for h in scored)
        text = (
            f"fitted without the largest size, each family's prediction at "
            f"{scored[0].size:,} images missed the observed error by (points) {words}. "
            "No number here is read off a curve beyond the sizes trained."
        )
        out.append(("Learning curves:", text))
    capped = [(p, r) for p in a.points for r in p.runs if r.capped_improving]
    if capped:
        names = ", ".join(f"{p.variant}-n{p.n_train}-r{r.repeat}" for p, r in capped)
        text = f"{len(capped)} trainings reached the cap of {a.max_epochs} epochs while still"
        out.append(("Cap:", f"{text} improving ({names}): they may be under-trained."))
    return out


def _gap_table(a: EfficiencyAnalysis) -> Table:
    headers = ["pair", "n_train", *(f"{v} % ({a.confidence:.0%} CI)" for v in a.variants)]
    headers += ["gap, points [95% CI]", "verdict"]
    headers += ["per repeat: gap, only variant / only baseline right, McNemar p"]
    accuracy = {(p.variant, p.n_train): interval(p.accuracy) for p in a.points}
    rows = []
    for g in a.gaps:
        row = [f"{g.a} - {g.b}", f"{g.n_train:,}"]
        row += [accuracy.get((v, g.n_train), "") for v in a.variants]
        tests = "; ".join(
            f"r{t.repeat}: {signed(t.difference)}, {t.only_a_correct}/{t.only_b_correct}, "
            f"{p_cell(t.p_value)}"
            for t in g.tests
        )
        rows.append([*row, interval(g, signed), g.verdict, tests])
    return Table(headers, rows)


def _stopping_table(a: EfficiencyAnalysis) -> Table:
    headers = ["run", "test %", "epochs trained", "best epoch", "stopped by", "cap while improving"]
    rows = []
    for p in a.points:
        for r in p.runs:
            row = [f"{p.variant}-n{p.n_train}-r{r.repeat}", f"{100 * r.test_accuracy:.2f}"]
            row += [str(r.epochs), str(r.best_epoch), r.stopped_by or "not stopped"]
            rows.append([*row, "YES (!)" if r.capped_improving else ""])
    return Table(headers, rows)


def shift_table(a: EfficiencyAnalysis) -> Table:
    """The gap at each shift and size, its change from no shift to the largest, and its widest."""
    shifts = sorted({g.shift for g in a.shift_gaps})
    headers = ["pair at n_train", *(f"shift {s} px" for s in (0, *shifts))]
    rows = []
    for v, n in sorted({(g.a, g.n_train) for g in a.shift_gaps}):
        found = {g.shift: g for g in [*a.shift_gaps, *a.gaps] if (g.a, g.n_train) == (v, n)}
        rows.append(shift_rows(f"{v} - {a.baseline} at {n:,}", found, shifts, signed))
    return Table([*headers, "change, points", "widest, points (shift)"], rows)


def _shift_accuracy_table(a: EfficiencyAnalysis) -> Table:
    shifts = sorted({p.shift for p in a.shift_points})
    rows = [
        [f"{v} at {n:,}", *(interval(found[s]) if s in found else "" for s in shifts)]
        for v in a.variants
        for n in (sorted({a.sizes[0], a.sizes[-1]}) if a.sizes else [])
        for found in [
            {p.shift: p.accuracy for p in a.shift_points if (p.variant, p.n_train) == (v, n)}
        ]
        if found
    ]
    return Table(["variant at n_train", *(f"shift {s} px %" for s in shifts)], rows)


def _curve_table(a: EfficiencyAnalysis) -> Table:
    headers = ["variant", "family", "fitted on", "size predicted", "predicted error %"]
    headers += ["observed error %", "miss, points"]
    rows = []
    for h in a.holdouts:
        fitted = f"{h.fitted_on[0]:,} to {h.fitted_on[-1]:,}" if h.fitted_on else ""
        row = [h.variant, FAMILIES.get(h.family, h.family), fitted, f"{h.size:,}"]
        predicted = "" if h.error else f"{100 * h.predicted:.2f}"
        miss = f"no fit: {h.error}" if h.error else f"{100 * h.miss:+.2f}"
        rows.append([*row, predicted, f"{100 * h.observed:.2f}", miss])
    return Table(headers, rows)


def _multiplier_table(a: EfficiencyAnalysis) -> Table:
    headers = ["pair", "n_train", "multiplier [interval]", "bootstrap samples outside the data"]
    gaps = {(g.a, g.n_train): g for g in a.gaps}
    rows = []
    for m in a.multipliers:
        pair = f"{m.baseline} to match {m.variant}"
        rows += [[pair, "", m.error, ""]] if m.error else []
        for x in m.multipliers:
            words = _multiplier_words(x, gaps.get((m.variant, x.n_train)))
            rows.append([pair, f"{x.n_train:,}", words, f"{x.beyond_fraction:.0%}"])
    return Table(headers, rows)


GAPS = (
    "Test accuracy per variant ({confidence:.0%} t-interval over the repeats). The gap is "
    "variant minus baseline in accuracy points, paired by repeat (both train on the same "
    "subset), with its {interval}; verdict: different (the interval excludes 0), equivalent "
    "within +-{margin:g} point(s) (two one-sided tests) or inconclusive. McNemar's exact test "
    "per repeat is a detail about that repeat's two networks (the test images only)."
)
SHIFTS = (
    "Every model scored on the test images moved by 1 to 4 pixels in random directions (one "
    "seed, zero fill: the same images for every model); shift 0 is the test split as it is "
    "(its gap the verdicts' own). A diagonal move of k pixels is k x 1.41, and at 3-4 pixels "
    "part of the object leaves the frame. The gap per shift is variant minus baseline in "
    "points, over seeds and test images, its intervals simultaneous over the {n} shifted gaps; "
    "change: from no shift to the largest; widest: the largest gap, and where."
)
STOPPING = (
    "Early stopping on validation loss: an epoch improves when its loss is below the best by "
    "more than {a.stopping.min_delta:g}; training stops after {a.stopping.patience} epochs "
    "without improvement, or at the cap of {a.max_epochs} epochs, and keeps the best epoch's "
    'weights. "YES (!)": the cap came while the loss was still improving.'
)
CURVES = (
    "Two curve families, test error = a (n/1000)^-b and a (n/1000)^-b + c, each fitted by "
    "least squares on every size but the largest and scored on predicting the largest: a "
    "family that misses there cannot be read beyond the sizes trained, and nothing here is. "
    "The data multiplier: how many times n images the baseline needs to reach the variant's "
    "mean accuracy at n, interpolated (log size) between the baseline's observed means; "
    f"'{BEYOND}' where the sizes trained do not reach it; stated only where the gap is shown "
    "different. Its interval: a percentile bootstrap over whole repeats (a repeat's nested "
    "subsets and both variants stay together), a 95% interval from 5 repeats on; with fewer, "
    "only the range of the resamples (3 repeats give 10 distinct ones), not simultaneous over "
    "the sizes."
)


def _sections(a: EfficiencyAnalysis) -> list[Section]:
    """The sections between the verdicts and the learning curves, those the analysis has."""
    gaps = GAPS.format(confidence=a.confidence, interval=_interval_words(a), margin=100 * a.margin)
    shifts = [Text(SHIFTS.format(n=len(a.shift_gaps))), shift_table(a), _shift_accuracy_table(a)]
    stopping = [Text(STOPPING.format(a=a)), _stopping_table(a)]
    folded = not any(r.capped_improving for p in a.points for r in p.runs)
    found = [
        (a.gaps, "The gap at each size", [Text(gaps), _gap_table(a)], False),
        (a.shift_gaps, "Shifted test images", shifts, False),
        (a.points, "Where each training stopped", stopping, folded),
    ]
    return [Section(title, blocks, fold) for data, title, blocks, fold in found if data]


def efficiency_report(a: EfficiencyAnalysis) -> Report:
    """The data-efficiency report: the answer, the plots, then the tables."""
    p, machines = a.provenance, "; ".join(machine_text(h) for h in a.hardware)
    failed = f"{len(a.failures)} runs failed for good and are left out; see Failed runs."
    settings = (
        f"Run {run_label(p)}; {when_and_code(p)}; {a.dataset}, sizes "
        f"{', '.join(f'{n:,}' for n in a.sizes)}, {a.repeats} repeat{'s' * (a.repeats != 1)}, "
        f"{a.n_test:,} test images; early stopping on validation loss (patience "
        f"{a.stopping.patience}, min_delta {a.stopping.min_delta:g}, cap {a.max_epochs} epochs, "
        f"best epoch kept). Trained on {machines or 'no machine recorded'}."
    )
    lead = lead_blocks(
        headline(a),
        p,
        Text(failed if a.failures else "", lead=f"{a.status.capitalize()} comparison."),
        Text(settings, style="note"),
    )
    lead += [Figure(name, caption) for name, caption in EFFICIENCY_PLOTS.items()]
    sections = [Section("Verdicts", [Bullets(verdicts(a) or [("", headline(a))])]), *_sections(a)]
    curves = [Text(CURVES), _curve_table(a), _multiplier_table(a)]
    sections.append(Section("Learning curves", curves))
    if a.failures:
        rows = [[f.run.run_id, f.stage, f.error, f.message] for f in a.failures]
        table = Table(["run", "stage", "error", "message"], rows)
        sections.append(Section("Failed runs", [table], anchor="failed-runs"))
    own = [
        ("Experiment:", f"{a.experiment} ({a.dataset})"),
        ("Variants:", f"{', '.join(a.variants)}; baseline {a.baseline}"),
        ("Machines:", machines or "none: no run finished"),
    ]
    sections.append(provenance_section(p, a.schema_version, own))
    title = f"{a.experiment}: data efficiency, run {p.run_id or '(not recorded)'}"
    return Report(title=title, lead=lead, sections=sections)


def write_efficiency_report(a: EfficiencyAnalysis, out_dir: Path) -> None:
    """Write ``comparison.json``, ``report.md``, ``report.html`` and ``plots/`` into ``out_dir``."""
    write_report(a, efficiency_report, write_efficiency_plots(a, out_dir / "plots"), out_dir)
