"""NIST's gzip IDX files: gunzip, parse and normalise the four files of a data set; the source."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import stat
import tempfile
import zlib
from pathlib import Path

import numpy as np

from cnnvsmlp.data.sources import DataError, DatasetSpec, RawData, SourceUnavailable, normalise_raw

MAX_FILE_BYTES = 1 << 30  # gzip or IDX; NIST's largest (EMNIST byclass) is 547 MB as IDX
IDX_MAGIC = b"\0\0\x08"  # unsigned bytes; the fourth byte is the number of dimensions
WRITTEN_BY = "cnnvsmlp-written.json"  # a writer's record beside its IDX files: their digests
SYNTHETIC_WRITER = "cnnvsmlp synth-emnist"  # the writer it names: a stand-in, not NIST's data


def written_record(directory: Path) -> tuple[object, dict[str, str] | None]:
    """The writer of ``directory``'s files and their IDX digests, as its record says."""
    try:
        record = json.loads((directory / WRITTEN_BY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    record = record if isinstance(record, dict) else {}
    digests = record.get("idx_sha256")
    return record.get("writer"), digests if isinstance(digests, dict) else None


def read_file(path: Path, label: str) -> bytes:
    """A regular file's bytes, at most :data:`MAX_FILE_BYTES`; SourceUnavailable if missing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a named pipe must not block the open
        with os.fdopen(fd, "rb") as f:
            st = regular_file(path, label, os.fstat(fd))
            if st.st_size > MAX_FILE_BYTES:
                raise DataError(
                    f"{label}: file {path} is {st.st_size:,} bytes, more than a gzip IDX file of "
                    f"this project holds ({MAX_FILE_BYTES:,}); give the data set's own file"
                )
            return f.read(st.st_size + 1)  # a file that grows since is read no further
    except FileNotFoundError:
        raise SourceUnavailable(f"{label}: file {path} is missing") from None
    except OSError as err:
        raise DataError(f"{label}: file {path} cannot be read ({err.strerror})") from None


def regular_file(path: Path, label: str, st: os.stat_result | None = None) -> os.stat_result:
    """``path``'s status (or ``st``), refusing what is not a regular file, unread."""
    st = st or os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise DataError(
            f"{label}: {path} is not a regular file (a pipe, device or socket); "
            "give the data set's file itself"
        )
    return st


def read_idx(blob: bytes, ndim: int, name: str, label: str) -> tuple[str, np.ndarray]:
    """A gzip IDX file's digest and uint8 array, gunzipped no further than its header declares."""
    if blob[:2] != b"\x1f\x8b":
        first = " ".join(f"{b:02x}" for b in blob[:4]) or "empty file"
        raise DataError(f"{label}: file {name} is not gzip data (first bytes {first})")
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(blob)) as f:
            raw = f.read(4)
            if len(raw) < 4 or not raw.startswith(IDX_MAGIC):
                magic = raw.hex(" ") if raw else "empty"
                raise DataError(
                    f"{label}: file {name} has IDX magic {magic}, expected 00 00 08 0{ndim}"
                )
            raw += f.read(4 * raw[3])
            header = 4 + 4 * raw[3]
            dims = tuple(int.from_bytes(raw[i : i + 4], "big") for i in range(4, header, 4))
            size = header + math.prod(dims) if len(raw) == header else len(raw)
            if size > MAX_FILE_BYTES:
                raise DataError(
                    f"{label}: file {name} declares {list(dims)} items ({size:,} bytes), more "
                    f"than this reader takes ({MAX_FILE_BYTES:,}); give the data set's own file"
                )
            raw += f.read(size + 1 - len(raw))
    except (EOFError, OSError, zlib.error) as err:
        raise DataError(f"{label}: file {name} is truncated or corrupt gzip ({err})") from None
    if len(raw) > size:
        raise DataError(
            f"{label}: file {name} is longer than its header says "
            f"({size:,} bytes declared); stopped reading there"
        )
    if raw[3] != ndim:
        raise DataError(f"{label}: file {name} has {raw[3]} dimensions, expected {ndim}")
    if len(raw) < header:
        raise DataError(f"{label}: file {name} is truncated inside its header")
    if ndim == 3 and dims[1:] != (28, 28):
        raise DataError(f"{label}: file {name} holds {dims[1]}x{dims[2]} images, expected 28x28")
    if len(raw) != size:  # fewer: more stopped the reading above
        raise DataError(
            f"{label}: file {name} is truncated: header declares {dims[0]} items "
            f"({size - header} bytes), file has {len(raw) - header} bytes"
        )
    array = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
    return hashlib.sha256(raw).hexdigest(), array


def read_idx_dir(spec: DatasetSpec, directory: str | os.PathLike) -> RawData:
    """Read a local folder's four gzip IDX files; ``source`` is ``idx:`` or ``synthetic:``."""
    directory = Path(directory)
    blobs = {key: read_file(directory / name, spec.name) for key, name in spec.files.items()}
    writer, recorded = written_record(directory)
    kind = "synthetic" if writer == SYNTHETIC_WRITER else "idx"
    raw = read_idx_blobs(spec, blobs, source=f"{kind}:{directory}")
    for name, digest in raw.input_sha256.items():  # refuse a mix of two writes
        if recorded is not None and recorded.get(name) != digest:
            raise DataError(
                f"{spec.name}: {directory / name} is not the file written with the others "
                f"(its digest differs from {WRITTEN_BY}): a mix of two writes; "
                "write the set again into a new folder"
            )
    return raw


def read_idx_blobs(spec: DatasetSpec, blobs: dict[str, bytes], source: str) -> RawData:
    """Parse the four gzip IDX files of a data set, given as bytes by role (``spec.files``)."""
    arrays, digests = {}, {}
    for key, fname in spec.files.items():
        ndim = 3 if key.endswith("images") else 1
        digests[fname], arrays[key] = read_idx(blobs[key], ndim, fname, spec.name)
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


def read_idx_folder(spec: DatasetSpec, directory: str, named: bool = True) -> RawData:
    """Read a folder's files, local or ``gs://``; a ``named`` local one must hold them."""
    if directory.startswith("gs://"):
        from cnnvsmlp import storage

        with tempfile.TemporaryDirectory() as tmp:
            for fname in spec.files.values():
                storage.download(f"{directory.rstrip('/')}/{fname}", Path(tmp) / fname)
            raw = read_idx_dir(spec, tmp)
        raw.source = f"idx:{directory}"
        return raw
    if named:  # fail on a named idx_dir without the files, rather than try another source
        folder = Path(directory)
        if not folder.is_dir():
            raise DataError(
                f"{spec.name}: source.idx_dir {folder} is not a folder "
                f"(it should hold {', '.join(spec.files.values())})"
            )
        try:
            present = set(os.listdir(folder))
        except OSError as err:
            raise DataError(
                f"{spec.name}: source.idx_dir {folder}: cannot read it ({err.strerror}); "
                "give your user read permission on it"
            ) from None
        missing = [name for name in spec.files.values() if name not in present]
        if missing:
            files, verb = ("file ", " is") if len(missing) == 1 else ("files ", " are")
            raise DataError(
                f"{spec.name}: source.idx_dir {folder}: {files}{', '.join(missing)}{verb} missing"
            )
    return read_idx_dir(spec, directory)
