"""The comparison: data once, fan out over (variant, repeat), fan in to one report.

prepare_data -> plan_runs -> ParallelFor[run]: train_model -> evaluate_model
             -> compare_runs(Collected(results)) -> check_runs

``plan_runs`` settles the config (``repeats``, when given, in place of the
config's) and hands it to every later task as one artifact.

A run that fails for good (bad input, a diverged loss, out of memory) leaves
a failure record in place of its result instead of failing its task: a
failed loop iteration would leave ``dsl.Collected`` nothing to collect, on
the cluster and in kfp's local runner alike, and ``ignore_upstream_failure``
cannot bring the other iterations' results back. ``compare_runs`` compares
the runs that finished and lists the failed ones; ``check_runs`` then fails
the pipeline run, after the comparison's artifacts are stored.
"""

from kfp import dsl

from cnnvsmlp.config import DEFAULT_PRESET, ExperimentConfig, load_config
from cnnvsmlp_components import check_runs, compare_runs, plan_runs
from cnnvsmlp_pipelines.cluster import cluster_config
from cnnvsmlp_pipelines.dag import fan_out_fan_in
from cnnvsmlp_pipelines.spec import PipelineSpec

NAME = "compare"


def failure_summary(comparison_json) -> str:
    """One line naming the runs that failed for good in a written comparison; empty if none."""
    from cnnvsmlp.report.model import Comparison
    from cnnvsmlp.report.status import failure_summary as summary

    return summary(Comparison.read(comparison_json))


def build():
    """The pipeline; its ``config_json`` default is read from the preset and settings now.

    Returns:
        The ``@dsl.pipeline`` function: what the runners compile and run.
    """
    default_config = cluster_config(load_config(DEFAULT_PRESET)).model_dump_json()

    @dsl.pipeline(
        name=NAME,
        description="CNN versus MLP: train every variant with repeats, test, and compare them.",
    )
    def pipeline(
        config_json: str = default_config,
        repeats: int = 0,
        provenance_json: str = "",
    ):
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
            plan=lambda data: plan_runs(config_json=config_json, repeats=repeats),
            compare=lambda plan, data, results: compare_runs(
                config=plan.outputs["config"],
                dataset=data.outputs["dataset"],
                results=results,
                provenance_json=provenance_json,
                job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            ),
            check=check_runs,
        )

    return pipeline


def arguments(config: ExperimentConfig) -> dict:
    """Run parameters for an experiment config; its provenance goes apart, to the report."""
    provenance = config.provenance.model_dump_json() if config.provenance else ""
    return {
        "config_json": config.model_copy(update={"provenance": None}).model_dump_json(),
        "repeats": config.repeats,
        "provenance_json": provenance,
    }


def planned_runs(config: ExperimentConfig) -> list:
    """The trainings a run of ``config`` holds, in the loop's order (its header and estimate)."""
    return config.scheduled_runs()


def as_trained(config: ExperimentConfig) -> ExperimentConfig:
    """The config as every training of the run reads it: ``config`` itself."""
    return config


def loop_runs(config: ExperimentConfig, pipeline_root) -> list:
    """The loop's items in order: the config's runs, known before the data."""
    return config.scheduled_runs()


SPEC = PipelineSpec(
    name=NAME,
    preset=DEFAULT_PRESET,
    build=build,
    arguments=arguments,
    planned_runs=planned_runs,
    as_trained=as_trained,
    loop_runs=loop_runs,
    comparison_task="compare-runs",
    check_task="check-runs",
    failure_summary=failure_summary,
)
