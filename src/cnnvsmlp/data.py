"""Read EMNIST Letters and Fashion-MNIST, normalise them, and store the splits.

Sources, tried in this order by ``kind: auto``:

1. ``idx_dir``: a directory (local path or ``gs://`` prefix) holding the
   original gzip IDX files, when the config names one; a named folder that
   lacks the files is an error, never a reason to try the next source;
2. the TFDS download cache: the original files that TFDS's ``fashion_mnist``
   and ``emnist`` builders download, found under ``<tfds_data_dir>/downloads``
   (local or ``gs://``);
3. TFDS's prepared records in the same data_dir, as ``tfds build`` or
   ``tfds.load`` leave them: ``<tfds_data_dir>/fashion_mnist/<version>/`` or
   ``<tfds_data_dir>/emnist/letters/<version>/``, when the config names a
   ``tfds_data_dir``;
4. the data set's offline default directory (Debian's ``dataset-fashion-mnist``
   installs Fashion-MNIST under ``/usr/share/datasets/fashion-mnist``), then
   prepared records in the default ``~/tensorflow_datasets``;
5. a TFDS download of the original files, when ``download`` is true.

Every source yields the same normalised arrays: upright 28x28 uint8 images
and 0-based labels. Sources 1, 2, 4 and 5 read the original files, so they
give identical arrays in file order. TFDS's builders shuffle records when
they prepare them, so source 3 yields the same images in TFDS's stored order
(shard by shard, record by record), not file order: its test split is the
same set, but its validation split (the last fraction in that order) holds
other images than Keras' ``validation_split`` on the files. Its metadata
``source`` is ``tfds-prepared:<folder>`` to say so. TFDS's prepared
``emnist/letters`` keeps only 88,800 of NIST's 124,800 training images (and
14,800 of 20,800 test images), so :func:`prepare` rejects it.

The on-disk format written by :func:`write_dataset` is documented in
``docs/dataset-format.md``; :func:`load_split` reads it back as float32
images in [0, 1], NHWC.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import string
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnvsmlp.config import DataSource, Split
from cnnvsmlp.errors import UserError
from cnnvsmlp.outputs import PARTIAL_PREFIX, claim_dir

FORMAT = "cnnvsmlp-dataset/1"
SPLITS = ("train", "validation", "test")
DATASET_FILES = {f"{name}.npz" for name in SPLITS} | {"metadata.json"}
IMAGE_SHAPE = (28, 28, 1)


class DataError(UserError, ValueError):
    """Input data is missing, malformed or inconsistent."""


class SourceUnavailable(DataError):
    """A source has no data here (missing files, no network); ``auto`` tries the next."""


@dataclass(frozen=True)
class DatasetSpec:
    """What is known about one data set, by its one name."""

    name: str
    classes: tuple[str, ...]
    files: dict[str, str]
    official_counts: dict[str, int]
    transposed: bool
    label_offset: int
    tfds_name: str
    default_idx_dir: str | None = None
    nist_url: str | None = None


DATASETS: dict[str, DatasetSpec] = {
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        files={
            "train_images": "train-images-idx3-ubyte.gz",
            "train_labels": "train-labels-idx1-ubyte.gz",
            "test_images": "t10k-images-idx3-ubyte.gz",
            "test_labels": "t10k-labels-idx1-ubyte.gz",
        },
        official_counts={"train": 60000, "test": 10000},
        transposed=False,
        label_offset=0,
        tfds_name="fashion_mnist",
        default_idx_dir="/usr/share/datasets/fashion-mnist",
    ),
    "emnist-letters": DatasetSpec(
        name="emnist-letters",
        classes=tuple(string.ascii_uppercase),
        files={
            "train_images": "emnist-letters-train-images-idx3-ubyte.gz",
            "train_labels": "emnist-letters-train-labels-idx1-ubyte.gz",
            "test_images": "emnist-letters-test-images-idx3-ubyte.gz",
            "test_labels": "emnist-letters-test-labels-idx1-ubyte.gz",
        },
        official_counts={"train": 124800, "test": 20800},
        # NIST stores EMNIST images transposed and letter labels as 1..26.
        transposed=True,
        label_offset=1,
        tfds_name="emnist/letters",
        nist_url="https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip",
    ),
}


def get_spec(name: str) -> DatasetSpec:
    """Return the spec of a data set by name.

    Raises:
        DataError: the name is not a known data set.
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(
            f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}"
        ) from None


@dataclass
class RawData:
    """Official train and test splits as read from a source, before splitting."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    input_sha256: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- IDX files


def _read_file(path: Path, label: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SourceUnavailable(f"{label}: file {path} is missing") from None
    except OSError as err:
        raise DataError(f"{label}: file {path} cannot be read ({err.strerror})") from None


def gunzip(blob: bytes, name: str, label: str) -> bytes:
    """Decompress a gzip file's bytes, with a one-line error naming the file."""
    if blob[:2] != b"\x1f\x8b":
        first = " ".join(f"{b:02x}" for b in blob[:4]) or "empty file"
        raise DataError(f"{label}: file {name} is not gzip data (first bytes {first})")
    try:
        return gzip.decompress(blob)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise DataError(f"{label}: file {name} is truncated or corrupt gzip ({err})") from None


def parse_idx(raw: bytes, expect_ndim: int, name: str, label: str) -> np.ndarray:
    """Parse decompressed IDX bytes of unsigned bytes into an array.

    Args:
        raw: the decompressed file content.
        expect_ndim: 3 for images, 1 for labels.
        name: file name, for error messages.
        label: data set name, for error messages.

    Returns:
        A read-only uint8 array of the shape the header declares.

    Raises:
        DataError: wrong magic, dimensions, or a payload of the wrong size.
    """
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        magic = raw[:4].hex(" ") if raw else "empty"
        raise DataError(
            f"{label}: file {name} has IDX magic {magic}, expected 00 00 08 0{expect_ndim}"
        )
    ndim = raw[3]
    if ndim != expect_ndim:
        raise DataError(f"{label}: file {name} has {ndim} dimensions, expected {expect_ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{label}: file {name} is truncated inside its header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if ndim == 3 and dims[1:] != IMAGE_SHAPE[:2]:
        raise DataError(f"{label}: file {name} holds {dims[1]}x{dims[2]} images, expected 28x28")
    expected = int(np.prod(dims))
    have = len(raw) - header
    if have != expected:
        what = "truncated" if have < expected else "longer than its header says"
        raise DataError(
            f"{label}: file {name} is {what}: header declares {dims[0]} items "
            f"({expected} bytes), file has {have} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_dir(spec: DatasetSpec, directory: str | os.PathLike) -> RawData:
    """Read the four gzip IDX files of a data set from a local directory.

    Raises:
        DataError: a file is missing or malformed, counts differ, or a label
            is out of range.
    """
    directory = Path(directory)
    blobs = {key: _read_file(directory / name, spec.name) for key, name in spec.files.items()}
    return read_idx_blobs(spec, blobs, source=f"idx:{directory}")


def read_idx_blobs(spec: DatasetSpec, blobs: dict[str, bytes], source: str) -> RawData:
    """Parse the four gzip IDX files of a data set, given as bytes by role.

    Args:
        spec: the data set.
        blobs: gzip bytes keyed ``train_images``, ``train_labels``,
            ``test_images``, ``test_labels``.
        source: provenance recorded in the metadata.
    """
    arrays, digests = {}, {}
    for key, fname in spec.files.items():
        raw = gunzip(blobs[key], fname, spec.name)
        digests[fname] = hashlib.sha256(raw).hexdigest()
        arrays[key] = parse_idx(raw, 3 if key.endswith("images") else 1, fname, spec.name)
    out = {}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise DataError(
                f"{spec.name}: {spec.files[f'{split}_images']} has {len(images)} images but "
                f"{spec.files[f'{split}_labels']} has {len(labels)} labels"
            )
        out[f"{split}_images"], out[f"{split}_labels"] = normalise_raw(
            spec, images, labels, spec.files[f"{split}_labels"]
        )
    return RawData(**out, source=source, input_sha256=digests)


def normalise_raw(
    spec: DatasetSpec, images: np.ndarray, labels: np.ndarray, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Turn images upright and labels 0-based, checking the label range.

    Returns:
        ``(images, labels)``: uint8 ``(N, 28, 28)`` upright, uint8 0-based labels.

    Raises:
        DataError: a label outside the data set's range.
    """
    images = np.asarray(images, dtype=np.uint8).reshape(-1, 28, 28)
    if spec.transposed:
        images = images.transpose(0, 2, 1)
    labels = np.asarray(labels).reshape(-1)
    lo, hi = spec.label_offset, spec.label_offset + len(spec.classes) - 1
    if labels.size:
        bad = np.flatnonzero((labels < lo) | (labels > hi))
        if bad.size:
            raise DataError(
                f"{spec.name}: {where}: label {int(labels[bad[0]])} at index {int(bad[0])} "
                f"is out of range {lo}..{hi}"
            )
    return np.ascontiguousarray(images), (labels - lo).astype(np.uint8)


# ---------------------------------------------------------------- TFDS


def tfds_urls(spec: DatasetSpec) -> dict[str, str]:
    """The URLs TFDS's builder for a data set downloads, by role (``archive`` for EMNIST)."""
    if spec.nist_url:
        return {"archive": spec.nist_url}
    import tensorflow_datasets as tfds

    base = tfds.builder_cls(spec.tfds_name).URL
    return {key: base + name for key, name in spec.files.items()}


def tfds_cached(downloads: Path) -> dict[str, Path]:
    """Files present in a TFDS download folder, by URL."""
    return {url: path for url, path in _info_targets(downloads).items() if path.is_file()}


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


def _tfds_data_dir(data_dir: str | None) -> str:
    """The TFDS data_dir a config names, or TFDS's default ``~/tensorflow_datasets``."""
    return (data_dir or os.path.expanduser("~/tensorflow_datasets")).rstrip("/")


def read_tfds(spec: DatasetSpec, data_dir: str | None, download: bool) -> RawData:
    """Read a data set's original files through TFDS's download manager and cache.

    The files the builders download (``<data_dir>/downloads``) give exactly
    the arrays of the IDX source, in file order. A data_dir that TFDS already
    filled is used offline; otherwise TFDS downloads, when allowed.

    Raises:
        SourceUnavailable: nothing cached and download off or impossible.
    """
    if data_dir and data_dir.startswith("gs://"):
        return _read_tfds_gcs(spec, data_dir)
    downloads = Path(_tfds_data_dir(data_dir)) / "downloads"
    urls = tfds_urls(spec)
    cached = tfds_cached(downloads) if downloads.is_dir() else {}
    if all(url in cached for url in urls.values()):
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
        blobs = {key: _read_file(path, spec.name) for key, path in paths.items()}
        return read_idx_blobs(spec, blobs, source)
    archive = paths["archive"]
    try:
        with zipfile.ZipFile(archive) as z:
            blobs = {key: z.read(f"gzip/{name}") for key, name in spec.files.items()}
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


def read_tfds_prepared(spec: DatasetSpec, data_dir: str | None) -> RawData:
    """Read the records TFDS prepared for a data set (``tfds build``, ``tfds.load``).

    Reads the newest version under ``<data_dir>/<tfds name>/`` (for example
    ``fashion_mnist/3.0.1`` or ``emnist/letters/3.1.0``), local or ``gs://``,
    with ``tfds.builder_from_directory``: it needs only the folder's
    ``dataset_info.json`` and ``features.json``, not the installed builder's
    version. Records come in the order TFDS stored them, shard by shard, so
    the same folder always gives the same arrays; TFDS shuffled that order
    when it prepared them, so it is not the original files' order.

    Returns:
        Upright images and 0-based labels; ``source`` is ``tfds-prepared:<folder>``.

    Raises:
        SourceUnavailable: no prepared version of the data set under data_dir.
        DataError: TFDS cannot read the records, or they hold images of
            another shape or labels out of range.
    """
    root = f"{_tfds_data_dir(data_dir)}/{spec.tfds_name}"
    if root.startswith("gs://"):
        return _read_tfds_prepared_gcs(spec, root)
    base = Path(root)
    names = []
    if base.is_dir():
        names = [p.name for p in base.iterdir() if (p / "dataset_info.json").is_file()]
    folder = base / _newest_version(spec, names, root)
    return _read_prepared_folder(spec, folder, f"tfds-prepared:{folder}")


def _newest_version(spec: DatasetSpec, names: list[str], root: str) -> str:
    """The highest ``X.Y.Z`` among folder names; TFDS's unfinished folders do not match."""
    versions = [n for n in names if re.fullmatch(r"\d+\.\d+\.\d+", n)]
    if not versions:
        raise SourceUnavailable(f"{spec.name}: no prepared TFDS records of it under {root}")
    return max(versions, key=lambda v: tuple(int(part) for part in v.split(".")))


def _read_tfds_prepared_gcs(spec: DatasetSpec, root: str) -> RawData:
    from cnnvsmlp import storage

    by_version: dict[str, list[str]] = {}
    for uri in storage.list_uris(root):
        version, _, name = uri[len(root) + 1 :].partition("/")
        if name and "/" not in name:
            by_version.setdefault(version, []).append(name)
    versions = [v for v, names in by_version.items() if "dataset_info.json" in names]
    version = _newest_version(spec, versions, root)
    with tempfile.TemporaryDirectory() as tmp:
        for name in by_version[version]:
            storage.download(f"{root}/{version}/{name}", Path(tmp) / name)
        return _read_prepared_folder(spec, Path(tmp), f"tfds-prepared:{root}/{version}")


def _read_prepared_folder(spec: DatasetSpec, folder: Path, source: str) -> RawData:
    """Decode the train and test records of one prepared TFDS version folder."""
    import tensorflow_datasets as tfds

    where = source.removeprefix("tfds-prepared:")
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
    out = {}
    for split in ("train", "test"):
        try:
            # Stored order: no file shuffling, one shard at a time.
            batch = builder.as_dataset(
                split=split,
                batch_size=-1,
                shuffle_files=False,
                read_config=tfds.ReadConfig(interleave_cycle_length=1),
            )
            example = tfds.as_numpy(batch)
        except Exception as err:  # noqa: BLE001 - corrupt records surface as TF errors
            raise DataError(
                f"{spec.name}: TFDS cannot read the {split} records in {where} ({_first_line(err)})"
            ) from None
        images, labels = example["image"], example["label"]
        if images.shape[1:] not in ((28, 28, 1), (28, 28)):
            shape = "x".join(str(d) for d in images.shape[1:])
            raise DataError(f"{spec.name}: {where} holds {shape} {split} images, expected 28x28x1")
        # TFDS's builders store the IDX arrays unchanged: EMNIST transposed,
        # letters labelled 1..26 among 37 declared classes.
        out[f"{split}_images"], out[f"{split}_labels"] = normalise_raw(
            spec, images, labels, f"{where} {split} split"
        )
    digests = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }
    return RawData(**out, source=source, input_sha256=digests)


def _first_line(err: Exception) -> str:
    """An exception as one short line, without TensorFlow's ``{{function_node ...}}`` prefix."""
    text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", str(err).strip()).splitlines()
    return f"{err.__class__.__name__}: {text[0][:200]}" if text else err.__class__.__name__


# ---------------------------------------------------------------- sources


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


def _fetch_gcs_dir(uri: str, spec: DatasetSpec, into: Path) -> Path:
    from cnnvsmlp import storage

    for fname in spec.files.values():
        storage.download(f"{uri.rstrip('/')}/{fname}", into / fname)
    return into


def read_source(spec: DatasetSpec, source: DataSource) -> RawData:
    """Read a data set from the source the config names, trying ``auto`` in order.

    ``auto`` and ``tfds`` move on to the next source only when one has no
    data here; a malformed file, or an ``idx_dir`` the config names that lacks
    the files, stops the search with its own error.

    Raises:
        DataError: no source could provide the data (the message lists what
            was tried), the named ``idx_dir`` lacks a file, or a file is malformed.
    """
    attempts: list[tuple[str, Callable[[], RawData]]] = []

    def idx(directory: str, named: bool) -> Callable[[], RawData]:
        def read() -> RawData:
            if directory.startswith("gs://"):
                with tempfile.TemporaryDirectory() as tmp:
                    raw = read_idx_dir(spec, _fetch_gcs_dir(directory, spec, Path(tmp)))
                raw.source = f"idx:{directory}"
                return raw
            if named:
                _check_idx_dir(spec, Path(directory))
            return read_idx_dir(spec, directory)

        return read

    def tfds_(download: bool) -> Callable[[], RawData]:
        return lambda: read_tfds(spec, source.tfds_data_dir, download)

    def prepared() -> RawData:
        return read_tfds_prepared(spec, source.tfds_data_dir)

    def prepared_if_official() -> RawData:
        # Found in the default ~/tensorflow_datasets, not named by the config:
        # a smaller split there (TFDS's emnist/letters) is no reason to stop.
        raw = prepared()
        try:
            check_official_counts(spec, raw)
        except DataError as err:
            raise SourceUnavailable(str(err)) from None
        return raw

    # auto: the named files first, then what a TFDS data_dir holds, the
    # offline default, and only then a TFDS download, which is slow to fail
    # without a network. Prepared records lose the files' order, so those in
    # the default ~/tensorflow_datasets come after the offline default files;
    # a data_dir the config names comes before them.
    named_prepared = source.kind == "tfds" or bool(source.tfds_data_dir)
    if source.kind in ("auto", "idx") and source.idx_dir:
        attempts.append((f"idx {source.idx_dir}", idx(source.idx_dir, named=True)))
    if source.kind in ("auto", "tfds"):
        attempts.append(("tfds cache", tfds_(False)))
    if source.kind in ("auto", "tfds") and named_prepared:
        attempts.append(("tfds prepared", prepared))
    if source.kind in ("auto", "idx") and not source.idx_dir and spec.default_idx_dir:
        attempts.append((f"idx {spec.default_idx_dir}", idx(spec.default_idx_dir, named=False)))
    if source.kind == "auto" and not named_prepared:
        attempts.append(("tfds prepared", prepared_if_official))
    if source.kind in ("auto", "tfds") and source.download:
        attempts.append(("tfds download", tfds_(True)))
    if not attempts:
        raise DataError(f"{spec.name}: source kind idx needs source.idx_dir")
    errors = []
    for label, read in attempts:
        try:
            return read()
        except SourceUnavailable as err:
            # A malformed file is an error in itself; only absent data moves on.
            if source.kind == "idx":
                raise
            errors.append(f"{label}: {err}")
    if source.kind == "tfds":
        hint = " Point source.tfds_data_dir at a data_dir that TFDS filled" + (
            "." if source.download else ", or set source.download=true."
        )
    elif spec.default_idx_dir:
        hint = " Install Debian's dataset-fashion-mnist or set source.idx_dir."
    else:
        hint = " Download NIST's gzip.zip and set source.idx_dir to its gzip/ folder."
    raise DataError(f"{spec.name}: no source worked ({'; '.join(errors)}).{hint}")


def _check_idx_dir(spec: DatasetSpec, directory: Path) -> None:
    """Fail on a named ``idx_dir`` without the files, rather than try another source."""
    if not directory.is_dir():
        raise DataError(
            f"{spec.name}: source.idx_dir {directory} is not a folder "
            f"(it should hold {', '.join(spec.files.values())})"
        )
    missing = [name for name in spec.files.values() if not (directory / name).is_file()]
    if missing:
        files = "file " if len(missing) == 1 else "files "
        verb = " is" if len(missing) == 1 else " are"
        raise DataError(
            f"{spec.name}: source.idx_dir {directory}: {files}{', '.join(missing)}{verb} missing"
        )


# ---------------------------------------------------------------- splits and format


def split_train(
    images: np.ndarray, labels: np.ndarray, split: Split
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Cut the official training split into train and validation.

    With no shuffle seed the validation set is the last fraction in file
    order, exactly as Keras' ``validation_split``; with a seed the images
    are permuted first.
    """
    n = len(images)
    n_train = n - int(n * split.validation_fraction)
    order = np.arange(n)
    if split.shuffle_seed is not None:
        order = np.random.default_rng(split.shuffle_seed).permutation(n)
    tr, va = order[:n_train], order[n_train:]
    return (images[tr], labels[tr]), (images[va], labels[va])


def write_dataset(
    raw: RawData, spec: DatasetSpec, split: Split, out_dir: str | os.PathLike, limit: int | None
) -> dict:
    """Split, and write the normalised data set atomically into ``out_dir``.

    ``out_dir`` holds ``train.npz``, ``validation.npz``, ``test.npz`` (arrays
    ``images`` uint8 ``(N, 28, 28, 1)`` and ``labels`` uint8) and
    ``metadata.json``. Nothing is left behind when writing fails.

    Returns:
        The metadata written.
    """
    train_x, train_y = raw.train_images, raw.train_labels
    test_x, test_y = raw.test_images, raw.test_labels
    if limit is not None:
        train_x, train_y, test_x, test_y = (
            train_x[:limit],
            train_y[:limit],
            test_x[:limit],
            test_y[:limit],
        )
    (tr_x, tr_y), (va_x, va_y) = split_train(train_x, train_y, split)
    parts = {"train": (tr_x, tr_y), "validation": (va_x, va_y), "test": (test_x, test_y)}
    out_dir = claim_dir(out_dir, DATASET_FILES, "data set")
    tmp = Path(tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}{out_dir.name}.", dir=out_dir.parent))
    old = out_dir.with_name(f"{PARTIAL_PREFIX}old-{tmp.name}")
    try:
        for name, (x, y) in parts.items():
            np.savez(tmp / f"{name}.npz", images=x.reshape(-1, *IMAGE_SHAPE), labels=y)
        meta = {
            "format": FORMAT,
            "dataset": spec.name,
            "classes": list(spec.classes),
            "image_shape": list(IMAGE_SHAPE),
            "layout": "NHWC",
            "stored_dtype": "uint8",
            "scale": "divide by 255 to get float32 in [0, 1]",
            "counts": {name: int(len(y)) for name, (_, y) in parts.items()},
            "split": split.model_dump(),
            "limit": limit,
            "source": raw.source,
            "input_sha256": raw.input_sha256,
        }
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
        # The folder holds nothing but an earlier data set (claim_dir checked): swap it whole.
        out_dir.rename(old)
        tmp.rename(out_dir)
    except BaseException:
        if old.exists() and not out_dir.exists():
            old.rename(out_dir)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return meta


def read_metadata(data_dir: str | os.PathLike) -> dict:
    """Read and check ``metadata.json`` of a written data set.

    Raises:
        DataError: missing metadata or an unknown format.
    """
    path = Path(data_dir) / "metadata.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: missing; not a data set written by cnnvsmlp") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg})") from None
    if meta.get("format") != FORMAT:
        raise DataError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def load_split(data_dir: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load one split as float32 images in [0, 1] (NHWC) and int64 labels.

    Raises:
        DataError: unknown split name or missing file.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    path = Path(data_dir) / f"{split}.npz"
    if not path.is_file():
        raise DataError(f"{path}: missing")
    with np.load(path) as npz:
        images = npz["images"].astype(np.float32)
        labels = npz["labels"].astype(np.int64)
    images /= np.float32(255.0)
    return images, labels


def prepare(
    dataset: str,
    source: DataSource,
    split: Split,
    out_dir: str | os.PathLike,
    limit: int | None = None,
) -> dict:
    """Read a data set from its source and write the normalised splits.

    Returns:
        The metadata written to ``out_dir/metadata.json``.

    Raises:
        DataError: unknown name, no working source, or bad input files.
    """
    spec = get_spec(dataset)
    raw = read_source(spec, source)
    check_official_counts(spec, raw)
    return write_dataset(raw, spec, split, out_dir, limit)


def check_official_counts(spec: DatasetSpec, raw: RawData) -> None:
    """Refuse a TFDS source whose splits are not the official ones.

    IDX folders may hold fewer images (tests, synthetic letters); what TFDS
    gives must be the whole official split.

    Raises:
        DataError: a split's size differs from the official count; for TFDS's
            prepared records the message says which source to use instead.
    """
    if raw.source.startswith("idx:"):
        return
    for split_name in ("train", "test"):
        n = len(getattr(raw, f"{split_name}_labels"))
        expected = spec.official_counts[split_name]
        if n == expected:
            continue
        message = (
            f"{spec.name}: source {raw.source} has {n} {split_name} images, expected {expected}"
        )
        if raw.source.startswith("tfds-prepared:"):
            files = "the gzip/ folder of NIST's gzip.zip" if spec.nist_url else "the gzip IDX files"
            message += (
                f"; TFDS's prepared {spec.tfds_name} is not the official split: keep TFDS's "
                f"downloads (<tfds_data_dir>/downloads) or set source.idx_dir to {files}"
            )
        raise DataError(message)


def labels_digest(labels: np.ndarray) -> str:
    """SHA-256 of a label vector as uint8: ties predictions to the split they score."""
    return hashlib.sha256(np.asarray(labels, dtype=np.uint8).tobytes()).hexdigest()
