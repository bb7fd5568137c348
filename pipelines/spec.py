"""A pipeline as the runners see it: each pipeline module ends with its ``SPEC``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cnnvsmlp.config import ExperimentConfig, RunSpec


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
        planned_runs: the trainings of a run before its data is prepared.
        as_trained: the config as every training of the run reads it.
        loop_runs: the loop's items as a started run listed them; None before they are known.
        summary: the lines printed after a run from its report folder; None: the table.
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
        """The ``@dsl.pipeline`` function, built on first use."""
        return self.build()

    @property
    def slow_steps(self) -> tuple[str, ...]:
        """The tasks besides the trainings slow enough for a line of their own."""
        return ("prepare-data", self.comparison_task)
