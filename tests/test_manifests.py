"""Dockerfiles and manifests pass the offline checks, and agree with the pipeline."""

from __future__ import annotations

import re

import pytest
import yaml

from cnnvsmlp.infra import check_objects, lint_dockerfiles, lint_infra, render_manifests
from cnnvsmlp.settings import ROOT, cluster_settings
from pipelines import compile_pipeline


@pytest.fixture(scope="module")
def objects():
    return {(o["kind"], o["metadata"]["name"]): o for o in render_manifests()}


def test_lint_infra_passes(capsys):
    assert lint_infra() == 0
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
    namespace = objects[("Namespace", s.namespace)]
    assert namespace["metadata"]["annotations"]["cnrm.cloud.google.com/project-id"] == s.project_id
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
    from cnnvsmlp.infra import check_settings

    s = cluster_settings()
    assert check_settings(s) == []
    moved = s.model_copy(update={"namespace": "kubeflow"})
    assert check_settings(moved) == [
        "cluster-settings.env: WORKLOAD_IDENTITY_MEMBER must be "
        f"serviceAccount:{s.project_id}.svc.id.goog[kubeflow/{s.service_account}] "
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
