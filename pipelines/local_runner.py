"""Run a registered pipeline on this machine with kfp's local runner.

Each run gets its own folder ``runs/<run id>/``: the local pipeline root with
every task's artifacts under ``pipeline/``, and the comparison (report,
JSON, plots) copied to ``report/``. A run never overwrites an earlier one.

The placement of ``pipelines/placement.py`` is for the cluster: kfp's local
runner ignores resources, node selectors and tolerations, but it would honour
the retry policies, waiting minutes before it reports a mistake that fails
every attempt the same way. Locally a pipeline runs without them.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import io
import os
import re
import shutil
import sys
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cnnvsmlp.config import ExperimentConfig
from cnnvsmlp.errors import UserError
from cnnvsmlp.outputs import local_folder
from cnnvsmlp_pipelines import get_pipeline


class LocalRunError(UserError):
    """The local pipeline run failed or produced no comparison."""


def new_run_dir(runs_dir: Path, config: ExperimentConfig) -> Path:
    """Create ``runs_dir/<UTC timestamp>-<experiment>``, unique even within a second.

    Raises:
        LocalRunError: ``runs_dir`` is a file or cannot be written.
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    runs_dir = local_folder(runs_dir, "runs")  # a dangling link is named as one
    if runs_dir.exists() and not runs_dir.is_dir():
        raise LocalRunError(f"{runs_dir}: is a file, not a folder for runs")
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
        except OSError as err:
            raise LocalRunError(
                f"{runs_dir}: cannot create a run folder ({err.strerror})"
            ) from None
    raise LocalRunError(f"{runs_dir}: cannot create a new run folder")


@dataclass(frozen=True)
class Concurrency:
    """How the local runner shares the machine: trainings at once, and threads per task.

    ``threads`` None leaves TensorFlow's default (one per core for each task).
    """

    parallel: int = 2
    threads: int | None = None

    def environment(self) -> dict[str, str]:
        """The variables that set TensorFlow's thread pools in each task's process."""
        if self.threads is None:
            return {}
        n = str(self.threads)
        return {"TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": n}


# Measured by ``make bench`` (README, Performance): the fastest policy on 2 cores.
DEFAULT_CONCURRENCY = Concurrency(parallel=2, threads=None)


def local_copy(pipeline, parallel: int = 2):
    """A copy of a compiled pipeline to run here: no retries, ``parallel`` loop items at once.

    The original keeps its cluster policy.
    """
    local = copy.deepcopy(pipeline)
    spec = local.pipeline_spec
    dags = [spec.root.dag] + [c.dag for c in spec.components.values() if c.HasField("dag")]
    for dag in dags:
        for task in dag.tasks.values():
            task.ClearField("retry_policy")
            if task.HasField("parameter_iterator") or task.HasField("artifact_iterator"):
                task.iterator_policy.parallelism_limit = parallel
    return local


class _Tail(io.TextIOBase):
    """Passes writes through to a stream and keeps the last lines (the tasks' logs)."""

    def __init__(self, stream) -> None:
        self.stream, self.lines, self._part = stream, deque(maxlen=400), ""

    def write(self, text: str) -> int:  # noqa: D102
        self.stream.write(text)
        *done, self._part = (self._part + text).split("\n")
        self.lines.extend(done)
        return len(text)

    def flush(self) -> None:  # noqa: D102
        self.stream.flush()


# The last line of a Python traceback: ``package.module.SomeError: what happened``.
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Diverged): .+")


def _plain(message: str) -> str:
    """A message of kfp's without the colours it gives task names."""
    return re.sub(r"\x1b\[[0-9;]*m", "", message)


def describe_failure(message: str, config: ExperimentConfig, log: list[str] = ()) -> str:
    """Name the run behind a failed loop iteration in kfp's failure message, and its cause."""
    message = _plain(message)
    causes = [line.strip() for line in log if EXCEPTION_LINE.match(line.strip())]
    cause = f": {causes[-1]}" if causes else "; its log above ends with the cause"
    found = re.search(r"'([\w-]+)' inside 'for-loop-\d+-iteration-(\d+)'", message)
    runs = config.scheduled_runs()
    if found and int(found.group(2)) < len(runs):
        run = runs[int(found.group(2))]
        return (
            f"task '{found.group(1)}' of {run.run_id} (variant {run.variant}, repeat {run.repeat}, "
            f"seed {run.seed}) failed{cause}"
        )
    return message + cause


def _keep_partial(pipeline_root: Path, report: Path) -> str:
    """Copy a partial comparison to ``report`` and say what failed; empty when there is none."""
    from cnnvsmlp.report.model import Comparison
    from cnnvsmlp.report.status import failure_summary

    try:
        found = find_comparison(pipeline_root)
    except LocalRunError:
        return ""
    comparison = Comparison.read(found / "comparison.json")
    if comparison.status == "complete":
        return ""
    shutil.copytree(found, report)
    return (
        f"{failure_summary(comparison)} The {comparison.status} comparison is in {report}/report.md"
    )


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

    from cnnvsmlp.data.spec import get_spec

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
    concurrency: Concurrency = DEFAULT_CONCURRENCY,
    runner: str = "subprocess",
) -> Path:
    """Run a pipeline locally and collect its comparison in ``runs/<run id>/report``.

    Args:
        name: a registered pipeline.
        config: the validated experiment config.
        runs_dir: parent of the run folders.
        quiet: do not print the table and paths at the end.
        concurrency: trainings at once and threads per task.
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
    saved = {k: os.environ.get(k) for k in concurrency.environment()}
    os.environ.update(concurrency.environment())  # each task's process inherits them
    tail = _Tail(sys.stdout)
    print_ = builtins.print  # kfp's local runner swaps print per task, from two threads
    report = run_dir / "report"
    try:
        with contextlib.redirect_stdout(tail):
            local_copy(module.pipeline, concurrency.parallel)(**module.arguments(config))
    except RuntimeError as err:
        partial = _keep_partial(pipeline_root, report)
        if partial:  # the last step, check-runs, marked the run failed: name it
            task = re.search(r"Inner task failed: '([\w-]+)'", _plain(str(err)))
            partial = f"{task.group(1) if task else 'check-runs'}: {partial}"
        why = partial or describe_failure(str(err), config, list(tail.lines))
        raise LocalRunError(f"run {run_dir.name} failed: {why}") from None
    finally:
        builtins.print = print_
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    shutil.copytree(find_comparison(pipeline_root), report)
    minutes = (time.perf_counter() - start) / 60
    if not quiet:
        from cnnvsmlp.report.model import Comparison
        from cnnvsmlp.report.render import terminal_table

        comparison = Comparison.read(report / "comparison.json")
        print()
        print(terminal_table(comparison))
        print(f"\nrun: finished in {minutes:.1f} min; report in {report}/report.md")
        print(f"run: every artifact in {run_dir}")
    return run_dir
