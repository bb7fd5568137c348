"""The comparison: data once, fan out over (variant, repeat), fan in to one report."""

from kfp import dsl

from cnnvsmlp.config import DEFAULT_PRESET, ExperimentConfig, load_config
from cnnvsmlp.provenance import Provenance
from cnnvsmlp.report.model import Comparison, failure_summary
from cnnvsmlp_components import check_runs, compare_runs, plan_runs
from cnnvsmlp_pipelines import PipelineSpec
from cnnvsmlp_pipelines.cluster import cluster_config
from cnnvsmlp_pipelines.placement import fan_out_fan_in

NAME = "compare"


def build():
    """The ``@dsl.pipeline`` function; its ``config_json`` default is read now."""
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


def arguments(config: ExperimentConfig, provenance: Provenance | None = None) -> dict:
    """Run parameters for an experiment config; its provenance goes apart, to the report."""
    return {
        "config_json": config.model_dump_json(),
        "repeats": config.repeats,
        "provenance_json": provenance.model_dump_json() if provenance else "",
    }


SPEC = PipelineSpec(
    name=NAME,
    preset=DEFAULT_PRESET,
    build=build,
    arguments=arguments,
    comparison_task="compare-runs",
    check_task="check-runs",
    failure_summary=lambda comparison_json: failure_summary(Comparison.read(comparison_json)),
)
