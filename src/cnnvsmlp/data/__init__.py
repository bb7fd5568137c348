"""Read EMNIST Letters and Fashion-MNIST, normalise them, and store the splits.

:func:`prepare` is the one call: it finds the data set's files
(:mod:`~cnnvsmlp.data.search` states the order of the sources, one module
each under :mod:`~cnnvsmlp.data.sources`), checks them against the official
counts (:mod:`~cnnvsmlp.data.spec`), and writes the train, validation and
test splits in the on-disk format of :mod:`~cnnvsmlp.data.store`
(``docs/dataset-format.md``).
"""

from __future__ import annotations

import os

from cnnvsmlp.config import DataSource, Split
from cnnvsmlp.data.search import read_source
from cnnvsmlp.data.spec import DataError, check_official_counts, get_spec
from cnnvsmlp.data.store import write_dataset


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
        DataError: unknown name, no working source, bad or unreadable input
            files, or splits too small to train on.
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
