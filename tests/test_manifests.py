"""Dockerfiles and manifests pass the offline checks, and agree with the pipeline."""

from __future__ import annotations

import re

import pytest
import yaml

from cnnvsmlp_pipelines import compile_pipeline
from cnnvsmlp_pipelines.settings import ROOT, cluster_settings
from tools import infra
from tools.infra import (
    check_objects,
    kfp_version,
    lint_dockerfiles,
    lint_infra,
    render_manifests,
)


@pytest.fixture(scope="module")
def objects():
    return {(o["kind"], o["metadata"]["name"]): o for o in render_manifests()}


def test_lint_infra_passes(capsys):
    assert lint_infra(with_checkov=False) == 0  # checkov: test_checkov_* below
    out = capsys.readouterr().out
    assert "hadolint on images/*Dockerfile: ok" in out and "objects" in out


def test_dockerfiles_run_as_non_root_and_are_linted():
    assert lint_dockerfiles() == []
    for name in ("cpu.Dockerfile", "gpu.Dockerfile"):
        text = (ROOT / "images" / name).read_text()
        assert re.search(r"^USER 10001$", text, re.M)
        assert "--require-hashes" in text and ":latest" not in text


def test_schema_violations_are_reported(objects):
    role = dict(objects[("Role", "cnnvsmlp-pipeline-runner")])
    role["rules"] = [{"apiGroups": [""], "resources": ["pods"], "verbs": "get", "colour": 1}]
    problems = check_objects([role])
    assert problems and problems[0].startswith("Role/cnnvsmlp-pipeline-runner: rules")


def test_unreplaced_placeholder_and_missing_cr_field_are_reported(objects):
    sa = {**objects[("ServiceAccount", cluster_settings().service_account)]}
    sa["metadata"] = {**sa["metadata"], "namespace": "NAMESPACE"}
    pool = {**objects[("ContainerNodePool", "gpu-pool")], "spec": {"location": "x"}}
    problems = check_objects([sa, pool])
    assert any("placeholder NAMESPACE not replaced" in p for p in problems)
    assert any(p == "ContainerNodePool/gpu-pool: spec.nodeConfig.spot is missing" for p in problems)


def test_manifests_and_pipeline_share_the_same_values(objects, tmp_path):
    s = cluster_settings()
    for (kind, _), obj in objects.items():
        if "cnrm.cloud.google.com" in obj["apiVersion"]:
            assert obj["metadata"]["annotations"]["cnrm.cloud.google.com/project-id"] == (
                s.project_id
            ), kind
    sa = objects[("ServiceAccount", s.service_account)]
    assert sa["metadata"]["namespace"] == s.namespace
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == s.gsa_email
    binding = objects[("RoleBinding", "cnnvsmlp-pipeline-runner")]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": s.service_account, "namespace": s.namespace}
    ]
    wi = objects[("IAMPolicyMember", "cnnvsmlp-runner-workload-identity")]["spec"]["member"]
    assert wi == f"serviceAccount:{s.project_id}.svc.id.goog[{s.namespace}/{s.service_account}]"
    quota = objects[("ResourceQuota", "gpu-quota")]["spec"]["hard"]
    assert quota == {f"requests.{s.gpu_resource}": str(s.gpu_quota)}

    pool = objects[("ContainerNodePool", "gpu-pool")]["spec"]
    assert pool["autoscaling"]["minNodeCount"] == 0 and pool["nodeConfig"]["spot"] is True
    assert pool["nodeConfig"]["guestAccelerator"][0]["type"] == s.gpu_node_selector_value
    assert pool["nodeConfig"]["taint"][0]["key"] == s.gpu_toleration_key
    assert pool["location"] == s.region
    assert pool["clusterRef"]["external"] == (
        f"projects/{s.project_id}/locations/{s.region}/clusters/{s.cluster_name}"
    )
    assert objects[("StorageBucket", s.bucket)]["spec"]["location"] == s.region
    assert s.gpu_node_selector_key == "cloud.google.com/gke-accelerator"  # the label GKE sets

    docs = list(yaml.safe_load_all(compile_pipeline("compare", tmp_path).read_text()))
    train = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-model"]
    assert train["nodeSelector"]["labels"] == {
        s.gpu_node_selector_key: pool["nodeConfig"]["guestAccelerator"][0]["type"]
    }
    assert train["tolerations"][0]["key"] == pool["nodeConfig"]["taint"][0]["key"]


def test_config_connector_resources_are_checked_against_their_crd_schema(objects):
    pool = yaml.safe_load(yaml.safe_dump(objects[("ContainerNodePool", "gpu-pool")]))
    pool["spec"]["nodeConfig"]["spott"] = True  # a typo the cluster would reject
    pool["spec"]["autoscaling"]["maxNodeCount"] = "4"  # a string where the CRD has an integer
    problems = check_objects([pool])
    assert "ContainerNodePool/gpu-pool: spec.nodeConfig.spott: Extra inputs are not permitted" in (
        problems
    )
    assert any(
        p.startswith("ContainerNodePool/gpu-pool: spec.autoscaling.maxNodeCount") for p in problems
    )
    unknown = {"apiVersion": "compute.cnrm.cloud.google.com/v1beta1", "kind": "ComputeThing"}
    assert check_objects([unknown]) == [
        "ComputeThing/None: no Config Connector schema for kind ComputeThing"
    ]


def test_settings_that_repeat_values_must_agree():
    from tools.infra import check_settings

    s = cluster_settings()
    assert check_settings(s) == []
    moved = s.model_copy(update={"namespace": "team-a"})
    assert check_settings(moved) == [
        "cluster-settings.env: WORKLOAD_IDENTITY_MEMBER must be "
        f"serviceAccount:{s.project_id}.svc.id.goog[team-a/{s.service_account}] "
        "(PROJECT_ID, NAMESPACE and SERVICE_ACCOUNT)"
    ]
    other = s.model_copy(update={"gsa_email": "runner@elsewhere.iam.gserviceaccount.com"})
    assert "must end with @" in check_settings(other)[0]


def test_google_service_account_name_comes_from_gsa_email(objects):
    gsa_name = cluster_settings().gsa_email.split("@")[0]
    assert ("IAMServiceAccount", gsa_name) in objects
    wi = objects[("IAMPolicyMember", "cnnvsmlp-runner-workload-identity")]["spec"]
    assert wi["resourceRef"] == {"kind": "IAMServiceAccount", "name": gsa_name}
    bucket = objects[("IAMPolicyMember", "cnnvsmlp-runner-bucket")]["spec"]
    assert bucket["memberFrom"] == {"serviceAccountRef": {"name": gsa_name}}


KFP_ROLE = ROOT / "tests" / "data" / "kfp-pipeline-runner-role.yaml"

# What KFP's pipeline-runner Role grants that ours leaves out, and why.
NOT_NEEDED = {
    ("", "secrets"): "only mlpipeline-minio-artifact, by name (Argo's log archiving)",
    ("", "configmaps"): "only kfp-launcher, by name, and only get",
    ("", "persistentvolumes"): "no task mounts a volume",
    ("", "persistentvolumeclaims"): "no task mounts a volume",
    ("snapshot.storage.k8s.io", "volumesnapshots"): "no volumes",
    ("argoproj.io", "workflows"): "tasks never read or change their workflow",
    ("argoproj.io", "workflowtasksets"): "no executor plugins run as this account",
    ("argoproj.io", "workflowtasksets/status"): "no executor plugins run as this account",
    ("argoproj.io", "workflowtaskresults"): "only create and patch, what the wait container does",
    ("", "pods"): "get, watch and patch only: the launcher and wait container on their own pod",
    ("", "pods/exec"): "nothing execs into a pod",
    ("", "pods/log"): "get only",
    ("", "services"): "no task serves anything",
    ("", "deployments"): "no task deploys anything",
    ("", "replicasets"): "no task deploys anything",
    ("apps", "deployments"): "no task deploys anything",
    ("apps", "replicasets"): "no task deploys anything",
    ("extensions", "deployments"): "no task deploys anything",
    ("extensions", "replicasets"): "no task deploys anything",
    ("kubeflow.org", "*"): "no Katib, training operator or KServe objects",
    ("batch", "jobs"): "no task starts a Job",
    ("machinelearning.seldon.io", "seldondeployments"): "no serving",
    ("mlflow.kubeflow.org", "experiments"): "no MLflow",
}


def _grants(rules: list[dict]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def _allowed(granted: dict, group: str, resource: str, verb: str) -> bool:
    for (g, r), verbs in granted.items():
        if g == group and r in (resource, "*") and (verb in verbs or "*" in verbs):
            return True
    return False


def test_role_grants_nothing_kfps_pipeline_runner_does_not(objects):
    ours = objects[("Role", "cnnvsmlp-pipeline-runner")]["rules"]
    kfp = _grants(yaml.safe_load(KFP_ROLE.read_text())["rules"])
    for (group, resource), verbs in _grants(ours).items():
        for verb in verbs:
            assert _allowed(kfp, group, resource, verb), (group, resource, verb)
    # what KFP's grants and ours does not (or only for named objects) is listed with its reason
    unrestricted = _grants([r for r in ours if "resourceNames" not in r])
    for key, verbs in kfp.items():
        if verbs - unrestricted.get(key, set()):
            assert key in NOT_NEEDED, f"{key}: KFP grants {sorted(verbs)}; say why ours does not"
    assert set(NOT_NEEDED) <= set(kfp)
    assert not [r for r in ours if "*" in r["verbs"] or "*" in r["resources"]]


def test_role_lets_argos_wait_container_read_the_artifact_secret(objects):
    rules = objects[("Role", "cnnvsmlp-pipeline-runner")]["rules"]
    secrets = [r for r in rules if "secrets" in r["resources"]]
    assert secrets == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["mlpipeline-minio-artifact"],
            "verbs": ["get"],
        }
    ]


def test_shipped_settings_are_those_of_the_documented_standalone_install(objects):
    from cnnvsmlp_pipelines.cluster_access import STANDALONE_NAMESPACE
    from tools.infra import check_settings

    s = cluster_settings()
    assert s.namespace == STANDALONE_NAMESPACE and check_settings(s) == []
    # KFP owns its namespace: applying or deleting manifests/ must never touch it
    assert not [key for key in objects if key[0] == "Namespace"]
    for guide in ("README.md", "docs/cluster.md"):
        text = (ROOT / guide).read_text()
        assert f"NAMESPACE={s.namespace}" in text, guide
    guide = (ROOT / "docs" / "cluster.md").read_text()
    assert f"[{s.namespace}/{s.service_account}]" in guide


def test_multi_user_overlay_ships_a_profile_not_a_bare_namespace():
    rendered = render_manifests(ROOT / "manifests" / "multi-user")
    kinds = sorted(o["kind"] for o in rendered)
    assert "Namespace" not in kinds and kinds.count("Profile") == 1
    profile = next(o for o in rendered if o["kind"] == "Profile")
    s = cluster_settings()
    assert profile["metadata"]["name"] == s.namespace
    assert profile["spec"]["owner"] == {"kind": "User", "name": s.profile_owner}
    assert check_objects([profile]) == []
    broken = {**profile, "spec": {"owner": {"kind": "User"}}}
    assert check_objects([broken]) == [f"Profile/{s.namespace}: spec.owner.name is missing"]


def test_readme_and_the_cluster_guide_walk_the_same_path():
    for guide in ("README.md", "docs/cluster.md"):
        text = (ROOT / guide).read_text()
        for step in (
            "--workload-pool",
            "--enable-autoscaling --min-nodes 1 --max-nodes 3",
            "roles/artifactregistry.reader",  # the nodes pull the images
            f"PIPELINE_VERSION={kfp_version()}",
            "kubectl apply -k manifests/",
            "kubectl apply -k manifests/multi-user/",
            "make images PUSH=1",
            "KFP_IAP_CLIENT_ID",
            "CNNVSMLP_SKIP_CHECKS",
            "cnnvsmlp-pipeline-runner",  # what a run started from the UI must name
        ):
            assert step in text, f"{guide}: {step}"
        assert "KFP_TOKEN=$(gcloud auth print-access-token)" not in text, guide


# ---------------------------------------------------------------- the KFP backend and its retries


def test_every_guide_names_the_one_kfp_version_the_sdk_pins():
    version = kfp_version()
    assert version == "2.17.0"
    overlay = (ROOT / "manifests" / "kfp" / "kustomization.yaml").read_text()
    assert re.findall(r"\?ref=(\S+)", overlay) == [version]
    for guide in ("README.md", "docs/cluster.md"):
        text = (ROOT / guide).read_text()
        assert set(re.findall(r"PIPELINE_VERSION=(\S+)", text)) == {version}, guide
        assert "kubectl apply -k manifests/kfp/" in text, guide
    for path in ("docs/cluster.md", "pipelines/placement.py"):
        assert "2.15" not in (ROOT / path).read_text(), path


def test_kfp_overlay_retries_training_on_failed_and_error():
    assert infra.check_kfp_overlay() == []
    upstream = yaml.safe_load(infra.KFP_WORKFLOW_DEFAULTS.read_text())
    retry = yaml.safe_load(upstream["data"]["workflowDefaults"])["spec"]["templateDefaults"]
    assert retry["retryStrategy"] == {"limit": "2", "retryPolicy": "OnError"}  # KFP 2.17's own


def test_a_kfp_overlay_that_keeps_on_error_is_reported(tmp_path, monkeypatch):
    for name in ("kustomization.yaml", "workflow-defaults.yaml"):
        text = (infra.KFP_OVERLAY / name).read_text()
        (tmp_path / name).write_text(text.replace("retryPolicy: Always", "retryPolicy: OnError"))
    monkeypatch.setattr(infra, "KFP_OVERLAY", tmp_path)
    problems = infra.check_kfp_overlay()
    assert len(problems) == 1 and "expected limit '0' and retryPolicy Always" in problems[0]


def test_the_guide_says_how_to_check_the_retries_on_a_first_run():
    guide = (ROOT / "docs" / "cluster.md").read_text()
    assert "grep -A8 retryStrategy" in guide and "retryPolicy: Always" in guide


# ---------------------------------------------------------------- what removal leaves


def test_bucket_and_gpu_pool_are_abandoned_not_deleted(objects):
    for key in (("StorageBucket", cluster_settings().bucket), ("ContainerNodePool", "gpu-pool")):
        annotations = objects[key]["metadata"]["annotations"]
        assert annotations["cnrm.cloud.google.com/deletion-policy"] == "abandon", key


def test_gpu_zones_are_a_setting_in_the_region(objects, tmp_path, monkeypatch):
    pool = objects[("ContainerNodePool", "gpu-pool")]
    assert pool["spec"]["nodeLocations"] == infra.gpu_zones() != []
    assert all(z.startswith(cluster_settings().region + "-") for z in infra.gpu_zones())
    zones = tmp_path / "gpu-zones.yaml"
    zones.write_text(yaml.safe_dump({"kind": "GpuZones", "zones": ["europe-west4-a"]}))
    monkeypatch.setattr(infra, "GPU_ZONES_FILE", zones)
    monkeypatch.setattr(infra, "ROOT", tmp_path)
    assert any("must be zones of REGION us-central1" in p for p in infra.check_settings())


# ---------------------------------------------------------------- multi-user Kubeflow


def _settings(**values):
    s = cluster_settings()
    member = f"serviceAccount:{s.project_id}.svc.id.goog[{values.get('namespace', s.namespace)}/"
    values.setdefault("workload_identity_member", f"{member}{s.service_account}]")
    return s.model_copy(update=values)


@pytest.mark.parametrize("namespace", ["kubeflow", "default", "kube-system", "kube-public"])
def test_a_profile_named_after_a_reserved_namespace_is_refused(namespace):
    s = _settings(namespace=namespace, profile_owner="ana@company.io")
    problems = infra.check_profile_settings(s)
    assert len(problems) == 1 and f"NAMESPACE {namespace} is reserved" in problems[0]


def test_the_placeholder_owner_is_refused_and_a_real_profile_passes():
    shipped = cluster_settings().profile_owner
    assert shipped == "owner@example.com"
    problems = infra.check_profile_settings(_settings(namespace="team-a"))
    assert problems == [
        f"cluster-settings.env: PROFILE_OWNER {shipped} is a placeholder: set it to the email "
        "the profile's owner signs in to Kubeflow with"
    ]
    assert infra.check_profile_settings(_settings(namespace="team-a", profile_owner="a@b.io")) == []


@pytest.mark.parametrize("namespace", ["default", "kube-system"])
def test_pipelines_never_go_to_a_reserved_namespace(namespace):
    problems = infra.check_settings(_settings(namespace=namespace))
    assert any(f"NAMESPACE {namespace} is reserved" in p for p in problems)


def _fake_kubectl(folder):
    log = folder / "calls"
    script = folder / "kubectl"
    script.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    script.chmod(0o755)
    return str(script), log


def test_multi_user_apply_sends_the_profile_waits_then_the_rest(tmp_path, monkeypatch):
    kubectl, log = _fake_kubectl(tmp_path)
    monkeypatch.setattr(
        infra, "cluster_settings", lambda: _settings(namespace="team-a", profile_owner="a@b.io")
    )
    assert infra.apply_manifests(kubectl=kubectl) == 0
    multi = str(ROOT / "manifests" / "multi-user")
    assert log.read_text().splitlines() == [
        f"apply -k {multi} -l app.kubernetes.io/component=profile",
        "wait --for=create namespace/team-a --timeout=5m",
        "-n team-a wait --for=create serviceaccount/default-editor --timeout=5m",
        f"apply -k {multi}",
    ]
    # the selector picks the Profile and nothing else
    rendered = render_manifests(ROOT / "manifests" / "multi-user")
    labelled = [
        o["kind"]
        for o in rendered
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "profile"
    ]
    assert labelled == ["Profile"]


def test_standalone_apply_is_one_apply(tmp_path):
    kubectl, log = _fake_kubectl(tmp_path)
    assert infra.apply_manifests(kubectl=kubectl) == 0
    assert log.read_text().splitlines() == [f"apply -k {ROOT / 'manifests'}"]


def test_apply_with_the_placeholder_owner_applies_nothing(tmp_path, monkeypatch, capsys):
    kubectl, log = _fake_kubectl(tmp_path)
    monkeypatch.setattr(infra, "cluster_settings", lambda: _settings(namespace="team-a"))
    assert infra.apply_manifests(kubectl=kubectl) == 1
    assert not log.exists()
    assert "PROFILE_OWNER owner@example.com is a placeholder" in capsys.readouterr().out


def test_the_guide_applies_multi_user_in_two_steps_and_binds_the_ui():
    guide = (ROOT / "docs" / "cluster.md").read_text()
    assert "-l app.kubernetes.io/component=profile" in guide
    assert "wait --for=create namespace/$NAMESPACE" in guide
    # the UI's artifact reader, standalone and multi-user, may read the bucket
    assert "roles/storage.objectViewer" in guide
    assert "[kubeflow/ml-pipeline-ui]" in guide and "[$NAMESPACE/default-editor]" in guide


# ---------------------------------------------------------------- checkov


def test_each_checkov_suppression_names_its_reason():
    files = [*(ROOT / "images").glob("*Dockerfile"), *(ROOT / "manifests").rglob("*.yaml")]
    skips = [m for f in files for m in re.findall(r"checkov:skip=([^\n]*)", f.read_text())]
    assert skips, "the Dockerfiles suppress two checks"
    for skip in skips:
        check, _, reason = skip.partition(":")
        assert re.fullmatch(r"CKV_[A-Z0-9_]+", check) and len(reason.split()) >= 5, skip


CHECKOV = ROOT / ".venv-tools" / "bin" / "checkov"


@pytest.mark.skipif(not CHECKOV.is_file(), reason="checkov's venv: make lint installs it")
def test_checkov_passes_the_manifests_and_finds_a_privileged_pod(objects):
    assert infra.lint_checkov(list(objects.values())) == []
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bad", "namespace": "x"},
        "spec": {
            "containers": [{"name": "c", "image": "c:1", "securityContext": {"privileged": True}}]
        },
    }
    found = infra.lint_checkov([pod])
    assert any("CKV_K8S_16" in p and "Pod.x.bad" in p for p in found)  # privileged
