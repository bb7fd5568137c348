"""The comparison: ``comparison.json``, ``report.md`` (for the KFP UI), ``report.html``, plots."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from cnnvsmlp.config import ExperimentConfig
    from cnnvsmlp.provenance import Provenance
    from cnnvsmlp.records import EvalResult
    from cnnvsmlp.report.model import Comparison


def write_comparison(
    results: list[EvalResult],
    config: ExperimentConfig,
    test_labels: np.ndarray,
    out_dir: Path,
    provenance: Provenance | None = None,
) -> Comparison:
    """Compare the runs and write it into ``out_dir``; nothing is written on a ReportError."""
    # Imported here: report.model loads without statistics or plotting.
    from cnnvsmlp.report.compare import compare

    comparison = compare(results, config, test_labels, provenance)
    render_comparison(comparison, out_dir)
    return comparison


def render_comparison(comparison: Comparison, out_dir: Path) -> None:
    """Write a computed (or read and restated) comparison's JSON, reports and plots."""
    from cnnvsmlp.report.blocks import write_report
    from cnnvsmlp.report.plots import write_plots
    from cnnvsmlp.report.render import comparison_report

    # With every variant failed there is nothing to draw.
    plots = write_plots(comparison, out_dir / "plots") if comparison.variants else {}
    write_report(comparison, comparison_report, plots, out_dir)
