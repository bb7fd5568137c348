"""Google Cloud Storage for what the project itself reads and writes: ``gs://`` URIs.

Data folders (``idx_dir``, a TFDS ``data_dir``), exported models and reports
can live in a bucket. Uploads never overwrite: an object that exists with the
same content counts as uploaded (a retried task), one with other content is
an error. The one exception is training state mirrored for resuming
(:func:`mirror_dir`), which is meant to change after every epoch.
Credentials are Google's application defaults; with ``STORAGE_EMULATOR_HOST``
set (tests, fake-gcs-server) the client talks to that server anonymously.
"""

from __future__ import annotations

import base64
import filecmp
import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from google.api_core import exceptions as gexc
from google.cloud import storage

from cnnvsmlp.errors import UserError


class StorageError(UserError):
    """A bucket or object is missing, forbidden, or would be overwritten."""


def parse_uri(uri: str) -> tuple[str, str]:
    """Split ``gs://bucket/path`` into bucket and object name.

    Raises:
        StorageError: not a ``gs://`` URI with a bucket.
    """
    if not uri.startswith("gs://") or not uri[5:].split("/", 1)[0]:
        raise StorageError(f"{uri}: not a gs://bucket/path URI")
    bucket, _, name = uri[5:].partition("/")
    return bucket, name


def client() -> storage.Client:
    """A storage client: the emulator when ``STORAGE_EMULATOR_HOST`` is set, else Google's."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project="emulator", credentials=AnonymousCredentials())
    return storage.Client()


def _fail(uri: str, err: gexc.GoogleAPIError, gcs: storage.Client) -> StorageError:
    bucket, _ = parse_uri(uri)
    if isinstance(err, gexc.Forbidden | gexc.Unauthorized):
        return StorageError(
            f"{uri}: permission denied ({err.code}); grant the service account access to gs://{bucket}"
        )
    if isinstance(err, gexc.NotFound):
        try:
            bucket_exists = gcs.bucket(bucket).exists()
        except gexc.GoogleAPIError:
            bucket_exists = True
        if not bucket_exists:
            return StorageError(f"{uri}: bucket gs://{bucket} does not exist")
        return StorageError(f"{uri}: no such object")
    return StorageError(f"{uri}: {err.__class__.__name__}: {err.message}")


@contextmanager
def _replacing(dest: Path) -> Iterator[Path]:
    """A partial file beside ``dest`` to write; it becomes ``dest`` only if the block succeeds."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial")
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(dest)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode()


def upload(local: str | os.PathLike, uri: str, overwrite: bool = False) -> None:
    """Upload a file to ``uri`` unless the object already exists.

    An existing object with the same content is left as it is (a retried
    upload succeeds); one with different content is never overwritten,
    unless ``overwrite`` says so.

    Raises:
        StorageError: missing bucket, no permission, or an existing object
            with different content.
    """
    gcs = client()
    bucket, name = parse_uri(uri)
    blob = gcs.bucket(bucket).blob(name)
    try:
        blob.upload_from_filename(str(local), if_generation_match=None if overwrite else 0)
    except gexc.PreconditionFailed:
        blob.reload()
        if blob.md5_hash != _md5(Path(local)):
            raise StorageError(
                f"{uri}: exists with different content; not overwritten (delete it first)"
            ) from None
    except gexc.GoogleAPIError as err:
        raise _fail(uri, err, gcs) from None


def upload_dir(local_dir: str | os.PathLike, prefix: str) -> list[str]:
    """Upload every file under a folder to ``prefix/<relative path>``.

    Returns:
        The URIs written (or found already there with the same content).
    """
    local_dir = Path(local_dir)
    uris = []
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        uri = f"{prefix.rstrip('/')}/{path.relative_to(local_dir).as_posix()}"
        upload(path, uri)
        uris.append(uri)
    return uris


def download(uri: str, dest: str | os.PathLike) -> Path:
    """Download an object to a local file, writing it atomically.

    Raises:
        StorageError: missing bucket or object, or no permission.
    """
    gcs = client()
    bucket, name = parse_uri(uri)
    dest = Path(dest)
    try:
        with _replacing(dest) as partial:
            gcs.bucket(bucket).blob(name).download_to_filename(str(partial))
    except gexc.GoogleAPIError as err:
        raise _fail(uri, err, gcs) from None
    return dest


def list_uris(prefix: str) -> list[str]:
    """Every object under ``prefix`` (a folder: a trailing ``/`` is implied), sorted.

    Raises:
        StorageError: missing bucket or no permission.
    """
    gcs = client()
    bucket, name = parse_uri(prefix)
    folder = name.rstrip("/") + "/" if name else ""
    try:
        return sorted(f"gs://{bucket}/{b.name}" for b in gcs.list_blobs(bucket, prefix=folder))
    except gexc.GoogleAPIError as err:
        raise _fail(prefix, err, gcs) from None


def mirror_dir(local_dir: str | os.PathLike, dest: str, only: set[str] | None = None) -> int:
    """Make ``dest`` (a ``gs://`` prefix or a local folder) hold every file of ``local_dir``.

    Files whose content is already there are skipped; changed ones are
    replaced. Nothing at ``dest`` is deleted. ``only`` limits the copy to
    the files and folders of those names at the top of ``local_dir``.

    Returns:
        How many files were copied.

    Raises:
        StorageError: missing bucket or no permission.
    """
    local_dir = Path(local_dir)
    files = sorted(
        p
        for p in local_dir.rglob("*")
        if p.is_file() and (only is None or p.relative_to(local_dir).parts[0] in only)
    )
    copied = 0
    if not dest.startswith("gs://"):
        for path in files:
            target = Path(dest) / path.relative_to(local_dir)
            if target.is_file() and filecmp.cmp(path, target, shallow=False):
                continue
            with _replacing(target) as partial:
                shutil.copyfile(path, partial)
            copied += 1
        return copied
    gcs = client()
    bucket, name = parse_uri(dest)
    folder = name.rstrip("/") + "/" if name else ""
    try:
        there = {b.name: b.md5_hash for b in gcs.list_blobs(bucket, prefix=folder)}
    except gexc.GoogleAPIError as err:
        raise _fail(dest, err, gcs) from None
    for path in files:
        key = folder + path.relative_to(local_dir).as_posix()
        if there.get(key) == _md5(path):
            continue
        upload(path, f"gs://{bucket}/{key}", overwrite=True)
        copied += 1
    return copied


def fetch_dir(src: str, local_dir: str | os.PathLike) -> int:
    """Copy every file under ``src`` (a ``gs://`` prefix or a local folder) into ``local_dir``.

    A missing ``src`` folder holds no files.

    Returns:
        How many files were copied.

    Raises:
        StorageError: missing bucket or no permission.
    """
    local_dir = Path(local_dir)
    if not src.startswith("gs://"):
        if not Path(src).is_dir():
            return 0
        shutil.copytree(src, local_dir, dirs_exist_ok=True)
        return sum(1 for p in Path(src).rglob("*") if p.is_file())
    prefix = src.rstrip("/") + "/"
    uris = list_uris(src)
    for uri in uris:
        download(uri, local_dir / uri.removeprefix(prefix))
    return len(uris)


def write_text(uri: str, text: str) -> None:
    """Write a small text object (``gs://``) or file, replacing what is there, atomically.

    Raises:
        StorageError: missing bucket or no permission.
    """
    if not uri.startswith("gs://"):
        with _replacing(Path(uri)) as partial:
            partial.write_text(text)
        return
    gcs = client()
    bucket, name = parse_uri(uri)
    try:
        gcs.bucket(bucket).blob(name).upload_from_string(text)
    except gexc.GoogleAPIError as err:
        raise _fail(uri, err, gcs) from None


def read_text(uri: str) -> str | None:
    """The text of an object (``gs://``) or file; None when there is none.

    Raises:
        StorageError: missing bucket or no permission.
    """
    if not uri.startswith("gs://"):
        path = Path(uri)
        return path.read_text() if path.is_file() else None
    gcs = client()
    bucket, name = parse_uri(uri)
    try:
        return gcs.bucket(bucket).blob(name).download_as_text()
    except gexc.NotFound:
        if not gcs.bucket(bucket).exists():
            raise StorageError(f"{uri}: bucket gs://{bucket} does not exist") from None
        return None
    except gexc.GoogleAPIError as err:
        raise _fail(uri, err, gcs) from None


def remove_dir(uri: str) -> None:
    """Delete every object under a ``gs://`` prefix, or a local folder.

    Raises:
        StorageError: missing bucket or no permission.
    """
    if not uri.startswith("gs://"):
        shutil.rmtree(uri, ignore_errors=True)
        return
    gcs = client()
    bucket, name = parse_uri(uri)
    try:
        for blob in gcs.list_blobs(bucket, prefix=name.rstrip("/") + "/"):
            blob.delete()
    except gexc.GoogleAPIError as err:
        raise _fail(uri, err, gcs) from None
