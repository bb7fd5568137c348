"""make submit, schedule, unschedule: the real kfp.Client against a stand-in of the KFP API."""

from __future__ import annotations

import json
import socket

import pytest
import yaml

from cnnvsmlp import cluster
from cnnvsmlp.config import load_config
from cnnvsmlp.images import image_ref
from cnnvsmlp.settings import cluster_settings
from kfp_standin import KfpStandIn

CONFIG = load_config("fashion-mnist", ["repeats=3"])


@pytest.fixture
def api(monkeypatch):
    with KfpStandIn() as stand_in:
        monkeypatch.setenv("KFP_HOST", stand_in.url)
        monkeypatch.setenv("KFP_TOKEN", "secret-token")
        monkeypatch.setenv("KFP_PIPELINE_ROOT", "gs://bucket/pipeline-root")
        yield stand_in


def _ir(request) -> dict:
    return next(yaml.safe_load_all(request.files["uploadfile"]))


def test_submit_uploads_and_starts_a_run(api, capsys):
    run_id = cluster.submit("compare", CONFIG, experiment="nightly")
    upload = api.find("POST", "pipelines/upload")[0]
    assert upload.query["name"] == ["compare"]
    ir = _ir(upload)
    assert ir["pipelineInfo"]["name"] == "compare"
    assert ir["deploymentSpec"]["executors"]["exec-train-model"]["container"]["image"] == image_ref(
        "gpu"
    )
    assert api.find("POST", "pipelines/upload_version")[0].query["pipelineid"] == ["pipeline-1"]
    assert api.find("POST", "experiments")[0].body["display_name"] == "nightly"
    run = api.find("POST", "runs")[0].body
    assert run["experiment_id"] == "experiment-3"
    assert run["pipeline_version_reference"] == {
        "pipeline_id": "pipeline-1",
        "pipeline_version_id": "version-2",
    }
    parameters = run["runtime_config"]["parameters"]
    sent = json.loads(parameters["config_json"])
    assert sent.pop("resume_uri") == f"gs://{cluster_settings().bucket}/resume"
    assert sent == {
        k: v for k, v in json.loads(CONFIG.model_dump_json()).items() if k != "resume_uri"
    }
    assert parameters["repeats"] == 3
    assert run["runtime_config"]["pipeline_root"] == "gs://bucket/pipeline-root"
    assert run["service_account"] == cluster_settings().service_account
    out = capsys.readouterr().out
    assert f"run {run_id}" in out and f"{api.url}/#/runs/details/{run_id}" in out


def test_second_submit_adds_a_version_to_the_same_pipeline(api):
    cluster.submit("compare", CONFIG)
    cluster.submit("compare", CONFIG)
    assert len(api.find("POST", "pipelines/upload")) == 1
    versions = api.find("POST", "pipelines/upload_version")
    assert [v.query["pipelineid"] for v in versions] == [["pipeline-1"], ["pipeline-1"]]
    assert len(api.find("POST", "experiments")) == 1  # the experiment is reused


def test_token_is_sent(api):
    cluster.submit("compare", CONFIG)
    assert {r.headers.get("authorization") for r in api.requests} == {"Bearer secret-token"}


def test_schedule_is_a_six_field_cron_without_catchup_or_cache(api):
    cluster.schedule("compare", CONFIG, cron="0 0 3 * * 1")
    body = api.find("POST", "recurringruns")[0].body
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert body["max_concurrency"] == "1" or body["max_concurrency"] == 1
    assert body["no_catchup"] is True
    assert body["display_name"] == "compare-fashion-mnist-schedule"
    assert json.loads(body["runtime_config"]["parameters"]["config_json"])["repeats"] == 3
    ir = _ir(api.find("POST", "pipelines/upload")[0])
    # caching off for the whole recurring run, and training never cached in the IR itself
    assert body.get("pipeline_spec") is None
    loop = next(t for t in ir["root"]["dag"]["tasks"].values() if "parameterIterator" in t)
    train = ir["components"][loop["componentRef"]["name"]]["dag"]["tasks"]["train-model"]
    assert not train.get("cachingOptions", {}).get("enableCache", False)


def test_scheduled_runs_retrain(api):
    """The recurring run runs the uploaded version, whose IR never caches training."""
    cluster.schedule("compare", CONFIG, cron="0 30 2 * * *")
    body = api.find("POST", "recurringruns")[0].body
    assert body["pipeline_version_reference"]["pipeline_version_id"] == "version-2"
    ir = _ir(api.find("POST", "pipelines/upload")[0])
    tasks = dict(ir["root"]["dag"]["tasks"])
    for component in ir["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    for name in ("train-model", "evaluate-model", "compare-runs"):
        assert tasks[name].get("cachingOptions", {}).get("enableCache", False) is False, name


def test_unschedule_deletes_the_schedule(api, capsys):
    recurring_id = cluster.schedule("compare", CONFIG, cron="0 0 3 * * 1")
    assert cluster.unschedule("compare", CONFIG) == 1
    assert api.find("DELETE", f"recurringruns/{recurring_id}")
    assert cluster.unschedule("compare", CONFIG) == 0
    assert "no recurring run named compare-fashion-mnist-schedule" in capsys.readouterr().out


def test_five_field_cron_is_refused_with_the_reason(api):
    with pytest.raises(cluster.ClusterError, match="has 5 fields: KFP's cron has 6, seconds first"):
        cluster.schedule("compare", CONFIG, cron="0 3 * * 1")
    assert api.requests == []  # refused before any call
    with pytest.raises(cluster.ClusterError, match="expected 6 fields"):
        cluster.check_cron("daily")


def test_unreachable_host(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("KFP_HOST", f"http://127.0.0.1:{port}")
    with pytest.raises(
        cluster.ClusterError, match=f"127.0.0.1:{port}: unreachable while trying to"
    ):
        cluster.submit("compare", CONFIG)


def test_rejected_call(monkeypatch):
    with KfpStandIn(refuse={"runs"}) as api:
        monkeypatch.setenv("KFP_HOST", api.url)
        with pytest.raises(cluster.ClusterError) as err:
            cluster.submit("compare", CONFIG)
    assert "could not start the run (HTTP 403" in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_host(monkeypatch):
    monkeypatch.delenv("KFP_HOST", raising=False)
    with pytest.raises(cluster.ClusterError, match="KFP_HOST is not set"):
        cluster.submit("compare", CONFIG)


def test_runs_go_to_the_namespace_of_the_cluster_settings(api, monkeypatch):
    monkeypatch.delenv("KFP_NAMESPACE", raising=False)
    monkeypatch.delenv("KFP_PIPELINE_ROOT", raising=False)
    cluster.submit("compare", CONFIG)
    settings = cluster_settings()
    assert api.find("POST", "experiments")[0].body["namespace"] == settings.namespace
    run = api.find("POST", "runs")[0].body
    assert run["runtime_config"]["pipeline_root"] == f"gs://{settings.bucket}/pipeline-root"


def test_standalone_install_takes_no_namespace(api, monkeypatch):
    settings = cluster_settings().model_copy(update={"namespace": "kubeflow"})
    monkeypatch.setattr(cluster, "cluster_settings", lambda: settings)
    cluster.submit("compare", CONFIG)
    assert not api.find("POST", "experiments")[0].body.get("namespace")


def test_namespace_that_disagrees_with_the_settings_is_refused(api, monkeypatch):
    monkeypatch.setenv("KFP_NAMESPACE", "someone-else")
    with pytest.raises(
        cluster.ClusterError,
        match="KFP_NAMESPACE=someone-else but NAMESPACE=cnnvsmlp in "
        "manifests/base/cluster-settings.env",
    ):
        cluster.submit("compare", CONFIG)
    assert api.requests == []


def test_a_configured_resume_uri_is_kept(api):
    config = load_config("fashion-mnist", ["resume_uri=gs://elsewhere/state"])
    cluster.submit("compare", config)
    parameters = api.find("POST", "runs")[0].body["runtime_config"]["parameters"]
    assert json.loads(parameters["config_json"])["resume_uri"] == "gs://elsewhere/state"
