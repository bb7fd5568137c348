"""Render a written comparison again, in this version's layout: ``python -m cnnvsmlp.report DIR``.

``DIR`` a run folder (``runs/<id>``, as ``make run`` wrote it): its runs'
evaluation records, which keep every prediction, are compared again with
this version's analysis into ``DIR/report/``; nothing is retrained.

Reads ``DIR/comparison.json`` (this schema or an older minor version of it,
or the ``data-efficiency`` study's ``efficiency/1``), restates its pairs under
this version's rules (nothing is retrained or re-evaluated) and writes
``comparison.json``, ``report.md``, ``report.html`` and ``plots/`` back into
``DIR``. ``DIR/config.json``, when there, supplies the config a comparison of
an older schema does not carry.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnnvsmlp.errors import UserError


def rerender(folder: Path, note: str = "") -> None:
    """Render ``folder``'s comparison again, in place.

    Args:
        folder: a comparison folder, with ``comparison.json`` and perhaps ``config.json``.
        note: how the runs were made, when the comparison does not record it.

    Raises:
        ReportError: the comparison is missing or of a schema this version cannot read.
    """
    from cnnvsmlp.config import read_config
    from cnnvsmlp.report import render_comparison
    from cnnvsmlp.report.compare import read_comparison, run_config
    from cnnvsmlp.report.model import ReportError

    source = folder / "comparison.json"
    if not source.is_file():
        raise ReportError(f"{source}: no comparison.json; pass the folder compare wrote")
    if _schema(source).startswith("efficiency/"):
        _rerender_study(source, note)
        return
    old = _schema(source)
    comparison = read_comparison(source)
    if comparison.config is None and (folder / "config.json").is_file():
        config = read_config(folder / "config.json")
        comparison = comparison.model_copy(
            update={"config": run_config(config, comparison.repeats)}
        )
    provenance = comparison.provenance
    text = _note(note, provenance.note, old)
    comparison = comparison.model_copy(
        update={"provenance": provenance.model_copy(update={"note": text})}
    )
    render_comparison(comparison, folder)


def reanalyse(run: Path, note: str = "") -> Path:
    """Compare a run folder's evaluation records again into its ``report/``; nothing retrained.

    Raises:
        ReportError: ``run`` holds no compare pipeline's records.
    """
    import json

    from cnnvsmlp.config import read_config
    from cnnvsmlp.data.store import load_split
    from cnnvsmlp.provenance import Provenance
    from cnnvsmlp.records import read_result
    from cnnvsmlp.report import write_comparison
    from cnnvsmlp.report.model import ReportError

    plans = sorted((run / "pipeline").glob("*/plan-runs/config"))
    if not plans:
        raise ReportError(f"{run}: no pipeline/*/plan-runs/config; pass a folder make run wrote")
    root = plans[-1].parent.parent
    results = [read_result(p) for p in sorted(root.glob("for-loop-*/evaluate-model/result"))]
    _, labels = load_split(root / "prepare-data" / "dataset", "test")
    old = run / "report" / "comparison.json"
    recorded = json.loads(old.read_text()).get("provenance", {}) if old.is_file() else {}
    provenance = Provenance.model_validate(recorded)
    text = _note(note, provenance.note, "the runs' evaluation records")
    config = read_config(plans[-1]).model_copy(
        update={"provenance": provenance.model_copy(update={"note": text})}
    )
    write_comparison(results, config, labels, run / "report")
    return run / "report"


def _note(note: str, recorded: str, schema: str) -> str:
    """The provenance note of a report rendered again: how it was made, and by what."""
    from cnnvsmlp.provenance import git_state, project_version

    commit, dirty = git_state()
    source = schema if schema.startswith("the ") else f"a comparison.json of schema {schema}"
    rendered = (
        f"Rendered again from {source} by cnnvsmlp "
        f"{project_version() or '?'} (commit {commit[:10] or 'not recorded'}"
        f"{', uncommitted changes' if dirty else ''}); nothing was retrained."
    )
    return " ".join(x for x in (note, recorded, rendered) if x)


def _schema(source: Path) -> str:
    """The ``schema_version`` of a comparison.json; empty when it has none or does not parse."""
    import json

    try:
        record = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""  # Comparison.read names what is wrong with it
    version = record.get("schema_version") if isinstance(record, dict) else None
    return version if isinstance(version, str) else ""


def _rerender_study(source: Path, note: str) -> None:
    """Render a data-efficiency analysis again from its record (it holds every number)."""
    from cnnvsmlp.efficiency.analysis import read_analysis
    from cnnvsmlp.report.efficiency import write_efficiency_report

    old = _schema(source)
    analysis = read_analysis(source)
    provenance = analysis.provenance
    text = _note(note, provenance.note, old)
    analysis = analysis.model_copy(
        update={"provenance": provenance.model_copy(update={"note": text})}
    )
    write_efficiency_report(analysis, source.parent)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and render; a bad folder is one line on stderr and exit status 2."""
    parser = argparse.ArgumentParser(prog="python -m cnnvsmlp.report", description=__doc__)
    parser.add_argument("folder", type=Path, help="the comparison folder")
    parser.add_argument("--note", default="", help="how the runs were made, if not recorded")
    args = parser.parse_args(argv)
    folder = args.folder
    try:
        if (folder / "pipeline").is_dir():
            folder = reanalyse(folder, args.note)
        else:
            rerender(folder, args.note)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report: rendered {folder}/report.md, report.html, plots/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
