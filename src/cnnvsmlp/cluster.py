"""Submit and schedule pipelines on a Kubeflow Pipelines cluster with ``kfp.Client``.

Where the cluster is comes from the environment, read when a command runs:

- ``KFP_HOST``: the KFP API endpoint (``https://<host>/pipeline`` behind an
  ingress, or ``http://localhost:8080`` through ``kubectl port-forward``);
- ``KFP_TOKEN``: a bearer token, for example ``$(gcloud auth print-access-token)``
  or a Kubernetes service-account token; without it, kfp's own rules apply
  (``KF_PIPELINES_SA_TOKEN_PATH`` inside a cluster, or the kube config);
- ``KFP_NAMESPACE``: the profile namespace on a multi-user deployment; by
  default ``NAMESPACE`` of ``manifests/base/cluster-settings.env``, where the
  pipeline's service account lives (``kubeflow`` means a standalone install,
  where runs take no namespace);
- ``KFP_PIPELINE_ROOT``: where runs keep their artifacts; by default
  ``gs://<BUCKET>/pipeline-root``, ``BUCKET`` from the same settings file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from cnnvsmlp.config import ExperimentConfig
from cnnvsmlp.errors import UserError
from cnnvsmlp.settings import ROOT, SETTINGS_FILE, cluster_settings

# A standalone KFP install runs everything in its own namespace, and its API
# takes no namespace on experiments and runs.
STANDALONE_NAMESPACE = "kubeflow"


class ClusterError(UserError):
    """The KFP API is unreachable or refused a call."""


@dataclass(frozen=True)
class Target:
    """Where and as whom to call the KFP API."""

    host: str
    token: str | None
    namespace: str | None
    pipeline_root: str | None

    @classmethod
    def from_env(cls) -> Target:
        """Read ``KFP_HOST`` and the optional settings from the environment.

        Raises:
            ClusterError: ``KFP_HOST`` is not set.
        """
        host = os.environ.get("KFP_HOST", "").rstrip("/")
        if not host:
            raise ClusterError(
                "KFP_HOST is not set: export KFP_HOST=https://<your KFP endpoint> "
                "(or http://localhost:8080 after kubectl port-forward)"
            )
        settings = cluster_settings()
        namespace = os.environ.get("KFP_NAMESPACE") or settings.namespace
        if namespace != settings.namespace:
            raise ClusterError(
                f"KFP_NAMESPACE={namespace} but NAMESPACE={settings.namespace} in "
                f"{SETTINGS_FILE.relative_to(ROOT)}: runs must go to the namespace where the "
                f"service account {settings.service_account} is; change one to match the other"
            )
        return cls(
            host=host,
            token=os.environ.get("KFP_TOKEN") or None,
            namespace=None if namespace == STANDALONE_NAMESPACE else namespace,
            pipeline_root=(
                os.environ.get("KFP_PIPELINE_ROOT") or f"gs://{settings.bucket}/pipeline-root"
            ),
        )


SIX_FIELD_CRON = re.compile(r"^\S+(\s+\S+){5}$")


def check_cron(cron: str) -> str:
    """Accept KFP's 6-field cron (seconds first); refuse a 5-field crontab with the reason.

    Raises:
        ClusterError: not 6 fields.
    """
    fields = cron.split()
    if len(fields) == 5:
        raise ClusterError(
            f"cron {cron!r} has 5 fields: KFP's cron has 6, seconds first "
            f"('0 {cron}' runs at the time you meant); KFP would read the 5 fields "
            "shifted by one place and run at the wrong times"
        )
    if not SIX_FIELD_CRON.match(cron.strip()):
        raise ClusterError(
            f"cron {cron!r}: expected 6 fields, seconds first, e.g. '0 0 3 * * 1' (Mondays 03:00)"
        )
    return " ".join(fields)


def _client(target: Target):
    import warnings

    import kfp

    with warnings.catch_warnings():  # "only works with KFP v2.0.0-beta.2 and later": ours is 2.x
        warnings.filterwarnings("ignore", category=FutureWarning, module="kfp")
        return _call(
            target,
            "connect",
            kfp.Client,
            host=target.host,
            existing_token=target.token,
            namespace=target.namespace or "kubeflow",
        )


def _reason(err: Exception) -> str:
    status = getattr(err, "status", None)
    if status:
        body = getattr(err, "body", "") or ""
        return f"HTTP {status} {getattr(err, 'reason', '')}: {str(body)[:200]}".strip()
    text = str(err).splitlines()[0] if str(err) else err.__class__.__name__
    return text[:300]


def _call(target: Target, what: str, func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - kfp_server_api.ApiException, urllib3 errors
        import urllib3

        if isinstance(err, urllib3.exceptions.HTTPError | ConnectionError):
            raise ClusterError(
                f"{target.host}: unreachable while trying to {what} ({_reason(err)})"
            ) from None
        raise ClusterError(f"{target.host}: could not {what} ({_reason(err)})") from None


def _upload(client, target: Target, name: str) -> tuple[str, str]:
    """Compile and upload a pipeline: a new one, or a new version of the one of that name."""
    import tempfile

    from pipelines import compile_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        package = str(compile_pipeline(name, tmp))
        version = datetime.now(timezone.utc).strftime(f"{name}-%Y%m%d-%H%M%S")
        pipeline_id = _call(target, f"look up pipeline {name}", client.get_pipeline_id, name)
        if pipeline_id is None:
            pipeline = _call(
                target,
                f"upload pipeline {name}",
                client.upload_pipeline,
                package,
                pipeline_name=name,
            )
            pipeline_id = pipeline.pipeline_id
        uploaded = _call(
            target,
            f"upload a version of {name}",
            client.upload_pipeline_version,
            package,
            pipeline_version_name=version,
            pipeline_id=pipeline_id,
        )
    return pipeline_id, uploaded.pipeline_version_id


def _experiment(client, target: Target, config: ExperimentConfig, experiment: str | None) -> str:
    name = experiment or config.name
    created = _call(
        target,
        f"create experiment {name}",
        client.create_experiment,
        name,
        namespace=target.namespace,
    )
    return created.experiment_id


def cluster_config(config: ExperimentConfig) -> ExperimentConfig:
    """The config a cluster run gets: training state mirrored to the bucket unless set.

    A retried training task starts on a new pod with an empty output folder;
    the mirror in ``gs://<BUCKET>/resume`` lets it go on from its last epoch.
    """
    if config.resume_uri:
        return config
    return config.model_copy(update={"resume_uri": f"gs://{cluster_settings().bucket}/resume"})


def _parameters(name: str, config: ExperimentConfig) -> dict:
    from pipelines import pipeline_arguments

    return pipeline_arguments(name, cluster_config(config))


def _prepare(
    pipeline: str, config: ExperimentConfig, experiment: str | None
) -> tuple[Target, object, dict]:
    """Connect, upload the pipeline, find the experiment: the arguments every run shares."""
    target = Target.from_env()
    client = _client(target)
    pipeline_id, version_id = _upload(client, target, pipeline)
    shared = {
        "experiment_id": _experiment(client, target, config, experiment),
        "params": _parameters(pipeline, config),
        "pipeline_id": pipeline_id,
        "version_id": version_id,
        "service_account": cluster_settings().service_account,
    }
    if target.pipeline_root:
        shared["pipeline_root"] = target.pipeline_root
    return target, client, shared


def submit(pipeline: str, config: ExperimentConfig, experiment: str | None = None) -> str:
    """Compile, upload and start one run; print its id and URL.

    Returns:
        The run's id.

    Raises:
        ClusterError: ``KFP_HOST`` unset or unreachable, or a call refused.
    """
    target, client, shared = _prepare(pipeline, config, experiment)
    job = f"{pipeline}-{config.name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    run = _call(target, "start the run", client.run_pipeline, job_name=job, **shared)
    print(f"submit: run {run.run_id} in experiment {experiment or config.name}")
    print(f"submit: {target.host}/#/runs/details/{run.run_id}")
    return run.run_id


def schedule_name(pipeline: str, config: ExperimentConfig) -> str:
    """The recurring run's name: one schedule per pipeline and experiment config."""
    return f"{pipeline}-{config.name}-schedule"


def schedule(
    pipeline: str, config: ExperimentConfig, cron: str, experiment: str | None = None
) -> str:
    """Create a recurring run: no catch-up, one run at a time, no cached training.

    Returns:
        The recurring run's id.

    Raises:
        ClusterError: a 5-field cron, ``KFP_HOST`` unset or unreachable, or a call refused.
    """
    cron = check_cron(cron)
    target, client, shared = _prepare(pipeline, config, experiment)
    recurring = _call(
        target,
        "create the recurring run",
        client.create_recurring_run,
        job_name=schedule_name(pipeline, config),
        cron_expression=cron,
        max_concurrency=1,
        no_catchup=True,
        # No enable_caching here: kfp.Client applies it only to a pipeline package,
        # never to a version reference. The uploaded IR turns caching off for
        # training, evaluation and comparison, so every scheduled run retrains.
        **shared,
    )
    print(
        f"schedule: recurring run {recurring.recurring_run_id} '{cron}' in experiment "
        f"{experiment or config.name}"
    )
    print(f"schedule: {target.host}/#/recurringrun/details/{recurring.recurring_run_id}")
    return recurring.recurring_run_id


def unschedule(pipeline: str, config: ExperimentConfig, experiment: str | None = None) -> int:
    """Delete the recurring runs that :func:`schedule` made for this pipeline and config.

    Returns:
        How many were deleted.
    """
    target = Target.from_env()
    client = _client(target)
    experiment_id = _experiment(client, target, config, experiment)
    name = schedule_name(pipeline, config)
    listed = _call(
        target,
        "list recurring runs",
        client.list_recurring_runs,
        experiment_id=experiment_id,
        page_size=100,
    )
    found = [r for r in (listed.recurring_runs or []) if r.display_name == name]
    for recurring in found:
        _call(
            target,
            f"delete recurring run {recurring.recurring_run_id}",
            client.delete_recurring_run,
            recurring.recurring_run_id,
        )
        print(f"unschedule: deleted recurring run {recurring.recurring_run_id} ({name})")
    if not found:
        print(f"unschedule: no recurring run named {name}")
    return len(found)
