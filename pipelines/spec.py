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
    """A registered pipeline: what the runners need to know of it."""

    name: str  # make run PIPELINE=<name>
    preset: str  # the config a run starts from when none is named
    build: Callable[[], Callable]  # the @dsl.pipeline function, its defaults read then
    arguments: Callable[[ExperimentConfig], dict]  # the run parameters for a config
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
