"""Where tasks run on the cluster: resources, GPU node pool, retries, caching.

Declared here, beside the DAG, so every component still runs on a laptop:
kfp's local runner ignores all of it.
"""

from __future__ import annotations

from kfp import dsl, kubernetes

from cnnvsmlp.settings import cluster_settings

TRAIN_RETRIES = 3


def cpu_task(task: dsl.PipelineTask, cpu: str = "1", memory: str = "4Gi") -> dsl.PipelineTask:
    """Request CPU and memory for a task that needs no accelerator."""
    return task.set_cpu_request(cpu).set_memory_request(memory)


def gpu_task(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """One GPU on the GPU node pool, with retries and backoff for preempted nodes."""
    settings = cluster_settings()
    task.set_cpu_request("4").set_memory_request("16Gi")
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
        backoff_duration="60s",
        backoff_factor=2.0,
        backoff_max_duration="3600s",
    )
    return task
