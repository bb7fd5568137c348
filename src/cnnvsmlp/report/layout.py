"""The pairwise comparison's report: the answer first, the evidence after."""

from __future__ import annotations

import cnnvsmlp.report.render as render
from cnnvsmlp.report.blocks import (
    Block,
    Bullets,
    Figure,
    Report,
    Section,
    Table,
    Text,
    lead_blocks,
    provenance_section,
    run_label,
)
from cnnvsmlp.report.model import Comparison, failure_summary
from cnnvsmlp.report.plots import PLOTS, SHIFT_PLOT
from cnnvsmlp.report.verdict import caveats, headline, verdict


def _accuracy_note(c: Comparison) -> str:
    if c.repeats > 1:
        interval = (
            f"Test accuracy: mean over the {c.repeats} repeats with its {c.confidence:.0%} "
            "confidence interval (Student t over the repeats: seed-to-seed variation), each "
            "run's accuracy, and their spread (max - min; "
            f'"(!)": more than {100 * c.spread_limit:g} points).'
        )
    else:
        interval = (
            f"Test accuracy of the single run with its {c.confidence:.0%} confidence "
            "interval (Wilson interval over the test images: test-set sampling only, not "
            "seed-to-seed variation)."
        )
    seeds = ""
    if any(v.reference for v in c.variants):
        seeds = (
            ' Seed: the seed write-up\'s number ("(val)": a validation accuracy; "†": the '
            "seed's claim does not hold, see Against the seeds' numbers) and our mean test "
            "accuracy minus it, in points."
        )
    return (
        f"{interval} Best validation accuracy: mean over repeats, and the epoch of the best "
        f"in each run.{seeds} {render.speed_note(c)}"
    )


FAILED = (
    "These runs failed for good (a retry would fail the same way). A variant with a failed run "
    "is left out of the statistics, since pairs need the same repeats of every variant."
)
SHIFTED = (
    "Every model scored on the test images moved by 1 to 4 pixels in random directions (one "
    "seed, zero fill: the same images for every model); shift 0 is the test split as it is. A "
    "diagonal move of k pixels moves the image k x 1.41 pixels, and at 3 and 4 pixels part of "
    "the object leaves the frame: the shifts measure tolerance to moved and cropped objects "
    "together. Differences: over seeds and test images, 95% intervals simultaneous over the "
    "{n} shifted differences (at 0 px the verdicts' own); accuracies: {confidence:.0%} over "
    "the repeats. Change: the difference at the largest shift minus at none; widest: the "
    "largest over the shifts, and where."
)


def _verdicts(c: Comparison) -> list[Section]:
    verdicts = [("", verdict(p)) for p in c.pairs] or [
        ("", "One variant only: nothing to compare.")
    ]
    verdicts += [("Unstable:", v.spread_flag) for v in c.variants if v.spread_flag]
    verdicts += [(f"{lead}:", text) for lead, text in caveats(c)]
    sections = [Section("Verdicts", [Bullets(verdicts), Text(c.verdict_rule)])]
    if c.pairs:
        family = f"the {len(c.pairs)} pairs" if len(c.pairs) > 1 else "the one pair"
        about = (
            f"Each pair's difference in accuracy points, a - b, mean over seeds, with its 95% "
            f"interval simultaneous over {family} (Bonferroni); p: the test of no difference, "
            f"TOST p: of a difference of {100 * c.margin:g} point(s) or more, both adjusted. Per "
            "repeat: McNemar's exact test of that repeat's two networks (the test images only, "
            "unadjusted)."
        )
        sections.append(Section("Pairwise differences", [Text(about), render.pair_table(c)]))
    if c.shift_accuracy:
        about = SHIFTED.format(n=len(c.shift_differences), confidence=c.confidence)
        blocks = [Text(about), Figure(*SHIFT_PLOT), *render.shift_tables(c)]
        sections.append(Section("Shifted test images", blocks))
    return sections


def _seed_section(c: Comparison) -> Section:
    if not any(v.reference for v in c.variants):
        text = "The seeds report no number for these variants."
        return Section("Against the seeds' numbers", [Text(text)], folded=True)
    notes = [
        (f"{v.variant}:", v.reference.note) for v in c.variants if v.reference and v.reference.note
    ]
    blocks: list[Block] = [
        Text(
            "Where a seed reported a validation accuracy, ours is compared with both our test "
            "accuracy and our final validation accuracy. Differences are ours minus the seed's, "
            "in points. The notes say where a seed's claim does not hold."
        ),
        render.reference_table(c),
    ]
    return Section(
        "Against the seeds' numbers", blocks + [Bullets(notes)] * bool(notes), folded=True
    )


def _evidence(c: Comparison) -> list[Section]:
    """The folded sections about the runs: each run, the seeds, hardware, reproducibility."""
    shared = all(len(m) == 1 for m in render.machines(c).values())
    hardware = Text(render.hardware_text(c)) if shared else render.hardware_table(c)
    reproducibility: list[Block] = [Text(c.reproducibility)] if c.reproducibility else []
    if c.repeats > 1 or len({h.numerics() for v in c.variants for h in v.hardware}) > 1:
        spread = (
            'Spread: max - min of the repeats\' test accuracy, in points; "(!)": more than '
            f"{100 * c.spread_limit:g}, flagged in the verdicts."
        )
        reproducibility += [Text(spread), render.numerics_table(c)]
    return [
        Section("Plots", [Figure(name) for name in PLOTS if name != "test_accuracy"]),
        Section("Each run", [render.runs_table(c)], folded=True),
        _seed_section(c),
        Section("Hardware", [hardware], folded=True),
        Section("Reproducibility", reproducibility, folded=True),
    ]


def _models_section(c: Comparison) -> Section:
    """Each user module's source, as the run trained it."""
    params = {v.variant: v.params for v in c.variants}
    blocks: list[Block] = []
    for module, source in c.config.model_sources.items():
        names = [v for v in c.config.variants if v.partition(":")[0] == module]
        counts = ", ".join(
            f"{v}: {params[v]:,} parameters" if v in params else f"{v}: not trained" for v in names
        )
        blocks += [Text(counts, lead=f"{module}.py"), Text(source.rstrip(), style="code")]
    return Section("Your models", blocks, folded=True)


def comparison_report(c: Comparison) -> Report:
    """The pairwise comparison's report: the answer first, the evidence after."""
    failed = f"{failure_summary(c)} See Failed runs below." if c.failures else ""
    lead = lead_blocks(
        headline(c),
        c.provenance,
        Text(render.one_repeat_warning(c), lead="One repeat."),
        Text(failed, lead=f"{c.status.capitalize()} comparison."),
        Text(f"{render.provenance_line(c)} {render.hardware_text(c)}".strip(), style="note"),
    )
    if c.variants:
        lead += [Figure("test_accuracy"), render.main_table(c), Text(_accuracy_note(c))]
    sections = []
    if c.failures:
        rows = [
            [f"{f.variant}-r{f.repeat}", str(f.seed), f.stage, f.error, f.message]
            for f in c.failures
        ]
        table = Table(["run", "seed", "stage", "error", "message"], rows)
        sections.append(Section("Failed runs", [Text(FAILED), table], anchor="failed-runs"))
    sections += _verdicts(c) + (_evidence(c) if c.variants else [])
    if c.config and c.config.model_sources:
        sections.append(_models_section(c))
    own = [
        ("Config:", render.config_text(c)),
        ("Variants:", ", ".join(c.config.variants if c.config else [])),
        ("Machines:", render.hardware_text(c) or "none: no run finished"),
    ]
    sections.append(provenance_section(c.provenance, c.schema_version, own))
    title = f"{c.experiment} comparison, run {run_label(c.provenance)}"
    return Report(title=title, lead=lead, sections=sections)
