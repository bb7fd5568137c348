"""The DAG every pipeline shares: data once, train and test per run, compare, check.

A run that fails for good leaves a failure record in place of its result, so the
others are compared; the check step fails the pipeline run after the comparison is stored.
"""

from __future__ import annotations

from collections.abc import Callable

from kfp import dsl

from cnnvsmlp_components import evaluate_model, prepare_data, train_model
from cnnvsmlp_pipelines.placement import cpu_task, gpu_task


def fan_out_fan_in(
    config_json: str,
    plan: Callable[[dsl.PipelineTask], dsl.PipelineTask],
    compare: Callable[[dsl.PipelineTask, dsl.PipelineTask, dsl.Collected], dsl.PipelineTask],
    check: Callable[..., dsl.PipelineTask],
) -> None:
    """Add the shared DAG: ``plan`` lists the runs and settles ``config``, ``check`` the result."""
    data = cpu_task(prepare_data(config_json=config_json), memory="8Gi")
    data.set_caching_options(True)
    planned = cpu_task(plan(data), memory="1Gi")
    planned.set_caching_options(False)

    with dsl.ParallelFor(planned.outputs["Output"]) as run_json:
        # Training is never cached: a scheduled rerun must retrain.
        train = gpu_task(
            train_model(
                config=planned.outputs["config"],
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

    compared = cpu_task(
        compare(planned, data, dsl.Collected(evaluate.outputs["result"])), memory="8Gi"
    )
    compared.set_caching_options(False)
    # Last, so the comparison is stored before a partial run is marked failed.
    checked = cpu_task(check(comparison=compared.outputs["comparison"]), memory="1Gi")
    checked.set_caching_options(False)
