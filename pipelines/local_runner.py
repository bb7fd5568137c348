"""Run a registered pipeline here with kfp's local runner, in ``runs/<run id>/``, or resume one.

The folder holds ``pipeline/`` (the pipeline root), ``logs/``, ``config.json``, ``status.json``
and ``report/``; ``runs/latest`` is the newest.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from cnnvsmlp import progress
from cnnvsmlp.config import ExperimentConfig
from cnnvsmlp.outputs import HOST, one_writer
from cnnvsmlp.provenance import Provenance, recorded, stamp, write_beside
from cnnvsmlp.report.model import Comparison
from cnnvsmlp_pipelines import PipelineSpec, get_pipeline, runs
from cnnvsmlp_pipelines.kfp_local import LocalSession, RunInterrupted, describe_failure, plain
from cnnvsmlp_pipelines.runs import LocalRunError


@dataclass(frozen=True)
class Concurrency:
    """Trainings at once, and threads per task (None: TensorFlow's default, one per core)."""

    parallel: int = 2
    threads: int | None = None

    def environment(self) -> dict[str, str]:
        """The variables that set TensorFlow's thread pools in each task's process."""
        names = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
        return {} if self.threads is None else dict.fromkeys(names, str(self.threads))


def docker_answers() -> None:
    """Refuse ``--runner docker`` before any folder is made when no Docker daemon answers."""
    import docker

    try:
        with contextlib.closing(docker.from_env()) as client:
            client.ping()
    except docker.errors.DockerException as err:
        reason = str(err).splitlines()[0][:200] if str(err) else err.__class__.__name__
        raise LocalRunError(
            f"--runner docker: no Docker daemon answers ({reason}); start Docker, "
            "or run the tasks here with --runner subprocess"
        ) from None


def docker_runner(config: ExperimentConfig, pipeline_root: Path):
    """The DockerRunner for the images ``make images`` built, and the config it runs.

    Tasks see only the pipeline root and a local ``resume_uri`` (writable), and the IDX folder
    read-only at the same path, on a read-only root with a private ``/tmp``.
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
    return local.DockerRunner(
        read_only=True,
        tmpfs={"/tmp": "rw,size=1g"},
        mounts=mounts,
        environment={progress.ENV: str(pipeline_root.resolve() / runs.PROGRESS_FILE)},
    ), config.model_copy(update={"source": source})


def local_copy(pipeline, parallel: int = 2):
    """A copy of a pipeline to run here: no retries, ``parallel`` loop items at once."""
    local = copy.deepcopy(pipeline)
    spec = local.pipeline_spec
    for dag in [spec.root.dag] + [c.dag for c in spec.components.values() if c.HasField("dag")]:
        for task in dag.tasks.values():
            task.ClearField("retry_policy")
            if task.HasField("parameter_iterator") or task.HasField("artifact_iterator"):
                task.iterator_policy.parallelism_limit = parallel
    return local


def _keep_partial(pipeline_root: Path, report: Path, spec: PipelineSpec) -> str:
    """Copy a partial comparison to ``report`` and say what failed; empty when there is none."""
    try:
        found = find_comparison(pipeline_root, spec.comparison_task)
        status = json.loads((found / "comparison.json").read_text()).get("status", "complete")
    except (LocalRunError, OSError, ValueError, AttributeError):
        return ""
    if status == "complete":
        return ""
    summary = spec.failure_summary(found / "comparison.json")
    _replace_tree(found, report)
    return f"{summary} The {status} comparison is in {report}/report.md"


def _replace_tree(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target``, replacing an earlier attempt's copy."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)


def find_comparison(pipeline_root: Path, task: str) -> Path:
    """The comparison folder the run's compare task wrote."""
    found = sorted(pipeline_root.glob(f"*/{task}/comparison"))
    if not found or not (found[-1] / "comparison.json").is_file():
        raise LocalRunError(f"{pipeline_root}: the run wrote no comparison")
    return found[-1]


def local_config(
    config: ExperimentConfig, runs_dir: Path, run_id: str, cache: bool = True
) -> ExperimentConfig:
    """The config as a local run trains it: state in ``<runs_dir>/.trainings``, reused if cached."""
    update = {}
    if not config.resume_uri:
        update["resume_uri"] = str(runs_dir.resolve() / ".trainings")
    if not config.resume_scope:
        update["reuse_trainings"] = cache
        if not cache:
            update["resume_scope"] = run_id
    return config.model_validate({**config.model_dump(), **update}) if update else config


def run_local(
    name: str,
    config: ExperimentConfig | None,
    runs_dir: str | Path = "runs",
    quiet: bool = False,
    concurrency: Concurrency = Concurrency(),
    runner: str = "subprocess",
    verbose: bool = False,
    resume: str | None = None,
    cache: bool = True,
) -> Path:
    """Run a pipeline (or go on with run ``resume``) and collect its comparison in ``report/``."""
    runs_dir = Path(runs_dir)
    if runner == "docker":
        docker_answers()
    if resume:
        run_dir, config, pipeline = runs.resume_dir(runs_dir, resume)
        spec, provenance = get_pipeline(pipeline or name), recorded(run_dir / "config.json")
    else:
        spec = get_pipeline(name)
        run_dir = runs.new_run_dir(runs_dir, config)
        config = local_config(config, runs_dir, run_dir.name, cache)
        provenance = stamp(run_dir.name, "local", concurrency.parallel, concurrency.threads)
    with one_writer(run_dir / runs.LOCK_FILE, functools.partial(runs.busy, run_dir)):
        pipeline_root = (run_dir / "pipeline").resolve()
        if runner == "docker":
            task_runner, config = docker_runner(config, pipeline_root)
        else:
            from kfp import local

            task_runner = local.SubprocessRunner(use_venv=False)
        if not resume:
            write_beside(run_dir / "config.json", config, provenance)
        runs.write_status(
            run_dir, "running", pid=os.getpid(), host=HOST, pipeline=spec.name, runner=runner
        )
        runs.point_latest(run_dir)
        stream = io.StringIO() if quiet else sys.stdout
        run = _LocalRun(spec, config, run_dir, pipeline_root, stream, verbose, provenance)
        start = time.perf_counter()
        run.execute(resume is not None, concurrency, task_runner)
        run.finish((time.perf_counter() - start) / 60)
        return run_dir


@dataclass
class _LocalRun:
    """One local run of a pipeline in its folder: its screen, its session, its report."""

    spec: PipelineSpec
    config: ExperimentConfig
    run_dir: Path
    pipeline_root: Path
    stream: object
    verbose: bool
    provenance: Provenance | None = None

    def execute(self, resumed: bool, concurrency: Concurrency, task_runner) -> None:
        """Print the header, run the tasks; the status and a one-line error when the run fails."""
        planned, trained = self.spec.planned_runs(self.config), self.spec.as_trained(self.config)
        lines = runs.header(self.spec.name, trained, self.run_dir, resumed, planned)
        print(*lines, sep="\n", file=self.stream, flush=True)
        epoch_s = runs.epoch_seconds(self.config, planned)
        estimate = progress.Estimate(epoch_s, runs.expected_epochs(trained), runs.PER_TRAINING_S)
        screen = progress.display(self.stream, estimate, live=not self.verbose)
        events = self.pipeline_root / runs.PROGRESS_FILE
        self.pipeline_root.mkdir(parents=True, exist_ok=True)
        events.unlink(missing_ok=True)

        def task_ended(task) -> None:  # of the tasks besides the trainings, the slow ones
            if task.task in self.spec.slow_steps and task.returncode == 0:
                screen.message(f"{task.label}  done in {progress.clock(task.seconds or 0)}")

        session = LocalSession(
            self.run_dir / "logs",
            job_id=self.run_dir.name,
            environment={**concurrency.environment(), progress.ENV: str(events)},
            verbose=self.verbose,
            stream=self.stream,
            on_task_end=task_ended,
        )
        pipeline = local_copy(self.spec.pipeline, concurrency.parallel)
        try:
            with progress.follow(events, screen):
                session.run(
                    pipeline,
                    self.spec.arguments(self.config, self.provenance),
                    task_runner,
                    self.pipeline_root,
                )
        except RunInterrupted as stop:
            runs.write_status(self.run_dir, "interrupted", signal=stop.args[0])
            raise runs.LocalRunInterrupted(
                f"run {self.run_dir.name} interrupted by {stop.args[0]}; its folder is "
                f"{self.run_dir}; continue it with: make run RESUME={self.run_dir.name}",
                stop.signum,
            ) from None
        except RuntimeError as err:
            self.failed(err, session.failed())
        except Exception as err:
            runs.write_status(self.run_dir, "failed", error=f"{err.__class__.__name__}: {err}")
            raise
        finally:
            screen.close()

    def failed(self, err: RuntimeError, failed_task) -> NoReturn:
        """Mark the run partial or failed, and raise the line that says why."""
        partial = _keep_partial(self.pipeline_root, self.run_dir / "report", self.spec)
        if partial:  # the last step (its check task) marked the run failed: name it
            task = re.search(r"Inner task failed: '([\w-]+)'", plain(str(err)))
            why = f"{task.group(1) if task else self.spec.check_task}: {partial}"
        elif failed_task:
            why = failed_task.explain()
        else:
            loop = self.spec.loop_runs(self.config, self.pipeline_root)
            why = describe_failure(str(err), self.config, loop)
        runs.write_status(self.run_dir, "partial" if partial else "failed", error=why)
        raise LocalRunError(f"run {self.run_dir.name} failed: {why}") from None

    def finish(self, minutes: float) -> None:
        """Copy the comparison to ``report/``, mark the run complete, print the closing lines."""
        report = self.run_dir / "report"
        _replace_tree(find_comparison(self.pipeline_root, self.spec.comparison_task), report)
        runs.write_status(self.run_dir, "complete")
        read = self.spec.summary or (lambda report: Comparison.read(report / "comparison.json"))
        lines = runs.closing(read(report), self.run_dir, minutes)
        print(*lines, sep="\n", file=self.stream, flush=True)
