"""Submit and schedule pipelines on a Kubeflow Pipelines cluster with ``kfp.Client``.

Where the cluster is comes from the environment, read when a command runs:

- ``KFP_HOST``: the KFP API endpoint (``https://<host>/pipeline`` behind an
  ingress, or ``http://localhost:8080`` through ``kubectl port-forward``);
- ``KFP_TOKEN``: a bearer token the endpoint accepts, sent as it is; behind
  IAP that is an OIDC ID token for the IAP client id, never an access token;
- ``KFP_IAP_CLIENT_ID``: behind IAP, without ``KFP_TOKEN``: the OAuth client
  id of the IAP; an ID token for it is fetched with google-auth from a service
  account's credentials (``GOOGLE_APPLICATION_CREDENTIALS``, or the metadata
  server on GCE and GKE);
- ``KF_PIPELINES_SA_TOKEN_PATH``: without either, inside a cluster: the
  projected service-account token to send (kfp's client reads it only when no
  host is given, so with ``KFP_HOST`` set it is read here);
- ``KFP_NAMESPACE``: the profile namespace on a multi-user deployment; by
  default ``NAMESPACE`` of ``manifests/base/cluster-settings.env``, where the
  pipeline's service account lives (``kubeflow`` means a standalone install,
  where runs take no namespace);
- ``KFP_PIPELINE_ROOT``: where runs keep their artifacts; by default
  ``gs://<BUCKET>/pipeline-root``, ``BUCKET`` from the same settings file;
- ``CNNVSMLP_SKIP_CHECKS``: ``images``, ``service-account`` or both, comma
  separated (``all`` for both): checks to leave out before anything is uploaded.

Before it uploads, ``submit`` and ``schedule`` check that the registry has the
images the compiled pipeline names, and that the pipeline's service account
exists in the namespace its pods will run in (through the Kubernetes API, with
the kube config); a check that cannot be made says why in one line and is left
out. No token is ever printed: error messages have any token blanked.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone

from cnnvsmlp.config import ExperimentConfig
from cnnvsmlp.errors import UserError
from cnnvsmlp.settings import ROOT, SETTINGS_FILE, cluster_settings

# A standalone KFP install runs everything in its own namespace, and its API
# takes no namespace on experiments and runs.
STANDALONE_NAMESPACE = "kubeflow"
# Where a pod's projected token for the KFP API is mounted (kfp's default).
SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
SKIP_CHECKS_ENV = "CNNVSMLP_SKIP_CHECKS"
CHECKS = ("images", "service-account")


class ClusterError(UserError):
    """The KFP API is unreachable or refused a call."""


@dataclass(frozen=True)
class Target:
    """Where and as whom to call the KFP API."""

    host: str
    token: str | None = field(repr=False)
    namespace: str | None
    pipeline_root: str | None
    iap_client_id: str | None = None
    token_path: str | None = None

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
        token_path = os.environ.get("KF_PIPELINES_SA_TOKEN_PATH") or SA_TOKEN_PATH
        return cls(
            host=host,
            token=os.environ.get("KFP_TOKEN") or None,
            namespace=None if namespace == STANDALONE_NAMESPACE else namespace,
            pipeline_root=(
                os.environ.get("KFP_PIPELINE_ROOT") or f"gs://{settings.bucket}/pipeline-root"
            ),
            iap_client_id=os.environ.get("KFP_IAP_CLIENT_ID") or None,
            token_path=token_path if os.path.isfile(token_path) else None,
        )

    def redact(self, text: str) -> str:
        """``text`` with the bearer token, if any, blanked."""
        for secret in (self.token, *_FETCHED):
            if secret:
                text = text.replace(secret, "<token>")
        return text


# ID tokens fetched in this process, blanked in messages like KFP_TOKEN.
_FETCHED: list[str] = []


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


def iap_id_token(target: Target) -> str:
    """An OIDC ID token for the IAP client id, from google-auth's credentials.

    Raises:
        ClusterError: google-auth is missing or has no credentials that can
            mint an ID token (a user's ``gcloud auth login`` cannot).
    """
    try:
        import google.auth.transport.requests
        import google.oauth2.id_token
    except ImportError:
        raise ClusterError(
            "KFP_IAP_CLIENT_ID is set but google-auth is not installed; install it, or set "
            "KFP_TOKEN to an ID token for the IAP client id"
        ) from None
    try:
        token = google.oauth2.id_token.fetch_id_token(
            google.auth.transport.requests.Request(), target.iap_client_id
        )
    except Exception as err:  # noqa: BLE001 - google.auth.exceptions.*, requests errors
        raise ClusterError(
            target.redact(
                f"{target.host}: could not get an ID token for the IAP client "
                f"{target.iap_client_id} ({_reason(err)}); it takes a service account's "
                "credentials (GOOGLE_APPLICATION_CREDENTIALS, or the metadata server); as a "
                "user, set KFP_TOKEN=$(gcloud auth print-identity-token "
                "--impersonate-service-account=<sa> --audiences=<client id> --include-email)"
            )
        ) from None
    _FETCHED.append(token)
    return token


def _client(target: Target):
    import warnings

    import kfp

    auth: dict = {}
    if target.token:
        auth["existing_token"] = target.token
    elif target.iap_client_id:
        auth["existing_token"] = iap_id_token(target)
    elif target.token_path:
        from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

        auth["credentials"] = ServiceAccountTokenVolumeCredentials(path=target.token_path)
    with warnings.catch_warnings():  # "only works with KFP v2.0.0-beta.2 and later": ours is 2.x
        warnings.filterwarnings("ignore", category=FutureWarning, module="kfp")
        return _call(
            target,
            "connect",
            kfp.Client,
            host=target.host,
            namespace=target.namespace or "kubeflow",
            **auth,
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
                target.redact(f"{target.host}: unreachable while trying to {what} ({_reason(err)})")
            ) from None
        raise ClusterError(
            target.redact(f"{target.host}: could not {what} ({_reason(err)})")
        ) from None


def skipped_checks() -> set[str]:
    """The checks ``CNNVSMLP_SKIP_CHECKS`` leaves out.

    Raises:
        ClusterError: an unknown check name.
    """
    names = {n.strip() for n in os.environ.get(SKIP_CHECKS_ENV, "").split(",") if n.strip()}
    if "all" in names:
        return set(CHECKS)
    unknown = names - set(CHECKS)
    if unknown:
        raise ClusterError(
            f"{SKIP_CHECKS_ENV}: unknown check {sorted(unknown)[0]!r}; "
            f"known: {', '.join(CHECKS)}, all"
        )
    return names


def check_images(refs: list[str]) -> None:
    """Fail when the registry lacks an image the pipeline names.

    Asks the registry through the Docker client (``cnnvsmlp.images.images_exist``);
    without one, says in one line that the check was left out.

    Raises:
        ClusterError: an image is missing, naming it and how to build and push it.
    """
    from cnnvsmlp.images import images_exist

    if shutil.which("docker") is None:
        print("check: images not checked: no docker client here to ask the registry")
        return
    missing = images_exist(refs)
    if missing:
        raise ClusterError(
            f"{', '.join(missing)}: not in the registry (or not readable with your docker "
            "credentials); build and push with 'make images PUSH=1', or without Docker with "
            "'gcloud builds submit --config images/cloudbuild.yaml' (docs/cluster.md step 8); "
            f"{SKIP_CHECKS_ENV}=images leaves this check out"
        )
    print(f"check: the registry has {len(refs)} image(s) the pipeline names")


def check_service_account(namespace: str, name: str) -> None:
    """Fail when the service account the runs use does not exist in ``namespace``.

    Asks the Kubernetes API with the kube config (``KUBECONFIG``, else
    ``~/.kube/config``, else the pod's own in-cluster config). Where there is
    none, the API is unreachable or refuses to answer, says so in one line and
    leaves the check out.

    Raises:
        ClusterError: the API answers that the service account does not exist.
    """
    try:
        from kubernetes import client, config
    except ImportError:
        print("check: service account not checked: the kubernetes package is not installed")
        return
    path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    try:
        if any(os.path.isfile(p) for p in path.split(os.pathsep)):
            api = config.new_client_from_config(config_file=path)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
            api = client.ApiClient()
        else:
            print(f"check: service account not checked: no kube config at {path}")
            return
    except Exception as err:  # noqa: BLE001 - ConfigException, a missing exec auth plugin, ...
        print(f"check: service account not checked: kube config {path}: {_reason(err)}")
        return
    where = api.configuration.host
    try:
        client.CoreV1Api(api).read_namespaced_service_account(name, namespace, _request_timeout=10)
    except client.ApiException as err:
        if err.status == 404:
            raise ClusterError(
                f"service account {name} does not exist in namespace {namespace} ({where}), "
                "where the runs' pods will run as it: apply the manifests "
                "(kubectl apply -k manifests/), or set NAMESPACE in "
                f"{SETTINGS_FILE.relative_to(ROOT)} to where they are; "
                f"{SKIP_CHECKS_ENV}=service-account leaves this check out"
            ) from None
        print(f"check: service account not checked: {where} answered HTTP {err.status}")
        return
    except Exception as err:  # noqa: BLE001 - urllib3 connection errors, timeouts
        print(f"check: service account not checked: {where} unreachable ({_reason(err)})")
        return
    print(f"check: service account {name} exists in namespace {namespace}")


def compiled_images(package: str) -> list[str]:
    """The container images a compiled pipeline names, sorted."""
    import yaml

    with open(package) as f:
        ir = next(yaml.safe_load_all(f))
    executors = ir["deploymentSpec"]["executors"].values()
    return sorted({e["container"]["image"] for e in executors if "container" in e})


def preflight(package: str) -> None:
    """The checks before an upload: the images exist, the service account exists.

    Raises:
        ClusterError: a check failed.
    """
    skip = skipped_checks()
    settings = cluster_settings()
    if "images" not in skip:
        check_images(compiled_images(package))
    if "service-account" not in skip:
        check_service_account(settings.namespace, settings.service_account)


def _upload(client, target: Target, name: str, package: str) -> tuple[str, str]:
    """Upload a compiled pipeline: a new one, or a new version of the one of that name."""
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
    from cnnvsmlp_pipelines import pipeline_arguments

    return pipeline_arguments(name, cluster_config(config))


def _prepare(
    pipeline: str, config: ExperimentConfig, experiment: str | None
) -> tuple[Target, object, dict]:
    """Compile, check, connect, upload, find the experiment: the arguments every run shares."""
    import tempfile

    from cnnvsmlp_pipelines import compile_pipeline

    target = Target.from_env()
    with tempfile.TemporaryDirectory() as tmp:
        package = str(compile_pipeline(pipeline, tmp))
        preflight(package)
        client = _client(target)
        pipeline_id, version_id = _upload(client, target, pipeline, package)
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
