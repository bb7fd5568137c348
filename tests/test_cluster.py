"""make submit, schedule, unschedule: the real kfp.Client against a stand-in of the KFP API."""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading

import pytest
import yaml

from cnnvsmlp.config import load_config
from cnnvsmlp_pipelines import cluster
from cnnvsmlp_pipelines.images import image_ref
from cnnvsmlp_pipelines.settings import cluster_settings
from kfp_standin import KfpStandIn, send_json, serve

CONFIG = load_config("fashion-mnist", ["repeats=3"])


@pytest.fixture
def api(monkeypatch):
    with KfpStandIn() as stand_in:
        monkeypatch.setenv("KFP_HOST", stand_in.url)
        monkeypatch.setenv("KFP_TOKEN", "secret-token")
        monkeypatch.setenv("KFP_PIPELINE_ROOT", "gs://bucket/pipeline-root")
        # the registry and the cluster are other tests' business
        monkeypatch.setenv("CNNVSMLP_SKIP_CHECKS", "all")
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
    monkeypatch.setenv("CNNVSMLP_SKIP_CHECKS", "all")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("KFP_HOST", f"http://127.0.0.1:{port}")
    with pytest.raises(
        cluster.ClusterError, match=f"127.0.0.1:{port}: unreachable while trying to"
    ):
        cluster.submit("compare", CONFIG)


def test_rejected_call(monkeypatch):
    monkeypatch.setenv("CNNVSMLP_SKIP_CHECKS", "all")
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
    settings = cluster_settings().model_copy(update={"namespace": "team-a"})  # a profile's
    monkeypatch.setattr(cluster, "cluster_settings", lambda: settings)
    cluster.submit("compare", CONFIG)
    assert api.find("POST", "experiments")[0].body["namespace"] == "team-a"
    run = api.find("POST", "runs")[0].body
    assert run["runtime_config"]["pipeline_root"] == f"gs://{settings.bucket}/pipeline-root"


def test_standalone_install_takes_no_namespace(api):
    assert cluster_settings().namespace == "kubeflow"  # as shipped
    cluster.submit("compare", CONFIG)
    assert not api.find("POST", "experiments")[0].body.get("namespace")


def test_namespace_that_disagrees_with_the_settings_is_refused(api, monkeypatch):
    monkeypatch.setenv("KFP_NAMESPACE", "someone-else")
    with pytest.raises(
        cluster.ClusterError,
        match="KFP_NAMESPACE=someone-else but NAMESPACE=kubeflow in "
        "manifests/base/cluster-settings.env",
    ):
        cluster.submit("compare", CONFIG)
    assert api.requests == []


def test_a_configured_resume_uri_is_kept(api):
    config = load_config("fashion-mnist", ["resume_uri=gs://elsewhere/state"])
    cluster.submit("compare", config)
    parameters = api.find("POST", "runs")[0].body["runtime_config"]["parameters"]
    assert json.loads(parameters["config_json"])["resume_uri"] == "gs://elsewhere/state"


# ---------------------------------------------------------------- checks before an upload


class KubernetesStandIn:
    """The Kubernetes API's service-account read, answering 200 for the names it holds."""

    def __init__(self, accounts: set[tuple[str, str]]):
        import http.server

        self.paths: list[str] = []
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                stand_in.paths.append(self.path)
                parts = self.path.split("?")[0].strip("/").split("/")
                # api/v1/namespaces/<ns>/serviceaccounts/<name>
                key = (parts[3], parts[5]) if len(parts) == 6 else None
                found = key in accounts
                body = (
                    {"kind": "ServiceAccount", "apiVersion": "v1", "metadata": {"name": key[1]}}
                    if found
                    else {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404}
                )
                send_json(self, 200 if found else 404, body)

        self.server = serve(Handler)

    def kubeconfig(self, folder) -> str:
        path = folder / "kubeconfig"
        cluster_entry = {"server": f"http://127.0.0.1:{self.server.server_port}"}
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": cluster_entry}],
                    "users": [{"name": "me", "user": {"token": "kube-token"}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}],
                    "current-context": "fake",
                }
            )
        )
        return str(path)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def kube(tmp_path, monkeypatch):
    s = cluster_settings()
    stand_in = KubernetesStandIn({(s.namespace, s.service_account)})
    monkeypatch.setenv("KUBECONFIG", stand_in.kubeconfig(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    yield stand_in
    stand_in.close()


def test_submit_checks_the_service_account_exists_where_the_pods_run(
    api, kube, monkeypatch, capsys
):
    monkeypatch.setenv("CNNVSMLP_SKIP_CHECKS", "images")
    s = cluster_settings()
    cluster.submit("compare", CONFIG)
    assert kube.paths == [f"/api/v1/namespaces/{s.namespace}/serviceaccounts/{s.service_account}"]
    assert f"check: service account {s.service_account} exists in namespace kubeflow" in (
        capsys.readouterr().out
    )
    assert api.find("POST", "runs")


def test_a_missing_service_account_stops_submit_before_any_upload(api, kube, monkeypatch):
    monkeypatch.setenv("CNNVSMLP_SKIP_CHECKS", "images")
    elsewhere = cluster_settings().model_copy(update={"namespace": "team-a"})
    monkeypatch.setattr(cluster, "cluster_settings", lambda: elsewhere)
    with pytest.raises(cluster.ClusterError) as err:
        cluster.submit("compare", CONFIG)
    message = str(err.value)
    assert message.startswith(
        "service account cnnvsmlp-pipeline-runner does not exist in namespace team-a (http://"
    )
    assert "kubectl apply -k manifests/" in message and "\n" not in message
    assert api.requests == []
    assert kube.paths == ["/api/v1/namespaces/team-a/serviceaccounts/cnnvsmlp-pipeline-runner"]


def test_the_service_account_check_says_why_it_was_left_out(api, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CNNVSMLP_SKIP_CHECKS", "images")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    cluster.submit("compare", CONFIG)
    out = capsys.readouterr().out
    assert f"check: service account not checked: no kube config at {tmp_path / 'none'}" in out
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there
    closed = KubernetesStandIn(set())
    monkeypatch.setenv("KUBECONFIG", closed.kubeconfig(tmp_path))
    config = tmp_path / "kubeconfig"
    config.write_text(config.read_text().replace(str(closed.server.server_port), str(port)))
    closed.close()
    cluster.submit("compare", CONFIG)
    lines = [line for line in capsys.readouterr().out.splitlines() if "not checked" in line]
    assert len(lines) == 1 and f"127.0.0.1:{port} unreachable" in lines[0]
    assert "Traceback" not in lines[0]


def _fake_docker(folder, known: set[str]):
    """A docker client whose registry has ``known``: ``docker manifest inspect`` answers for it."""
    script = folder / "docker"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" = "manifest inspect" ]; then\n'
        "  for ref in " + " ".join(sorted(known)) + '; do [ "$3" = "$ref" ] && exit 0; done\n'
        '  echo "no such manifest: $3" >&2; exit 1\n'
        "fi\n"
        "exit 0\n"
    )
    script.chmod(0o755)
    return str(folder)


def test_submit_checks_the_registry_has_the_images_the_ir_names(api, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNVSMLP_SKIP_CHECKS", "service-account")
    monkeypatch.setenv("PATH", _fake_docker(tmp_path, {image_ref("cpu")}))
    with pytest.raises(cluster.ClusterError) as err:
        cluster.submit("compare", CONFIG)
    message = str(err.value)
    assert message.startswith(f"{image_ref('gpu')}: not in the registry")
    assert "make images PUSH=1" in message and "images/cloudbuild.yaml" in message
    assert image_ref("cpu") not in message and "\n" not in message
    assert api.requests == []
    monkeypatch.setenv("PATH", _fake_docker(tmp_path, {image_ref("cpu"), image_ref("gpu")}))
    cluster.submit("compare", CONFIG)
    assert api.find("POST", "runs")


def test_image_check_without_docker_says_so(api, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CNNVSMLP_SKIP_CHECKS", "service-account")
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker client
    cluster.submit("compare", CONFIG)
    assert "check: images not checked: no docker client here" in capsys.readouterr().out


def test_unknown_check_name_is_refused(api, monkeypatch):
    monkeypatch.setenv("CNNVSMLP_SKIP_CHECKS", "imagez")
    with pytest.raises(cluster.ClusterError, match="unknown check 'imagez'; known: images"):
        cluster.submit("compare", CONFIG)


# ---------------------------------------------------------------- credentials


def test_no_token_appears_in_an_error_message(monkeypatch, capsys):
    monkeypatch.setenv("CNNVSMLP_SKIP_CHECKS", "all")
    monkeypatch.setenv("KFP_TOKEN", "ya29.very-secret")
    with KfpStandIn(refuse={"runs"}, echo_auth=True) as api:
        monkeypatch.setenv("KFP_HOST", api.url)
        with pytest.raises(cluster.ClusterError) as err:
            cluster.submit("compare", CONFIG)
    assert "refused by the stand-in for Bearer <token>" in str(err.value)
    assert "very-secret" not in str(err.value) + capsys.readouterr().out
    assert "very-secret" not in repr(cluster.Target.from_env(cluster_settings()))


def test_in_cluster_token_file_is_sent_with_kfp_host_set(api, tmp_path, monkeypatch):
    monkeypatch.delenv("KFP_TOKEN")
    token = tmp_path / "token"
    token.write_text("projected-sa-token")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    cluster.submit("compare", CONFIG)
    assert {r.headers.get("authorization") for r in api.requests} == {"Bearer projected-sa-token"}


class TokenEndpoint:
    """Google's OAuth token endpoint for a service account's JWT grant: returns an ID token."""

    def __init__(self):
        import base64
        import http.server
        import time
        from urllib.parse import parse_qs

        def b64(data: dict) -> str:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

        self.id_token = ".".join(
            [b64({"alg": "RS256", "typ": "JWT"}), b64({"exp": int(time.time()) + 3600}), "c2ln"]
        )
        self.audiences: list[str] = []
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                claims = form["assertion"][0].split(".")[1]
                claims += "=" * (-len(claims) % 4)
                endpoint.audiences.append(
                    json.loads(base64.urlsafe_b64decode(claims))["target_audience"]
                )
                send_json(self, 200, {"id_token": endpoint.id_token})

        self.server = serve(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/token"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_iap_gets_an_id_token_for_its_client_id(api, tmp_path, monkeypatch):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    endpoint = TokenEndpoint()
    credentials = tmp_path / "sa.json"
    credentials.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "p",
                "private_key_id": "1",
                "private_key": pem,
                "client_email": "ci@p.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": endpoint.url,
            }
        )
    )
    monkeypatch.delenv("KFP_TOKEN")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(credentials))
    monkeypatch.setenv("KFP_IAP_CLIENT_ID", "123-abc.apps.googleusercontent.com")
    try:
        cluster.submit("compare", CONFIG)
    finally:
        endpoint.close()
    assert endpoint.audiences == ["123-abc.apps.googleusercontent.com"]
    assert {r.headers.get("authorization") for r in api.requests} == {f"Bearer {endpoint.id_token}"}


def test_iap_without_credentials_that_mint_id_tokens_says_what_to_do(api, tmp_path, monkeypatch):
    monkeypatch.delenv("KFP_TOKEN")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    monkeypatch.setenv("KFP_IAP_CLIENT_ID", "123-abc.apps.googleusercontent.com")
    with pytest.raises(cluster.ClusterError) as err:
        cluster.submit("compare", CONFIG)
    message = str(err.value)
    assert "could not get an ID token for the IAP client 123-abc" in message
    assert "gcloud auth print-identity-token" in message and "\n" not in message
    assert api.requests == []


# ---------------------------------------------------------------- one schedule per name


def test_schedule_twice_keeps_one_recurring_run(api, capsys):
    first = cluster.schedule("compare", CONFIG, cron="0 0 3 * * 1")
    second = cluster.schedule("compare", CONFIG, cron="@weekly")
    assert list(api.recurring) == [second]
    assert api.recurring[second]["trigger"]["cron_schedule"]["cron"] == "@weekly"
    assert api.find("DELETE", f"recurringruns/{first}")
    assert f"schedule: replaced recurring run {first}" in capsys.readouterr().out


def test_schedule_leaves_other_names_and_experiments_alone(api):
    cluster.schedule("compare", CONFIG, cron="0 0 3 * * 1")
    other = load_config("fashion-mnist", ["name=other"])
    cluster.schedule("compare", other, cron="0 0 4 * * 1")
    cluster.schedule("compare", CONFIG, cron="0 0 3 * * 1", experiment="elsewhere")
    names = sorted(r["display_name"] for r in api.recurring.values())
    assert names == ["compare-fashion-mnist-schedule"] * 2 + ["compare-other-schedule"]


def test_unschedule_pages_through_every_recurring_run(api):
    cluster.schedule("compare", CONFIG, cron="0 0 3 * * 1")
    experiment_id = next(iter(api.recurring.values()))["experiment_id"]
    for n in range(230):  # someone else's, listed first
        api.recurring[f"x-{n}"] = {"display_name": f"x-{n}", "experiment_id": experiment_id}
    api.recurring["last"] = {
        "display_name": "compare-fashion-mnist-schedule",
        "experiment_id": experiment_id,
        "recurring_run_id": "last",
    }
    assert cluster.unschedule("compare", CONFIG) == 2
    assert "last" not in api.recurring and len(api.recurring) == 230
    assert len(api.find("GET", "recurringruns")) >= 3


def test_unschedule_without_the_experiment_creates_nothing(api, capsys):
    assert cluster.unschedule("compare", CONFIG, experiment="never-made") == 0
    assert api.find("POST", "experiments") == [] and api.experiments == {}
    assert "no experiment named never-made" in capsys.readouterr().out


def test_multi_user_uploads_go_to_the_profile_namespace(api, monkeypatch):
    monkeypatch.delenv("KFP_NAMESPACE", raising=False)
    settings = cluster_settings().model_copy(update={"namespace": "team-a"})
    monkeypatch.setattr(cluster, "cluster_settings", lambda: settings)
    cluster.submit("compare", CONFIG)
    assert api.namespaces == {"compare": "team-a"}
    assert api.find("GET", "pipelines")[0].query["namespace"] == ["team-a"]


def test_standalone_uploads_take_no_namespace(api):
    cluster.submit("compare", CONFIG)
    assert api.namespaces == {}


# ---------------------------------------------------------------- kfp.Client's own variables


def test_kfp_clients_own_variables_are_accepted(api, monkeypatch):
    monkeypatch.delenv("KFP_HOST")
    monkeypatch.setenv("KF_PIPELINES_ENDPOINT", api.url)
    cluster.submit("compare", CONFIG)
    assert api.find("POST", "runs")
    monkeypatch.setenv("KF_PIPELINES_IAP_OAUTH2_CLIENT_ID", "123-abc.apps.googleusercontent.com")
    assert (
        cluster.Target.from_env(cluster_settings()).iap_client_id
        == "123-abc.apps.googleusercontent.com"
    )


def test_project_and_kfp_variables_that_disagree_are_refused(api, monkeypatch):
    monkeypatch.setenv("KF_PIPELINES_ENDPOINT", "http://elsewhere:8888")
    with pytest.raises(cluster.ClusterError, match="KFP_HOST=.* but KF_PIPELINES_ENDPOINT="):
        cluster.submit("compare", CONFIG)
    assert api.requests == []


# ---------------------------------------------------------------- cron, as KFP parses it


@pytest.mark.parametrize(
    "cron",
    [
        "0 0 3 * * 1",
        "0 0 3 * * MON-FRI",
        "*/15 0 0 ? jan,jul sun",
        "0 0 0 29 2 *",  # leap years
        "0 0 0 31 2 mon",  # day of month or day of week: Mondays in February
        "@weekly",
        "@midnight",
        "@every 1h30m",
        "@every 90s",
    ],
)
def test_cron_kfp_accepts_is_accepted(cron):
    assert cluster.check_cron(cron) == " ".join(cron.split())


@pytest.mark.parametrize(
    ("cron", "reason"),
    [
        ("0 99 99 * * *", "minute '99' is out of range; it takes 0-59"),
        ("60 0 0 * * *", "second '60' is out of range"),
        ("0 0 24 * * *", "hour '24' is out of range"),
        ("0 0 0 0 * *", "day of month '0' is out of range; it takes 1-31"),
        ("0 0 0 * 13 *", "month '13' is out of range"),
        ("0 0 0 * * 7", "day of week '7' is out of range; it takes 0-6"),
        ("0 0 0 5-1 * *", "begins after it ends"),
        ("0 */0 0 * * *", "a step of 0"),
        ("0 0 0 1-2-3 * *", "more than one '-'"),
        ("0 0 0 * * x", "day of week 'x' is not a number"),
        ("0 0 0 31 2 *", "never run it"),
        ("0 0 0 30,31 2 *", "never run it"),  # 30 and 31 February
        ("0 0 0 31 4,6,9,11 *", "never run it"),
        ("@fortnightly", "unknown descriptor"),
        ("@every 0s", "1s or more"),
        ("@every soon", "unknown descriptor"),
        ("daily", "expected 6 fields"),
        ("0 0 0 * * * *", "expected 6 fields"),
    ],
)
def test_cron_kfp_refuses_or_never_fires_is_refused_before_any_call(api, cron, reason):
    with pytest.raises(cluster.ClusterError, match=re.escape(reason)) as err:
        cluster.schedule("compare", CONFIG, cron=cron)
    assert str(err.value).startswith(f"cron {cron!r}") and "\n" not in str(err.value)
    assert api.requests == []


# ---------------------------------------------------------------- tokens, through every path

SECRET = "ya29.SECRET-abc_123"


def _forms(secret: str) -> list[str]:
    import base64
    from urllib.parse import quote

    return [
        secret,
        secret.strip(),
        repr(secret)[1:-1],
        repr(secret.encode())[2:-1],
        quote(secret),
        base64.b64encode(secret.encode()).decode().rstrip("="),
    ]


def _paths(tmp_path, monkeypatch):
    """Run submit, schedule, unschedule and both checks; return what each said."""
    monkeypatch.setenv("CNNVSMLP_SKIP_CHECKS", "")
    monkeypatch.setenv("PATH", _fake_docker(tmp_path, set()))  # the registry lacks the images
    s = cluster_settings()
    kube = KubernetesStandIn({(s.namespace, s.service_account)})
    monkeypatch.setenv("KUBECONFIG", kube.kubeconfig(tmp_path))
    said = []
    try:
        for call in (
            lambda: cluster.submit("compare", CONFIG),
            lambda: cluster.schedule("compare", CONFIG, cron="0 0 3 * * 1"),
            lambda: cluster.unschedule("compare", CONFIG),
        ):
            try:
                call()
            except cluster.ClusterError as err:
                said.append(str(err))
        monkeypatch.setenv("CNNVSMLP_SKIP_CHECKS", "images")  # on to the KFP calls
        for call in (
            lambda: cluster.submit("compare", CONFIG),
            lambda: cluster.schedule("compare", CONFIG, cron="0 0 3 * * 1"),
        ):
            try:
                call()
            except cluster.ClusterError as err:
                said.append(str(err))
    finally:
        kube.close()
    return said


@pytest.mark.parametrize("raw", [SECRET + "\n", SECRET + "\r\n", f"  {SECRET} \n"])
def test_a_token_with_surrounding_whitespace_is_sent_stripped_and_never_shown(
    raw, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("KFP_TOKEN", raw)
    with KfpStandIn(refuse={"experiments"}, echo_auth=True) as api:
        monkeypatch.setenv("KFP_HOST", api.url)
        said = _paths(tmp_path, monkeypatch)
    assert {r.headers.get("authorization") for r in api.requests} == {f"Bearer {SECRET}"}
    assert len(said) == 5 and all("for Bearer <token>" in line for line in said[2:])
    shown = "\n".join(said) + capsys.readouterr().out
    for form in _forms(raw) + _forms(SECRET):
        assert form not in shown


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("ya29.SECRET abc", "a space at position 12"),
        ("ya29.SECRET\nabc", "a control character at position 12"),
        ("ya29.SECRET\r\nabc", "a control character at position 12"),
        ("ya29.SECRÉTabc", "a non-ASCII character at position 10"),
        (" \n", "is empty"),
    ],
)
def test_a_malformed_token_is_refused_before_any_call_and_never_shown(
    raw, kind, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("KFP_TOKEN", raw)
    with KfpStandIn(echo_auth=True) as api:
        monkeypatch.setenv("KFP_HOST", api.url)
        said = _paths(tmp_path, monkeypatch)
    assert api.requests == []
    assert len(said) == 5 and all(kind in line and "\n" not in line for line in said)
    shown = "\n".join(said) + capsys.readouterr().out
    for form in _forms(raw):
        if len(form.strip()) >= 4:
            assert form not in shown


def test_every_escaped_form_of_a_token_is_blanked(monkeypatch):
    monkeypatch.setenv("KFP_TOKEN", SECRET + "\n")
    monkeypatch.setenv("KFP_HOST", "http://127.0.0.1:9")
    cluster.Target.from_env(cluster_settings())
    for form in _forms(SECRET + "\n") + _forms(SECRET):
        message = str(cluster.ClusterError(f"could not connect (Invalid header value {form!r})"))
        assert SECRET not in message and "SECRET" not in message, form
        assert "<token>" in message


def test_a_token_file_is_read_and_checked_like_kfp_token(api, tmp_path, monkeypatch):
    monkeypatch.delenv("KFP_TOKEN")
    token = tmp_path / "token"
    token.write_text("projected token\n")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    with pytest.raises(cluster.ClusterError, match=f"the token file {token}: .* a space") as err:
        cluster.submit("compare", CONFIG)
    assert "projected token" not in str(err.value)
    assert api.requests == []


class _Impostor(http.server.BaseHTTPRequestHandler):
    """Answers every request with an HTML page, as a web server that is not KFP does."""

    def log_message(self, *args):
        pass

    def _page(self):
        page = b"<html><body>Welcome</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    do_GET = do_POST = do_DELETE = _page  # noqa: N815


@pytest.mark.parametrize("command", ["submit", "schedule", "unschedule"])
def test_a_host_that_is_not_a_kfp_api_is_refused_before_any_write(command, monkeypatch):
    monkeypatch.setenv("CNNVSMLP_SKIP_CHECKS", "all")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Impostor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("KFP_HOST", host)
    args = {"schedule": {"cron": "0 0 3 * * *"}}.get(command, {})
    try:
        with pytest.raises(cluster.ClusterError) as err:
            getattr(cluster, command)("compare", CONFIG, **args)
    finally:
        server.shutdown()
        server.server_close()
    message = str(err.value)
    assert message.startswith(f"{host}: not a Kubeflow Pipelines 2 API: GET /apis/v2beta1/healthz")
    assert "text/html" in message and "KFP_HOST" in message and "\n" not in message
