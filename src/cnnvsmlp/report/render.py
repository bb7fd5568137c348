"""The comparison in words: its tables, and the terminal, Markdown and HTML reports."""

from __future__ import annotations

import base64
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from tabulate import tabulate

from cnnvsmlp.report.model import Comparison
from cnnvsmlp.report.plots import PLOTS
from cnnvsmlp.report.status import failure_summary
from cnnvsmlp.report.verdict import number, pct
from cnnvsmlp.stats import Interval


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


def _points(x: float) -> str:
    return number(100 * x, "+.2f")


def _ci(i: Interval) -> str:
    return f"{pct(i.estimate)} [{pct(i.low)}, {pct(i.high)}]"


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
            seed = pct(ref.accuracy) + (" (val)" if ref.split == "validation" else "")
            seed += " †" if ref.note else ""
        rows.append(
            [
                v.variant,
                f"{v.params:,}",
                f"{v.model_size_bytes / 1e6:.1f}",
                _ci(v.test_accuracy),
                " ".join(pct(r.test_accuracy) for r in v.runs),
                f"{v.test_loss:.4f}",
                f"{pct(v.best_val_accuracy)} ({','.join(str(r.best_epoch) for r in v.runs)})",
                pct(v.final_val_accuracy),
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
                pct(ref.accuracy),
                "" if ref.loss is None else f"{ref.loss:.4f}",
                ref.split,
                pct(v.test_accuracy.estimate),
                _points(ref.test_difference),
                pct(v.final_val_accuracy),
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
