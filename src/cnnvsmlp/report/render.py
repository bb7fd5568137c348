"""The comparison in words: its tables, the terminal table, and the Markdown and HTML reports.

A report is a :class:`Report`: a title, the first screen (headline, warnings,
what produced it, the accuracy plot, the main table) and sections after it.
A layout is a function from a comparison to a :class:`Report`
(:func:`comparison_report` is the pairwise comparison's); both templates
render any layout's blocks, so another layout needs no template of its own.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from tabulate import tabulate

from cnnvsmlp.provenance import SYNTHETIC_DATA, SYNTHETIC_LEAD, Provenance
from cnnvsmlp.records import Hardware
from cnnvsmlp.report.model import Comparison
from cnnvsmlp.report.plots import PLOTS, SHIFT_PLOT
from cnnvsmlp.report.status import failure_summary
from cnnvsmlp.report.verdict import caveats, headline, number, pct, verdict
from cnnvsmlp.stats import Interval

# The KFP UI's Markdown viewer shows at most this many characters of an artifact
# (kubeflow/pipelines frontend/src/components/viewers/MarkdownViewer.tsx,
# MAX_MARKDOWN_STR_LENGTH); its renderer, markdown-to-jsx, keeps data:image URIs.
MARKDOWN_LIMIT = 400_000

# ---------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Text:
    """A paragraph; ``lead`` is printed bold before it; ``style`` is ``headline`` or ``note``."""

    text: str
    lead: str = ""
    style: str = ""


@dataclass(frozen=True)
class Bullets:
    """A list; each item may start with a bold ``(lead, text)``."""

    items: list[tuple[str, str]]


@dataclass(frozen=True)
class Table:
    """A table of strings."""

    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Figure:
    """A plot by name: one of :data:`~cnnvsmlp.report.plots.PLOTS`, or one a layout draws.

    ``caption`` defaults to the name's in :data:`~cnnvsmlp.report.plots.PLOTS`.
    """

    name: str
    caption: str = ""


Block = Text | Bullets | Table | Figure


@dataclass
class Section:
    """A titled part after the first screen; ``folded`` ones are closed in the HTML."""

    title: str
    blocks: list[Block]
    folded: bool = False
    anchor: str = ""


@dataclass
class Report:
    """What a layout makes of a comparison."""

    title: str
    lead: list[Block]
    sections: list[Section] = field(default_factory=list)


Layout = Callable[[Comparison], Report]

# ---------------------------------------------------------------- words built once


def _points(x: float) -> str:
    return number(100 * x, "+.2f")


def _ci(i: Interval) -> str:
    return f"{pct(i.estimate)} [{pct(i.low)}, {pct(i.high)}]"


def _p_cell(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def run_label(comparison: Comparison) -> str:
    """The run as the reports name it: its id, or that none was recorded."""
    return comparison.provenance.run_id or "(run id not recorded)"


def title(comparison: Comparison) -> str:
    """The report's title: the experiment and the run."""
    return f"{comparison.experiment} comparison, run {run_label(comparison)}"


def machine_text(h: Hardware) -> str:
    """A machine in a phrase: name, CPUs, threads, TensorFlow."""
    threads = f", {h.intra_op_threads} threads" if h.intra_op_threads else ""
    return f"{h.name} ({h.cpu_count} CPUs{threads}, TensorFlow {h.tensorflow})"


def machines(comparison: Comparison) -> dict[str, list[Hardware]]:
    """Each distinct machine the runs trained on and were evaluated on, by stage."""
    out: dict[str, list[Hardware]] = {}
    for stage, attr in (("training", "hardware"), ("inference", "inference_hardware")):
        found = {h.model_dump_json(): h for v in comparison.variants for h in getattr(v, attr)}
        out[stage] = list(found.values())
    return out


def hardware_text(comparison: Comparison) -> str:
    """The machines in one sentence when every run shared them, else where the table is."""
    found = machines(comparison)
    if not found["training"]:
        return ""
    if all(len(m) == 1 for m in found.values()):
        trained, evaluated = found["training"][0], found["inference"][0]
        if trained == evaluated:
            return f"Every run trained and was evaluated on {machine_text(trained)}."
        on = machine_text(trained)
        return f"Every run trained on {on} and was evaluated on {machine_text(evaluated)}."
    return "The runs used several machines: see Hardware."


def speed_note(comparison: Comparison) -> str:
    """What shared the machine while the epochs were timed: how to read the seconds."""
    p = comparison.provenance
    cpus = {h.cpu_count for h in machines(comparison)["training"]}
    cores = f"{cpus.pop()} CPUs" if len(cpus) == 1 else "its CPUs"
    if p.threads_per_training:
        threads = f"{p.threads_per_training} TensorFlow threads each"
    else:
        threads = "TensorFlow's default threads, one per core, each"
    if p.runner == "cluster":
        return "Seconds per epoch: each training ran as a task of its own on the machine named."
    if p.trainings_at_once and p.trainings_at_once > 1:
        return (
            f"Seconds per epoch are wall time with {p.trainings_at_once} trainings at once "
            f"sharing {cores} ({threads}): a variant that trained beside a slower one reads "
            "slower than alone. Compare speeds within one run of one runner only."
        )
    if p.trainings_at_once == 1:
        return f"Seconds per epoch are wall time of one training at a time on {cores} ({threads})."
    return (
        "Seconds per epoch are wall time; what else shared the machine was not recorded (the "
        "local runner trains two at a time by default, so a training alone may be faster)."
    )


def time_axis_label(comparison: Comparison) -> str:
    """The cost plot's time axis, with the machine share of :func:`speed_note`."""
    at_once = comparison.provenance.trainings_at_once
    if at_once and at_once > 1:
        return f"training time of a run (s, {at_once} trainings at once)"
    return "training time of a run (s)"


def when_and_code(p: Provenance) -> str:
    """``2026-12-01 14:24 UTC; cnnvsmlp 0.1.0 at commit c34c87305b``: when and what code."""
    when = p.started.strftime("%Y-%m-%d %H:%M UTC") if p.started else "date not recorded"
    if p.commit:
        state = {True: ", uncommitted changes", False: ""}.get(p.dirty, ", tree state unknown")
        code = f"cnnvsmlp {p.project_version or '?'} at commit {p.commit[:10]}{state}"
    else:
        code = f"cnnvsmlp {p.project_version or '(version not recorded)'}, commit not recorded"
    return f"{when}; {code}"


def provenance_items(p: Provenance, run: str, schema: str) -> list[tuple[str, str]]:
    """The Provenance section's common lines: run, start, runner, project, commit, data, schema."""
    return [
        ("Run:", run),
        ("Started:", p.started.isoformat() if p.started else "not recorded"),
        ("Runner:", p.runner or "not recorded"),
        ("Project:", f"cnnvsmlp {p.project_version or '(version not recorded)'}"),
        ("Commit:", (p.commit + (" (uncommitted changes)" if p.dirty else "")) or "not recorded"),
        ("Data:", data_text(p)),
        ("Schema:", f"comparison.json {schema}"),
    ]


def provenance_line(comparison: Comparison) -> str:
    """One line saying what produced the report: run, date, project commit and config."""
    p = comparison.provenance
    config = f"; {config_text(comparison)}" if comparison.config else ""
    if not (p.run_id or p.started or p.commit):
        return f"The runs recorded no run id, date or commit (see Provenance){config}."
    return f"Run {run_label(comparison)}; {when_and_code(p)}{config}."


def config_text(comparison: Comparison) -> str:
    """The config that ran, in a phrase."""
    c = comparison.config
    if c is None:
        return f"{comparison.epochs} epochs, {comparison.repeats} repeats"
    rate = f"learning rate {c.learning_rate:g}" if c.learning_rate else "default learning rate"
    limit = f"at most {c.limit:,} images a split" if c.limit else "all images"
    seeds = f"seed {c.seeds[0]}" if len(c.seeds) == 1 else f"seeds {c.seeds[0]} to {c.seeds[-1]}"
    return (
        f"{c.dataset}, {c.epochs} epoch{'s' if c.epochs > 1 else ''}, "
        f"batch {c.batch_size}, {c.optimizer} ({rate}), "
        f"{limit}, {c.validation_fraction:.0%} of training for validation, "
        f"{c.repeats} repeat{'s' if c.repeats > 1 else ''} ({seeds})"
    )


def one_repeat_warning(comparison: Comparison) -> str:
    """The warning a single-repeat comparison carries; empty with repeats."""
    if comparison.repeats > 1 or not comparison.variants:
        return ""
    return (
        "Seed-to-seed spread is unknown: each variant trained once, its interval covers the "
        "test images only, and one seed can move a variant by more than the differences "
        "between the CNNs. Run again with REPEATS=5 (make run REPEATS=5) before reading the "
        "verdicts as more than one draw."
    )


# ---------------------------------------------------------------- tables


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


def main_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the main table: only the columns that mean something for this run.

    Each run's accuracy and the spread appear with two repeats or more; the
    seed write-ups' number where they report one.

    Args:
        comparison: the comparison to tabulate.

    Returns:
        The column headers and one row of strings per variant.
    """
    several = comparison.repeats > 1
    seeds = any(v.reference for v in comparison.variants)
    headers = ["variant", "params", f"test acc % ({comparison.confidence:.0%} CI)"]
    headers += ["each run %", "spread, points"] if several else []
    headers += ["test loss", "best val % (epoch)", "s/epoch"]
    headers += ["seed %", "ours - seed"] if seeds else []
    rows = []
    for v in comparison.variants:
        row = [v.variant, f"{v.params:,}", _ci(v.test_accuracy)]
        if several:
            flag = " (!)" if v.spread_flag else ""
            row += [
                " ".join(pct(r.test_accuracy) for r in v.runs),
                f"{100 * v.test_accuracy_spread:.2f}{flag}",
            ]
        epochs = ",".join(str(r.best_epoch) for r in v.runs)
        row += [f"{v.test_loss:.4f}", f"{pct(v.best_val_accuracy)} ({epochs})"]
        row.append(f"{v.epoch_time_s:.1f}")
        if seeds:
            ref = v.reference
            seed = ""
            if ref:
                seed = pct(ref.accuracy) + (" (val)" if ref.split == "validation" else "")
                seed += " †" if ref.note else ""
            row += [seed, _points(ref.test_difference) if ref else ""]
        rows.append(row)
    return headers, rows


def runs_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of every run: accuracies, epochs and speeds.

    Args:
        comparison: the comparison to tabulate.

    Returns:
        The column headers and one row per run.
    """
    headers = [
        "run",
        "seed",
        "test %",
        "test loss",
        "best val % (epoch)",
        "final val %",
        "s/epoch",
        "train img/s",
        "infer img/s",
        "size MB",
    ]
    rows = [
        [
            f"{v.variant}-r{r.repeat}",
            str(r.seed),
            pct(r.test_accuracy),
            f"{r.test_loss:.4f}",
            f"{pct(r.best_val_accuracy)} ({r.best_epoch})",
            pct(r.final_val_accuracy),
            f"{r.epoch_time_s:.1f}",
            f"{r.train_images_per_s:,.0f}",
            f"{r.inference_images_per_s:,.0f}",
            f"{v.model_size_bytes / 1e6:.1f}",
        ]
        for v in comparison.variants
        for r in v.runs
    ]
    return headers, rows


def reference_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and rows setting the seeds' numbers against ours.

    Args:
        comparison: the comparison to tabulate.

    Returns:
        The column headers and one row per variant the seeds report a number for;
        the validation column only where a seed's number is a validation accuracy.
    """
    refs = [v for v in comparison.variants if v.reference is not None]
    validation = any(v.reference.split == "validation" for v in refs)
    headers = ["variant", "seed %", "seed loss", "seed split", "ours test %", "test - seed"]
    headers += ["ours final val %", "val - seed"] if validation else []
    headers += ["ours loss (seed's split)"]
    rows = []
    for v in refs:
        ref = v.reference
        on_validation = ref.split == "validation"
        row = [
            v.variant,
            pct(ref.accuracy),
            "" if ref.loss is None else f"{ref.loss:.4f}",
            ref.split,
            pct(v.test_accuracy.estimate),
            _points(ref.test_difference),
        ]
        if validation:
            row += [
                pct(v.final_val_accuracy),
                _points(ref.validation_difference) if on_validation else "",
            ]
        row.append(f"{v.final_val_loss if on_validation else v.test_loss:.4f}")
        rows.append(row)
    return headers, rows


def pair_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of every pair's difference, verdict and per-repeat McNemar detail.

    Args:
        comparison: the comparison to tabulate.

    Returns:
        The column headers and one row per pair of variants.
    """
    headers = [
        "a vs b",
        "a - b, points [95% CI]",
        "verdict",
        "p (adjusted) / TOST p (adjusted)",
        "per repeat: a - b points; only a right / only b right, McNemar p",
    ]
    rows = []
    for p in comparison.pairs:
        rows.append(
            [
                f"{p.a} vs {p.b}",
                f"{_points(p.estimate)} [{_points(p.low)}, {_points(p.high)}]",
                p.verdict,
                f"{_p_cell(p.p_adjusted)} / {_p_cell(p.p_equivalence_adjusted)}",
                "; ".join(
                    f"r{t.repeat}: {_points(t.difference)}; {t.only_a_correct}/"
                    f"{t.only_b_correct}, {_p_cell(t.p_value)}"
                    for t in p.tests
                ),
            ]
        )
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
        for stage, found in (("training", v.hardware), ("inference", v.inference_hardware))
        for h in found
    ]
    return headers, rows


def numerics_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of each variant's spread, with its numerics where they differ.

    When every run trained with the same numerics the paragraph above the
    table names them once, and the table keeps the spread alone.

    Args:
        comparison: the comparison to tabulate.

    Returns:
        The column headers and one row per variant and machine it trained on.
    """
    shared = len({h.numerics() for v in comparison.variants for h in v.hardware}) == 1
    headers = ["variant", "spread, points"]
    if not shared:
        headers += [
            "CPU",
            "extensions",
            "TensorFlow (git)",
            "CUDA / cuDNN",
            "oneDNN (TF_ENABLE_ONEDNN_OPTS)",
            "threads",
        ]
    rows = []
    for v in comparison.variants:
        spread = f"{100 * v.test_accuracy_spread:.2f}" + (" (!)" if v.spread_flag else "")
        if shared:
            rows.append([v.variant, spread])
            continue
        for h in v.hardware:
            onednn = "?" if h.onednn is None else ("on" if h.onednn else "off")
            cuda = h.build.get("cuda_version", "")
            rows.append(
                [
                    v.variant,
                    spread,
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
    """The headline, the main table and the verdicts, for a terminal.

    Args:
        comparison: the comparison to print.

    Returns:
        A heading line, the headline, the main table (tabulate's plain format)
        and one verdict per pair.
    """
    headers, rows = main_table(comparison)
    lines = [
        f"{comparison.experiment}: {comparison.repeats} repeat(s), {comparison.epochs} "
        f"epoch{'s' if comparison.epochs != 1 else ''}, "
        f"{comparison.n_test:,} test images",
        headline(comparison),
        *([f"{SYNTHETIC_LEAD} {SYNTHETIC_DATA}"] * comparison.provenance.synthetic),
        tabulate(rows, headers=headers, disable_numparse=True),
    ]
    warning = one_repeat_warning(comparison)
    if warning:
        lines += ["", f"One repeat: {warning}"]
    if comparison.pairs:
        lines += ["", *(f"- {verdict(p)}" for p in comparison.pairs)]
    lines += [f"- {v.spread_flag}" for v in comparison.variants if v.spread_flag]
    if comparison.failures:
        lines += ["", f"{comparison.status.upper()}: {failure_summary(comparison)}"]
    return "\n".join(lines)


# ---------------------------------------------------------------- the layout


def _accuracy_note(comparison: Comparison) -> str:
    if comparison.repeats > 1:
        interval = (
            f"Test accuracy: mean over the {comparison.repeats} repeats with its "
            f"{comparison.confidence:.0%} confidence interval (Student t over the repeats: "
            "seed-to-seed variation), each run's accuracy, and their spread (max - min; "
            f'"(!)": more than {100 * comparison.spread_limit:g} points).'
        )
    else:
        interval = (
            f"Test accuracy of the single run with its {comparison.confidence:.0%} confidence "
            "interval (Wilson interval over the test images: test-set sampling only, not "
            "seed-to-seed variation)."
        )
    seeds = ""
    if any(v.reference for v in comparison.variants):
        seeds = (
            ' Seed: the seed write-up\'s number ("(val)": a validation accuracy; "†": the '
            "seed's claim does not hold, see Against the seeds' numbers) and our mean test "
            "accuracy minus it, in points."
        )
    return (
        f"{interval} Best validation accuracy: mean over repeats, and the epoch of the best "
        f"in each run.{seeds} {speed_note(comparison)}"
    )


def comparison_report(comparison: Comparison) -> Report:
    """The pairwise comparison's report: the answer first, the evidence after.

    Args:
        comparison: the comparison to report.

    Returns:
        Its :class:`Report`.
    """
    c = comparison
    lead: list[Block] = [Text(headline(c), style="headline")]
    if c.provenance.synthetic:
        lead.append(Text(SYNTHETIC_DATA, lead=SYNTHETIC_LEAD))
    warning = one_repeat_warning(c)
    if warning:
        lead.append(Text(warning, lead="One repeat."))
    if c.failures:
        lead.append(
            Text(
                f"{failure_summary(c)} See Failed runs below.",
                lead=f"{c.status.capitalize()} comparison.",
            )
        )
    lead.append(Text(f"{provenance_line(c)} {hardware_text(c)}".strip(), style="note"))
    if c.variants:
        lead += [Figure("test_accuracy"), Table(*main_table(c)), Text(_accuracy_note(c))]
    sections = []
    if c.failures:
        sections.append(
            Section(
                "Failed runs",
                [
                    Text(
                        "These runs failed for good (a retry would fail the same way). A variant "
                        "with a failed run is left out of the statistics, since pairs need the "
                        "same repeats of every variant."
                    ),
                    Table(*failure_table(c)),
                ],
                anchor="failed-runs",
            )
        )
    verdicts = [("", verdict(p)) for p in c.pairs] or [
        ("", "One variant only: nothing to compare.")
    ]
    verdicts += [("Unstable:", v.spread_flag) for v in c.variants if v.spread_flag]
    verdicts += [(f"{lead}:", text) for lead, text in caveats(c)]
    sections.append(Section("Verdicts", [Bullets(verdicts), Text(c.verdict_rule)]))
    if c.pairs:
        family = f"the {len(c.pairs)} pairs" if len(c.pairs) > 1 else "the one pair"
        sections.append(
            Section(
                "Pairwise differences",
                [
                    Text(
                        f"Each pair's difference in accuracy points, a - b, mean over seeds, "
                        f"with its 95% interval simultaneous over {family} (Bonferroni); p: "
                        "the test of no difference, TOST p: of a difference of "
                        f"{100 * c.margin:g} point(s) or more, both adjusted. Per repeat: "
                        "McNemar's exact test of that repeat's two networks (the test images "
                        "only, unadjusted)."
                    ),
                    Table(*pair_table(c)),
                ],
            )
        )
    if c.shift_accuracy:
        sections.append(shift_section(c))
    if c.variants:
        sections.append(
            Section("Plots", [Figure(name) for name in PLOTS if name != "test_accuracy"])
        )
        sections.append(Section("Each run", [Table(*runs_table(c))], folded=True))
        sections.append(_seed_section(c))
        sections.append(_hardware_section(c))
        reproducibility: list[Block] = [Text(c.reproducibility)] if c.reproducibility else []
        if c.repeats > 1 or len({h.numerics() for v in c.variants for h in v.hardware}) > 1:
            reproducibility.append(
                Text(
                    'Spread: max - min of the repeats\' test accuracy, in points; "(!)": more '
                    f"than {100 * c.spread_limit:g}, flagged in the verdicts."
                )
            )
            reproducibility.append(Table(*numerics_table(c)))
        sections.append(Section("Reproducibility", reproducibility, folded=True))
    if c.config and c.config.model_sources:
        sections.append(_models_section(c))
    sections.append(_provenance_section(c))
    return Report(title=title(c), lead=lead, sections=sections)


def shift_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of each pair's difference at each shift, and its change.

    Args:
        comparison: the comparison to tabulate.

    Returns:
        The column headers and one row per pair: a - b in points at each
        shift (with its interval; at 0 px the verdict's own), the change from
        no shift to the largest, and the widest difference with its shift.
    """
    shifts = sorted({d.shift for d in comparison.shift_differences})
    headers = [
        "a vs b",
        *(f"shift {s} px: a - b, points" for s in (0, *shifts)),
        "change, points",
        "widest, points (shift)",
    ]
    rows = []
    for p in comparison.pairs:
        found = {d.shift: d for d in comparison.shift_differences if (d.a, d.b) == (p.a, p.b)}
        if not found:
            continue
        found[0] = p
        cells = [
            f"{_points(found[s].estimate)} [{_points(found[s].low)}, {_points(found[s].high)}]"
            if s in found
            else ""
            for s in (0, *shifts)
        ]
        change = found[shifts[-1]].estimate - found[0].estimate
        widest = max(found, key=lambda s: abs(found[s].estimate))
        rows.append(
            [
                f"{p.a} vs {p.b}",
                *cells,
                _points(change),
                f"{_points(found[widest].estimate)} ({widest} px)",
            ]
        )
    return headers, rows


def shift_accuracy_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of each variant's accuracy at each shift.

    Args:
        comparison: the comparison to tabulate.

    Returns:
        The column headers and one row per variant.
    """
    shifts = sorted({a.shift for a in comparison.shift_accuracy})
    headers = ["variant", *(f"shift {s} px %" for s in shifts)]
    rows = []
    for v in comparison.variants:
        found = {a.shift: a.accuracy for a in comparison.shift_accuracy if a.variant == v.variant}
        rows.append([v.variant, *(_ci(found[s]) if s in found else "" for s in shifts)])
    return headers, rows


def shift_section(c: Comparison) -> Section:
    """Accuracy against shift per variant (plot and table) and each pair's gap per shift."""
    return Section(
        "Shifted test images",
        [
            Text(
                "Every model scored on the test images moved by 1 to 4 pixels in random "
                "directions (one seed, zero fill: the same images for every model); shift 0 is "
                "the test split as it is. A diagonal move of k pixels moves the image "
                "k x 1.41 pixels, and at 3 and 4 pixels part of the object leaves the frame: "
                "the shifts measure tolerance to moved and cropped objects together. "
                "Differences: over seeds and test images, 95% intervals simultaneous over the "
                f"{len(c.shift_differences)} shifted differences (at 0 px the verdicts' own); "
                f"accuracies: {c.confidence:.0%} over the repeats. Change: the difference at "
                "the largest shift minus at none; widest: the largest over the shifts, and where."
            ),
            Figure(*SHIFT_PLOT),
            Table(*shift_table(c)),
            Table(*shift_accuracy_table(c)),
        ],
    )


def _seed_section(c: Comparison) -> Section:
    if not any(v.reference for v in c.variants):
        return Section(
            "Against the seeds' numbers",
            [Text("The seeds report no number for these variants.")],
            folded=True,
        )
    notes = [(v.variant, v.reference.note) for v in c.variants if v.reference and v.reference.note]
    blocks: list[Block] = [
        Text(
            "Where a seed reported a validation accuracy, ours is compared with both our test "
            "accuracy and our final validation accuracy. Differences are ours minus the seed's, "
            "in points. The notes say where a seed's claim does not hold."
        ),
        Table(*reference_table(c)),
    ]
    if notes:
        blocks.append(Bullets([(f"{variant}:", note) for variant, note in notes]))
    return Section("Against the seeds' numbers", blocks, folded=True)


def _hardware_section(c: Comparison) -> Section:
    text = hardware_text(c)
    if all(len(m) == 1 for m in machines(c).values()):
        return Section("Hardware", [Text(text)], folded=True)
    return Section("Hardware", [Table(*hardware_table(c))], folded=True)


def data_text(p: Provenance) -> str:
    """The data set's source and its images' shape."""
    shape = "x".join(map(str, p.data_shape))
    return (p.data_source or "not recorded") + (f" ({shape} images)" if shape else "")


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


def _provenance_section(c: Comparison) -> Section:
    items = provenance_items(c.provenance, run_label(c), c.schema_version)
    items[-1:-1] = [
        ("Config:", config_text(c)),
        ("Variants:", ", ".join(c.config.variants if c.config else [])),
        ("Machines:", hardware_text(c) or "none: no run finished"),
    ]
    if c.provenance.note:
        items.append(("Note:", c.provenance.note))
    return Section("Provenance", [Bullets(items)], folded=True)


def _escape_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _prepare(block: Block, html: bool, images: dict[str, str]) -> dict | None:
    if isinstance(block, Table):
        rows = block.rows if html else [[_escape_cell(x) for x in row] for row in block.rows]
        fmt = "html" if html else "github"
        text = tabulate(rows, headers=block.headers, tablefmt=fmt, disable_numparse=True)
        return {"kind": "table", "text": text}
    if isinstance(block, Figure):
        if block.name not in images:
            return None
        caption = block.caption or PLOTS.get(block.name, block.name)
        return {"kind": "figure", "caption": caption, "src": images[block.name]}
    if isinstance(block, Bullets):
        return {"kind": "bullets", "entries": block.items}
    return {"kind": "text", "text": block.text, "lead": block.lead, "style": block.style}


def _render(
    comparison: Comparison, images: dict[str, str], html: bool, layout: Layout, missing: str = ""
) -> str:
    env = Environment(
        loader=PackageLoader("cnnvsmlp", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    report = layout(comparison)

    def prepared(blocks: list[Block]) -> list[dict]:
        return [b for b in (_prepare(x, html, images) for x in blocks) if b is not None]

    sections = [
        {
            "title": s.title,
            "anchor": s.anchor,
            "folded": s.folded,
            "blocks": prepared(s.blocks),
        }
        for s in report.sections
    ]
    template = env.get_template("report.html.j2" if html else "report.md.j2")
    return template.render(
        title=report.title, lead=prepared(report.lead), sections=sections, missing=missing
    )


def _compact_png(path: Path) -> bytes:
    """A plot as a palette PNG: the same picture in about a third of the bytes."""
    from PIL import Image

    with Image.open(path) as image:
        quantized = image.convert("RGB").quantize(colors=128)
    out = io.BytesIO()
    quantized.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _plot_order(plots: dict[str, Path]) -> list[str]:
    """The plots in :data:`PLOTS` order, then a layout's own in the order given."""
    return [n for n in PLOTS if n in plots] + [n for n in plots if n not in PLOTS]


def _data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def render_markdown(
    comparison: Comparison,
    plots: dict[str, Path] | None = None,
    plot_dir: str = "plots",
    layout: Layout = comparison_report,
) -> str:
    """The Markdown report: GitHub tables and plain Markdown, no raw HTML.

    Args:
        comparison: the comparison to report.
        plots: the PNG file of each plot: embedded as data URIs, so the file
            renders alone, as the KFP UI shows it; in :data:`PLOTS` order, then
            any others a layout draws, while
            the text stays under :data:`MARKDOWN_LIMIT`, the rest named as left
            out. None links the plots under ``plot_dir`` instead.
        plot_dir: the plots' folder as seen from the report, when ``plots`` is None.
        layout: the sections and their order.

    Returns:
        The report's text.
    """
    if plots is None:
        drawn = list(PLOTS) if comparison.variants else []
        drawn += [SHIFT_PLOT[0]] if getattr(comparison, "shift_accuracy", None) else []
        images = {name: f"{plot_dir}/{name}.png" for name in drawn}
        return _render(comparison, images, html=False, layout=layout)
    text = _render(comparison, {}, html=False, layout=layout)
    budget = MARKDOWN_LIMIT - len(text) - 2_000
    images, left_out = {}, []
    for name in _plot_order(plots):
        uri = _data_uri(_compact_png(plots[name]))
        if len(uri) <= budget:
            images[name] = uri
            budget -= len(uri)
        else:
            left_out.append(PLOTS.get(name, name))
    missing = ""
    if left_out:
        missing = (
            f"Left out to keep this file under the KFP UI's {MARKDOWN_LIMIT:,} characters: "
            f"{', '.join(left_out)}; report.html and plots/ beside comparison.json have them."
        )
    return _render(comparison, images, html=False, layout=layout, missing=missing)


def render_html(
    comparison: Comparison, plots: dict[str, Path], layout: Layout = comparison_report
) -> str:
    """The self-contained HTML report: the plots embedded as base64 data URIs.

    Args:
        comparison: the comparison to report.
        plots: the PNG file of each plot, as :func:`write_plots` returns them.
        layout: the sections and their order.

    Returns:
        The HTML document.
    """
    images = {name: _data_uri(plots[name].read_bytes()) for name in _plot_order(plots)}
    return _render(comparison, images, html=True, layout=layout)
