"""Google Cloud Storage for what the project reads and writes: ``gs://`` URIs, or local paths.

Only object-level calls (``roles/storage.objectUser``); what fails after retries is one line.
"""

import base64
import contextlib
import functools
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from cnnvsmlp.errors import UserError
from cnnvsmlp.outputs import write_atomically

TIMEOUT_S = (10.0, 60.0)
"""Seconds to connect and to wait for each answer, in every request."""
RETRY_S = 120.0
"""Seconds within which a request that failed transiently is retried, with backoff."""
CREDENTIALS_HELP = (
    "on the cluster, bind the pod's Kubernetes service account to a Google service account "
    "with Workload Identity; on a laptop, run 'gcloud auth application-default login'; "
    "in tests, set STORAGE_EMULATOR_HOST"
)
_ERRORS = (gexc.GoogleAPIError, auth_exc.GoogleAuthError, requests.RequestException)
_UNAVAILABLE = (gexc.RetryError, gexc.ServerError, gexc.TooManyRequests, auth_exc.TransportError)
_UNAVAILABLE += (requests.RequestException,)


class StorageError(UserError):
    """A bucket or object is missing or forbidden, or Cloud Storage did not answer."""


class StorageUnavailable(StorageError):
    """Cloud Storage did not answer in time or answered with a server error: a retry may help."""

    transient = True


def parse_uri(uri: str) -> tuple[str, str]:
    """Split ``gs://bucket/path`` into bucket and object name; refuse anything else."""
    if not uri.startswith("gs://") or not uri[5:].split("/", 1)[0]:
        raise StorageError(f"{uri}: not a gs://bucket/path URI")
    bucket, _, name = uri[5:].partition("/")
    return bucket, name


def _each_request() -> dict:
    """The timeout and the retry every request has: uploads resend the same bytes, so all retry."""
    return {"timeout": TIMEOUT_S, "retry": DEFAULT_RETRY.with_timeout(RETRY_S)}


def client(uri: str = "gs://") -> storage.Client:
    """A storage client: the emulator when ``STORAGE_EMULATOR_HOST`` is set, else Google's."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        gcs = storage.Client(project="emulator", credentials=AnonymousCredentials())
    else:
        try:
            gcs = storage.Client()
        except auth_exc.DefaultCredentialsError as err:
            reason = " ".join(str(err).split()).split(". ")[0].rstrip(".") or "none found"
            raise StorageError(
                f"{uri}: no Google credentials ({reason}); {CREDENTIALS_HELP}"
            ) from None
    # Without the cache the client makes no bucket-metadata calls in background threads
    # (for tracing we do not use), which objectUser may not make.
    gcs._bucket_metadata_cache = None
    return gcs


def _fail(uri: str, err: Exception) -> StorageError:
    """One line for what a request about ``uri`` raised; a 404 left here is a missing bucket."""
    bucket, _ = parse_uri(uri)
    if isinstance(err, gexc.Forbidden | gexc.Unauthorized):
        return StorageError(
            f"{uri}: permission denied ({err.code}); grant the service account "
            f"roles/storage.objectUser on gs://{bucket}"
        )
    if isinstance(err, gexc.NotFound):
        return StorageError(f"{uri}: bucket gs://{bucket} does not exist; create it or fix the URI")
    if isinstance(err, auth_exc.RefreshError):
        reason = " ".join(str(err).split())
        return StorageError(
            f"{uri}: Google credentials were refused ({reason}); {CREDENTIALS_HELP}"
        )
    if isinstance(err, _UNAVAILABLE):
        cause = err.cause if isinstance(err, gexc.RetryError) and err.cause else err
        return StorageUnavailable(
            f"{uri}: Cloud Storage did not answer within {RETRY_S:g} s of retries "
            f"({cause.__class__.__name__}); check the network and retry"
        )
    message = getattr(err, "message", None) or str(err)
    return StorageError(f"{uri}: {err.__class__.__name__}: {' '.join(str(message).split())}")


@contextlib.contextmanager
def _failing(uri: str) -> Iterator[None]:
    try:
        yield
    except _ERRORS as err:
        raise _fail(uri, err) from None


def _blob(uri: str) -> tuple[storage.Client, storage.Blob]:
    gcs = client(uri)
    bucket, name = parse_uri(uri)
    return gcs, gcs.bucket(bucket).blob(name)


def _check_bucket(gcs: storage.Client, uri: str) -> None:
    """Refuse a missing bucket by listing at most one object: no bucket permission needed."""
    with _failing(uri):
        next(iter(gcs.list_blobs(parse_uri(uri)[0], max_results=1, **_each_request())), None)


def _write_file(dest: Path, write: Callable[[Path], object]) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(dest, write)


def _md5(path: Path) -> str:
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, functools.partial(hashlib.md5, usedforsecurity=False))
    return base64.b64encode(digest.digest()).decode()


def upload(local: str | os.PathLike, uri: str, overwrite: bool = False) -> None:
    """Upload a file whole; other content at ``uri`` is an error, unless ``overwrite``."""
    _, blob = _blob(uri)
    with _failing(uri):
        try:
            blob.upload_from_filename(
                str(local), if_generation_match=None if overwrite else 0, **_each_request()
            )
        except gexc.PreconditionFailed:
            blob.reload(**_each_request())
            if blob.md5_hash != _md5(Path(local)):
                raise StorageError(
                    f"{uri}: exists with different content; not overwritten (delete it first)"
                ) from None


def upload_dir(local_dir: str | os.PathLike, prefix: str) -> list[str]:
    """Upload every file under a folder to ``prefix/<relative path>``; return their URIs."""
    uris = []
    for name in names(str(local_dir)):
        uris.append(f"{prefix.rstrip('/')}/{name}")
        upload(Path(local_dir) / name, uris[-1])
    return uris


def fetch_file(src: str, dest: str | os.PathLike) -> bool:
    """Copy one object (``gs://``) or file to ``dest``, whole; False when there is none."""
    dest = Path(dest)
    if not src.startswith("gs://"):
        if not Path(src).is_file():
            return False
        _write_file(dest, functools.partial(shutil.copyfile, src))  # a copy, never a link
        return True
    gcs, blob = _blob(src)
    with _failing(src), contextlib.suppress(gexc.NotFound):  # no object, or no bucket: see next
        _write_file(dest, lambda part: blob.download_to_filename(str(part), **_each_request()))
        return True
    _check_bucket(gcs, src)
    return False


def download(uri: str, dest: str | os.PathLike) -> Path:
    """:func:`fetch_file`, a missing object (or file) being an error."""
    if not fetch_file(uri, dest):
        raise StorageError(f"{uri}: no such object")
    return Path(dest)


def _list(prefix: str) -> dict[str, storage.Blob]:
    """The objects under ``prefix`` (a folder), by their names relative to it."""
    bucket, name = parse_uri(prefix)
    folder = name.rstrip("/") + "/" if name else ""
    gcs = client(prefix)
    with _failing(prefix):
        blobs = gcs.list_blobs(bucket, prefix=folder, **_each_request())
        return {b.name.removeprefix(folder): b for b in blobs}


def mirror_dir(local_dir: str | os.PathLike, dest: str, only: set[str] | None = None) -> int:
    """Copy ``local_dir``'s new and changed files to ``dest`` (``gs://`` or local); count them."""
    local_dir = Path(local_dir)
    files = {
        n: local_dir / n for n in names(str(local_dir)) if only is None or n.split("/")[0] in only
    }
    gs = dest.startswith("gs://")
    if gs:
        there = {name: blob.md5_hash for name, blob in _list(dest).items()}
    else:
        there = {name: _md5(Path(dest) / name) for name in files if (Path(dest) / name).is_file()}
    changed = [name for name, path in files.items() if there.get(name) != _md5(path)]
    for name in changed:
        if gs:
            upload(files[name], f"{dest.rstrip('/')}/{name}", overwrite=True)
        else:
            _write_file(Path(dest) / name, functools.partial(shutil.copyfile, files[name]))
    return len(changed)


def names(dest: str) -> list[str]:
    """The files under ``dest`` (a ``gs://`` prefix or a local folder), relative to it."""
    if dest.startswith("gs://"):
        return sorted(_list(dest))
    return [p.relative_to(dest).as_posix() for p in sorted(Path(dest).rglob("*")) if p.is_file()]


def prune_dir(local_dir: str | os.PathLike, dest: str, only: set[str]) -> int:
    """Delete at ``dest`` the files under the folders ``only`` names that ``local_dir`` lacks."""
    gone = [
        name
        for name in names(dest)
        if PurePosixPath(name).parts[0] in only and not (Path(local_dir) / name).is_file()
    ]
    gcs = client(dest) if dest.startswith("gs://") else None
    for uri in (f"{dest.rstrip('/')}/{name}" for name in gone):
        if gcs is None:
            Path(uri).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # a folder left empty goes too, as in a bucket
                Path(uri).parent.rmdir()
            continue
        bucket, key = parse_uri(uri)
        with _failing(uri), contextlib.suppress(gexc.NotFound):  # NotFound: a retry deleted it
            gcs.bucket(bucket).blob(key).delete(**_each_request())
    return len(gone)


def fetch_dir(src: str, local_dir: str | os.PathLike) -> int:
    """Copy every file under ``src`` (``gs://`` or local) into ``local_dir``; return how many."""
    prefix, targets = src.rstrip("/") + "/", {}
    for name in names(src):
        if "\\" in name or any(p in ("", ".", "..") for p in name.split("/")):
            raise StorageError(
                f"{prefix}{name}: object name {name!r} would be written outside {Path(local_dir)}; "
                "refusing to fetch it (rename or delete the object)"
            )
        targets[prefix + name] = Path(local_dir).joinpath(*name.split("/"))
    for source, target in targets.items():
        download(source, target)
    return len(targets)


def write_text(uri: str, text: str) -> None:
    """Write a small text object (``gs://``) or file, replacing what is there, whole."""
    if not uri.startswith("gs://"):
        return _write_file(Path(uri), lambda partial: partial.write_text(text))
    _, blob = _blob(uri)
    with _failing(uri):
        blob.upload_from_string(text, **_each_request())


def read_text(uri: str) -> str | None:
    """The text of an object (``gs://``) or file; None when there is none, but no bucket either."""
    if not uri.startswith("gs://"):
        path = Path(uri)
        return path.read_text(errors="replace") if path.is_file() else None
    gcs, blob = _blob(uri)
    with _failing(uri), contextlib.suppress(gexc.NotFound):  # no object, or no bucket: see next
        return blob.download_as_text(**_each_request())
    _check_bucket(gcs, uri)
    return None
