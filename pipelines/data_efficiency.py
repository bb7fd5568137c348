"""The data-efficiency study: data once, fan out over (variant, size, repeat), fan in.

Every run trains on a nested, class-stratified subset of the training split and is tested
on the whole test split.
"""

import json
from pathlib import Path

from kfp import dsl

from cnnvsmlp.config import ExperimentConfig, load_config
from cnnvsmlp.efficiency.curves import EfficiencyConfig, plan_runs, settle
from cnnvsmlp.provenance import Provenance
from cnnvsmlp_components import check_efficiency, compare_efficiency, plan_efficiency_runs
from cnnvsmlp_pipelines import PipelineSpec
from cnnvsmlp_pipelines.cluster import cluster_config
from cnnvsmlp_pipelines.placement import fan_out_fan_in

NAME = "data-efficiency"
PRESET = "fashion-mnist-data-efficiency"


def failure_summary(comparison_json) -> str:
    """One line naming the runs that failed for good in a written analysis; empty if none."""
    failures = json.loads(Path(comparison_json).read_text()).get("failures", [])
    if not failures:
        return ""
    failed = [f.get("run", {}).get("run_id", "?") for f in failures]
    runs = f"{len(failed)} run{'s' if len(failed) > 1 else ''}"
    return f"{runs} failed for good: {', '.join(failed)}."


def build():
    """The ``@dsl.pipeline`` function; its parameters' defaults are read now."""
    default_config = cluster_config(load_config(PRESET)).model_dump_json()
    default_efficiency = EfficiencyConfig().model_dump_json()

    @dsl.pipeline(
        name=NAME,
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
            compare=lambda plan, data, results: compare_efficiency(
                config=plan.outputs["config"],
                efficiency=plan.outputs["efficiency"],
                dataset=data.outputs["dataset"],
                results=results,
                provenance_json=provenance_json,
            ),
            check=check_efficiency,
        )

    return pipeline


def arguments(config: ExperimentConfig, provenance: Provenance | None = None) -> dict:
    """Run parameters for an experiment config, with the default sizes and stopping rule."""
    return {
        "config_json": config.model_dump_json(),
        "efficiency_json": EfficiencyConfig().model_dump_json(),
        "repeats": config.repeats,
        "provenance_json": provenance.model_dump_json() if provenance else "",
    }


def as_trained(config: ExperimentConfig) -> ExperimentConfig:
    """The config as every training of the study reads it: early stopping by the study's rule."""
    return settle(config, EfficiencyConfig())


def planned_runs(config: ExperimentConfig) -> list:
    """The trainings of a run, from the training split's size as ``prepare_data`` will cut it."""
    from cnnvsmlp.data.spec import get_spec

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
    from cnnvsmlp.provenance import SYNTHETIC_DATA, SYNTHETIC_LEAD
    from cnnvsmlp.report.efficiency import headline

    analysis = EfficiencyAnalysis.read(Path(report_dir) / "comparison.json")
    lines = [headline(analysis)]
    if analysis.provenance.synthetic:
        lines.append(f"{SYNTHETIC_LEAD} {SYNTHETIC_DATA}")
    return "\n".join(lines)


SPEC = PipelineSpec(
    name=NAME,
    preset=PRESET,
    build=build,
    arguments=arguments,
    comparison_task="compare-efficiency",
    check_task="check-efficiency",
    failure_summary=failure_summary,
    planned_runs=planned_runs,
    as_trained=as_trained,
    loop_runs=loop_runs,
    summary=summary,
)
