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
from cnnvsmlp_components import (
    check_runs,
    compare_runs,
    evaluate_model,
    plan_runs,
    prepare_data,
    train_model,
)
from cnnvsmlp_pipelines.cluster import cluster_config
from cnnvsmlp_pipelines.placement import cpu_task, gpu_task

NAME = "compare"
# The comparison task, whose artifact is the report, and the last step that fails a partial run.
COMPARISON_TASK, CHECK_TASK = "compare-runs", "check-runs"


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
        data = cpu_task(prepare_data(config_json=config_json), memory="8Gi")
        data.set_caching_options(True)
        plan = cpu_task(plan_runs(config_json=config_json, repeats=repeats), memory="1Gi")
        plan.set_caching_options(False)

        with dsl.ParallelFor(plan.outputs["Output"]) as run_json:
            # Training is never cached: a scheduled rerun must retrain.
            train = gpu_task(
                train_model(
                    config=plan.outputs["config"],
                    run_json=run_json,
                    job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                    dataset=data.outputs["dataset"],
                )
            )
            train.set_caching_options(False)
            evaluate = cpu_task(
                evaluate_model(dataset=data.outputs["dataset"], model=train.outputs["model"]),
                memory="8Gi",
            )
            evaluate.set_caching_options(False)

        compare = cpu_task(
            compare_runs(
                config=plan.outputs["config"],
                dataset=data.outputs["dataset"],
                results=dsl.Collected(evaluate.outputs["result"]),
                provenance_json=provenance_json,
                job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            ),
            memory="8Gi",
        )
        compare.set_caching_options(False)
        # Last, so the comparison is stored before a partial run is marked failed.
        check = cpu_task(check_runs(comparison=compare.outputs["comparison"]), memory="1Gi")
        check.set_caching_options(False)

    return pipeline


def __getattr__(name: str):
    """``pipeline`` is built on first use, so importing this module reads no config."""
    if name == "pipeline":
        globals()["pipeline"] = built = build()
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
