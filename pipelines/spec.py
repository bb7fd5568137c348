"""A pipeline as the runners see it: one typed record per pipeline.

Each pipeline module ends with its ``SPEC``, registered by name in
``cnnvsmlp_pipelines.pipelines()``; the runners read only the spec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cnnvsmlp.config import ExperimentConfig, RunSpec

# The data step's task name (``pipelines/dag.py``): a slow step of every pipeline.
DATA_TASK = "prepare-data"


def _scheduled(config: ExperimentConfig, pipeline_root: Path | None = None) -> list[RunSpec]:
    return config.scheduled_runs()


@dataclass(frozen=True)
class PipelineSpec:
    """A registered pipeline.

    Attributes:
        name: the pipeline's one name (``make run PIPELINE=<name>``).
        preset: the config a run starts from when none is named.
        build: returns the ``@dsl.pipeline`` function, its defaults read then.
        arguments: the run parameters for an experiment config.
        comparison_task: the task whose ``comparison`` artifact is the report.
        check_task: the last task, which fails a run with failed trainings.
        failure_summary: one line naming the failed runs of a written comparison.
        planned_runs: the trainings of a run, in the loop's order, before its
            data is prepared (the run's header and estimate).
        as_trained: the config as every training of the run reads it.
        loop_runs: the loop's items as a started run listed them, read from its
            pipeline root; None before they are known.
        summary: the lines printed after a run from its report folder; None:
            the comparison's table.
    """

    name: str
    preset: str
    build: Callable[[], Callable]
    arguments: Callable[[ExperimentConfig], dict]
    comparison_task: str
    check_task: str
    failure_summary: Callable[[Path], str]
    planned_runs: Callable[[ExperimentConfig], list[RunSpec]] = _scheduled
    as_trained: Callable[[ExperimentConfig], ExperimentConfig] = lambda config: config
    loop_runs: Callable[[ExperimentConfig, Path], list[RunSpec] | None] = _scheduled
    summary: Callable[[Path], str] | None = None

    @cached_property
    def pipeline(self) -> Callable:
        """The ``@dsl.pipeline`` function, built on first use (importing reads no config)."""
        return self.build()

    @property
    def slow_steps(self) -> tuple[str, ...]:
        """The tasks besides the trainings that take long enough for a line of their own."""
        return (DATA_TASK, self.comparison_task)
