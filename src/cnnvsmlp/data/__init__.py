"""Read a data set from the first source that has it, check it and store its splits."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from cnnvsmlp.data.idx import read_idx_folder
from cnnvsmlp.data.sources import USER_PREFIXES, DataError, DatasetSpec, RawData, SourceUnavailable
from cnnvsmlp.data.sources.tfds import read_tfds_files, read_tfds_prepared
from cnnvsmlp.data.sources.user import read_user
from cnnvsmlp.data.spec import DATASETS, check_official_counts, get_spec
from cnnvsmlp.data.store import write_dataset

PACKAGE = "dataset-fashion-mnist"  # Debian's, with Fashion-MNIST's offline files

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


def search_order(spec: DatasetSpec, source: DataSource) -> list[tuple[str, Callable]]:
    """The sources to try, first to last: named files, TFDS's, the offline default, a download."""
    auto, idx, tfds = source.kind == "auto", source.kind == "idx", source.kind == "tfds"
    data_dir = source.tfds_data_dir
    named_prepared = tfds or bool(data_dir)
    order: list[tuple[str, Callable[[DatasetSpec], RawData]]] = []
    if (auto or idx) and source.idx_dir:
        order.append((f"idx {source.idx_dir}", partial(read_idx_folder, directory=source.idx_dir)))
    if auto or tfds:
        order.append(("tfds cache", partial(read_tfds_files, data_dir=data_dir)))
    if (auto or tfds) and named_prepared:
        order.append(("tfds prepared", partial(read_tfds_prepared, data_dir=data_dir)))
    if (auto or idx) and not source.idx_dir and spec.default_idx_dir:
        default = partial(read_idx_folder, directory=spec.default_idx_dir, named=False)
        order.append((f"idx {spec.default_idx_dir}", default))
    if auto and not named_prepared:
        order.append(("tfds prepared", partial(read_tfds_prepared, official_only=True)))
    if (auto or tfds) and source.download:
        order.append(("tfds download", partial(read_tfds_files, data_dir=data_dir, download=True)))
    return order


def read_source(spec: DatasetSpec, source: DataSource) -> RawData:
    """Read a data set from its source; only one without data here (SourceUnavailable) moves on."""
    if spec.name.startswith(USER_PREFIXES):  # a user's, read as it comes
        return read_user(spec, source.tfds_data_dir, source.download)
    attempts = search_order(spec, source)
    if not attempts:
        raise DataError(f"{spec.name}: source kind idx needs source.idx_dir")
    errors = []
    for label, read in attempts:
        try:
            return read(spec)
        except SourceUnavailable as err:
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


def ensure_fashion_mnist(quiet: bool = False, require: bool = False) -> Path | None:
    """Fashion-MNIST's offline folder, installing Debian's package as root; None when absent."""
    spec = DATASETS["fashion-mnist"]
    folder = Path(spec.default_idx_dir)
    if all((folder / f).is_file() for f in spec.files.values()):
        if not quiet:
            print(f"data: Fashion-MNIST found in {folder}")
        return folder
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"data: installing Debian's {PACKAGE} into {folder}", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        done = subprocess.run(["apt-get", "install", "-y", "-qq", PACKAGE], env=env)
        if done.returncode == 0 and (folder / spec.files["train_images"]).is_file():
            return folder
    message = (
        f"fashion-mnist: no files in {folder}. Install them with "
        f"'sudo apt-get install {PACKAGE}' (Debian/Ubuntu), or put the four gzip IDX files "
        "in a folder and run with idx_dir=<folder>"
    )
    if require:
        raise DataError(message)
    print(f"data: warning: {message}; runs will try a TFDS download", file=sys.stderr)
    return None
