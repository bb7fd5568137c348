"""Where tasks run on the cluster: resources, node pools, retries, caching.

Declared here, beside the DAG, so every component still runs on a laptop.
kfp's local runner ignores resources, node selectors and tolerations, and
``pipelines/local_runner.py`` strips the retry policies so a mistake fails
fast locally; the compiled pipeline the cluster gets keeps all of it.

Node types. :data:`NODE_TYPES` names the machines the guides create (README's
short path and ``docs/cluster.md`` step 3 for the CPU pool,
``manifests/gcp/nodepool.yaml`` for the GPU pool) with what GKE leaves
allocatable on them; ``tests/test_compile.py`` checks that every task's
requests fit the node it would land on, so raising a request above it fails
there and not as a pod ``Pending`` forever.

Retries and spot preemption. kfp 2.17's ``set_retry`` compiles to the IR's
``retryPolicy`` (``maxRetryCount``, ``backoffDuration``, ``backoffFactor``,
``backoffMaxDuration``; the SDK fills in ``3600s`` for the last when it is not
given, and has no way to choose which failures are retried). KFP's backend
turns it into an Argo ``retryStrategy`` with that limit and backoff and no
``retryPolicy`` (``backend/src/v2/compiler/argocompiler/container.go`` at
2.17.0), and Argo merges it over the workflow controller's template defaults.
KFP 2.17's are ``{limit: '2', retryPolicy: OnError}``, under which a pod that
ends ``Failed`` (as in a spot node's graceful shutdown) is not retried; the
backend the guides install, ``manifests/kfp/``, patches them to no retry by
default and ``retryPolicy: Always``, so a retried task is retried whether its
pod ends ``Failed`` or ``Error`` (deleted with its reclaimed node).
``docs/cluster.md`` step 5 says how to see it on a first run. Argo's
``backoff.maxDuration`` is one window from the start of the first attempt,
not a wait between attempts: with the SDK's ``3600s``, a training that fails
after an hour is never retried. Training therefore gets
:data:`TRAIN_RETRY_WINDOW`, longer than any training here. What survives a
preemption is each finished epoch's checkpoint and state in ``resume_uri``
(``gs://<BUCKET>/resume/<run id>/...``); the epoch in progress is lost. A task
whose retries are spent is retried by retrying the run (the KFP UI's Retry,
or ``POST /apis/v2beta1/runs/{run_id}:retry``, which kfp 2.17's client has
no method for: ``kfp_server_api.RunServiceApi.run_service_retry_run``): the
run id is the same, so training resumes from the last finished epoch.

Security. Every task's container runs as the images' user (uid 10001) and
must not run as root (:func:`in_image`, kfp-kubernetes' ``set_security_context``,
which sets only the identity fields). KFP 2.17's backend adds
``allowPrivilegeEscalation: false``, drops all capabilities and sets the
``RuntimeDefault`` seccomp profile on every container it compiles
(``backend/src/v2/compiler/argocompiler/security_context.go``), so the pods
meet the Pod Security ``restricted`` level there.
"""

from __future__ import annotations

from dataclasses import dataclass

from kfp import dsl, kubernetes

from cnnvsmlp_pipelines.images import image_ref
from cnnvsmlp_pipelines.settings import cluster_settings

TRAIN_RETRIES = 3
TRAIN_RETRY_BACKOFF = "60s"
TRAIN_RETRY_WINDOW = "86400s"
# The user the images create and run as (images/*.Dockerfile: USER 10001).
IMAGE_UID = 10001


@dataclass(frozen=True)
class NodeType:
    """A GKE machine type and what GKE leaves allocatable to pods on it.

    Allocatable is the machine less GKE's reservations for the kubelet and the
    system (CPU: 6% of the first core, 1% of the second, 0.5% of the next two,
    0.25% of the rest; memory: 25% of the first 4 GiB, 20% of the next 4, 10%
    of the next 8, 6% of the next 112, and a 100 MiB eviction threshold),
    rounded down.
    """

    machine_type: str
    cpu: float
    memory_gib: float
    gpus: int = 0


NODE_TYPES = {
    # The default pool of the cluster: KFP itself and every CPU task.
    "cpu": NodeType("e2-standard-4", cpu=3.92, memory_gib=13.0),
    # The spot GPU pool of manifests/gcp/nodepool.yaml: training.
    "gpu": NodeType("g2-standard-8", cpu=7.91, memory_gib=28.0, gpus=1),
}


def in_image(task: dsl.PipelineTask, kind: str) -> dsl.PipelineTask:
    """Run the task in the project's ``kind`` image (``cpu`` or ``gpu``), as its user.

    The image's tag is resolved here, when the pipeline is built, not when a
    component is imported; the container runs as the images' user, never as
    root (see the module docstring).
    """
    task.container_spec.image = image_ref(kind)
    return kubernetes.set_security_context(task, run_as_user=IMAGE_UID, run_as_non_root=True)


def cpu_task(task: dsl.PipelineTask, cpu: str = "1", memory: str = "4Gi") -> dsl.PipelineTask:
    """Request CPU and memory for a task that needs no accelerator (the CPU pool)."""
    return in_image(task.set_cpu_request(cpu).set_memory_request(memory), "cpu")


def gpu_task(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """One GPU on the GPU node pool, with retries and backoff (see the module docstring)."""
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
