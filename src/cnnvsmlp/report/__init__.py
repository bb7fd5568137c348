"""The comparison artifact: every run of an experiment, summarised, tested and drawn.

:func:`write_comparison` writes into one folder:

- ``comparison.json``: every number (:class:`~cnnvsmlp.report.model.Comparison`,
  documented in docs/comparison-schema.md);
- ``report.md``: the report the KFP UI renders, its plots embedded so it
  renders alone;
- ``report.html``: the same, self-contained, the evidence folded;
- ``plots/*.png``: test accuracy, learning curves, confusion matrices,
  per-class accuracy, accuracy against parameters and against training time.

One module per job: :mod:`~cnnvsmlp.report.model` (the record),
:mod:`~cnnvsmlp.report.compare` (grouping and summarising the runs),
:mod:`~cnnvsmlp.report.status` (whether a written comparison is complete),
:mod:`~cnnvsmlp.report.verdict` (the sentences), :mod:`~cnnvsmlp.report.plots`
and :mod:`~cnnvsmlp.report.render` (tables, Markdown, HTML, terminal).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from cnnvsmlp.config import ExperimentConfig
    from cnnvsmlp.records import EvalResult
    from cnnvsmlp.report.model import Comparison


def write_comparison(
    results: list[EvalResult], config: ExperimentConfig, test_labels: np.ndarray, out_dir: Path
) -> Comparison:
    """Compare the runs and write the JSON, the reports and the plots into ``out_dir``.

    Args:
        results: every run's evaluation, in any order.
        config: the experiment: its variants, in report order, and the seeds' numbers.
        test_labels: the true labels of the test split the runs were scored on.
        out_dir: the folder to write ``comparison.json``, ``report.md``,
            ``report.html`` and ``plots/*.png`` into; made when missing.

    Returns:
        The comparison written to ``comparison.json``.

    Raises:
        ReportError: the runs do not fit together (see :func:`~cnnvsmlp.report.compare.compare`);
            nothing is written then. Failed runs are no error: they are
            listed, and the comparison's ``status`` says it is partial.
    """
    # Imported here: the record and the status check (report.model, report.status)
    # load without the statistics and plotting libraries these bring.
    from cnnvsmlp.report.compare import compare

    comparison = compare(results, config, test_labels)
    render_comparison(comparison, out_dir)
    return comparison


def render_comparison(comparison: Comparison, out_dir: Path) -> None:
    """Write a computed comparison's JSON, reports and plots into ``out_dir``.

    Args:
        comparison: the comparison, as computed or as read back (and restated
            by :func:`~cnnvsmlp.report.compare.restate`).
        out_dir: the folder to write into; made when missing.
    """
    from cnnvsmlp.report.plots import write_plots
    from cnnvsmlp.report.render import render_html, render_markdown, time_axis_label

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # With every variant failed there is nothing to draw.
    plots = (
        write_plots(comparison, out_dir / "plots", time_axis_label(comparison))
        if comparison.variants
        else {}
    )
    (out_dir / "comparison.json").write_text(comparison.model_dump_json(indent=1), encoding="utf-8")
    (out_dir / "report.md").write_text(render_markdown(comparison, plots), encoding="utf-8")
    (out_dir / "report.html").write_text(render_html(comparison, plots), encoding="utf-8")
