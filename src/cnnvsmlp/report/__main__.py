"""Render a written comparison again, in this version's layout: ``python -m cnnvsmlp.report DIR``.

DIR is a run folder ``make run`` wrote, whose evaluation records are compared again into
DIR/report/, or a folder with a comparison.json (this schema, an older minor version of it, or the
data-efficiency study's efficiency/1; DIR/config.json supplies the config an older one lacks),
rendered again into DIR. Nothing is retrained; a failure leaves DIR as it was.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import cnnvsmlp.report as report
from cnnvsmlp.config import read_config
from cnnvsmlp.data.store import load_split
from cnnvsmlp.efficiency.analysis import read_analysis
from cnnvsmlp.errors import UserError
from cnnvsmlp.provenance import Provenance, git_state, project_version
from cnnvsmlp.records import read_result
from cnnvsmlp.report.compare import read_comparison, run_config
from cnnvsmlp.report.efficiency import write_efficiency_report
from cnnvsmlp.report.model import ReportError

RECORD = "comparison.json"
DAMAGED = "the record is damaged: nothing was rendered; render from a whole copy"


def read_record(path: Path) -> dict:
    """The JSON object in ``path``, checked whole; a ReportError names what is out of place."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise ReportError(f"{path}: cannot read it ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise ReportError(f"{path}: not UTF-8 text (byte {err.start}); not a record") from None

    def not_finite(name: str) -> float:
        raise ReportError(f"{path}: holds {name}, not a finite number; {DAMAGED}")

    try:
        record = json.loads(text, parse_constant=not_finite)
    except ValueError as err:
        raise ReportError(
            f"{path}: not whole JSON ({err}); render from a whole copy of the record"
        ) from None
    if not isinstance(record, dict):
        raise ReportError(f"{path}: holds {json.dumps(record)[:40]}, not a record (a JSON object)")
    for where, problem in _problems(record):
        raise ReportError(f"{path}: {where} {problem}; {DAMAGED}")
    return record


def _problems(record: dict) -> Iterator[tuple[str, str]]:
    variants = record.get("variants")
    rows = variants if isinstance(variants, list) else []
    names = {v.get("variant") for v in rows if isinstance(v, dict)} - {None}
    for where, key, value in _leaves(record, "", ""):
        if isinstance(value, float) and not math.isfinite(value):
            yield where, f"is {value}, not a finite number"
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = _range(key)
            if not low <= value <= high:
                yield where, f"is {value}, outside [{low:g}, {high:g}]"
        elif (
            key in ("variant", "a", "b") and isinstance(value, str) and names and value not in names
        ):
            yield where, f"names variant {value!r}, which the record's variants lack"


def _range(name: str) -> tuple[float, float]:
    """The values a number named ``name`` (see :func:`_leaves`) may take."""
    own = name.rsplit("/", 1)[-1]
    if own == "power" or own.startswith("p_"):
        return 0.0, 1.0
    if "difference" in name:
        return -1.0, 1.0
    shares = ("accuracy", "recall", "confidence", "alpha")
    if any(s in name for s in shares) and own not in ("low", "high"):
        return 0.0, 1.0  # an interval's bounds may pass a share's range; its estimate may not
    return -math.inf, math.inf


def _leaves(value: object, where: str, name: str) -> Iterator[tuple[str, str, object]]:
    """Each leaf, its path and name: its key, ``key/part`` for estimate, low, high, digits."""
    if isinstance(value, dict):
        for k, v in value.items():
            inner = f"{name}/{k}" if k in ("estimate", "low", "high") or k.isdigit() else k
            yield from _leaves(v, f"{where}.{k}" if where else k, inner)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{where}[{i}]", name)
    else:
        yield where, name, value


def rerender(folder: Path, note: str = "") -> Callable[[Path], object]:
    """How to render ``folder``'s comparison again; ``note``: how the runs were made."""
    source = folder / RECORD
    if not source.is_file():
        raise ReportError(f"{source}: no comparison.json; pass the folder compare wrote")
    old = str(read_record(source).get("schema_version", ""))
    if old.startswith("efficiency/"):
        record, write = read_analysis(source), write_efficiency_report
    else:
        record, write = read_comparison(source), report.render_comparison
        if record.config is None and (folder / "config.json").is_file():
            config = run_config(read_config(folder / "config.json"), record.repeats)
            record = record.model_copy(update={"config": config})
    source = f"a comparison.json of schema {old}"
    record = record.model_copy(update={"provenance": _note(record.provenance, note, source)})
    return lambda out: write(record, out)


def reanalyse(run: Path, note: str = "") -> Callable[[Path], object]:
    """How to compare a run folder's evaluation records again; nothing is retrained."""
    plans = sorted((run / "pipeline").glob("*/plan-runs/config"))
    if not plans:
        raise ReportError(f"{run}: no pipeline/*/plan-runs/config; pass a folder make run wrote")
    root = plans[-1].parent.parent
    results = [read_result(p) for p in sorted(root.glob("for-loop-*/evaluate-model/result"))]
    _, labels = load_split(root / "prepare-data" / "dataset", "test")
    try:
        recorded = read_record(run / "report" / RECORD).get("provenance", {})
    except ReportError:
        recorded = {}  # no report, or a damaged one: its analysis is written again
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


def _note(p: Provenance, note: str, source: str) -> Provenance:
    """The provenance ``p`` with the note of a render again from ``source``: how and by what."""
    commit, dirty = git_state()
    rendered = (
        f"Rendered again from {source} by cnnvsmlp "
        f"{project_version() or '?'} (commit {commit[:10] or 'not recorded'}"
        f"{', uncommitted changes' if dirty else ''}); nothing was retrained."
    )
    return p.model_copy(update={"note": " ".join(x for x in (note, p.note, rendered) if x)})


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and render; a bad folder is one line on stderr and exit status 2."""
    parser = argparse.ArgumentParser(prog="python -m cnnvsmlp.report", description=__doc__)
    parser.add_argument("folder", type=Path, metavar="DIR", help="a run or comparison folder")
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
