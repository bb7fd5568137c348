"""Offline checks of the cluster side: Dockerfiles and Kubernetes manifests.

- hadolint on every Dockerfile in ``images/``;
- ``kubectl kustomize manifests/`` renders the manifests (kustomize v5);
- every rendered Kubernetes object is validated against the Kubernetes
  OpenAPI schemas (kubernetes-validate, strict: unknown fields fail);
- Config Connector resources, whose CRD schemas cannot be fetched offline,
  are checked for the fields this project relies on;
- no placeholder (``NAMESPACE``, ``PROJECT_ID``, ...) is left unreplaced.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from cnnvsmlp.settings import ROOT, read_env_file

MANIFESTS = ROOT / "manifests"
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


def render_manifests(folder: Path = MANIFESTS) -> list[dict]:
    """Render the kustomization with ``kubectl kustomize``.

    Raises:
        RuntimeError: kubectl is missing or kustomize fails.
    """
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RuntimeError(
            "kubectl not found: it renders the manifests (kubectl kustomize). Install it, e.g. "
            "'apt-get install kubectl' from Google Cloud's apt repository"
        )
    done = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"kustomize {folder}: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _get(obj: dict, dotted: str):  # noqa: ANN202
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


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
            for field in CONFIG_CONNECTOR_REQUIRED.get(obj["kind"], ["spec"]):
                if _get(obj, field) in (None, "", []):
                    problems.append(f"{name}: {field} is missing")
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
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
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
    for problem in problems:
        print(f"lint: {problem}")
    return 1 if problems else 0
