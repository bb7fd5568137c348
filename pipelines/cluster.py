"""Submit and schedule pipelines on a Kubeflow Pipelines cluster with ``kfp.Client``.

Where the cluster is comes from the environment, read when a command runs:

- ``KFP_HOST`` (or kfp's own ``KF_PIPELINES_ENDPOINT``): the KFP API endpoint
  (``https://<host>/pipeline`` behind an ingress, or ``http://localhost:8080``
  through ``kubectl port-forward``);
- ``KFP_TOKEN``: a bearer token the endpoint accepts; surrounding whitespace
  (the newline a file or a Kubernetes secret ends with) is stripped, and a token
  with a space, a control or a non-ASCII character inside is refused; behind
  IAP that is an OIDC ID token for the IAP client id, never an access token;
- ``KFP_IAP_CLIENT_ID`` (or kfp's own ``KF_PIPELINES_IAP_OAUTH2_CLIENT_ID``):
  behind IAP, without ``KFP_TOKEN``: the OAuth client id of the IAP; an ID
  token for it is fetched with google-auth from a service account's
  credentials (``GOOGLE_APPLICATION_CREDENTIALS``, or the metadata server on
  GCE and GKE);
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
out. No token is ever printed: every :class:`ClusterError` has each form of
every token (raw, escaped, URL-encoded, base64) blanked.

``schedule`` keeps one recurring run per pipeline and config: a second
``make schedule`` replaces the first. KFP parses cron with robfig/cron v1
(``backend/src/apiserver/server/api_converter.go``); :func:`check_cron`
applies the same rules before any call, and refuses a schedule that never fires.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from urllib.parse import quote, quote_plus

from cnnvsmlp.config import ExperimentConfig
from cnnvsmlp.errors import UserError
from cnnvsmlp_pipelines.settings import ROOT, SETTINGS_FILE, cluster_settings

# A standalone KFP install runs everything in its own namespace, and its API
# takes no namespace on experiments and runs.
STANDALONE_NAMESPACE = "kubeflow"
# Where a pod's projected token for the KFP API is mounted (kfp's default).
SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
SKIP_CHECKS_ENV = "CNNVSMLP_SKIP_CHECKS"
# KFP's health check: a KFP 2 API answers {"commit_sha", "tag_name", "multi_user"}.
HEALTHZ = "/apis/v2beta1/healthz"
TIMEOUT_S = (10.0, 60.0)
"""Seconds to connect and to wait for each answer, in every request to the KFP API."""
LOG_FILE = ROOT / "build" / "cluster.log"
"""Where what kfp logs goes (its retries and tracebacks), every token blanked."""
CHECKS = ("images", "service-account")


class ClusterError(UserError):
    """The KFP API is unreachable or refused a call; its message never holds a token."""

    def __init__(self, message: str):
        super().__init__(redact(message))


# Every token this process has read or fetched, blanked in every message.
_SECRETS: set[str] = set()


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
    forms = set().union(*(_forms(s) for s in _SECRETS)) if _SECRETS else set()
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "<token>")
    return text


def read_token(value: str, source: str) -> str:
    """A bearer token from ``source``: surrounding whitespace stripped, the rest checked.

    The raw value is remembered for redaction before it is checked, so no
    message, this function's included, can show it.

    Raises:
        ClusterError: the token is empty or holds a space, a control or a
            non-ASCII character (an HTTP header cannot carry it as sent).
    """
    _SECRETS.add(value)
    token = value.strip()
    if not token:
        raise ClusterError(f"{source} is empty (only whitespace): set it to the bearer token")
    _SECRETS.add(token)
    for position, char in enumerate(token, 1):
        if not ("!" <= char <= "~"):
            kind = (
                "a space"
                if char == " "
                else ("a non-ASCII character" if ord(char) > 127 else "a control character")
            )
            raise ClusterError(
                f"{source}: the token holds {kind} at position {position} of {len(token)}; "
                "a bearer token is printable ASCII: copy it again without the extra text"
            )
    return token


def _env(project: str, kfp_own: str) -> str | None:
    """The project's variable, else kfp.Client's own; refuses the two disagreeing."""
    ours = os.environ.get(project, "").strip()
    theirs = os.environ.get(kfp_own, "").strip()
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
    pipeline_root: str | None
    iap_client_id: str | None = None
    token_path: str | None = None

    @classmethod
    def from_env(cls) -> Target:
        """Read ``KFP_HOST`` and the optional settings from the environment.

        Raises:
            ClusterError: ``KFP_HOST`` is not set.
        """
        host = (_env("KFP_HOST", "KF_PIPELINES_ENDPOINT") or "").rstrip("/")
        if not host:
            raise ClusterError(
                "KFP_HOST is not set: export KFP_HOST=https://<your KFP endpoint> "
                "(or http://localhost:8080 after kubectl port-forward)"
            )
        raw_token = os.environ.get("KFP_TOKEN")
        token = read_token(raw_token, "KFP_TOKEN") if raw_token else None
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
            token=token,
            namespace=None if namespace == STANDALONE_NAMESPACE else namespace,
            pipeline_root=(
                os.environ.get("KFP_PIPELINE_ROOT") or f"gs://{settings.bucket}/pipeline-root"
            ),
            iap_client_id=_env("KFP_IAP_CLIENT_ID", "KF_PIPELINES_IAP_OAUTH2_CLIENT_ID"),
            token_path=token_path if os.path.isfile(token_path) else None,
        )

    def redact(self, text: str) -> str:
        """``text`` with every token blanked (see :func:`redact`)."""
        return redact(text)


# robfig/cron v1 (spec.go): each field's bounds and names; "?" means "*".
_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
_WEEKDAYS = "sun mon tue wed thu fri sat".split()
_CRON_FIELDS = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i for i, m in enumerate(_MONTHS, 1)}),
    ("day of week", 0, 6, {d: i for i, d in enumerate(_WEEKDAYS)}),
)
_CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight")
_CRON_DESCRIPTORS += ("@hourly",)
# Go's time.ParseDuration: a sign, then numbers with units, in seconds.
_GO_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1,
    "m": 60,
    "h": 3600,
}
_GO_NUMBER = r"(\d+\.?\d*|\.\d+)"
_GO_DURATION = re.compile(r"[-+]?(?:" + _GO_NUMBER + "(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h))+")
# robfig's Next gives up after five years: a schedule with no time in them never fires.
_CRON_HORIZON_DAYS = 5 * 366


def _cron_field(cron: str, text: str, name: str, low: int, high: int, names: dict) -> tuple:
    """The values a field selects and whether it is a star, as robfig's getField reads it."""

    def number(part: str) -> int:
        if part.lower() in names:
            return names[part.lower()]
        if not re.fullmatch(r"[+-]?\d+", part):
            raise ClusterError(f"cron {cron!r}: {name} {part!r} is not a number")
        if int(part) < 0:
            raise ClusterError(f"cron {cron!r}: {name} {part!r} is negative")
        return int(part)

    values, star = set(), False
    for expr in (e for e in text.split(",") if e):
        span, *steps = expr.split("/")
        if len(steps) > 1:
            raise ClusterError(f"cron {cron!r}: {name} {expr!r} has more than one '/'")
        bounds = span.split("-")
        if bounds[0] in ("*", "?"):
            start, end, star = low, high, True
        elif len(bounds) > 2:
            raise ClusterError(f"cron {cron!r}: {name} {expr!r} has more than one '-'")
        else:
            start = number(bounds[0])
            end = number(bounds[1]) if len(bounds) == 2 else start
        step = number(steps[0]) if steps else 1
        if steps and len(bounds) == 1:
            end = high  # "N/step" means "N-max/step"
        if start < low or end > high:
            raise ClusterError(
                f"cron {cron!r}: {name} {expr!r} is out of range; it takes {low}-{high}"
            )
        if start > end:
            raise ClusterError(f"cron {cron!r}: {name} {expr!r} begins after it ends")
        if step == 0:
            raise ClusterError(f"cron {cron!r}: {name} {expr!r} has a step of 0")
        values |= set(range(start, end + 1, step))
    return values, star


def _cron_fires(dom: tuple, months: tuple, dow: tuple, today: date) -> bool:
    """Whether some day of the next five years matches, with robfig's day rule.

    A day matches its day of month and its day of week; when neither field is
    a star (``*`` or ``?``), either one is enough.
    """
    for offset in range(_CRON_HORIZON_DAYS):
        day = today + timedelta(days=offset)
        if day.month not in months[0]:
            continue
        by_dom, by_dow = day.day in dom[0], (day.weekday() + 1) % 7 in dow[0]
        if (by_dom and by_dow) if (dom[1] or dow[1]) else (by_dom or by_dow):
            return True
    return False


def check_cron(cron: str, today: date | None = None) -> str:
    """Accept what KFP's cron parser accepts (robfig/cron v1) and that fires; say why not.

    Six fields, seconds first, each in range (numbers, ``*``, ``?``, ``a-b``,
    ``/step``, lists, month and weekday names), or a descriptor (``@weekly``,
    ``@every 1h30m``); a 5-field crontab is refused with the reason, and so is
    a schedule with no time in the next five years (31 February).

    Args:
        cron: the expression.
        today: the first day to look for a time from; today by default.

    Returns:
        The expression, its fields separated by single spaces.

    Raises:
        ClusterError: the expression KFP would refuse, misread or never fire.
    """
    text = cron.strip()
    if text.startswith("@"):
        if text in _CRON_DESCRIPTORS:
            return text
        every = text.removeprefix("@every ").strip()
        if text.startswith("@every ") and _GO_DURATION.fullmatch(every):
            seconds = sum(
                float(n) * _GO_UNITS[u] for n, u in re.findall(_GO_NUMBER + r"(\D+)", every)
            )
            if every.startswith("-") or seconds < 1:
                raise ClusterError(f"cron {cron!r}: @every takes a duration of 1s or more")
            return f"@every {every}"
        raise ClusterError(
            f"cron {cron!r}: unknown descriptor; KFP takes {', '.join(_CRON_DESCRIPTORS)} "
            "and '@every <duration>' (e.g. '@every 1h30m')"
        )
    fields = text.split()
    if len(fields) == 5:
        raise ClusterError(
            f"cron {cron!r} has 5 fields: KFP's cron has 6, seconds first "
            f"('0 {text}' runs at the time you meant); KFP would read the 5 fields "
            "shifted by one place and run at the wrong times"
        )
    if len(fields) != 6:
        raise ClusterError(
            f"cron {cron!r}: expected 6 fields, seconds first, e.g. '0 0 3 * * 1' (Mondays "
            "03:00), or a descriptor such as '@weekly'"
        )
    parsed = [_cron_field(cron, f, *spec) for f, spec in zip(fields, _CRON_FIELDS, strict=True)]
    if not _cron_fires(parsed[3], parsed[4], parsed[5], today or date.today()):
        raise ClusterError(
            f"cron {cron!r}: no day of the next five years matches its day of month, month "
            "and day of week, so KFP would accept it and never run it"
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
    return read_token(token, f"the ID token google-auth fetched for {target.iap_client_id}")


def _client(target: Target):
    """A ``kfp.Client`` for ``target``, once its host has answered as a KFP 2 API.

    Every request the client makes then has :data:`TIMEOUT_S` and one retry;
    what kfp logs goes to :data:`LOG_FILE`, tokens blanked.
    """
    import warnings

    import kfp
    import urllib3

    auth: dict = {}
    if target.token:
        auth["existing_token"] = target.token
    elif target.iap_client_id:
        auth["existing_token"] = iap_id_token(target)
    elif target.token_path:
        auth["existing_token"] = _token_file(target.token_path)
    _log_to_file()
    _confirm_api(target, auth.get("existing_token"))
    with warnings.catch_warnings():  # "only works with KFP v2.0.0-beta.2 and later": ours is 2.x
        warnings.filterwarnings("ignore", category=FutureWarning, module="kfp")
        client = _call(
            target,
            "connect",
            kfp.Client,
            host=target.host,
            namespace=target.namespace or "kubeflow",
            **auth,
        )
    pool = client._run_api.api_client.rest_client.pool_manager  # shared by every API of the client
    pool.connection_pool_kw.update(
        timeout=urllib3.Timeout(connect=TIMEOUT_S[0], read=TIMEOUT_S[1]), retries=1
    )
    return client


def _confirm_api(target: Target, token: str | None) -> None:
    """Refuse a host whose ``healthz`` does not answer as a KFP 2 API does, before any write.

    Raises:
        ClusterError: the host is unreachable, or answered something else, named in the line.
    """
    import requests

    url = target.host.rstrip("/") + HEALTHZ
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        answer = requests.get(url, headers=headers, timeout=TIMEOUT_S, allow_redirects=False)
    except requests.RequestException as err:
        raise ClusterError(
            target.redact(f"{target.host}: unreachable while trying to connect ({_reason(err)})")
        ) from None
    try:
        body = answer.json() if answer.ok else None
    except ValueError:  # requests' JSONDecodeError
        body = None
    version = str(body.get("tag_name") or "2") if isinstance(body, dict) else ""
    if isinstance(body, dict) and isinstance(body.get("multi_user"), bool):
        if version.removeprefix("v").split(".")[0] == "2":
            return
    said = " ".join(answer.text[:120].split()) or "nothing"
    kind = answer.headers.get("content-type", "no content type")
    raise ClusterError(
        target.redact(
            f"{target.host}: not a Kubeflow Pipelines 2 API: GET {HEALTHZ} answered HTTP "
            f"{answer.status_code} ({kind}): {said}; set KFP_HOST to the KFP API "
            "(behind an ingress, https://<host>/pipeline)"
        )
    )


def _log_to_file() -> None:
    """Send what kfp and urllib3 log (retries, tracebacks) to :data:`LOG_FILE`, not the screen."""
    import logging

    root = logging.getLogger()
    if any(getattr(h, "cnnvsmlp", False) for h in root.handlers):
        return
    LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(LOG_FILE)
    handler.cnnvsmlp = True
    handler.addFilter(_redacted)
    root.addHandler(handler)


def _redacted(record) -> bool:
    record.msg, record.args = redact(record.getMessage()), ()
    if record.exc_info:
        import traceback

        record.msg += "\n" + redact("".join(traceback.format_exception(*record.exc_info)))
        record.exc_info = record.exc_text = None
    return True


def _token_file(path: str) -> str:
    """The projected service-account token in ``path``, read and checked like ``KFP_TOKEN``.

    Raises:
        ClusterError: the file cannot be read, or its token is malformed.
    """
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            value = f.read()
    except OSError as err:
        raise ClusterError(f"KF_PIPELINES_SA_TOKEN_PATH {path}: {err.strerror}") from None
    return read_token(value, f"the token file {path}")


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


def _say(line: str) -> None:
    print(redact(line))


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

    Asks the registry through the Docker client (``cnnvsmlp_pipelines.images.images_exist``);
    without one, says in one line that the check was left out.

    Raises:
        ClusterError: an image is missing, naming it and how to build and push it.
    """
    from cnnvsmlp_pipelines.images import images_exist

    if shutil.which("docker") is None:
        _say("check: images not checked: no docker client here to ask the registry")
        return
    missing = images_exist(refs)
    if missing:
        raise ClusterError(
            f"{', '.join(missing)}: not in the registry (or not readable with your docker "
            "credentials); build and push with 'make images PUSH=1', or without Docker with "
            "'gcloud builds submit --config images/cloudbuild.yaml' (docs/cluster.md step 8); "
            f"{SKIP_CHECKS_ENV}=images leaves this check out"
        )
    _say(f"check: the registry has {len(refs)} image(s) the pipeline names")


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
        _say("check: service account not checked: the kubernetes package is not installed")
        return
    path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    try:
        if any(os.path.isfile(p) for p in path.split(os.pathsep)):
            api = config.new_client_from_config(config_file=path)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
            api = client.ApiClient()
        else:
            _say(f"check: service account not checked: no kube config at {path}")
            return
    except Exception as err:  # noqa: BLE001 - ConfigException, a missing exec auth plugin, ...
        _say(f"check: service account not checked: kube config {path}: {_reason(err)}")
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
        _say(f"check: service account not checked: {where} answered HTTP {err.status}")
        return
    except Exception as err:  # noqa: BLE001 - urllib3 connection errors, timeouts
        _say(f"check: service account not checked: {where} unreachable ({_reason(err)})")
        return
    _say(f"check: service account {name} exists in namespace {namespace}")


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


def _name_filter(name: str) -> str:
    return json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]}
    )


def _find_id(target: Target, what: str, listed, items: str, key: str) -> str | None:
    """The id of the one object a name-filtered list answered with, or None."""
    found = getattr(listed, items) or []
    if len(found) > 1:
        raise ClusterError(
            f"{target.host}: {len(found)} {what}s of that name; delete all but one in the KFP UI"
        )
    return getattr(found[0], key) if found else None


def _upload(client, target: Target, name: str, package: str) -> tuple[str, str]:
    """Upload a compiled pipeline: a new one, or a new version of the one of that name.

    On a multi-user deployment the pipeline is looked up and uploaded in the
    profile's namespace, so other profiles do not see it.
    """
    version = datetime.now(timezone.utc).strftime(f"{name}-%Y%m%d-%H%M%S")
    listed = _call(
        target,
        f"look up pipeline {name}",
        client.list_pipelines,
        filter=_name_filter(name),
        namespace=target.namespace,
    )
    pipeline_id = _find_id(target, f"pipeline {name}", listed, "pipelines", "pipeline_id")
    if pipeline_id is None:
        pipeline = _call(
            target,
            f"upload pipeline {name}",
            client.upload_pipeline,
            package,
            pipeline_name=name,
            namespace=target.namespace,
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


def _experiment_name(config: ExperimentConfig, experiment: str | None) -> str:
    return experiment or config.name


def _experiment(client, target: Target, config: ExperimentConfig, experiment: str | None) -> str:
    name = _experiment_name(config, experiment)
    created = _call(
        target,
        f"create experiment {name}",
        client.create_experiment,
        name,
        namespace=target.namespace,
    )
    return created.experiment_id


def _existing_experiment(client, target: Target, name: str) -> str | None:
    """The id of the experiment of that name, or None; never creates one."""
    listed = _call(
        target,
        f"look up experiment {name}",
        client.list_experiments,
        filter=_name_filter(name),
        namespace=target.namespace,
    )
    return _find_id(target, f"experiment {name}", listed, "experiments", "experiment_id")


def _recurring_runs(client, target: Target, experiment_id: str, name: str) -> list:
    """Every recurring run of that name in the experiment, through every page."""
    found, token = [], ""
    while True:
        listed = _call(
            target,
            "list recurring runs",
            client.list_recurring_runs,
            page_token=token,
            page_size=100,
            experiment_id=experiment_id,
            filter=_name_filter(name),
        )
        found += [r for r in (listed.recurring_runs or []) if r.display_name == name]
        token = listed.next_page_token or ""
        if not token:
            return found


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
    from cnnvsmlp.provenance import stamp

    # The commit and time of this submission; the comparison takes KFP's job id as the run id.
    config = stamp(config, "", "cluster")
    target, client, shared = _prepare(pipeline, config, experiment)
    job = f"{pipeline}-{config.name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    run = _call(target, "start the run", client.run_pipeline, job_name=job, **shared)
    print(f"submit: run {run.run_id} in experiment {_experiment_name(config, experiment)}")
    print(f"submit: {target.host}/#/runs/details/{run.run_id}")
    return run.run_id


def schedule_name(pipeline: str, config: ExperimentConfig) -> str:
    """The recurring run's name: one schedule per pipeline and experiment config."""
    return f"{pipeline}-{config.name}-schedule"


def schedule(
    pipeline: str, config: ExperimentConfig, cron: str, experiment: str | None = None
) -> str:
    """Create the recurring run, replacing one of the same name in the experiment.

    No catch-up, one run at a time, no cached training. KFP does not keep
    names unique and ``max_concurrency`` holds per recurring run, so two of the
    same name would both fire and compete for the GPU quota: the new one is
    created first, then every older one of its name is deleted.

    Returns:
        The recurring run's id.

    Raises:
        ClusterError: a cron KFP would refuse or misread, ``KFP_HOST`` unset or
            unreachable, or a call refused.
    """
    cron = check_cron(cron)
    target, client, shared = _prepare(pipeline, config, experiment)
    name = schedule_name(pipeline, config)
    recurring = _call(
        target,
        "create the recurring run",
        client.create_recurring_run,
        job_name=name,
        cron_expression=cron,
        max_concurrency=1,
        no_catchup=True,
        # No enable_caching here: kfp.Client applies it only to a pipeline package,
        # never to a version reference. The uploaded IR turns caching off for
        # training, evaluation and comparison, so every scheduled run retrains.
        **shared,
    )
    new_id = recurring.recurring_run_id
    for old in _recurring_runs(client, target, shared["experiment_id"], name):
        if old.recurring_run_id == new_id:
            continue
        _call(
            target,
            f"delete the replaced recurring run {old.recurring_run_id} (delete it with "
            "'make unschedule' and schedule again)",
            client.delete_recurring_run,
            old.recurring_run_id,
        )
        print(f"schedule: replaced recurring run {old.recurring_run_id} ({name})")
    print(
        f"schedule: recurring run {new_id} '{cron}' in experiment "
        f"{_experiment_name(config, experiment)}"
    )
    print(f"schedule: {target.host}/#/recurringrun/details/{new_id}")
    return new_id


def unschedule(pipeline: str, config: ExperimentConfig, experiment: str | None = None) -> int:
    """Delete the recurring runs that :func:`schedule` made for this pipeline and config.

    Creates nothing: a missing experiment means there is nothing to delete.

    Returns:
        How many were deleted.
    """
    target = Target.from_env()
    client = _client(target)
    name = schedule_name(pipeline, config)
    experiment_name = _experiment_name(config, experiment)
    experiment_id = _existing_experiment(client, target, experiment_name)
    if experiment_id is None:
        print(f"unschedule: no experiment named {experiment_name}, so no recurring run {name}")
        return 0
    found = _recurring_runs(client, target, experiment_id, name)
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
