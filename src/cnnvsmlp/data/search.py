"""Where a data set comes from: the search order, in one place, and the search.

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

``kind: idx`` keeps the IDX folders and ``kind: tfds`` the TFDS sources, in
the same order. A user's data set (``tfds:NAME``, ``folder:PATH``) has one
source, its own (:mod:`cnnvsmlp.data.sources.user`). Every built-in source
yields the same normalised arrays: upright 28x28 uint8 images and 0-based
labels. Sources 1, 2, 4 and 5 read the original files, so they give
identical arrays in file order; prepared records come in TFDS's stored
order (:mod:`cnnvsmlp.data.sources.tfds_prepared`). TFDS's prepared
``emnist/letters`` keeps only 88,800 of NIST's 124,800 training images (and
14,800 of 20,800 test images), so
:func:`~cnnvsmlp.data.spec.check_official_counts` rejects it.
"""

from __future__ import annotations

from cnnvsmlp.config import DataSource
from cnnvsmlp.data.sources import Source
from cnnvsmlp.data.sources.idx_folder import IdxFolder
from cnnvsmlp.data.sources.tfds_downloads import TfdsCache, TfdsDownload
from cnnvsmlp.data.sources.tfds_prepared import TfdsPrepared
from cnnvsmlp.data.spec import DataError, DatasetSpec, RawData, SourceUnavailable


def search_order(spec: DatasetSpec, source: DataSource) -> list[Source]:
    """The sources to try for a data set and a config's ``source``, first to last.

    Args:
        spec: the data set.
        source: the config's source: its kind and what it names.

    Returns:
        The sources in the order the module docstring gives; empty for
        ``kind: idx`` without a folder to read.
    """
    # The named files first, then what a TFDS data_dir holds, the offline
    # default, and only then a TFDS download, which is slow to fail without a
    # network. Prepared records lose the files' order, so those in the default
    # ~/tensorflow_datasets come after the offline default files; a data_dir
    # the config names comes before them.
    auto, idx, tfds = source.kind == "auto", source.kind == "idx", source.kind == "tfds"
    named_prepared = tfds or bool(source.tfds_data_dir)
    order: list[Source] = []
    if (auto or idx) and source.idx_dir:
        order.append(IdxFolder(source.idx_dir, named=True))
    if auto or tfds:
        order.append(TfdsCache(source.tfds_data_dir))
    if (auto or tfds) and named_prepared:
        order.append(TfdsPrepared(source.tfds_data_dir))
    if (auto or idx) and not source.idx_dir and spec.default_idx_dir:
        order.append(IdxFolder(spec.default_idx_dir, named=False))
    if auto and not named_prepared:
        order.append(TfdsPrepared(None, official_only=True))
    if (auto or tfds) and source.download:
        order.append(TfdsDownload(source.tfds_data_dir))
    return order


def read_source(spec: DatasetSpec, source: DataSource) -> RawData:
    """Read a data set from the source the config names, trying ``auto`` in order.

    ``auto`` and ``tfds`` move on to the next source only when one has no
    data here; a malformed file, or an ``idx_dir`` the config names that lacks
    the files, stops the search with its own error.

    Raises:
        DataError: no source could provide the data (the message lists what
            was tried), the named ``idx_dir`` lacks a file, or a file is malformed.
    """
    if spec.user:
        from cnnvsmlp.data.sources.user import read_user

        return read_user(spec, source.tfds_data_dir, source.download)
    attempts = search_order(spec, source)
    if not attempts:
        raise DataError(f"{spec.name}: source kind idx needs source.idx_dir")
    errors = []
    for found in attempts:
        try:
            return found.read(spec)
        except SourceUnavailable as err:
            # A malformed file is an error in itself; only absent data moves on.
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
