"""A folder of the original gzip IDX files, local or ``gs://``."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cnnvsmlp.data.idx import read_idx_dir
from cnnvsmlp.data.spec import DataError, DatasetSpec, RawData


@dataclass(frozen=True)
class IdxFolder:
    """The four gzip IDX files of a data set in a folder, local or ``gs://``.

    Attributes:
        directory: the folder, a local path or a ``gs://`` prefix.
        named: the config names it: a folder without the files is an error,
            never a reason to try the next source.
    """

    directory: str
    named: bool = True

    @property
    def label(self) -> str:
        """``idx <folder>``."""
        return f"idx {self.directory}"

    def read(self, spec: DatasetSpec) -> RawData:
        """Read the folder's files; ``source`` is ``idx:<folder>``, or ``synthetic:<folder>``."""
        if self.directory.startswith("gs://"):
            with tempfile.TemporaryDirectory() as tmp:
                raw = read_idx_dir(spec, _fetch_gcs_dir(self.directory, spec, Path(tmp)))
            raw.source = f"idx:{self.directory}"
            return raw
        if self.named:
            _check_idx_dir(spec, Path(self.directory))
        return read_idx_dir(spec, self.directory)


def _fetch_gcs_dir(uri: str, spec: DatasetSpec, into: Path) -> Path:
    from cnnvsmlp import storage

    for fname in spec.files.values():
        storage.download(f"{uri.rstrip('/')}/{fname}", into / fname)
    return into


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
        files = "file " if len(missing) == 1 else "files "
        verb = " is" if len(missing) == 1 else " are"
        raise DataError(
            f"{spec.name}: source.idx_dir {directory}: {files}{', '.join(missing)}{verb} missing"
        )
