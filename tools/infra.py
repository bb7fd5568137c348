"""Offline checks of the Dockerfiles and Kubernetes manifests (``make lint``); ``make apply``.

docs/cluster.md ("What the tests check") lists the checks. kubectl (with its kustomize) and
hadolint come from the virtual environment (``requirements.lock``); checkov from ``.venv-tools``.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from cnnvsmlp_pipelines.settings import ROOT, ClusterSettings, cluster_settings, read_env_file

MANIFESTS = ROOT / "manifests"
MULTI_USER = MANIFESTS / "multi-user"
KFP_OVERLAY = MANIFESTS / "kfp"
KFP_WORKFLOW_DEFAULTS = ROOT / "tools" / "data" / "kfp-2.17.0-workflow-controller-configmap.yaml"
GPU_ZONES_FILE = MANIFESTS / "settings" / "gpu-zones.yaml"
# The standalone install's namespace: there, runs take no Profile.
STANDALONE_NAMESPACE = "kubeflow"
# Namespaces that belong to Kubernetes or Kubeflow, never to a profile.
RESERVED_NAMESPACES = re.compile(r"^(default|kubeflow|kube-.*|istio-system|cert-manager)$")
PLACEHOLDER_OWNER = re.compile(r"@example\.(com|org|net)$|^$")
PROFILE_SELECTOR = "app.kubernetes.io/component=profile"
KUBERNETES_VERSION = "1.32.0"

# The Config Connector fields the pipeline and the docs rely on, by kind.
CONFIG_CONNECTOR_REQUIRED = {
    "ContainerNodePool": [
        "spec.location",
        "spec.clusterRef",
        "spec.autoscaling.minNodeCount",
        "spec.autoscaling.maxNodeCount",
        "spec.nodeConfig.machineType",
        "spec.nodeConfig.spot",
        "spec.nodeConfig.guestAccelerator",
        "spec.nodeConfig.taint",
    ],
    "IAMServiceAccount": ["metadata.name"],
    "IAMPolicyMember": ["spec.role", "spec.resourceRef.kind", "spec.resourceRef.name"],
    "StorageBucket": ["metadata.name", "spec.location", "spec.uniformBucketLevelAccess"],
}


def tool(name: str) -> str:
    """A command-line tool: the virtual environment's own, else the one on ``PATH``."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.is_file() else shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"{name} not found in {local.parent} or on PATH: run 'make setup' "
            "(requirements.lock installs it)"
        )
    return found


def render_manifests(folder: Path = MANIFESTS) -> list[dict]:
    """Render the kustomization with ``kubectl kustomize``; RuntimeError when that fails."""
    done = subprocess.run(
        [tool("kubectl"), "kustomize", str(folder)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"kustomize {folder}: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _get(obj: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def check_config_connector(obj: dict) -> list[str]:
    """Problems in a Config Connector resource: against its CRD's v1beta1 schema, and fields."""
    from pydantic import ValidationError

    kind = obj.get("kind", "")
    name = f"{kind}/{_get(obj, 'metadata.name')}"
    if not obj.get("apiVersion", "").endswith("/v1beta1"):
        return [f"{name}: {obj.get('apiVersion')}: only v1beta1 schemas are available offline"]
    try:
        model = importlib.import_module(f"cnrm_pydantic_models.{kind.lower()}").Model
    except ModuleNotFoundError:
        return [f"{name}: no Config Connector schema for kind {kind}"]
    problems = []
    try:
        model.model_validate(obj, strict=True)
    except ValidationError as err:
        for error in err.errors():
            path = ".".join(str(p) for p in error["loc"])
            problems.append(f"{name}: {path}: {error['msg']}")
    for field in CONFIG_CONNECTOR_REQUIRED.get(kind, ["spec"]):
        if _get(obj, field) in (None, "", []):
            problems.append(f"{name}: {field} is missing")
    return problems


def check_profile(obj: dict) -> list[str]:
    """Problems in a Kubeflow Profile (``kubeflow.org/v1``): its name and owner."""
    name = f"Profile/{_get(obj, 'metadata.name')}"
    problems = []
    if obj.get("apiVersion") != "kubeflow.org/v1":
        problems.append(f"{name}: apiVersion {obj.get('apiVersion')}, expected kubeflow.org/v1")
    if _get(obj, "spec.owner.kind") not in ("User", "Group"):
        problems.append(f"{name}: spec.owner.kind must be User or Group")
    if not _get(obj, "spec.owner.name"):
        problems.append(f"{name}: spec.owner.name is missing")
    return problems


def multi_user(settings: ClusterSettings | None = None) -> bool:
    """Whether the settings are a multi-user Kubeflow profile's (any namespace but KFP's)."""
    return (settings or cluster_settings()).namespace != STANDALONE_NAMESPACE


def check_profile_settings(settings: ClusterSettings | None = None) -> list[str]:
    """Problems that stop the multi-user overlay from being applied: the Profile's name, owner."""
    s = settings or cluster_settings()
    problems = []
    if RESERVED_NAMESPACES.match(s.namespace):
        problems.append(
            f"cluster-settings.env: NAMESPACE {s.namespace} is reserved and cannot be a "
            "Profile's: set it to your profile's name (e.g. team-a)"
        )
    if PLACEHOLDER_OWNER.search(s.profile_owner):
        problems.append(
            f"cluster-settings.env: PROFILE_OWNER {s.profile_owner or '(empty)'} is a "
            "placeholder: set it to the email the profile's owner signs in to Kubeflow with"
        )
    return problems


def gpu_zones(path: Path | None = None) -> list[str]:
    """The zones of ``manifests/settings/gpu-zones.yaml`` (or ``path``)."""
    return list(yaml.safe_load((path or GPU_ZONES_FILE).read_text()).get("zones") or [])


def check_settings(settings: ClusterSettings | None = None) -> list[str]:
    """Problems in the settings: values that repeat others and disagree, reserved names."""
    s = settings or cluster_settings()
    problems = []
    if s.namespace == "default" or s.namespace.startswith("kube-"):
        problems.append(
            f"cluster-settings.env: NAMESPACE {s.namespace} is reserved: use kubeflow "
            "(standalone KFP) or your profile's name (multi-user Kubeflow)"
        )
    zones = gpu_zones()
    outside = [z for z in zones if not z.startswith(f"{s.region}-")]
    if not zones or outside:
        problems.append(
            f"{GPU_ZONES_FILE.relative_to(ROOT)}: zones must be zones of REGION {s.region} "
            f"(e.g. {s.region}-a), at least one; found {zones}"
        )
    domain = f"@{s.project_id}.iam.gserviceaccount.com"
    if not s.gsa_email.endswith(domain):
        problems.append(f"cluster-settings.env: GSA_EMAIL {s.gsa_email} must end with {domain}")
    member = f"serviceAccount:{s.project_id}.svc.id.goog[{s.namespace}/{s.service_account}]"
    if s.workload_identity_member != member:
        problems.append(
            f"cluster-settings.env: WORKLOAD_IDENTITY_MEMBER must be {member} "
            "(PROJECT_ID, NAMESPACE and SERVICE_ACCOUNT)"
        )
    return problems


def check_objects(objects: list[dict]) -> list[str]:
    """Problems in rendered objects: schema violations, missing fields, placeholders."""
    import kubernetes_validate

    problems = []
    placeholders = set(read_env_file(MANIFESTS / "base" / "cluster-settings.env"))
    pattern = re.compile(r"\b(" + "|".join(sorted(placeholders)) + r")\b")
    for obj in objects:
        name = f"{obj.get('kind')}/{_get(obj, 'metadata.name')}"
        if obj.get("kind") != "ConfigMap":
            left = pattern.findall(yaml.safe_dump(obj))
            if left:
                problems.append(f"{name}: placeholder {left[0]} not replaced")
        if "cnrm.cloud.google.com" in obj.get("apiVersion", ""):
            problems += check_config_connector(obj)
            continue
        if obj.get("kind") == "Profile":
            problems += check_profile(obj)
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            path = ".".join(str(p) for p in err.path)
            problems.append(f"{name}: {path}: {err.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{name}: no Kubernetes schema for {obj.get('apiVersion')}")
    return problems


def lint_dockerfiles(folder: Path = ROOT / "images") -> list[str]:
    """Hadolint findings for every Dockerfile in ``images/``."""
    try:
        hadolint = tool("hadolint")
    except RuntimeError as err:
        return [str(err)]
    problems = []
    for dockerfile in sorted(folder.glob("*Dockerfile")):
        done = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
        if done.returncode != 0:
            problems += [line for line in done.stdout.splitlines() if line.strip()]
    return problems


TOOLS_VENV = ROOT / ".venv-tools"


def lint_checkov(objects: list[dict], checkov: Path | None = None) -> list[str]:
    """Checkov's findings on the rendered manifests and the Dockerfiles, offline.

    Each suppression is a ``checkov:skip=<check>:<reason>`` comment beside what it
    suppresses (in a Dockerfile, or an object's ``checkov.io/skip<n>`` annotation).
    """
    checkov = checkov or TOOLS_VENV / "bin" / "checkov"
    if not checkov.is_file():
        return [f"checkov: {checkov} not found: run 'make lint' (it installs it)"]
    # One folder of what is scanned: checkov reads only -d when -f is given with it.
    with tempfile.TemporaryDirectory(prefix="cnnvsmlp-checkov-") as tmp:
        (Path(tmp) / "manifests.yaml").write_text(yaml.safe_dump_all(objects))
        for dockerfile in sorted((ROOT / "images").glob("*Dockerfile")):
            shutil.copy(dockerfile, Path(tmp) / dockerfile.name)
        cmd = [str(checkov), "--skip-download", "--quiet", "--output", "json"]
        cmd += ["--framework", "kubernetes", "dockerfile", "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
    try:
        reports = json.loads(done.stdout or "[]")
    except json.JSONDecodeError:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        return [f"checkov: exited {done.returncode}: {' '.join(tail)}"]
    problems = []
    for report in reports if isinstance(reports, list) else [reports]:
        for failed in report.get("results", {}).get("failed_checks", []):
            where = failed["file_path"].lstrip("/").replace("manifests.yaml", "manifests/")
            problems.append(
                f"checkov: {failed['check_id']} {failed['check_name']}: {failed['resource']} "
                f"({where}:{failed['file_line_range'][0]})"
            )
    return problems


def lint_infra(with_checkov: bool = True) -> int:
    """Run every check (checkov too unless told not); print each verdict and problem; 0 or 1."""
    problems = lint_dockerfiles()
    print(f"lint: hadolint on images/*Dockerfile: {'ok' if not problems else 'FAILED'}")
    try:
        objects = render_manifests()
    except RuntimeError as err:
        problems.append(str(err))
        objects = []
    found = check_objects(objects)
    kinds = sorted({o["kind"] for o in objects})
    print(
        f"lint: kustomize manifests/ -> {len(objects)} objects ({', '.join(kinds)}): "
        f"{'ok' if objects and not found else 'FAILED'}"
    )
    problems += found
    try:
        overlay = [o for o in render_manifests(MULTI_USER) if o["kind"] == "Profile"]
    except RuntimeError as err:
        problems.append(str(err))
        overlay = []
    found = check_objects(overlay) if overlay else ["manifests/multi-user/: no Profile"]
    if multi_user():
        found += check_profile_settings()
        what = "Profile"
    else:
        what = "Profile (its name and owner are checked when NAMESPACE is a profile's)"
    print(f"lint: kustomize manifests/multi-user/ -> {what}: {'ok' if not found else 'FAILED'}")
    problems += found
    found = check_kfp_overlay()
    print(
        "lint: manifests/kfp/ over KFP 2.17.0's workflow defaults: training retried on "
        f"Failed and Error: {'ok' if not found else 'FAILED'}"
    )
    problems += found
    settings = check_settings()
    print(f"lint: cluster-settings.env agrees with itself: {'ok' if not settings else 'FAILED'}")
    problems += settings
    if with_checkov:
        found = lint_checkov(objects)
        print(f"lint: checkov on the manifests and Dockerfiles: {'ok' if not found else 'FAILED'}")
        problems += found
    for problem in problems:
        print(f"lint: {problem}")
    return 1 if problems else 0


def check_kfp_overlay() -> list[str]:
    """Problems in ``manifests/kfp/``: its ref, and its patch rendered over ``tools/data/``."""
    kustomization = yaml.safe_load((KFP_OVERLAY / "kustomization.yaml").read_text())
    problems = []
    refs = {r.rpartition("?ref=")[2] for r in kustomization.get("resources", [])}
    if refs != {kfp_version()}:
        problems.append(
            f"manifests/kfp/kustomization.yaml: KFP ref {sorted(refs)} must be the SDK's "
            f"{kfp_version()} (pyproject.toml)"
        )
    with tempfile.TemporaryDirectory(prefix="cnnvsmlp-kfp-") as tmp:
        shutil.copy(KFP_WORKFLOW_DEFAULTS, Path(tmp) / "upstream.yaml")
        for patch in kustomization.get("patches", []):
            shutil.copy(KFP_OVERLAY / patch["path"], Path(tmp) / patch["path"])
        (Path(tmp) / "kustomization.yaml").write_text(
            yaml.safe_dump({"resources": ["upstream.yaml"], "patches": kustomization["patches"]})
        )
        try:
            rendered = render_manifests(Path(tmp))
        except RuntimeError as err:
            return problems + [f"manifests/kfp/: {err}"]
    data = rendered[0]["data"]
    defaults = yaml.safe_load(data["workflowDefaults"])["spec"]
    retry = defaults.get("templateDefaults", {}).get("retryStrategy", {})
    if retry.get("retryPolicy") != "Always" or str(retry.get("limit")) != "0":
        problems.append(
            f"manifests/kfp/: template default retryStrategy {retry}: expected limit '0' "
            "and retryPolicy Always (retried tasks retry on Failed and on Error)"
        )
    if "ttlStrategy" not in defaults or "artifactRepository" not in data:
        problems.append("manifests/kfp/: the patch drops KFP's ttlStrategy or artifactRepository")
    return problems


def kfp_version() -> str:
    """The kfp SDK version pyproject.toml pins."""
    found = re.search(r'"kfp==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    return found.group(1) if found else "unknown"


def _run(cmd: list[str]) -> None:
    print("apply: " + " ".join(cmd[1:] if cmd[0].endswith("kubectl") else cmd), flush=True)
    if subprocess.run(cmd).returncode != 0:
        raise RuntimeError(f"apply: kubectl {cmd[1]} failed (its message is above)")


def apply_manifests(kubectl: str | None = None, timeout: str = "5m") -> int:
    """``make apply``: check, then apply the manifests; 0 when applied, else 1 (printed why).

    Multi-user Kubeflow: the Profile first, then, once the profile controller has made
    its namespace and ``default-editor`` service account, everything else.
    """
    s = cluster_settings()
    problems = check_settings(s) + (check_profile_settings(s) if multi_user(s) else [])
    for problem in problems:
        print(f"apply: {problem}")
    if problems:
        return 1
    try:
        kubectl = kubectl or tool("kubectl")
        if not multi_user(s):
            _run([kubectl, "apply", "-k", str(MANIFESTS)])
            return 0
        _run([kubectl, "apply", "-k", str(MULTI_USER), "-l", PROFILE_SELECTOR])
        _run([kubectl, "wait", "--for=create", f"namespace/{s.namespace}", f"--timeout={timeout}"])
        _run(
            [kubectl, "-n", s.namespace, "wait", "--for=create", "serviceaccount/default-editor"]
            + [f"--timeout={timeout}"]
        )
        _run([kubectl, "apply", "-k", str(MULTI_USER)])
    except RuntimeError as err:
        print(err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(apply_manifests() if sys.argv[1:] == ["apply"] else lint_infra())
