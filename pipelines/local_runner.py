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


def docker_runner(config: ExperimentConfig, pipeline_root: Path):
    """The DockerRunner for the images ``make images`` built, and the config it runs.

    Each task runs as the image's own (non-root) user on a read-only root file
    system with a private ``/tmp``; the only host paths it sees are the pipeline
    root and a local ``resume_uri`` (read-write, made writable for that user), and
    the data set's IDX folder, mounted read-only at the same path and named in the
    config as ``idx_dir``.

    Returns:
        ``(runner, config)``.

    Raises:
        LocalRunError: no local IDX folder to mount.
    """
    import docker.types
    from kfp import local

    from cnnvsmlp.data import get_spec

    idx_dir = config.source.idx_dir or get_spec(config.dataset).default_idx_dir
    if not idx_dir or not Path(idx_dir).is_dir():
        raise LocalRunError(
            f"runner docker: no local IDX folder for {config.dataset} "
            f"({idx_dir or 'none configured'}); set idx_dir=<folder with the IDX files>"
        )
    idx_dir = str(Path(idx_dir).resolve())
    source = config.source.model_copy(update={"kind": "idx", "idx_dir": idx_dir})
    mounts = [docker.types.Mount(idx_dir, idx_dir, type="bind", read_only=True)]
    writable = [pipeline_root]
    if config.resume_uri and "://" not in config.resume_uri:
        resume = Path(config.resume_uri).resolve()
        writable.append(resume)
        mounts.append(docker.types.Mount(str(resume), str(resume), type="bind"))
        config = config.model_copy(update={"resume_uri": str(resume)})
    for folder in writable:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o777)
    runner = local.DockerRunner(read_only=True, tmpfs={"/tmp": "rw,size=1g"}, mounts=mounts)
    return runner, config.model_copy(update={"source": source})


def run_local(
    name: str,
    config: ExperimentConfig,
    runs_dir: str | Path = "runs",
    quiet: bool = False,
    runner: str = "subprocess",
) -> Path:
    """Run a pipeline locally and collect its comparison in ``runs/<run id>/report``.

    Args:
        name: a registered pipeline.
        config: the validated experiment config.
        runs_dir: parent of the run folders.
        quiet: do not print the table and paths at the end.
        runner: ``subprocess`` runs every task in this environment; ``docker`` in
            the image the pipeline names for it (see :func:`docker_runner`).

    Returns:
        The run's folder.

    Raises:
        LocalRunError: a task failed; the message names it.
    """
    from kfp import local

    module = get_pipeline(name)
    run_dir = new_run_dir(Path(runs_dir), config)
    pipeline_root = run_dir / "pipeline"
    if runner == "docker":
        task_runner, config = docker_runner(config, pipeline_root)
    else:
        task_runner = local.SubprocessRunner(use_venv=False)
    (run_dir / "config.json").write_text(config.model_dump_json(indent=2) + "\n")
    local.init(
        runner=task_runner,
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
