"""Faults a cluster meets, made real on loopback: a storage server that dies mid-upload, a refusal.

fake-gcs-server runs behind a proxy (tests/gcs_proxy.py) that can send half
an upload, stop the server and drop the connection; the server then starts
again over the same files, as a bucket does after an outage.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re

import pytest

from cnnvsmlp import storage
from cnnvsmlp.config import RunSpec, TrainConfig, load_config
from cnnvsmlp.records import Epoch, is_permanent
from cnnvsmlp.storage import upload_dir
from gcs_proxy import GCSProxy, RestartableGCS


@pytest.fixture(scope="module")
def gcs():
    server = RestartableGCS()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bucket(gcs, request):
    if gcs._process is None:
        gcs.restart()
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    name = f"{slug}-{hashlib.sha1(request.node.name.encode()).hexdigest()[:8]}"
    storage.client().create_bucket(name)
    return name


@pytest.fixture
def quick_give_up(monkeypatch):
    """Retries for 3 s, not minutes: the outage outlasts them, as a long one would."""
    monkeypatch.setattr(storage, "TIMEOUT_S", (1.0, 5.0))
    monkeypatch.setattr(storage, "RETRY_S", 3.0)


def _cut_once(proxy: GCSProxy, server: RestartableGCS, marker: bytes):
    """A rule: the first upload whose body names ``marker`` is cut halfway, the server stopped."""
    fired = []

    def rule(method, path, body):
        if not fired and method == "POST" and marker in body:
            fired.append(path)
            return "half"
        return None

    proxy.on_cut = server.kill
    return rule, fired


def test_storage_down_mid_snapshot_leaves_the_last_whole_one_and_resume_trains_each_epoch_once(
    gcs, bucket, small_fashion, tmp_path, quick_give_up
):
    from cnnvsmlp.resume import Training
    from cnnvsmlp.train import train
    from cnnvsmlp.training_files import training_key

    run = RunSpec(variant="cnn", repeat=0, seed=5)
    two = TrainConfig(epochs=2, batch_size=64, optimizer="adam")
    resume = f"gs://{bucket}/resume/job-1/cnn-r0"
    proxy = GCSProxy(gcs.url)
    rule, fired = _cut_once(proxy, gcs, b"state/epoch-02.json")
    proxy.rule = rule
    with proxy:
        # Epoch 1 is mirrored whole; epoch 2's state file is cut after its checkpoint went up.
        with pytest.raises(storage.StorageUnavailable) as err:
            train(small_fashion, run, two, tmp_path / "attempt-1", verbose=0, resume_uri=resume)
        assert fired and not is_permanent(err.value)  # the task fails, for the cluster to retry
        assert "\n" not in str(err.value)
        gcs.restart()
        uploaded = [f"{resume}/{n}" for n in storage.names(resume)]
        assert f"{resume}/checkpoints/epoch-02.keras" in uploaded
        assert f"{resume}/state/epoch-02.json" not in uploaded  # never half an object

        # Locally only the newest epoch's checkpoint was left, once its state was written.
        ckpts = sorted(p.name for p in (tmp_path / "attempt-1" / "checkpoints").iterdir())
        assert ckpts == ["epoch-02.keras"]

        # What a retry fetches is epoch 1, whole: epoch 2's checkpoint alone does not count.
        from cnnvsmlp.data.store import read_metadata
        from cnnvsmlp.records import Hardware

        meta, hardware = read_metadata(small_fashion), Hardware.detect()
        state_key = training_key(meta, run, two, hardware, epochs=False)
        key = training_key(meta, run, two, hardware)
        fetched = Training(tmp_path / "fetched", key, state_key, run, two, resume)
        state = fetched.fetch([])
        with (tmp_path / "attempt-1" / "history.csv").open(newline="") as f:
            first = [Epoch(**row) for row in csv.DictReader(f)]
        assert [e.epoch for e in first] == [1, 2]
        assert state.epoch == 1 and len(state.history) == 1

        # The retried task, on a new pod, trains epoch 2 only, once.
        second = train(
            small_fashion, run, two, tmp_path / "attempt-2", verbose=0, resume_uri=resume
        )
    assert second.resumed_from_epoch == 1
    assert [e.epoch for e in second.history] == [1, 2]
    assert second.history[0] == first[0]
    rows = (tmp_path / "attempt-2" / "history.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]  # each epoch once, from 1
    # Finished: the mirror holds the inference model and its marker, no epoch state.
    uris = [f"{resume}/{n}" for n in storage.names(resume)]
    assert f"{resume}/finished.json" in uris and f"{resume}/model.keras" in uris
    assert not [u for u in uris if "/state/" in u or "/checkpoints/" in u]


def test_storage_down_mid_report_upload_leaves_whole_objects_and_a_retry_completes(
    gcs, bucket, tmp_path, quick_give_up
):
    report = tmp_path / "report"
    (report / "plots").mkdir(parents=True)
    (report / "comparison.json").write_text(json.dumps({"status": "complete", "n": list(range(9))}))
    (report / "plots" / "learning_curves.png").write_bytes(bytes(range(256)) * 400)
    (report / "report.html").write_text("<html>" + "x" * 50_000 + "</html>")
    (report / "report.md").write_text("# report\n")
    prefix = f"gs://{bucket}/reports/run-1"
    proxy = GCSProxy(gcs.url)
    rule, fired = _cut_once(proxy, gcs, b"reports/run-1/report.html")
    proxy.rule = rule
    with proxy:
        with pytest.raises(
            storage.StorageUnavailable, match=r"report\.html: Cloud Storage did not"
        ):
            upload_dir(report, prefix)
        assert fired
        gcs.restart()
        before = [f"{prefix}/{n}" for n in storage.names(prefix)]
        assert f"{prefix}/report.html" not in before  # the cut object never appeared
        for uri in before:  # what is there is whole
            rel = uri.removeprefix(prefix + "/")
            got = storage.download(uri, tmp_path / "check" / rel).read_bytes()
            assert got == (report / rel).read_bytes()
        # The retried task uploads the rest; what is there already is left as it is.
        assert upload_dir(report, prefix) == [
            f"{prefix}/{p}"
            for p in ("comparison.json", "plots/learning_curves.png", "report.html", "report.md")
        ]
    back = tmp_path / "back"
    assert storage.fetch_dir(prefix, back) == 4
    for rel in ("comparison.json", "plots/learning_curves.png", "report.html", "report.md"):
        assert (back / rel).read_bytes() == (report / rel).read_bytes()


@pytest.mark.slow
def test_a_run_that_fails_for_good_still_gets_the_comparison_of_the_others(
    gcs, bucket, fashion_dir, tmp_path, monkeypatch
):
    """mlp's resume folder is read-only (a real 403 from the server): mlp fails, cnn is compared."""
    import builtins

    # kfp's local runner swaps builtins.print per task, from two threads at once in a
    # ParallelFor, and can leave its indenting print behind: put the real one back after.
    monkeypatch.setattr(builtins, "print", builtins.print)
    from cnnvsmlp.records import RunFailure, read_result
    from cnnvsmlp.report.model import Comparison
    from cnnvsmlp_pipelines.local_runner import LocalRunError, find_comparison, run_local

    def mlp_read_only(method, path, body):
        return 403 if method == "POST" and b"/mlp-r0/" in body else None

    config = load_config(
        "fashion-mnist",
        [
            "epochs=1",
            "limit=600",
            "variants=cnn,mlp",
            "source=idx",
            f"idx_dir={fashion_dir}",
            f"resume_uri=gs://{bucket}/resume",
        ],
    )
    with GCSProxy(gcs.url, mlp_read_only):
        with pytest.raises(LocalRunError) as err:
            run_local("compare", config, runs_dir=tmp_path, quiet=True)
    assert "check-runs" in str(err.value)  # the run is marked failed, by its last step
    (run_dir,) = [p for p in tmp_path.iterdir() if not p.is_symlink()]
    assert (tmp_path / "latest").resolve() == run_dir.resolve()
    assert json.loads((run_dir / "status.json").read_text())["status"] == "partial"
    assert "\n" not in str(err.value)
    assert f"comparison is in {run_dir / 'report'}/report.md" in str(err.value)
    assert (run_dir / "report" / "comparison.json").is_file()  # kept where a run's report goes
    comparison = Comparison.model_validate_json(
        (find_comparison(run_dir / "pipeline", "compare-runs") / "comparison.json").read_text()
    )
    assert comparison.status == "partial"
    assert [v.variant for v in comparison.variants] == ["cnn"]
    assert comparison.variants[0].test_accuracy.estimate > 0.3
    (failure,) = comparison.failures
    assert (failure.variant, failure.repeat, failure.stage, failure.error) == (
        "mlp",
        0,
        "train",
        "StorageError",
    )
    assert "permission denied (403)" in failure.message and "/mlp-r0/" in failure.message
    results = [read_result(p) for p in (run_dir / "pipeline").rglob("evaluate-model*/result")]
    assert sorted(type(r).__name__ for r in results) == ["EvalResult", "RunFailure"]
    assert next(r for r in results if isinstance(r, RunFailure)).run.variant == "mlp"
    report = next((run_dir / "pipeline").rglob("compare-runs/report"))
    assert "**Partial comparison.**" in report.read_text()


def _train_task(small_fashion, tmp_path, bucket):
    from kfp import dsl

    config = load_config("fashion-mnist", ["epochs=1", f"resume_uri=gs://{bucket}/resume"])
    run = RunSpec(variant="cnn", repeat=0, seed=0)
    model = dsl.Model(uri=str(tmp_path / "model"))
    (tmp_path / "config.json").write_text(config.model_dump_json())
    args = {
        "config": dsl.Artifact(uri=str(tmp_path / "config.json")),
        "run_json": run.model_dump_json(),
        "job_id": "job-1",
        "dataset": dsl.Dataset(uri=str(small_fashion)),
        "model": model,
    }
    return args, model


def test_a_transient_storage_error_fails_the_training_task_for_a_retry(
    gcs, bucket, small_fashion, tmp_path, quick_give_up
):
    from cnnvsmlp_components import train_model

    args, model = _train_task(small_fashion, tmp_path, bucket)
    with GCSProxy(gcs.url, lambda method, path, body: 503):
        with pytest.raises(storage.StorageUnavailable):
            train_model.python_func(**args)
    assert not (tmp_path / "model" / "failure.json").exists()


def test_a_permanent_error_becomes_a_record_that_evaluation_passes_on(
    gcs, bucket, small_fashion, tmp_path
):
    from kfp import dsl

    from cnnvsmlp.records import RunFailure, read_result
    from cnnvsmlp_components import evaluate_model, train_model

    args, model = _train_task(small_fashion, tmp_path, bucket)
    with GCSProxy(gcs.url, lambda method, path, body: 403):
        train_model.python_func(**args)  # succeeds: the failure is recorded
    failure = RunFailure.read(tmp_path / "model" / "failure.json")
    assert (failure.run.variant, failure.stage, failure.error) == ("cnn", "train", "StorageError")
    assert model.metadata["failed"] is True
    result = dsl.Artifact(uri=str(tmp_path / "result"))
    evaluate_model.python_func(
        dataset=args["dataset"],
        model=model,
        metrics=dsl.Metrics(uri=str(tmp_path / "metrics")),
        classification=dsl.ClassificationMetrics(uri=str(tmp_path / "classification")),
        result=result,
    )
    assert read_result(tmp_path / "result") == failure
    assert result.metadata == {
        "variant": "cnn",
        "repeat": 0,
        "failed": True,
        "error": "StorageError",
    }


def test_the_run_is_checked_last_after_the_comparison_is_stored(tmp_path):
    import yaml

    from cnnvsmlp_pipelines import compile_pipeline

    ir = next(yaml.safe_load_all(compile_pipeline("compare", tmp_path).read_text()))
    check = ir["root"]["dag"]["tasks"]["check-runs"]
    artifact = check["inputs"]["artifacts"]["comparison"]["taskOutputArtifact"]
    assert artifact == {"outputArtifactKey": "comparison", "producerTask": "compare-runs"}
    assert "retryPolicy" not in check
    assert not check.get("cachingOptions", {}).get("enableCache", False)
