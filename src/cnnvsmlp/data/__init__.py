"""Read EMNIST Letters, Fashion-MNIST or a user's data set, check it and store its splits."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from cnnvsmlp.data.search import read_source
from cnnvsmlp.data.spec import DataError, check_official_counts, get_spec
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
    """Read a data set from its source and write the normalised splits (``docs/dataset-format.md``).

    Returns:
        The metadata written to ``out_dir/metadata.json``.

    Raises:
        DataError: unknown name, no working source, bad input files, or splits too small.
        UserError: ``out_dir`` is refused or cannot be written.
    """
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
