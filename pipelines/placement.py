"""The DAG every pipeline shares, and where its tasks run: resources, node pools, retries, user.

Why: docs/cluster.md (steps 5, 7, 10). Spent retries go again with the run, by
``POST /apis/v2beta1/runs/{run_id}:retry``, ``kfp_server_api.RunServiceApi.run_service_retry_run``.
"""

from collections.abc import Callable

from kfp import dsl, kubernetes

from cnnvsmlp_components import evaluate_model, prepare_data, train_model
from cnnvsmlp_pipelines.images import image_ref
from cnnvsmlp_pipelines.settings import cluster_settings

IMAGE_UID = 10001  # the user images/*.Dockerfile create and run as


def placed(task: dsl.PipelineTask, memory: str, kind: str = "cpu", cache: bool = False):
    """Request 1 CPU and ``memory``, run as the ``kind`` image's user; a GPU task gets more."""
    cpus = "4" if kind == "gpu" else "1"
    task.set_caching_options(cache).set_cpu_request(cpus).set_memory_request(memory)
    task.container_spec.image = image_ref(kind)
    if kind == "gpu":  # 4 CPUs, one GPU on the GPU node pool, retries with backoff
        gpu = cluster_settings()
        task.set_accelerator_type(gpu.gpu_resource).set_accelerator_limit(1)
        kubernetes.add_node_selector(task, gpu.gpu_node_selector_key, gpu.gpu_node_selector_value)
        kubernetes.add_toleration(
            task, key=gpu.gpu_toleration_key, operator="Exists", effect="NoSchedule"
        )
        task.set_retry(
            num_retries=3,
            backoff_duration="60s",
            backoff_factor=2.0,
            backoff_max_duration="86400s",  # Argo's maxDuration: one window for all attempts
        )
    return kubernetes.set_security_context(task, run_as_user=IMAGE_UID, run_as_non_root=True)


def fan_out_fan_in(
    config_json: str,
    plan: Callable[[dsl.PipelineTask], dsl.PipelineTask],
    compare: Callable[..., dsl.PipelineTask],
    check: Callable[..., dsl.PipelineTask],
    provenance_json: str,
) -> None:
    """Add the shared DAG: ``plan`` lists the runs and settles ``config``, ``check`` the result."""
    data = placed(prepare_data(config_json=config_json), "8Gi", cache=True)
    planned = placed(plan(data), "1Gi")
    with dsl.ParallelFor(planned.outputs["Output"]) as run_json:
        train = train_model(
            config=planned.outputs["config"],
            run_json=run_json,
            job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            dataset=data.outputs["dataset"],
        )
        placed(train, "16Gi", "gpu")  # never cached: reruns retrain
        evaluate = evaluate_model(dataset=data.outputs["dataset"], model=train.outputs["model"])
        placed(evaluate, "8Gi")
    inputs = {
        "config": planned.outputs["config"],
        "dataset": data.outputs["dataset"],
        "results": dsl.Collected(evaluate.outputs["result"]),
        "provenance_json": provenance_json,
        "job_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER,
    }
    compared = placed(compare(planned, **inputs), "8Gi")
    # Last, so the comparison is stored before a partial run is marked failed.
    placed(check(comparison=compared.outputs["comparison"]), "1Gi")
