"""The original files TFDS's builders download, from its download cache or a new download.

The files under ``<tfds_data_dir>/downloads`` (local or ``gs://``) give exactly the arrays of
the IDX source; each has a ``<file>.INFO`` beside it naming its URL.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cnnvsmlp.data.idx import MAX_FILE_BYTES, read_file, read_idx_blobs, regular_file
from cnnvsmlp.data.sources import DataError, DatasetSpec, RawData, SourceUnavailable


@dataclass(frozen=True)
class TfdsCache:
    """The files TFDS downloaded before, under ``<data_dir>/downloads``; no network."""

    data_dir: str | None
    label = "tfds cache"

    def read(self, spec: DatasetSpec) -> RawData:
        """Read the cached files; ``source`` is ``tfds:<downloads folder>``."""
        return read_tfds(spec, self.data_dir, download=False)


@dataclass(frozen=True)
class TfdsDownload:
    """A TFDS download of the original files, kept in its cache for the next time."""

    data_dir: str | None
    label = "tfds download"

    def read(self, spec: DatasetSpec) -> RawData:
        """Read the cached files, downloading what is missing."""
        return read_tfds(spec, self.data_dir, download=True)


def tfds_urls(spec: DatasetSpec) -> dict[str, str]:
    """The URLs TFDS's builder for a data set downloads, by role (``archive`` for EMNIST)."""
    if spec.nist_url:
        return {"archive": spec.nist_url}
    import tensorflow_datasets as tfds

    base = tfds.builder_cls(spec.tfds_name).URL
    return {key: base + name for key, name in spec.files.items()}


def _info_targets(folder: Path) -> dict[str, Path]:
    """URL -> file, from the ``<file>.INFO`` JSON that TFDS writes beside each download."""
    targets = {}
    for info in folder.glob("*.INFO"):
        try:
            urls = json.loads(info.read_text()).get("urls", [])
        except (OSError, json.JSONDecodeError):
            continue
        targets.update({url: info.with_suffix("") for url in urls})
    return targets


def tfds_data_dir(data_dir: str | None) -> str:
    """The TFDS data_dir a config names, or TFDS's default ``~/tensorflow_datasets``."""
    return (data_dir or os.path.expanduser("~/tensorflow_datasets")).rstrip("/")


def read_tfds(spec: DatasetSpec, data_dir: str | None, download: bool) -> RawData:
    """Read a data set's original files from TFDS's cache, else a TFDS download when allowed.

    Raises:
        SourceUnavailable: nothing cached and download off or impossible.
    """
    if data_dir and data_dir.startswith("gs://"):
        return _read_tfds_gcs(spec, data_dir)
    downloads = Path(tfds_data_dir(data_dir)) / "downloads"
    urls = tfds_urls(spec)
    cached = _info_targets(downloads) if downloads.is_dir() else {}
    if all(url in cached and cached[url].is_file() for url in urls.values()):
        paths = {key: cached[url] for key, url in urls.items()}
    elif download:
        import tensorflow_datasets as tfds

        _check_reachable(urls)
        manager = tfds.download.DownloadManager(download_dir=str(downloads))
        try:
            paths = {k: Path(str(p)) for k, p in manager.download(urls).items()}
        except Exception as err:  # noqa: BLE001 - TFDS raises many network error types
            raise SourceUnavailable(f"{spec.name}: TFDS could not download ({err})") from None
    else:
        raise SourceUnavailable(f"{spec.name}: no TFDS download of it under {downloads}")
    return _read_tfds_files(spec, paths, f"tfds:{downloads}")


def _read_tfds_files(spec: DatasetSpec, paths: dict[str, Path], source: str) -> RawData:
    if "archive" not in paths:
        blobs = {key: read_file(path, spec.name) for key, path in paths.items()}
        return read_idx_blobs(spec, blobs, source)
    archive = paths["archive"]
    try:
        regular_file(archive, spec.name)
        with zipfile.ZipFile(archive) as z:
            members = {key: z.getinfo(f"gzip/{name}") for key, name in spec.files.items()}
            if any(m.file_size > MAX_FILE_BYTES for m in members.values()):
                raise zipfile.BadZipFile(f"a member larger than {MAX_FILE_BYTES:,} bytes")
            blobs = {key: z.read(m) for key, m in members.items()}
    except (zipfile.BadZipFile, KeyError) as err:
        raise DataError(
            f"{spec.name}: file {archive.name} is not NIST's EMNIST archive ({err})"
        ) from None
    return read_idx_blobs(spec, blobs, source)


def _read_tfds_gcs(spec: DatasetSpec, data_dir: str) -> RawData:
    from cnnvsmlp import storage

    prefix = f"{data_dir.rstrip('/')}/downloads"
    urls = tfds_urls(spec)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp)
        for uri in storage.list_uris(prefix):
            if uri.endswith(".INFO"):
                storage.download(uri, local / uri.rsplit("/", 1)[1])
        cached = {u: p for u, p in _info_targets(local).items() if u in urls.values()}
        if len(cached) < len(urls):
            raise SourceUnavailable(f"{spec.name}: no TFDS download of it under {prefix}")
        paths = {}
        for key, url in urls.items():
            name = cached[url].name
            storage.download(f"{prefix}/{name}", local / name)
            paths[key] = local / name
        return _read_tfds_files(spec, paths, f"tfds:{prefix}")


def _check_reachable(urls: dict[str, str]) -> None:
    """Fail fast when a download host does not resolve (TFDS retries for minutes)."""
    import socket
    from urllib.parse import urlparse

    for url in urls.values():
        host = urlparse(url).hostname
        try:
            socket.getaddrinfo(host, 443)
        except OSError:
            raise SourceUnavailable(f"cannot reach {host} to download") from None
