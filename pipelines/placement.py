"""The DAG every pipeline shares, and where its tasks run: resources, node pools, retries, user.

Why the retries and security context are so: docs/cluster.md (steps 5, 7, 10); spent retries
are retried with the run (``POST /apis/v2beta1/runs/{run_id}:retry``,
``kfp_server_api.RunServiceApi.run_service_retry_run``).
"""

from __future__ import annotations

from collections.abc import Callable

from kfp import dsl, kubernetes

from cnnvsmlp_components import evaluate_model, prepare_data, train_model
from cnnvsmlp_pipelines.images import image_ref
from cnnvsmlp_pipelines.settings import cluster_settings

TRAIN_RETRIES = 3
TRAIN_RETRY_BACKOFF = "60s"
TRAIN_RETRY_WINDOW = "86400s"  # Argo's backoff.maxDuration: one window for all attempts
# The user the images create and run as (images/*.Dockerfile: USER 10001).
IMAGE_UID = 10001


def in_image(task: dsl.PipelineTask, kind: str) -> dsl.PipelineTask:
    """Run the task in the project's ``kind`` image (``cpu`` or ``gpu``), never as root."""
    task.container_spec.image = image_ref(kind)
    return kubernetes.set_security_context(task, run_as_user=IMAGE_UID, run_as_non_root=True)


def cpu_task(task: dsl.PipelineTask, cpu: str = "1", memory: str = "4Gi") -> dsl.PipelineTask:
    """Request CPU and memory for a task that needs no accelerator (the CPU pool)."""
    return in_image(task.set_cpu_request(cpu).set_memory_request(memory), "cpu")


def gpu_task(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """One GPU on the GPU node pool, with retries and backoff."""
    settings = cluster_settings()
    in_image(task.set_cpu_request("4").set_memory_request("16Gi"), "gpu")
    task.set_accelerator_type(settings.gpu_resource).set_accelerator_limit(1)
    kubernetes.add_node_selector(
        task,
        label_key=settings.gpu_node_selector_key,
        label_value=settings.gpu_node_selector_value,
    )
    kubernetes.add_toleration(
        task, key=settings.gpu_toleration_key, operator="Exists", effect="NoSchedule"
    )
    task.set_retry(
        num_retries=TRAIN_RETRIES,
        backoff_duration=TRAIN_RETRY_BACKOFF,
        backoff_factor=2.0,
        backoff_max_duration=TRAIN_RETRY_WINDOW,
    )
    return task


def fan_out_fan_in(
    config_json: str,
    plan: Callable[[dsl.PipelineTask], dsl.PipelineTask],
    compare: Callable[[dsl.PipelineTask, dsl.PipelineTask, dsl.Collected], dsl.PipelineTask],
    check: Callable[..., dsl.PipelineTask],
) -> None:
    """Add the shared DAG: ``plan`` lists the runs and settles ``config``, ``check`` the result."""
    data = cpu_task(prepare_data(config_json=config_json).set_caching_options(True), memory="8Gi")
    planned = cpu_task(plan(data).set_caching_options(False), memory="1Gi")
    with dsl.ParallelFor(planned.outputs["Output"]) as run_json:
        # Training is never cached: a scheduled rerun must retrain.
        train = train_model(
            config=planned.outputs["config"],
            run_json=run_json,
            job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            dataset=data.outputs["dataset"],
        )
        gpu_task(train.set_caching_options(False))
        evaluate = evaluate_model(dataset=data.outputs["dataset"], model=train.outputs["model"])
        cpu_task(evaluate.set_caching_options(False), memory="8Gi")
    compared = compare(planned, data, dsl.Collected(evaluate.outputs["result"]))
    cpu_task(compared.set_caching_options(False), memory="8Gi")
    # Last, so the comparison is stored before a partial run is marked failed.
    checked = check(comparison=compared.outputs["comparison"])
    cpu_task(checked.set_caching_options(False), memory="1Gi")
