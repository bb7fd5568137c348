"""Render a written comparison again, in this version's layout: ``python -m cnnvsmlp.report DIR``.

``DIR`` a run folder (``runs/<id>``, as ``make run`` wrote it): its runs'
evaluation records, which keep every prediction, are compared again with
this version's analysis into ``DIR/report/``; nothing is retrained.

Reads ``DIR/comparison.json`` (this schema or an older minor version of it,
or the ``data-efficiency`` study's ``efficiency/1``), restates its pairs under
this version's rules (nothing is retrained or re-evaluated) and writes
``report.md``, ``report.html`` and ``plots/`` into ``DIR``. ``DIR/config.json``,
when there, supplies the config a comparison of an older schema does not carry.

The record is checked whole first (:mod:`cnnvsmlp.report.checks`) and never
written: a render goes to a hidden folder in ``DIR`` and each output is then
moved in whole, so a failure (a full disk, a folder that cannot be written)
leaves ``DIR`` as it was.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import cnnvsmlp.report as report
from cnnvsmlp.config import read_config
from cnnvsmlp.data.store import load_split
from cnnvsmlp.efficiency.analysis import read_analysis
from cnnvsmlp.errors import UserError
from cnnvsmlp.provenance import Provenance, git_state, project_version
from cnnvsmlp.records import read_result
from cnnvsmlp.report.checks import RecordError, read_record
from cnnvsmlp.report.compare import read_comparison, run_config
from cnnvsmlp.report.efficiency import write_efficiency_report
from cnnvsmlp.report.model import ReportError

RECORD = "comparison.json"


def rerender(folder: Path, note: str = "") -> Callable[[Path], object]:
    """How to render ``folder``'s comparison again; ``note``: how the runs were made."""
    source = folder / RECORD
    if not source.is_file():
        raise ReportError(f"{source}: no comparison.json; pass the folder compare wrote")
    old = str(read_record(source).get("schema_version", ""))
    if old.startswith("efficiency/"):
        analysis = _noted(read_analysis(source), note, old)
        return lambda out: write_efficiency_report(analysis, out)
    comparison = read_comparison(source)
    if comparison.config is None and (folder / "config.json").is_file():
        config = run_config(read_config(folder / "config.json"), comparison.repeats)
        comparison = comparison.model_copy(update={"config": config})
    comparison = _noted(comparison, note, old)
    return lambda out: report.render_comparison(comparison, out)


def reanalyse(run: Path, note: str = "") -> Callable[[Path], object]:
    """How to compare a run folder's evaluation records again; nothing is retrained."""
    plans = sorted((run / "pipeline").glob("*/plan-runs/config"))
    if not plans:
        raise ReportError(f"{run}: no pipeline/*/plan-runs/config; pass a folder make run wrote")
    root = plans[-1].parent.parent
    results = [read_result(p) for p in sorted(root.glob("for-loop-*/evaluate-model/result"))]
    _, labels = load_split(root / "prepare-data" / "dataset", "test")
    old = run / "report" / RECORD
    try:
        recorded = read_record(old).get("provenance", {}) if old.is_file() else {}
    except RecordError:
        recorded = {}  # a damaged report: its analysis is written again from the records
    provenance = _note(Provenance.model_validate(recorded), note, "the runs' evaluation records")
    config = read_config(plans[-1])
    return lambda out: report.write_comparison(results, config, labels, out, provenance)


def _write_whole(folder: Path, render: Callable[[Path], object], source: str) -> None:
    """Render into a hidden folder in ``folder``, then move each output but ``source`` in whole."""
    try:
        folder.mkdir(exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".partial-render-", dir=folder))
    except OSError as err:
        raise ReportError(
            f"{folder}: cannot write the report there ({err.strerror}); "
            "copy the folder somewhere writable and render the copy"
        ) from None
    try:
        render(tmp)
        if source:
            (tmp / source).unlink(missing_ok=True)
        for new in sorted(tmp.iterdir()):
            old = folder / new.name
            if old.is_dir() and not old.is_symlink():
                old.rename(tmp / f".old-{new.name}")
            os.replace(new, old)
    except OSError as err:
        raise ReportError(
            f"{folder}: cannot write the report ({err.strerror}); its files are as they "
            "were: free some space or render a copy elsewhere"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _noted(record, note: str, schema: str):
    """The record with the note of a render again (how and by what) in its provenance."""
    return record.model_copy(update={"provenance": _note(record.provenance, note, schema)})


def _note(p, note: str, schema: str):
    """The provenance ``p`` with the note of a render again: how and by what."""
    commit, dirty = git_state()
    source = schema if schema.startswith("the ") else f"a comparison.json of schema {schema}"
    rendered = (
        f"Rendered again from {source} by cnnvsmlp "
        f"{project_version() or '?'} (commit {commit[:10] or 'not recorded'}"
        f"{', uncommitted changes' if dirty else ''}); nothing was retrained."
    )
    text = " ".join(x for x in (note, p.note, rendered) if x)
    return p.model_copy(update={"note": text})


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and render; a bad folder is one line on stderr and exit status 2."""
    parser = argparse.ArgumentParser(prog="python -m cnnvsmlp.report", description=__doc__)
    parser.add_argument("folder", type=Path, help="the comparison folder")
    parser.add_argument("--note", default="", help="how the runs were made, if not recorded")
    args = parser.parse_args(argv)
    folder = args.folder
    try:
        if (folder / "pipeline").is_dir():
            render, folder = reanalyse(folder, args.note), folder / "report"
            _write_whole(folder, render, "")
        else:
            _write_whole(folder, rerender(folder, args.note), RECORD)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report: rendered {folder}/report.md, report.html, plots/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
