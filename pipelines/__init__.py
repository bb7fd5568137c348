"""Pipelines, registered by name in :func:`pipelines`: a new one is a module with its ``SPEC``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cnnvsmlp.config import ExperimentConfig, RunSpec
from cnnvsmlp.errors import UserError
from cnnvsmlp.provenance import Provenance


def _scheduled(config: ExperimentConfig, pipeline_root: Path | None = None) -> list[RunSpec]:
    return config.scheduled_runs()


@dataclass(frozen=True)
class PipelineSpec:
    """A registered pipeline: what the runners need to know of it."""

    name: str  # make run PIPELINE=<name>
    preset: str  # the config a run starts from when none is named
    build: Callable[[], Callable]  # the @dsl.pipeline function, its defaults read then
    # The run parameters for a config and the provenance of the run that starts.
    arguments: Callable[[ExperimentConfig, Provenance | None], dict]
    comparison_task: str  # the task whose comparison artifact is the report
    check_task: str  # the last task, which fails a run with failed trainings
    failure_summary: Callable[[Path], str]  # names the failed runs of a written comparison
    # The trainings of a run before its data is prepared (the header and estimate).
    planned_runs: Callable[[ExperimentConfig], list[RunSpec]] = _scheduled
    as_trained: Callable[[ExperimentConfig], ExperimentConfig] = lambda config: config
    # The loop's items as a started run listed them; None before they are known.
    loop_runs: Callable[[ExperimentConfig, Path], list[RunSpec] | None] = _scheduled
    summary: Callable[[Path], str] | None = None  # lines after a run; None: the table

    @cached_property
    def pipeline(self) -> Callable:
        """The ``@dsl.pipeline`` function, built on first use."""
        return self.build()

    @property
    def slow_steps(self) -> tuple[str, ...]:
        """The tasks besides the trainings slow enough for a line of their own."""
        return ("prepare-data", self.comparison_task)


def pipelines() -> dict[str, PipelineSpec]:
    """The registered pipelines by name; imported on first use, so the CLI starts without kfp."""
    from cnnvsmlp_pipelines import compare, data_efficiency

    return {spec.name: spec for spec in (compare.SPEC, data_efficiency.SPEC)}


def get_pipeline(name: str) -> PipelineSpec:
    """The spec of a registered pipeline; UserError for an unknown name."""
    registry = pipelines()
    if name not in registry:
        raise UserError(f"unknown pipeline {name!r}; registered: {', '.join(sorted(registry))}")
    return registry[name]


def pipeline_arguments(
    name: str, config: ExperimentConfig, provenance: Provenance | None = None
) -> dict:
    """The run parameters of a pipeline for an experiment config and a run's provenance."""
    return get_pipeline(name).arguments(config, provenance)


def compile_pipeline(name: str, out_dir: str | Path = "build") -> Path:
    """Compile a registered pipeline to ``<out_dir>/<name>.yaml`` (KFP IR)."""
    from kfp import compiler

    from cnnvsmlp.outputs import write_atomically

    pipeline = get_pipeline(name).pipeline  # an unknown name fails before anything is written
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file, not a folder for compiled pipelines")
    try:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}.yaml"
        write_atomically(path, lambda p: compiler.Compiler().compile(pipeline, str(p)))
    except OSError as err:
        raise UserError(f"{out}: cannot write the compiled pipeline ({err.strerror})") from None
    return path
