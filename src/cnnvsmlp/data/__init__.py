"""Read EMNIST Letters, Fashion-MNIST or a user's data set, check it and store its splits.

Every source yields upright uint8 images and 0-based labels (``docs/dataset-format.md``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from cnnvsmlp.data.idx import IdxFolder
from cnnvsmlp.data.sources import DataError, DatasetSpec, RawData, SourceUnavailable
from cnnvsmlp.data.sources.tfds import TfdsFiles, TfdsPrepared
from cnnvsmlp.data.sources.user import read_user
from cnnvsmlp.data.spec import check_official_counts, get_spec
from cnnvsmlp.data.store import write_dataset

if TYPE_CHECKING:  # the config imports the data set registry: types, not modules, here
    from cnnvsmlp.config import DataSource, Split


def prepare(
    dataset: str,
    source: DataSource,
    split: Split,
    out_dir: str | os.PathLike,
    limit: int | None = None,
) -> dict:
    """Read a data set from its source and write the normalised splits; return the metadata."""
    spec = get_spec(dataset)
    try:
        raw = read_source(spec, source)
    except OSError as err:  # a folder of a source that cannot be listed or read
        where = err.filename or "a source folder"
        raise DataError(
            f"{spec.name}: {where}: cannot read it ({err.strerror or err}); "
            "check its permissions or set source.idx_dir to a folder you can read"
        ) from None
    check_official_counts(spec, raw)
    return write_dataset(raw, spec, split, out_dir, limit)


def search_order(spec: DatasetSpec, source: DataSource) -> list:
    """The sources to try, first to last: named files, TFDS's, the offline default, a download."""
    auto, idx, tfds = source.kind == "auto", source.kind == "idx", source.kind == "tfds"
    named_prepared = tfds or bool(source.tfds_data_dir)
    order: list = []
    if (auto or idx) and source.idx_dir:
        order.append(IdxFolder(source.idx_dir, named=True))
    if auto or tfds:
        order.append(TfdsFiles(source.tfds_data_dir))
    if (auto or tfds) and named_prepared:
        order.append(TfdsPrepared(source.tfds_data_dir))
    if (auto or idx) and not source.idx_dir and spec.default_idx_dir:
        order.append(IdxFolder(spec.default_idx_dir, named=False))
    if auto and not named_prepared:
        order.append(TfdsPrepared(None, official_only=True))
    if (auto or tfds) and source.download:
        order.append(TfdsFiles(source.tfds_data_dir, download=True))
    return order


def read_source(spec: DatasetSpec, source: DataSource) -> RawData:
    """Read a data set from its source; only one without data here (SourceUnavailable) moves on."""
    if spec.user:
        return read_user(spec, source.tfds_data_dir, source.download)
    attempts = search_order(spec, source)
    if not attempts:
        raise DataError(f"{spec.name}: source kind idx needs source.idx_dir")
    errors = []
    for found in attempts:
        try:
            return found.read(spec)
        except SourceUnavailable as err:
            if source.kind == "idx":
                raise
            errors.append(f"{found.label}: {err}")
    if source.kind == "tfds":
        hint = " Point source.tfds_data_dir at a data_dir that TFDS filled" + (
            "." if source.download else ", or set source.download=true."
        )
    elif spec.default_idx_dir:
        hint = " Install Debian's dataset-fashion-mnist or set source.idx_dir."
    else:
        hint = " Download NIST's gzip.zip and set source.idx_dir to its gzip/ folder."
    raise DataError(f"{spec.name}: no source worked ({'; '.join(errors)}).{hint}")
