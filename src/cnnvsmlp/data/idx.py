"""NIST's gzip IDX files: gunzip, parse and normalise the four files of a data set; the source."""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnvsmlp.data.sources import DataError, DatasetSpec, RawData, SourceUnavailable, normalise_raw

# Bounds on what is read from a user's files: NIST's largest EMNIST split (byclass,
# 697,932 images) is 547 MB as IDX and about 100 MB as gzip.
MAX_FILE_BYTES = 1 << 30
MAX_IDX_BYTES = 1 << 30
CHUNK_BYTES = 1 << 24
IDX_MAGIC = b"\0\0\x08"  # unsigned bytes; the fourth byte is the number of dimensions
IMAGE_SIZE = (28, 28)  # the IDX files of both built-in data sets

# The record a writer of IDX files (synth-emnist) leaves beside them: each file's IDX digest.
WRITTEN_BY = "cnnvsmlp-written.json"
# The writer synth-emnist names in its record: its files are a stand-in, not NIST's data.
SYNTHETIC_WRITER = "cnnvsmlp synth-emnist"


def _written_record(directory: Path) -> dict:
    try:
        record = json.loads((directory / WRITTEN_BY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def written_digests(directory: Path) -> dict[str, str] | None:
    """The IDX digests the writer of ``directory``'s files recorded, or None without a record."""
    return _digests(_written_record(directory))


def _digests(record: dict) -> dict[str, str] | None:
    digests = record.get("idx_sha256")
    return digests if isinstance(digests, dict) else None


def read_file(path: Path, label: str) -> bytes:
    """A regular file's bytes, at most :data:`MAX_FILE_BYTES`; SourceUnavailable if missing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a named pipe must not block the open
    except FileNotFoundError:
        raise SourceUnavailable(f"{label}: file {path} is missing") from None
    except OSError as err:
        raise DataError(f"{label}: file {path} cannot be read ({err.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        st = regular_file(path, label, os.fstat(fd))
        if st.st_size > MAX_FILE_BYTES:
            raise DataError(
                f"{label}: file {path} is {st.st_size:,} bytes, more than a gzip IDX file of "
                f"this project holds ({MAX_FILE_BYTES:,}); give the data set's own file"
            )
        try:
            return f.read(st.st_size + 1)  # a file that grows since is read no further
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


def gunzip(blob: bytes, name: str, label: str) -> bytes:
    """Decompress a gzip IDX file, no further than the size its IDX header declares (no bomb)."""
    if blob[:2] != b"\x1f\x8b":
        first = " ".join(f"{b:02x}" for b in blob[:4]) or "empty file"
        raise DataError(f"{label}: file {name} is not gzip data (first bytes {first})")
    out, limit, data = bytearray(), None, blob
    try:
        while data:  # one gzip member after another, as gzip.decompress reads them
            member = zlib.decompressobj(wbits=31)
            while not member.eof:
                room = CHUNK_BYTES if limit is None else limit + 1 - len(out)
                chunk = member.decompress(data, room)
                data = member.unconsumed_tail
                if not chunk and not data:
                    raise EOFError("the compressed stream ends early")
                out += chunk
                limit = limit or _declared_bytes(out, name, label)
                if limit is not None and len(out) > limit:
                    if not out.startswith(IDX_MAGIC):
                        return bytes(out)  # parse_idx names the magic it found
                    raise DataError(
                        f"{label}: file {name} is longer than its header says "
                        f"({limit:,} bytes declared); stopped reading there"
                    )
            data = member.unused_data
    except (EOFError, zlib.error) as err:
        raise DataError(f"{label}: file {name} is truncated or corrupt gzip ({err})") from None
    return bytes(out)


def _declared_bytes(head: bytearray, name: str, label: str) -> int | None:
    """The size an IDX header declares; None while incomplete; 4 for a header not IDX's."""
    if len(head) < 4:
        return None
    if not head.startswith(IDX_MAGIC):
        return 4
    header = 4 + 4 * head[3]
    if len(head) < header:
        return None
    dims = [int.from_bytes(head[i : i + 4], "big") for i in range(4, header, 4)]
    size = header + math.prod(dims)
    if size > MAX_IDX_BYTES:
        raise DataError(
            f"{label}: file {name} declares {dims} items ({size:,} bytes), more than "
            f"this reader takes ({MAX_IDX_BYTES:,}); give the data set's own file"
        )
    return size


def parse_idx(raw: bytes, expect_ndim: int, name: str, label: str) -> np.ndarray:
    """A read-only uint8 array from decompressed IDX bytes (``expect_ndim``: 3 images, 1 labels)."""
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
    if ndim == 3 and dims[1:] != IMAGE_SIZE:
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
    """Read a local folder's four gzip IDX files; ``source`` is ``idx:`` or ``synthetic:``."""
    directory = Path(directory)
    blobs = {key: read_file(directory / name, spec.name) for key, name in spec.files.items()}
    record = _written_record(directory)  # read once: the writer and its digests
    kind = "synthetic" if record.get("writer") == SYNTHETIC_WRITER else "idx"
    raw = read_idx_blobs(spec, blobs, source=f"{kind}:{directory}")
    recorded = _digests(record)
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


@dataclass(frozen=True)
class IdxFolder:
    """The four gzip IDX files of a data set in a folder, local or ``gs://``, maybe ``named``."""

    directory: str
    named: bool = True

    @property
    def label(self) -> str:
        """``idx <folder>``."""
        return f"idx {self.directory}"

    def read(self, spec: DatasetSpec) -> RawData:
        """Read the folder's files; ``source`` is ``idx:<folder>``, or ``synthetic:<folder>``."""
        if self.directory.startswith("gs://"):
            from cnnvsmlp import storage

            with tempfile.TemporaryDirectory() as tmp:
                for fname in spec.files.values():
                    storage.download(f"{self.directory.rstrip('/')}/{fname}", Path(tmp) / fname)
                raw = read_idx_dir(spec, tmp)
            raw.source = f"idx:{self.directory}"
            return raw
        if self.named:
            _check_idx_dir(spec, Path(self.directory))
        return read_idx_dir(spec, self.directory)


def _check_idx_dir(spec: DatasetSpec, directory: Path) -> None:
    """Fail on a named ``idx_dir`` without the files, rather than try another source."""
    if not directory.is_dir():
        raise DataError(
            f"{spec.name}: source.idx_dir {directory} is not a folder "
            f"(it should hold {', '.join(spec.files.values())})"
        )
    try:
        present = set(os.listdir(directory))
    except OSError as err:
        raise DataError(
            f"{spec.name}: source.idx_dir {directory}: cannot read it ({err.strerror}); "
            "give your user read permission on it"
        ) from None
    missing = [name for name in spec.files.values() if name not in present]
    if missing:
        files, verb = ("file ", " is") if len(missing) == 1 else ("files ", " are")
        raise DataError(
            f"{spec.name}: source.idx_dir {directory}: {files}{', '.join(missing)}{verb} missing"
        )
