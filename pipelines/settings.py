"""Cluster values shared by the manifests (kustomize substitutes them) and the pipeline."""

from functools import cache
from pathlib import Path

from pydantic import ConfigDict, Field

from cnnvsmlp.outputs import Record

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_FILE = ROOT / "manifests" / "base" / "cluster-settings.env"


class ClusterSettings(Record):
    """Where the pipeline's tasks run on the cluster."""

    model_config = ConfigDict(frozen=True)

    namespace: str = Field(alias="NAMESPACE")
    service_account: str = Field(alias="SERVICE_ACCOUNT")
    gpu_node_selector_key: str = Field(alias="GPU_NODE_SELECTOR_KEY")
    gpu_node_selector_value: str = Field(alias="GPU_NODE_SELECTOR_VALUE")
    gpu_toleration_key: str = Field(alias="GPU_TOLERATION_KEY")
    gpu_resource: str = Field(alias="GPU_RESOURCE")
    gpu_quota: int = Field(alias="GPU_QUOTA", ge=0)
    project_id: str = Field(alias="PROJECT_ID")
    region: str = Field(alias="REGION")
    cluster_name: str = Field(alias="CLUSTER_NAME")
    gsa_email: str = Field(alias="GSA_EMAIL")
    workload_identity_member: str = Field(alias="WORKLOAD_IDENTITY_MEMBER")
    bucket: str = Field(alias="BUCKET")
    profile_owner: str = Field(alias="PROFILE_OWNER")


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a kustomize ``envs`` file: ``KEY=VALUE`` lines, ``#`` comments."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}:{number}: expected KEY=VALUE")
        values[key.strip()] = value.strip()
    return values


@cache
def cluster_settings(path: Path = SETTINGS_FILE) -> ClusterSettings:
    """The cluster settings, read once from ``cluster-settings.env``."""
    return ClusterSettings.model_validate(read_env_file(path))
