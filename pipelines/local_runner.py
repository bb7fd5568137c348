"""Run a registered pipeline on this machine with kfp's local runner.

Each run gets its own folder ``runs/<run id>/``: the local pipeline root with
every task's artifacts under ``pipeline/``, and the comparison (report,
JSON, plots) copied to ``report/``. A run never overwrites an earlier one.
"""

from __future__ import annotations

import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from cnnvsmlp.config import ExperimentConfig
from cnnvsmlp.errors import UserError
from pipelines import get_pipeline


class LocalRunError(UserError):
    """The local pipeline run failed or produced no comparison."""


def new_run_dir(runs_dir: Path, config: ExperimentConfig) -> Path:
    """Create ``runs_dir/<UTC timestamp>-<experiment>``, unique even within a second."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = (
            runs_dir / f"{stamp}-{config.name}"
            if n == 0
            else runs_dir / f"{stamp}-{config.name}-{n}"
        )
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise LocalRunError(f"{runs_dir}: cannot create a new run folder")


def find_comparison(pipeline_root: Path) -> Path:
    """The comparison folder the run's compare task wrote."""
    found = sorted(pipeline_root.glob("*/compare-runs/comparison"))
    if not found or not (found[-1] / "comparison.json").is_file():
        raise LocalRunError(f"{pipeline_root}: the run wrote no comparison")
    return found[-1]


def run_local(
    name: str, config: ExperimentConfig, runs_dir: str | Path = "runs", quiet: bool = False
) -> Path:
    """Run a pipeline locally and collect its comparison in ``runs/<run id>/report``.

    Args:
        name: a registered pipeline.
        config: the validated experiment config.
        runs_dir: parent of the run folders.
        quiet: do not print the table and paths at the end.

    Returns:
        The run's folder.

    Raises:
        LocalRunError: a task failed; the message names it.
    """
    from kfp import local

    module = get_pipeline(name)
    run_dir = new_run_dir(Path(runs_dir), config)
    pipeline_root = run_dir / "pipeline"
    (run_dir / "config.json").write_text(config.model_dump_json(indent=2) + "\n")
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root.resolve()),
        raise_on_error=True,
    )
    runs = len(config.runs())
    print(
        f"run: {name} / {config.name}: {len(config.variants)} variants x {config.repeats} "
        f"repeats = {runs} trainings, {config.train.epochs} epochs each -> {run_dir}",
        flush=True,
    )
    start = time.perf_counter()
    try:
        module.pipeline(**module.arguments(config))
    except RuntimeError as err:
        raise LocalRunError(f"run {run_dir.name} failed: {err}") from None
    report = run_dir / "report"
    shutil.copytree(find_comparison(pipeline_root), report)
    minutes = (time.perf_counter() - start) / 60
    if not quiet:
        from cnnvsmlp.report import Comparison, terminal_table

        comparison = Comparison.model_validate_json((report / "comparison.json").read_text())
        print()
        print(terminal_table(comparison))
        print(f"\nrun: finished in {minutes:.1f} min; report in {report}/report.md")
        print(f"run: every artifact in {run_dir}")
    return run_dir
