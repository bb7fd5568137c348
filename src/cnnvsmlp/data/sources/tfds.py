"""TFDS's data: the files its builders download (the IDX source's very arrays), or its records."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from cnnvsmlp.data.idx import MAX_FILE_BYTES, read_file, read_idx_blobs, regular_file
from cnnvsmlp.data.sources import DataError, DatasetSpec, RawData, SourceUnavailable, normalise_raw
from cnnvsmlp.data.spec import check_official_counts


def read_tfds_files(spec: DatasetSpec, data_dir: str | None, download: bool = False) -> RawData:
    """Read the files TFDS downloaded under ``<data_dir>/downloads``, else download when allowed."""
    if data_dir and data_dir.startswith("gs://"):
        return _read_tfds_gcs(spec, data_dir)
    downloads = Path(tfds_data_dir(data_dir)) / "downloads"
    urls = tfds_urls(spec)
    cached = _info_targets(downloads) if downloads.is_dir() else {}
    if all(url in cached and cached[url].is_file() for url in urls.values()):
        paths = {key: cached[url] for key, url in urls.items()}
    elif download:
        import tensorflow_datasets as tfds

        for url in urls.values():  # fail fast on a host that does not resolve: TFDS retries
            host = urlparse(url).hostname
            try:
                socket.getaddrinfo(host, 443)
            except OSError:
                raise SourceUnavailable(f"cannot reach {host} to download") from None
        manager = tfds.download.DownloadManager(download_dir=str(downloads))
        try:
            paths = {k: Path(str(p)) for k, p in manager.download(urls).items()}
        except Exception as err:  # noqa: BLE001 - TFDS raises many network error types
            raise SourceUnavailable(f"{spec.name}: TFDS could not download ({err})") from None
    else:
        raise SourceUnavailable(f"{spec.name}: no TFDS download of it under {downloads}")
    return _read_tfds_files(spec, paths, f"tfds:{downloads}")


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
        for name in storage.names(prefix):
            if name.endswith(".INFO"):
                storage.download(f"{prefix}/{name}", local / name.rsplit("/", 1)[-1])
        cached = {u: p for u, p in _info_targets(local).items() if u in urls.values()}
        if len(cached) < len(urls):
            raise SourceUnavailable(f"{spec.name}: no TFDS download of it under {prefix}")
        paths = {
            key: storage.download(f"{prefix}/{cached[url].name}", cached[url])
            for key, url in urls.items()
        }
        return _read_tfds_files(spec, paths, f"tfds:{prefix}")


def read_tfds_prepared(
    spec: DatasetSpec, data_dir: str | None = None, official_only: bool = False
) -> RawData:
    """The newest records under ``<data_dir>/<tfds name>/``; ``official_only``: others are none."""
    root = f"{tfds_data_dir(data_dir)}/{spec.tfds_name}"
    if root.startswith("gs://"):
        raw = _read_tfds_prepared_gcs(spec, root)
    else:
        base = Path(root)
        listed = base.iterdir() if base.is_dir() else ()
        names = [p.name for p in listed if (p / "dataset_info.json").is_file()]
        folder = base / _newest_version(spec, names, root)
        raw = _read_prepared_folder(spec, folder, str(folder))
    if official_only:
        try:
            check_official_counts(spec, raw)
        except DataError as err:
            raise SourceUnavailable(str(err)) from None
    return raw


def _newest_version(spec: DatasetSpec, names: list[str], root: str) -> str:
    """The highest ``X.Y.Z`` among folder names; TFDS's unfinished folders do not match."""
    versions = [n for n in names if re.fullmatch(r"\d+\.\d+\.\d+", n)]
    if not versions:
        raise SourceUnavailable(f"{spec.name}: no prepared TFDS records of it under {root}")
    return max(versions, key=lambda v: tuple(int(part) for part in v.split(".")))


def _read_tfds_prepared_gcs(spec: DatasetSpec, root: str) -> RawData:
    from cnnvsmlp import storage

    by_version: dict[str, list[str]] = {}
    for name in storage.names(root):  # each version folder's own files, none deeper
        version, _, file = name.partition("/")
        if file and "/" not in file:
            by_version.setdefault(version, []).append(file)
    versions = [v for v, files in by_version.items() if "dataset_info.json" in files]
    version = _newest_version(spec, versions, root)
    with tempfile.TemporaryDirectory() as tmp:
        for file in by_version[version]:
            storage.download(f"{root}/{version}/{file}", Path(tmp) / file)
        return _read_prepared_folder(spec, Path(tmp), f"{root}/{version}")


def _read_prepared_folder(spec: DatasetSpec, folder: Path, where: str) -> RawData:
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder_from_directory(str(folder))
        missing = [s for s in ("train", "test") if s not in builder.info.splits]
        features = builder.info.features
    except Exception as err:  # noqa: BLE001 - TFDS raises many types for unreadable folders
        raise DataError(f"{spec.name}: TFDS cannot read {where} ({_first_line(err)})") from None
    if missing:
        raise DataError(f"{spec.name}: {where} has no {missing[0]} split")
    if not {"image", "label"} <= set(features.keys()):
        raise DataError(
            f"{spec.name}: {where} has features {', '.join(sorted(features.keys()))}, "
            "expected image and label"
        )
    train, test = (_read_split(spec, builder, split, where) for split in ("train", "test"))
    files = sorted(p for p in folder.iterdir() if p.is_file())
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    return RawData(*train, *test, source=f"tfds-prepared:{where}", input_sha256=digests)


def _read_split(spec: DatasetSpec, builder, split: str, where: str) -> tuple:
    """One split's records in their stored order (no file shuffling, one shard at a time)."""
    import tensorflow_datasets as tfds

    config = tfds.ReadConfig(interleave_cycle_length=1)
    try:
        batch = builder.as_dataset(split, batch_size=-1, shuffle_files=False, read_config=config)
        example = tfds.as_numpy(batch)
    except Exception as err:  # noqa: BLE001 - corrupt records surface as TF errors
        raise DataError(
            f"{spec.name}: TFDS cannot read the {split} records in {where} ({_first_line(err)})"
        ) from None
    images, labels = example["image"], example["label"]
    if images.shape[1:] not in (spec.image_shape, spec.image_shape[:2]):
        shape, expected = ("x".join(map(str, s)) for s in (images.shape[1:], spec.image_shape))
        raise DataError(f"{spec.name}: {where} holds {shape} {split} images, expected {expected}")
    # TFDS's builders store the IDX arrays unchanged: EMNIST transposed, letters labelled 1..26.
    return normalise_raw(spec, images, labels, f"{where} {split} split")


def _first_line(err: Exception) -> str:
    """An exception as one short line, without TensorFlow's ``{{function_node ...}}`` prefix."""
    text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", str(err).strip()).splitlines()
    return f"{err.__class__.__name__}: {text[0][:200]}" if text else err.__class__.__name__
