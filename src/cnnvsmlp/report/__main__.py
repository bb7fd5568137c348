"""Render a written comparison again, in this version's layout: ``python -m cnnvsmlp.report DIR``.

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

from cnnvsmlp.errors import UserError


def rerender(folder: Path, note: str = "") -> None:
    """Render ``folder``'s comparison again, beside it; the comparison itself is not rewritten.

    Args:
        folder: a comparison folder, with ``comparison.json`` and perhaps ``config.json``.
        note: how the runs were made, when the comparison does not record it.

    Raises:
        ReportError: the comparison is missing or of a schema this version cannot read,
            or the folder cannot be written.
        RecordError: the comparison is not whole or holds a value it cannot hold.
    """
    from cnnvsmlp.config import read_config
    from cnnvsmlp.report import render_comparison
    from cnnvsmlp.report.checks import read_record
    from cnnvsmlp.report.compare import restate, run_config
    from cnnvsmlp.report.model import Comparison, ReportError

    source = folder / "comparison.json"
    if not source.is_file():
        raise ReportError(f"{source}: no comparison.json; pass the folder compare wrote")
    schema = str(read_record(source).get("schema_version", ""))
    if schema.startswith("efficiency/"):
        _rerender_study(source, note)
        return
    comparison = Comparison.read(source)
    old = comparison.schema_version
    if comparison.config is None and (folder / "config.json").is_file():
        config = read_config(folder / "config.json")
        comparison = comparison.model_copy(
            update={"config": run_config(config, comparison.repeats)}
        )
    comparison = restate(comparison)
    provenance = comparison.provenance
    text = _note(note, provenance.note, old)
    comparison = comparison.model_copy(
        update={"provenance": provenance.model_copy(update={"note": text})}
    )
    _write_whole(folder, lambda out: render_comparison(comparison, out))


def _write_whole(folder: Path, render: Callable[[Path], object]) -> None:
    """Call ``render`` on a hidden folder in ``folder``, then move its outputs in, each whole.

    The record it was rendered from (``comparison.json``) is left as it was.

    Raises:
        ReportError: ``folder`` cannot be written; nothing in it has changed.
    """
    from cnnvsmlp.report.model import ReportError

    try:
        tmp = Path(tempfile.mkdtemp(prefix=".partial-render-", dir=folder))
    except OSError as err:
        raise ReportError(
            f"{folder}: cannot write the report there ({err.strerror}); "
            "copy the folder somewhere writable and render the copy"
        ) from None
    try:
        render(tmp)
        (tmp / "comparison.json").unlink(missing_ok=True)
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


def _note(note: str, recorded: str, schema: str) -> str:
    """The provenance note of a report rendered again: how it was made, and by what."""
    from cnnvsmlp.provenance import git_state, project_version

    commit, dirty = git_state()
    rendered = (
        f"Rendered again from a comparison.json of schema {schema} by cnnvsmlp "
        f"{project_version() or '?'} (commit {commit[:10] or 'not recorded'}"
        f"{', uncommitted changes' if dirty else ''}); nothing was retrained."
    )
    return " ".join(x for x in (note, recorded, rendered) if x)


def _rerender_study(source: Path, note: str) -> None:
    """Render a data-efficiency analysis again from its record (it holds every number)."""
    from cnnvsmlp.efficiency.analysis import EfficiencyAnalysis
    from cnnvsmlp.report.efficiency import write_efficiency_report

    analysis = EfficiencyAnalysis.read(source)
    provenance = analysis.provenance
    text = _note(note, provenance.note, analysis.schema_version)
    analysis = analysis.model_copy(
        update={"provenance": provenance.model_copy(update={"note": text})}
    )
    _write_whole(source.parent, lambda out: write_efficiency_report(analysis, out))


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and render; a bad folder is one line on stderr and exit status 2."""
    parser = argparse.ArgumentParser(prog="python -m cnnvsmlp.report", description=__doc__)
    parser.add_argument("folder", type=Path, help="the comparison folder")
    parser.add_argument("--note", default="", help="how the runs were made, if not recorded")
    args = parser.parse_args(argv)
    try:
        rerender(args.folder, args.note)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report: rendered {args.folder}/report.md, report.html, plots/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
