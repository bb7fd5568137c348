"""The pairwise comparison in words: its tables, the terminal table and its report's layout."""

from __future__ import annotations

from tabulate import tabulate

from cnnvsmlp.provenance import SYNTHETIC_DATA, SYNTHETIC_LEAD
from cnnvsmlp.records import Hardware
from cnnvsmlp.report.blocks import (
    PLOTS,
    SHIFT_PLOT,
    Block,
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
    pct,
    plural,
    points,
    provenance_section,
    run_label,
    when_and_code,
)
from cnnvsmlp.report.model import Comparison, distinct, failure_summary
from cnnvsmlp.report.verdict import caveats, headline, verdict

ONE_REPEAT = (
    "Seed-to-seed spread is unknown: each variant trained once, its interval covers the "
    "test images only, and one seed can move a variant by more than the differences "
    "between the CNNs. Run again with REPEATS=5 (make run REPEATS=5) before reading the "
    "verdicts as more than one draw."
)


def _machines(comparison: Comparison) -> dict[str, list[Hardware]]:
    variants = comparison.variants
    return {
        "training": distinct(h for v in variants for h in v.hardware),
        "inference": distinct(h for v in variants for h in v.inference_hardware),
    }


def _hardware_text(comparison: Comparison) -> str:
    """The machines in one sentence when every run shared them, else where the table is."""
    trained, evaluated = _machines(comparison).values()
    if not trained:
        return ""
    if len(trained) != 1 or len(evaluated) != 1:
        return "The runs used several machines: see Hardware."
    if trained == evaluated:
        return f"Every run trained and was evaluated on {machine_text(trained[0])}."
    on, off = machine_text(trained[0]), machine_text(evaluated[0])
    return f"Every run trained on {on} and was evaluated on {off}."


def _speed_note(comparison: Comparison) -> str:
    """What shared the machine while the epochs were timed: how to read the seconds."""
    p = comparison.provenance
    cpus = {h.cpu_count for h in _machines(comparison)["training"]}
    cores = f"{cpus.pop()} CPUs" if len(cpus) == 1 else "its CPUs"
    threads = "TensorFlow's default threads, one per core, each"
    if p.threads_per_training:
        threads = f"{p.threads_per_training} TensorFlow threads each"
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


def _config_text(comparison: Comparison) -> str:
    c = comparison.config
    if c is None:
        return f"{comparison.epochs} epochs, {comparison.repeats} repeats"
    rate = f"learning rate {c.learning_rate:g}" if c.learning_rate else "default learning rate"
    limit = f"at most {c.limit:,} images a split" if c.limit else "all images"
    seeds = f"seed {c.seeds[0]}" if len(c.seeds) == 1 else f"seeds {c.seeds[0]} to {c.seeds[-1]}"
    return (
        f"{c.dataset}, {plural(c.epochs, 'epoch')}, batch {c.batch_size}, {c.optimizer} "
        f"({rate}), {limit}, {c.validation_fraction:.0%} of training for validation, "
        f"{plural(c.repeats, 'repeat')} ({seeds})"
    )


def _spread(v) -> str:
    return f"{100 * v.test_accuracy_spread:.2f}" + (" (!)" if v.spread_flag else "")


def main_table(comparison: Comparison) -> Table:
    """The main table: only the columns that mean something for this run."""
    several = comparison.repeats > 1
    seeds = any(v.reference for v in comparison.variants)
    headers = ["variant", "params", f"test acc % ({comparison.confidence:.0%} CI)"]
    headers += ["each run %", "spread, points"] if several else []
    headers += ["test loss", "best val % (epoch)", "s/epoch"]
    headers += ["seed %", "ours - seed"] if seeds else []
    rows = []
    for v in comparison.variants:
        row = [v.variant, f"{v.params:,}", interval(v.test_accuracy)]
        if several:
            row += [" ".join(pct(r.test_accuracy) for r in v.runs), _spread(v)]
        best = f"{pct(v.best_val_accuracy)} ({','.join(str(r.best_epoch) for r in v.runs)})"
        row += [f"{v.test_loss:.4f}", best, f"{v.epoch_time_s:.1f}"]
        if ref := v.reference:
            mark = (" (val)" if ref.split == "validation" else "") + (" †" if ref.note else "")
            row += [pct(ref.accuracy) + mark, points(ref.test_difference)]
        elif seeds:
            row += ["", ""]
        rows.append(row)
    return Table(headers, rows)


def _runs_table(c: Comparison) -> Table:
    headers = ["run", "seed", "test %", "test loss", "best val % (epoch)", "final val %"]
    headers += ["s/epoch", "train img/s", "infer img/s", "size MB"]
    rows = []
    for v in c.variants:
        for r in v.runs:
            row = [f"{v.variant}-r{r.repeat}", str(r.seed), pct(r.test_accuracy)]
            row += [f"{r.test_loss:.4f}", f"{pct(r.best_val_accuracy)} ({r.best_epoch})"]
            row += [pct(r.final_val_accuracy), f"{r.epoch_time_s:.1f}"]
            row += [f"{r.train_images_per_s:,.0f}", f"{r.inference_images_per_s:,.0f}"]
            rows.append([*row, f"{v.model_size_bytes / 1e6:.1f}"])
    return Table(headers, rows)


def _reference_table(c: Comparison) -> Table:
    """The seeds' numbers against ours; a validation column where a seed's is one."""
    refs = [v for v in c.variants if v.reference is not None]
    validation = any(v.reference.split == "validation" for v in refs)
    headers = ["variant", "seed %", "seed loss", "seed split", "ours test %", "test - seed"]
    headers += ["ours final val %", "val - seed"] if validation else []
    headers += ["ours loss (seed's split)"]
    rows = []
    for v in refs:
        ref = v.reference
        on_val = ref.split == "validation"
        row = [v.variant, pct(ref.accuracy), "" if ref.loss is None else f"{ref.loss:.4f}"]
        row += [ref.split, pct(v.test_accuracy.estimate), points(ref.test_difference)]
        if validation:
            row += [pct(v.final_val_accuracy), points(ref.validation_difference) if on_val else ""]
        rows.append([*row, f"{v.final_val_loss if on_val else v.test_loss:.4f}"])
    return Table(headers, rows)


def _pair_table(c: Comparison) -> Table:
    headers = ["a vs b", "a - b, points [95% CI]", "verdict", "p (adjusted) / TOST p (adjusted)"]
    headers += ["per repeat: a - b points; only a right / only b right, McNemar p"]
    rows = []
    for p in c.pairs:
        tests = "; ".join(
            f"r{t.repeat}: {points(t.difference)}; {t.only_a_correct}/"
            f"{t.only_b_correct}, {p_cell(t.p_value)}"
            for t in p.tests
        )
        p_values = f"{p_cell(p.p_adjusted)} / {p_cell(p.p_equivalence_adjusted)}"
        rows.append([f"{p.a} vs {p.b}", interval(p, points), p.verdict, p_values, tests])
    return Table(headers, rows)


def _hardware_table(c: Comparison) -> Table:
    rows = [
        [v.variant, stage, h.device, h.name, str(h.cpu_count), h.tensorflow]
        for v in c.variants
        for stage, found in (("training", v.hardware), ("inference", v.inference_hardware))
        for h in found
    ]
    return Table(["variant", "stage", "device", "hardware", "CPUs", "TensorFlow"], rows)


def _numerics_row(h: Hardware) -> list[str]:
    onednn = "?" if h.onednn is None else ("on" if h.onednn else "off")
    cuda = h.build.get("cuda_version", "")
    return [
        h.cpu or h.name,
        " ".join(f for f in h.cpu_flags if f.startswith(("avx", "fma", "amx"))),
        f"{h.tensorflow} ({h.tensorflow_git})" if h.tensorflow_git else h.tensorflow,
        f"{cuda} / {h.build.get('cudnn_version', '')}" if cuda else "",
        f"{onednn} ({'unset' if h.onednn_opts is None else h.onednn_opts})",
        str(h.intra_op_threads or h.cpu_count),
    ]


def _numerics_table(c: Comparison) -> Table:
    """Each variant's spread, and its numerics per machine where they differ between runs."""
    if len({h.numerics() for v in c.variants for h in v.hardware}) == 1:
        return Table(["variant", "spread, points"], [[v.variant, _spread(v)] for v in c.variants])
    headers = ["variant", "spread, points", "CPU", "extensions", "TensorFlow (git)"]
    headers += ["CUDA / cuDNN", "oneDNN (TF_ENABLE_ONEDNN_OPTS)", "threads"]
    rows = [[v.variant, _spread(v), *_numerics_row(h)] for v in c.variants for h in v.hardware]
    return Table(headers, rows)


def shift_rows(label: str, found: dict, shifts: list[int], fmt) -> list[str]:
    """A pair's shift-table row from its differences by shift (0 last: the widest of equals)."""
    cells = [interval(found[s], fmt) if s in found else "" for s in (0, *shifts)]
    ends = 0 in found and shifts[-1] in found
    change = fmt(found[shifts[-1]].estimate - found[0].estimate) if ends else ""
    widest = max(found.values(), key=lambda g: abs(g.estimate))
    return [label, *cells, change, f"{fmt(widest.estimate)} ({widest.shift} px)"]


def _shift_tables(c: Comparison) -> list[Block]:
    """Each pair's difference at each shift, and each variant's accuracy at each shift."""
    shifts = sorted({d.shift for d in c.shift_differences})
    headers = ["a vs b", *(f"shift {s} px: a - b, points" for s in (0, *shifts))]
    rows = []
    for p in c.pairs:
        found = {d.shift: d for d in c.shift_differences if (d.a, d.b) == (p.a, p.b)}
        if found:
            rows.append(shift_rows(f"{p.a} vs {p.b}", {**found, 0: p}, shifts, points))
    at = sorted({a.shift for a in c.shift_accuracy})
    accuracy = [
        [v.variant, *(interval(found[s]) if s in found else "" for s in at)]
        for v in c.variants
        for found in [{a.shift: a.accuracy for a in c.shift_accuracy if a.variant == v.variant}]
    ]
    return [
        Table([*headers, "change, points", "widest, points (shift)"], rows),
        Table(["variant", *(f"shift {s} px %" for s in at)], accuracy),
    ]


def terminal_table(c: Comparison) -> str:
    """The headline, the main table and the verdicts, for a terminal."""
    table = main_table(c)
    lines = [
        f"{c.experiment}: {c.repeats} repeat(s), {plural(c.epochs, 'epoch')}, "
        f"{c.n_test:,} test images",
        headline(c),
        *([f"{SYNTHETIC_LEAD} {SYNTHETIC_DATA}"] * c.provenance.synthetic),
        tabulate(table.rows, headers=table.headers, disable_numparse=True),
    ]
    if c.repeats <= 1 and c.variants:
        lines += ["", f"One repeat: {ONE_REPEAT}"]
    if c.pairs:
        lines += ["", *(f"- {verdict(p)}" for p in c.pairs)]
    lines += [f"- {v.spread_flag}" for v in c.variants if v.spread_flag]
    if c.failures:
        lines += ["", f"{c.status.upper()}: {failure_summary(c)}"]
    return "\n".join(lines)


def _accuracy_note(c: Comparison) -> str:
    note = (MEAN_NOTE if c.repeats > 1 else SINGLE_NOTE).format(c=c, spread=100 * c.spread_limit)
    seeds = SEEDS_NOTE if any(v.reference for v in c.variants) else ""
    return (
        f"{note} Best validation accuracy: mean over repeats, and the epoch of the best "
        f"in each run.{seeds} {_speed_note(c)}"
    )


MEAN_NOTE = (
    "Test accuracy: mean over the {c.repeats} repeats with its {c.confidence:.0%} confidence "
    "interval (Student t over the repeats: seed-to-seed variation), each run's accuracy, and "
    'their spread (max - min; "(!)": more than {spread:g} points).'
)
SINGLE_NOTE = (
    "Test accuracy of the single run with its {c.confidence:.0%} confidence interval (Wilson "
    "interval over the test images: test-set sampling only, not seed-to-seed variation)."
)
SEEDS_NOTE = (
    ' Seed: the seed write-up\'s number ("(val)": a validation accuracy; "†": the '
    "seed's claim does not hold, see Against the seeds' numbers) and our mean test "
    "accuracy minus it, in points."
)
FAILED = (
    "These runs failed for good (a retry would fail the same way). A variant with a failed run "
    "is left out of the statistics, since pairs need the same repeats of every variant."
)
AGAINST_SEEDS = (
    "Where a seed reported a validation accuracy, ours is compared with both our test "
    "accuracy and our final validation accuracy. Differences are ours minus the seed's, "
    "in points. The notes say where a seed's claim does not hold."
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
    said = [verdict(p) for p in c.pairs] or ["One variant only: nothing to compare."]
    verdicts = [("", text) for text in said]
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
        sections.append(Section("Pairwise differences", [Text(about), _pair_table(c)]))
    if c.shift_accuracy:
        about = SHIFTED.format(n=len(c.shift_differences), confidence=c.confidence)
        blocks = [Text(about), Figure(*SHIFT_PLOT), *_shift_tables(c)]
        sections.append(Section("Shifted test images", blocks))
    return sections


def _evidence(c: Comparison) -> list[Section]:
    seeds: list[Block] = [Text("The seeds report no number for these variants.")]
    if any(v.reference for v in c.variants):
        notes = [(f"{v.variant}:", r.note) for v in c.variants if (r := v.reference) and r.note]
        seeds = [Text(AGAINST_SEEDS), _reference_table(c), *[Bullets(notes)] * bool(notes)]
    shared = all(len(m) == 1 for m in _machines(c).values())
    hardware = Text(_hardware_text(c)) if shared else _hardware_table(c)
    reproducibility: list[Block] = [Text(c.reproducibility)] if c.reproducibility else []
    if c.repeats > 1 or len({h.numerics() for v in c.variants for h in v.hardware}) > 1:
        spread = (
            'Spread: max - min of the repeats\' test accuracy, in points; "(!)": more than '
            f"{100 * c.spread_limit:g}, flagged in the verdicts."
        )
        reproducibility += [Text(spread), _numerics_table(c)]
    return [
        Section("Plots", [Figure(name) for name in PLOTS if name != "test_accuracy"]),
        Section("Each run", [_runs_table(c)], folded=True),
        Section("Against the seeds' numbers", seeds, folded=True),
        Section("Hardware", [hardware], folded=True),
        Section("Reproducibility", reproducibility, folded=True),
    ]


def _models_section(c: Comparison) -> Section:
    params = {v.variant: f"{v.params:,} parameters" for v in c.variants}
    blocks: list[Block] = []
    for module, source in c.config.model_sources.items():
        names = [v for v in c.config.variants if v.partition(":")[0] == module]
        counts = ", ".join(f"{v}: {params.get(v, 'not trained')}" for v in names)
        blocks += [Text(counts, lead=f"{module}.py"), Text(source.rstrip(), style="code")]
    return Section("Your models", blocks, folded=True)


def comparison_report(c: Comparison) -> Report:
    """The pairwise comparison's report: the answer first, the evidence after."""
    p = c.provenance
    config = f"; {_config_text(c)}" if c.config else ""
    made = f"Run {run_label(p)}; {when_and_code(p)}{config}."
    if not (p.run_id or p.started or p.commit):
        made = f"The runs recorded no run id, date or commit (see Provenance){config}."
    failed = f"{failure_summary(c)} See Failed runs below." if c.failures else ""
    lead = lead_blocks(
        headline(c),
        p,
        Text(ONE_REPEAT if c.repeats <= 1 and c.variants else "", lead="One repeat."),
        Text(failed, lead=f"{c.status.capitalize()} comparison."),
        Text(f"{made} {_hardware_text(c)}".strip(), style="note"),
    )
    if c.variants:
        lead += [Figure("test_accuracy"), main_table(c), Text(_accuracy_note(c))]
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
        ("Config:", _config_text(c)),
        ("Variants:", ", ".join(c.config.variants if c.config else [])),
        ("Machines:", _hardware_text(c) or "none: no run finished"),
    ]
    sections.append(provenance_section(p, c.schema_version, own))
    return Report(f"{c.experiment} comparison, run {run_label(p)}", lead, sections)
