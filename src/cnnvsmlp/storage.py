"""Google Cloud Storage for what the project itself reads and writes: ``gs://`` URIs.

Data folders (``idx_dir``, a TFDS ``data_dir``), exported models and reports
can live in a bucket. Uploads never overwrite: an object that exists with the
same content counts as uploaded (a retried task), one with other content is
an error. The one exception is training state mirrored for resuming
(:func:`mirror_dir`), which is meant to change after every epoch.
Credentials are Google's application defaults; with ``STORAGE_EMULATOR_HOST``
set (tests, fake-gcs-server) the client talks to that server anonymously.
Only object-level calls are made, so ``roles/storage.objectUser`` on the
bucket is enough. Every request has a timeout and is retried with backoff
when the failure is transient; whatever still fails ends as one
:class:`StorageError` line saying what to do.

One module, past 400 lines: every call the project makes to Cloud Storage,
with its timeout, retry and translation into one error line, is here, so the
fault tests (tests/test_faults.py, tests/test_storage.py) cover one place.
The functions that take either a ``gs://`` URI or a local path part in one
place, :func:`_where`.
"""

from __future__ import annotations

import base64
import contextlib
import filecmp
import hashlib
import os
import shutil
from contextlib import AbstractContextManager
from pathlib import Path, PurePosixPath

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from cnnvsmlp.errors import UserError
from cnnvsmlp.outputs import replacing

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


class StorageError(UserError):
    """A bucket or object is missing, forbidden, or would be overwritten."""


class StorageUnavailable(StorageError):
    """Cloud Storage did not answer in time or answered with a server error: a retry may help."""

    transient = True


def parse_uri(uri: str) -> tuple[str, str]:
    """Split ``gs://bucket/path`` into bucket and object name.

    Raises:
        StorageError: not a ``gs://`` URI with a bucket.
    """
    if not uri.startswith("gs://") or not uri[5:].split("/", 1)[0]:
        raise StorageError(f"{uri}: not a gs://bucket/path URI")
    bucket, _, name = uri[5:].partition("/")
    return bucket, name


def _retry():
    # Every request is retried: uploads write the same bytes again, so a repeat is harmless.
    return DEFAULT_RETRY.with_timeout(RETRY_S)


def client(uri: str = "gs://") -> storage.Client:
    """A storage client: the emulator when ``STORAGE_EMULATOR_HOST`` is set, else Google's.

    Args:
        uri: what the client is for, named in the error.

    Raises:
        StorageError: no Google credentials could be found.
    """
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        gcs = storage.Client(project="emulator", credentials=AnonymousCredentials())
    else:
        try:
            gcs = storage.Client()
        except auth_exc.DefaultCredentialsError as err:
            reason = " ".join(str(err).split()).split(". ")[0].rstrip(".") or "none found"
            raise StorageError(
                f"{uri}: no Google credentials ({reason}); {CREDENTIALS_HELP}"
            ) from None
    # The client fetches bucket metadata in background threads, for tracing we do not
    # use: bucket-level calls objectUser may not make, retried with random jitter
    # while training runs. Without the cache it makes none.
    gcs._bucket_metadata_cache = None
    return gcs


def _first_object(gcs: storage.Client, bucket: str) -> None:
    """List at most one object: raises NotFound for a missing bucket, needs no bucket permission."""
    next(iter(gcs.list_blobs(bucket, max_results=1, timeout=TIMEOUT_S, retry=_retry())), None)


def _bucket_missing(gcs: storage.Client, bucket: str) -> bool:
    try:
        _first_object(gcs, bucket)
    except gexc.NotFound:
        return True
    except _ERRORS:
        return False
    return False


def _fail(uri: str, err: Exception, gcs: storage.Client, listing: bool = False) -> StorageError:
    """One line for an error of a request about ``uri``.

    Args:
        uri: the object or prefix the request was about.
        err: what the client raised.
        gcs: the client, to tell a missing bucket from a missing object.
        listing: the request listed objects, so a 404 means the bucket is missing.
    """
    bucket, _ = parse_uri(uri)
    if isinstance(err, gexc.Forbidden | gexc.Unauthorized):
        return StorageError(
            f"{uri}: permission denied ({err.code}); grant the service account "
            f"roles/storage.objectUser on gs://{bucket}"
        )
    if isinstance(err, gexc.NotFound):
        if listing or _bucket_missing(gcs, bucket):
            return StorageError(
                f"{uri}: bucket gs://{bucket} does not exist; create it or fix the URI"
            )
        return StorageError(f"{uri}: no such object")
    if isinstance(err, auth_exc.RefreshError):
        reason = " ".join(str(err).split())
        return StorageError(
            f"{uri}: Google credentials were refused ({reason}); {CREDENTIALS_HELP}"
        )
    if isinstance(
        err,
        gexc.RetryError
        | gexc.ServerError
        | gexc.TooManyRequests
        | auth_exc.TransportError
        | requests.RequestException,
    ):
        cause = err.cause if isinstance(err, gexc.RetryError) and err.cause else err
        return StorageUnavailable(
            f"{uri}: Cloud Storage did not answer within {RETRY_S:g} s of retries "
            f"({cause.__class__.__name__}); check the network and retry"
        )
    message = getattr(err, "message", None) or str(err)
    return StorageError(f"{uri}: {err.__class__.__name__}: {' '.join(str(message).split())}")


def _inside(local_dir: Path, relative: str, source: str) -> Path:
    """``local_dir / relative``, refusing a name that would leave ``local_dir``."""
    parts = PurePosixPath(relative).parts
    if (
        not relative
        or relative.startswith("/")
        or "\\" in relative
        or any(p in ("", ".", "..") for p in relative.split("/"))
        or not parts
    ):
        raise StorageError(
            f"{source}: object name {relative!r} would be written outside {local_dir}; "
            "refusing to fetch it (rename or delete the object)"
        )
    return local_dir.joinpath(*parts)


def _replacing_file(dest: Path) -> AbstractContextManager[Path]:
    """:func:`~cnnvsmlp.outputs.replacing` for ``dest``, its folder made when missing."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    return replacing(dest)


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
    unless ``overwrite`` says so. An upload cut short leaves no object: a
    Cloud Storage object appears whole or not at all.

    Raises:
        StorageError: missing bucket, no permission, or an existing object
            with different content.
        StorageUnavailable: no answer within the timeout and its retries.
    """
    gcs = client(uri)
    bucket, name = parse_uri(uri)
    blob = gcs.bucket(bucket).blob(name)
    try:
        blob.upload_from_filename(
            str(local),
            if_generation_match=None if overwrite else 0,
            timeout=TIMEOUT_S,
            retry=_retry(),
        )
    except gexc.PreconditionFailed:
        try:
            blob.reload(timeout=TIMEOUT_S, retry=_retry())
        except _ERRORS as err:
            raise _fail(uri, err, gcs) from None
        if blob.md5_hash != _md5(Path(local)):
            raise StorageError(
                f"{uri}: exists with different content; not overwritten (delete it first)"
            ) from None
    except _ERRORS as err:
        raise _fail(uri, err, gcs) from None


def upload_dir(local_dir: str | os.PathLike, prefix: str) -> list[str]:
    """Upload every file under a folder to ``prefix/<relative path>``.

    A retried call after one cut short uploads what is missing and leaves
    what is already there with the same content.

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
        StorageUnavailable: no answer within the timeout and its retries.
    """
    gcs = client(uri)
    bucket, name = parse_uri(uri)
    dest = Path(dest)
    try:
        with _replacing_file(dest) as partial:
            gcs.bucket(bucket).blob(name).download_to_filename(
                str(partial), timeout=TIMEOUT_S, retry=_retry()
            )
    except _ERRORS as err:
        raise _fail(uri, err, gcs) from None
    return dest


def _list(gcs: storage.Client, prefix: str) -> dict[str, storage.Blob]:
    bucket, name = parse_uri(prefix)
    folder = name.rstrip("/") + "/" if name else ""
    try:
        blobs = gcs.list_blobs(bucket, prefix=folder, timeout=TIMEOUT_S, retry=_retry())
        return {b.name: b for b in blobs}
    except _ERRORS as err:
        raise _fail(prefix, err, gcs, listing=True) from None


def list_uris(prefix: str) -> list[str]:
    """Every object under ``prefix`` (a folder: a trailing ``/`` is implied), sorted.

    Raises:
        StorageError: missing bucket or no permission.
        StorageUnavailable: no answer within the timeout and its retries.
    """
    bucket, _ = parse_uri(prefix)
    return sorted(f"gs://{bucket}/{name}" for name in _list(client(prefix), prefix))


def _copy(src: Path, dest: Path) -> None:
    """Make ``dest`` a copy of ``src``, replaced by rename, never written in place.

    A copy, not a hard link: a file a person edits in a run folder must not
    change the training store behind it.
    """
    with _replacing_file(dest) as partial:
        shutil.copyfile(src, partial)


class _LocalFolder:
    """Where a URI is a local folder or file: plain files, each copied and replaced whole."""

    @staticmethod
    def mirror(files: list[Path], local_dir: Path, dest: str) -> int:
        copied = 0
        for path in files:
            target = Path(dest) / path.relative_to(local_dir)
            if target.is_file() and filecmp.cmp(path, target, shallow=False):
                continue
            _copy(path, target)
            copied += 1
        return copied

    @staticmethod
    def fetch(src: str, local_dir: Path) -> int:
        if not Path(src).is_dir():
            return 0
        files = [p for p in sorted(Path(src).rglob("*")) if p.is_file()]
        for path in files:
            _copy(path, local_dir / path.relative_to(src))
        return len(files)

    @staticmethod
    def names(dest: str) -> list[str]:
        root = Path(dest)
        if not root.is_dir():
            return []
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    @staticmethod
    def delete(dest: str, names: list[str]) -> None:
        for name in names:
            path = Path(dest) / name
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # a folder left empty goes too, as in a bucket
                path.parent.rmdir()

    @staticmethod
    def write_text(uri: str, text: str) -> None:
        with _replacing_file(Path(uri)) as partial:
            partial.write_text(text)

    @staticmethod
    def read_text(uri: str) -> str | None:
        path = Path(uri)
        return path.read_text(errors="replace") if path.is_file() else None


class _Bucket:
    """Where a URI is ``gs://``: objects, through the calls above."""

    @staticmethod
    def mirror(files: list[Path], local_dir: Path, dest: str) -> int:
        bucket, name = parse_uri(dest)
        folder = name.rstrip("/") + "/" if name else ""
        there = {key: blob.md5_hash for key, blob in _list(client(dest), dest).items()}
        copied = 0
        for path in files:
            key = folder + path.relative_to(local_dir).as_posix()
            if there.get(key) == _md5(path):
                continue
            upload(path, f"gs://{bucket}/{key}", overwrite=True)
            copied += 1
        return copied

    @staticmethod
    def fetch(src: str, local_dir: Path) -> int:
        prefix = src.rstrip("/") + "/"
        targets = {uri: _inside(local_dir, uri.removeprefix(prefix), uri) for uri in list_uris(src)}
        for uri, target in targets.items():
            download(uri, target)
        return len(targets)

    @staticmethod
    def names(dest: str) -> list[str]:
        prefix = dest.rstrip("/") + "/"
        return [uri.removeprefix(prefix) for uri in list_uris(dest)]

    @staticmethod
    def delete(dest: str, names: list[str]) -> None:
        gcs = client(dest)
        bucket, name = parse_uri(dest)
        folder = name.rstrip("/") + "/" if name else ""
        for relative in names:
            uri = f"gs://{bucket}/{folder}{relative}"
            try:
                gcs.bucket(bucket).blob(folder + relative).delete(timeout=TIMEOUT_S, retry=_retry())
            except gexc.NotFound:
                continue  # gone already: a retried delete
            except _ERRORS as err:
                raise _fail(uri, err, gcs) from None

    @staticmethod
    def write_text(uri: str, text: str) -> None:
        gcs = client(uri)
        bucket, name = parse_uri(uri)
        try:
            gcs.bucket(bucket).blob(name).upload_from_string(
                text, timeout=TIMEOUT_S, retry=_retry()
            )
        except _ERRORS as err:
            raise _fail(uri, err, gcs) from None

    @staticmethod
    def read_text(uri: str) -> str | None:
        gcs = client(uri)
        bucket, name = parse_uri(uri)
        try:
            return gcs.bucket(bucket).blob(name).download_as_text(timeout=TIMEOUT_S, retry=_retry())
        except gexc.NotFound:
            pass
        except _ERRORS as err:
            raise _fail(uri, err, gcs) from None
        try:
            _first_object(gcs, bucket)
        except _ERRORS as err:
            raise _fail(uri, err, gcs, listing=True) from None
        return None


def _where(uri: str) -> type[_LocalFolder] | type[_Bucket]:
    """What handles ``uri``: the functions below take a ``gs://`` URI or a local path."""
    return _Bucket if uri.startswith("gs://") else _LocalFolder


def mirror_dir(local_dir: str | os.PathLike, dest: str, only: set[str] | None = None) -> int:
    """Make ``dest`` (a ``gs://`` prefix or a local folder) hold every file of ``local_dir``.

    Files whose content is already there are skipped; changed ones are
    replaced, each whole (a copy cut short leaves the previous content).
    Nothing at ``dest`` is deleted. ``only`` limits the copy to the files
    and folders of those names at the top of ``local_dir``.

    Returns:
        How many files were copied.

    Raises:
        StorageError: missing bucket or no permission.
        StorageUnavailable: no answer within the timeout and its retries.
    """
    local_dir = Path(local_dir)
    files = sorted(
        p
        for p in local_dir.rglob("*")
        if p.is_file() and (only is None or p.relative_to(local_dir).parts[0] in only)
    )
    return _where(dest).mirror(files, local_dir, dest)


def prune_dir(local_dir: str | os.PathLike, dest: str, only: set[str]) -> int:
    """Delete at ``dest`` the files under the folders ``only`` names that ``local_dir`` lacks.

    The counterpart of :func:`mirror_dir` for state that is replaced by a
    newer one: call it after the newer files are mirrored.

    Returns:
        How many files were deleted.

    Raises:
        StorageError: missing bucket or no permission.
        StorageUnavailable: no answer within the timeout and its retries.
    """
    local_dir = Path(local_dir)
    where = _where(dest)
    gone = [
        name
        for name in where.names(dest)
        if PurePosixPath(name).parts[0] in only and not (local_dir / name).is_file()
    ]
    where.delete(dest, gone)
    return len(gone)


def fetch_file(src: str, dest: str | os.PathLike) -> bool:
    """Copy one object (``gs://``) or file to ``dest``, whole.

    Returns:
        False when there is no such object or file (``dest`` untouched).

    Raises:
        StorageError: missing bucket or no permission.
        StorageUnavailable: no answer within the timeout and its retries.
    """
    dest = Path(dest)
    if _where(src) is _LocalFolder:
        if not Path(src).is_file():
            return False
        _copy(Path(src), dest)
        return True
    gcs = client(src)
    bucket, name = parse_uri(src)
    try:
        with _replacing_file(dest) as partial:
            gcs.bucket(bucket).blob(name).download_to_filename(
                str(partial), timeout=TIMEOUT_S, retry=_retry()
            )
    except gexc.NotFound:
        try:
            _first_object(gcs, bucket)  # a missing bucket is an error, a missing object is not
        except _ERRORS as err:
            raise _fail(src, err, gcs, listing=True) from None
        return False
    except _ERRORS as err:
        raise _fail(src, err, gcs) from None
    return True


def fetch_dir(src: str, local_dir: str | os.PathLike) -> int:
    """Copy every file under ``src`` (a ``gs://`` prefix or a local folder) into ``local_dir``.

    A missing ``src`` folder holds no files. Every name is checked before
    anything is written: an object whose name would leave ``local_dir``
    (``..``, an absolute or empty path part) stops the fetch.

    Returns:
        How many files were copied.

    Raises:
        StorageError: missing bucket, no permission, or an object name that
            leaves ``local_dir``.
        StorageUnavailable: no answer within the timeout and its retries.
    """
    return _where(src).fetch(src, Path(local_dir))


def write_text(uri: str, text: str) -> None:
    """Write a small text object (``gs://``) or file, replacing what is there, atomically.

    Raises:
        StorageError: missing bucket or no permission.
        StorageUnavailable: no answer within the timeout and its retries.
    """
    _where(uri).write_text(uri, text)


def read_text(uri: str) -> str | None:
    """The text of an object (``gs://``) or file; None when there is none.

    Only object-level calls are made (a missing bucket is told from a
    missing object by listing objects), so ``roles/storage.objectUser`` is
    enough.

    Raises:
        StorageError: missing bucket or no permission.
        StorageUnavailable: no answer within the timeout and its retries.
    """
    return _where(uri).read_text(uri)
