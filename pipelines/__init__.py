"""Pipelines by name in :data:`PIPELINES`, each built on first use so the CLI starts without kfp."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cnnvsmlp.config import DEFAULT_PRESET, ExperimentConfig, RunSpec, load_config
from cnnvsmlp.data.spec import get_spec
from cnnvsmlp.efficiency.curves import EfficiencyConfig, plan_runs, settle
from cnnvsmlp.errors import UserError
from cnnvsmlp.outputs import write_atomically
from cnnvsmlp.provenance import SYNTHETIC_DATA, SYNTHETIC_LEAD, Provenance
from cnnvsmlp.report.model import Comparison, failure_summary

EFFICIENCY_PRESET = "fashion-mnist-data-efficiency"


def run_arguments(config: ExperimentConfig, provenance: Provenance | None = None, **extra) -> dict:
    """Run parameters for an experiment config; its provenance goes apart, to the report."""
    return {
        "config_json": config.model_dump_json(),
        **extra,
        "repeats": config.repeats,
        "provenance_json": provenance.model_dump_json() if provenance else "",
    }


@dataclass(frozen=True)
class PipelineSpec:
    """A registered pipeline: what the runners need to know of it."""

    name: str  # make run PIPELINE=<name>
    preset: str  # the config a run starts from when none is named
    build: Callable[[], Callable]  # the @dsl.pipeline function, its defaults read then
    comparison_task: str  # the task whose comparison artifact is the report
    check_task: str  # the last task, which fails a run with failed trainings
    failure_summary: Callable[[Path], str]  # names the failed runs of a written comparison
    # The run parameters for a config and the provenance of the run that starts.
    arguments: Callable[[ExperimentConfig, Provenance | None], dict] = run_arguments
    # The trainings of a run before its data is prepared (the header and estimate).
    planned_runs: Callable[[ExperimentConfig], list[RunSpec]] = ExperimentConfig.scheduled_runs
    as_trained: Callable[[ExperimentConfig], ExperimentConfig] = lambda config: config
    # The loop's items as a started run listed them; None before they are known.
    loop_runs: Callable[[ExperimentConfig, Path], list[RunSpec] | None] = lambda config, _: (
        config.scheduled_runs()
    )
    summary: Callable[[Path], str] | None = None  # lines after a run; None: the table

    @cached_property
    def pipeline(self) -> Callable:
        """The ``@dsl.pipeline`` function, built on first use."""
        return self.build()

    @property
    def slow_steps(self) -> tuple[str, ...]:
        """The tasks besides the trainings slow enough for a line of their own."""
        return ("prepare-data", self.comparison_task)


def get_pipeline(name: str) -> PipelineSpec:
    """The spec of a registered pipeline; UserError for an unknown name."""
    if name not in PIPELINES:
        raise UserError(f"unknown pipeline {name!r}; registered: {', '.join(sorted(PIPELINES))}")
    return PIPELINES[name]


def compile_pipeline(name: str, out_dir: str | Path = "build") -> Path:
    """Compile a registered pipeline to ``<out_dir>/<name>.yaml`` (KFP IR)."""
    from kfp import compiler

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


def build_compare():
    """The comparison's ``@dsl.pipeline`` function; its ``config_json`` default is read now."""
    from kfp import dsl

    from cnnvsmlp_components import check_runs, compare_runs
    from cnnvsmlp_components import plan_runs as plan_compare_runs
    from cnnvsmlp_pipelines.cluster import cluster_config
    from cnnvsmlp_pipelines.placement import fan_out_fan_in

    default_config = cluster_config(load_config(DEFAULT_PRESET)).model_dump_json()

    @dsl.pipeline(
        name="compare",
        description="CNN versus MLP: train every variant with repeats, test, and compare them.",
    )
    def pipeline(config_json: str = default_config, repeats: int = 0, provenance_json: str = ""):
        """Train and test every variant of an experiment and compare them.

        Args:
            config_json: the experiment config as JSON (a preset, with overrides).
                The default is the Fashion-MNIST preset as a cluster runs it, its
                training state mirrored to the bucket of the cluster settings.
            repeats: runs of each variant, with seeds ``seed`` to ``seed + repeats - 1``,
                in place of the config's ``repeats``, so it can be changed alone in the
                KFP UI; 0 keeps the config's.
            provenance_json: what started the run (``cnnvsmlp.provenance.stamp``), for
                the report only: apart from ``config_json``, so the data step's cache
                key stays the same from run to run.
        """
        fan_out_fan_in(
            config_json,
            plan=lambda data: plan_compare_runs(config_json=config_json, repeats=repeats),
            compare=lambda plan, **inputs: compare_runs(**inputs),
            check=check_runs,
            provenance_json=provenance_json,
        )

    return pipeline


def build_efficiency():
    """The study's ``@dsl.pipeline`` function; its parameters' defaults are read now."""
    from kfp import dsl

    from cnnvsmlp_components import check_efficiency, compare_efficiency, plan_efficiency_runs
    from cnnvsmlp_pipelines.cluster import cluster_config
    from cnnvsmlp_pipelines.placement import fan_out_fan_in

    default_config = cluster_config(load_config(EFFICIENCY_PRESET)).model_dump_json()
    default_efficiency = EfficiencyConfig().model_dump_json()

    @dsl.pipeline(
        name="data-efficiency",
        description="CNN versus MLP as the training set grows: nested subsets, repeats, "
        "learning curves.",
    )
    def pipeline(
        config_json: str = default_config,
        efficiency_json: str = default_efficiency,
        repeats: int = 0,
        provenance_json: str = "",
    ):
        """Train every variant on every training-set size, test, and compare them.

        Args:
            config_json: the experiment config as JSON: data set, variants (the
                first is the baseline), recipe, ``train.epochs`` as the cap on epochs.
                The default is the fashion-mnist-data-efficiency preset as a
                cluster runs it.
            efficiency_json: the training-set sizes and the stopping rule
                (``EfficiencyConfig`` as JSON).
            repeats: runs of each variant and size, in place of the config's; 0
                keeps the config's.
            provenance_json: what started the run (``cnnvsmlp.provenance.stamp``), for
                the report only, apart from ``config_json``.
        """
        fan_out_fan_in(
            config_json,
            plan=lambda data: plan_efficiency_runs(
                config_json=config_json,
                efficiency_json=efficiency_json,
                repeats=repeats,
                dataset=data.outputs["dataset"],
            ),
            compare=lambda plan, **inputs: compare_efficiency(
                efficiency=plan.outputs["efficiency"], **inputs
            ),
            check=check_efficiency,
            provenance_json=provenance_json,
        )

    return pipeline


def efficiency_failures(comparison_json) -> str:
    """One line naming the runs that failed for good in a written analysis; empty if none."""
    failures = json.loads(Path(comparison_json).read_text()).get("failures", [])
    failed = [f.get("run", {}).get("run_id", "?") for f in failures]
    runs = f"{len(failed)} run{'s' if len(failed) > 1 else ''}"
    return f"{runs} failed for good: {', '.join(failed)}." if failed else ""


def planned_runs(config: ExperimentConfig) -> list:
    """The trainings of a run, from the training split's size as ``prepare_data`` will cut it."""
    classes = len(get_spec(config.dataset).classes)
    return plan_runs(config, EfficiencyConfig(), config.training_images(), classes)


def loop_runs(config: ExperimentConfig, pipeline_root) -> list | None:
    """The loop's items as ``plan_efficiency_runs`` listed them: None before the data."""
    found = sorted(Path(pipeline_root).glob("*/prepare-data/dataset/metadata.json"))
    if not found:
        return None
    meta = json.loads(found[-1].read_text())
    return plan_runs(config, EfficiencyConfig(), meta["counts"]["train"], len(meta["classes"]))


def summary(report_dir) -> str:
    """The lines the local runner prints after a run: the report's headline, in points."""
    from cnnvsmlp.efficiency.analysis import EfficiencyAnalysis
    from cnnvsmlp.report.efficiency import headline

    analysis = EfficiencyAnalysis.read(Path(report_dir) / "comparison.json")
    synthetic = [f"{SYNTHETIC_LEAD} {SYNTHETIC_DATA}"] if analysis.provenance.synthetic else []
    return "\n".join([headline(analysis), *synthetic])


COMPARE = PipelineSpec(
    name="compare",
    preset=DEFAULT_PRESET,
    build=build_compare,
    comparison_task="compare-runs",
    check_task="check-runs",
    failure_summary=lambda path: failure_summary(Comparison.read(path)),
)
DATA_EFFICIENCY = PipelineSpec(
    name="data-efficiency",
    preset=EFFICIENCY_PRESET,
    build=build_efficiency,
    arguments=lambda config, provenance=None: run_arguments(
        config, provenance, efficiency_json=EfficiencyConfig().model_dump_json()
    ),
    comparison_task="compare-efficiency",
    check_task="check-efficiency",
    failure_summary=efficiency_failures,
    planned_runs=planned_runs,
    as_trained=lambda config: settle(config, EfficiencyConfig()),  # the study's early stopping
    loop_runs=loop_runs,
    summary=summary,
)
PIPELINES = {spec.name: spec for spec in (COMPARE, DATA_EFFICIENCY)}  # by name
