"""Reach the KFP API as the environment says, check before an upload; no token is ever shown."""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus

import google.auth.transport.requests
import google.oauth2.id_token
import kfp
import requests
import urllib3
import yaml
from kubernetes import client as kube
from kubernetes import config as kube_config

from cnnvsmlp.errors import UserError
from cnnvsmlp_pipelines.images import run_docker
from cnnvsmlp_pipelines.settings import ROOT, SETTINGS_FILE, ClusterSettings

# A standalone KFP install's namespace: its API takes no namespace on experiments and runs.
STANDALONE_NAMESPACE = "kubeflow"
SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
SKIP_CHECKS_ENV = "CNNVSMLP_SKIP_CHECKS"
CHECKS = ("images", "service-account")
HEALTHZ = "/apis/v2beta1/healthz"
TIMEOUT_S = (10.0, 60.0)  # seconds to connect and to wait for each answer from the KFP API
LOG_FILE = ROOT / "build" / "cluster.log"  # what kfp logs, every token blanked


class ClusterError(UserError):
    """The KFP API is unreachable or refused a call; its message never holds a token."""

    def __init__(self, message: str):
        super().__init__(redact(message))


_SECRETS: set[str] = set()  # every token read or fetched here


def _forms(secret: str) -> set[str]:
    """The ways ``secret`` can appear in a message: raw, escaped, URL-encoded, base64."""
    raw = secret.encode("utf-8", "surrogateescape")
    forms = {secret, secret.strip(), repr(secret)[1:-1], ascii(secret)[1:-1]}
    forms |= {repr(raw)[2:-1], json.dumps(secret)[1:-1], quote(secret), quote_plus(secret)}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(raw).decode()
        forms |= {encoded, encoded.rstrip("=")}
    return {f for f in forms if len(f) >= 4}


def redact(text: str) -> str:
    """``text`` with every form of every token read or fetched here blanked."""
    for form in sorted(set().union(*map(_forms, _SECRETS)), key=len, reverse=True):
        text = text.replace(form, "<token>")
    return text


def read_token(value: str, source: str) -> str:
    """A bearer token from ``source``: stripped, printable ASCII, remembered to be blanked."""
    token = value.strip()
    _SECRETS.update({value, token})
    if not token:
        raise ClusterError(f"{source} is empty (only whitespace): set it to the bearer token")
    for position, char in enumerate(token, 1):
        if not ("!" <= char <= "~"):
            kind = "a non-ASCII character" if ord(char) > 127 else "a control character"
            raise ClusterError(
                f"{source}: the token holds {'a space' if char == ' ' else kind} at position "
                f"{position} of {len(token)}; a bearer token is printable ASCII: copy it again "
                "without the extra text"
            )
    return token


def _env(project: str, kfp_own: str) -> str | None:
    """The project's variable, else kfp.Client's own; refuses the two disagreeing."""
    ours, theirs = (os.environ.get(name, "").strip() for name in (project, kfp_own))
    if ours and theirs and ours.rstrip("/") != theirs.rstrip("/"):
        raise ClusterError(
            f"{project}={ours} but {kfp_own}={theirs}: unset one, or make them the same"
        )
    return ours or theirs or None


@dataclass(frozen=True)
class Target:
    """Where and as whom to call the KFP API."""

    host: str
    token: str | None = field(repr=False)
    namespace: str | None
    pipeline_root: str
    iap_client_id: str | None = None
    token_path: str | None = None

    @classmethod
    def from_env(cls, settings: ClusterSettings) -> Target:
        """Read ``KFP_HOST`` and the optional settings from the environment."""
        host = (_env("KFP_HOST", "KF_PIPELINES_ENDPOINT") or "").rstrip("/")
        if not host:
            raise ClusterError(
                "KFP_HOST is not set: export KFP_HOST=https://<your KFP endpoint> "
                "(or http://localhost:8080 after kubectl port-forward)"
            )
        raw_token = os.environ.get("KFP_TOKEN")
        token = read_token(raw_token, "KFP_TOKEN") if raw_token else None
        namespace = os.environ.get("KFP_NAMESPACE") or settings.namespace
        if namespace != settings.namespace:
            raise ClusterError(
                f"KFP_NAMESPACE={namespace} but NAMESPACE={settings.namespace} in "
                f"{SETTINGS_FILE.relative_to(ROOT)}: runs must go to the namespace where the "
                f"service account {settings.service_account} is; change one to match the other"
            )
        token_path = os.environ.get("KF_PIPELINES_SA_TOKEN_PATH") or SA_TOKEN_PATH
        root = os.environ.get("KFP_PIPELINE_ROOT") or f"gs://{settings.bucket}/pipeline-root"
        return cls(
            host=host,
            token=token,
            namespace=None if namespace == STANDALONE_NAMESPACE else namespace,
            pipeline_root=root,
            iap_client_id=_env("KFP_IAP_CLIENT_ID", "KF_PIPELINES_IAP_OAUTH2_CLIENT_ID"),
            token_path=token_path if os.path.isfile(token_path) else None,
        )


def iap_id_token(target: Target) -> str:
    """An OIDC ID token for the IAP client id, from a service account's credentials."""
    try:
        token = google.oauth2.id_token.fetch_id_token(
            google.auth.transport.requests.Request(), target.iap_client_id
        )
    except Exception as err:  # noqa: BLE001 - google.auth.exceptions.*, requests errors
        raise ClusterError(
            f"{target.host}: could not get an ID token for the IAP client "
            f"{target.iap_client_id} ({_reason(err)}); it takes a service account's "
            "credentials (GOOGLE_APPLICATION_CREDENTIALS, or the metadata server); as a "
            "user, set KFP_TOKEN=$(gcloud auth print-identity-token "
            "--impersonate-service-account=<sa> --audiences=<client id> --include-email)"
        ) from None
    return read_token(token, f"the ID token google-auth fetched for {target.iap_client_id}")


def connect(target: Target):
    """A ``kfp.Client`` for ``target`` once its host answered as a KFP 2 API; requests time out."""
    token = target.token
    if not token and target.iap_client_id:
        token = iap_id_token(target)
    elif not token and target.token_path:  # the projected service-account token
        path = target.token_path
        try:
            value = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
        except OSError as err:
            raise ClusterError(f"KF_PIPELINES_SA_TOKEN_PATH {path}: {err.strerror}") from None
        token = read_token(value, f"the token file {path}")
    _log_to_file()
    _confirm_api(target, token)
    with warnings.catch_warnings():  # "only works with KFP v2.0.0-beta.2 and later": ours is 2.x
        warnings.filterwarnings("ignore", category=FutureWarning, module="kfp")
        client = call(
            target,
            "connect",
            kfp.Client,
            host=target.host,
            namespace=target.namespace or STANDALONE_NAMESPACE,
            existing_token=token,
        )
    pool = client._run_api.api_client.rest_client.pool_manager  # shared by every API of the client
    pool.connection_pool_kw.update(
        timeout=urllib3.Timeout(connect=TIMEOUT_S[0], read=TIMEOUT_S[1]), retries=1
    )
    return client


def _confirm_api(target: Target, token: str | None) -> None:
    """Refuse a host whose ``healthz`` does not answer as a KFP 2 API does, before any write."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        answer = requests.get(
            target.host + HEALTHZ, headers=headers, timeout=TIMEOUT_S, allow_redirects=False
        )
    except requests.RequestException as err:
        raise ClusterError(
            f"{target.host}: unreachable while trying to connect ({_reason(err)})"
        ) from None
    try:
        body = answer.json() if answer.ok else None
    except ValueError:  # requests' JSONDecodeError
        body = None
    if isinstance(body, dict) and isinstance(body.get("multi_user"), bool):
        if str(body.get("tag_name") or "2").removeprefix("v").split(".")[0] == "2":
            return
    said = " ".join(answer.text[:120].split()) or "nothing"
    kind = answer.headers.get("content-type", "no content type")
    raise ClusterError(
        f"{target.host}: not a Kubeflow Pipelines 2 API: GET {HEALTHZ} answered HTTP "
        f"{answer.status_code} ({kind}): {said}; set KFP_HOST to the KFP API "
        "(behind an ingress, https://<host>/pipeline)"
    )


def _log_to_file() -> None:
    """Send what kfp and urllib3 log (retries, tracebacks) to :data:`LOG_FILE`, not the screen."""
    root = logging.getLogger()
    if any(_redacted in h.filters for h in root.handlers):  # added already
        return
    LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(LOG_FILE)
    handler.addFilter(_redacted)
    root.addHandler(handler)


def _redacted(record) -> bool:
    record.msg, record.args = redact(record.getMessage()), ()
    if record.exc_info:
        record.msg += "\n" + redact("".join(traceback.format_exception(*record.exc_info)))
        record.exc_info = record.exc_text = None
    return True


def _reason(err: Exception) -> str:
    if status := getattr(err, "status", None):
        body = getattr(err, "body", "") or ""
        return f"HTTP {status} {getattr(err, 'reason', '')}: {str(body)[:200]}".strip()
    return (str(err).splitlines() or [type(err).__name__])[0][:300]


def call(target: Target, what: str, func, *args, **kwargs):
    """``func(*args, **kwargs)``, whatever it raises told in one line."""
    try:
        return func(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - kfp_server_api.ApiException, urllib3 errors
        unreachable = isinstance(err, urllib3.exceptions.HTTPError | ConnectionError)
        did = f"unreachable while trying to {what}" if unreachable else f"could not {what}"
        raise ClusterError(f"{target.host}: {did} ({_reason(err)})") from None


def check_images(refs: list[str]) -> None:
    """Fail when the registry lacks an image (docker manifest inspect); without docker, say so."""
    if shutil.which("docker") is None:
        print("check: images not checked: no docker client here to ask the registry")
        return
    if missing := [r for r in refs if run_docker("manifest", "inspect", r).returncode != 0]:
        raise ClusterError(
            f"{', '.join(missing)}: not in the registry (or not readable with your docker "
            "credentials); build and push with 'make images PUSH=1', or without Docker with "
            "'gcloud builds submit --config images/cloudbuild.yaml' (docs/cluster.md step 8); "
            f"{SKIP_CHECKS_ENV}=images leaves this check out"
        )
    print(f"check: the registry has {len(refs)} image(s) the pipeline names")


def _kube_api():
    """A Kubernetes API client from the kube config or the pod's own, or why there is none."""
    path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    try:
        if any(os.path.isfile(p) for p in path.split(os.pathsep)):
            return kube_config.new_client_from_config(config_file=path), None
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            kube_config.load_incluster_config()
            return kube.ApiClient(), None
    except Exception as err:  # noqa: BLE001 - ConfigException, a missing exec auth plugin, ...
        return None, f"kube config {path}: {_reason(err)}"
    return None, f"no kube config at {path}"


def check_service_account(namespace: str, name: str) -> None:
    """Fail when the runs' service account is not in ``namespace``; say so if it cannot tell."""
    api, why = _kube_api()
    if api is None:
        print(redact(f"check: service account not checked: {why}"))
        return
    where = api.configuration.host
    try:
        kube.CoreV1Api(api).read_namespaced_service_account(name, namespace, _request_timeout=10)
    except kube.ApiException as err:
        if err.status != 404:
            print(redact(f"check: service account not checked: {where} answered HTTP {err.status}"))
            return
        raise ClusterError(
            f"service account {name} does not exist in namespace {namespace} ({where}), "
            "where the runs' pods will run as it: apply the manifests "
            "(kubectl apply -k manifests/), or set NAMESPACE in "
            f"{SETTINGS_FILE.relative_to(ROOT)} to where they are; "
            f"{SKIP_CHECKS_ENV}=service-account leaves this check out"
        ) from None
    except Exception as err:  # noqa: BLE001 - urllib3 connection errors, timeouts
        print(redact(f"check: service account not checked: {where} unreachable ({_reason(err)})"))
        return
    print(f"check: service account {name} exists in namespace {namespace}")


def preflight(package: str, settings: ClusterSettings) -> None:
    """Check the pipeline's images and service account before an upload, but what the env skips."""
    skip = {n.strip() for n in os.environ.get(SKIP_CHECKS_ENV, "").split(",") if n.strip()}
    if "all" in skip:
        skip = set(CHECKS)
    elif unknown := skip - set(CHECKS):
        raise ClusterError(
            f"{SKIP_CHECKS_ENV}: unknown check {sorted(unknown)[0]!r}; "
            f"known: {', '.join(CHECKS)}, all"
        )
    if "images" not in skip:
        with open(package) as f:
            executors = next(yaml.safe_load_all(f))["deploymentSpec"]["executors"].values()
        check_images(sorted({e["container"]["image"] for e in executors if "container" in e}))
    if "service-account" not in skip:
        check_service_account(settings.namespace, settings.service_account)
