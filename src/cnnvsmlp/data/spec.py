"""The one registry of data sets: the built-in ones by name, and a user's by its prefix."""

from __future__ import annotations

import functools
import string

from cnnvsmlp.data.sources import USER_PREFIXES, DataError, DatasetSpec, RawData
from cnnvsmlp.data.sources.user import describe

DATASETS: dict[str, DatasetSpec] = {
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        classes=tuple(
            "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot".split(",")
        ),
        files={
            "train_images": "train-images-idx3-ubyte.gz",
            "train_labels": "train-labels-idx1-ubyte.gz",
            "test_images": "t10k-images-idx3-ubyte.gz",
            "test_labels": "t10k-labels-idx1-ubyte.gz",
        },
        official_counts={"train": 60000, "test": 10000},
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


def check_name(name: str) -> str:
    """``name`` if it names a data set (built-in, ``tfds:<name>``, ``folder:<path>``)."""
    prefix = name.partition(":")[0] + ":"
    if name in DATASETS or (prefix in USER_PREFIXES and name[len(prefix) :]):
        return name
    raise ValueError(
        f"unknown data set {name!r}; use one of {', '.join(sorted(DATASETS))}, "
        "tfds:<TFDS name> or folder:<path or gs:// folder of one subfolder per class>"
    )


@functools.lru_cache(maxsize=8)  # a user's is described by reading its source
def get_spec(name: str) -> DatasetSpec:
    """The spec of a data set, a user's described by its source; DataError if there is none."""
    if name.startswith(USER_PREFIXES):
        return describe(name)
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def check_official_counts(spec: DatasetSpec, raw: RawData) -> None:
    """Refuse a TFDS source whose splits are not the official ones (IDX folders may hold fewer)."""
    if raw.source.startswith(("idx:", "synthetic:")) or spec.name.startswith(USER_PREFIXES):
        return
    for split, expected in spec.official_counts.items():
        n = len(getattr(raw, f"{split}_labels"))
        if n == expected:
            continue
        message = f"{spec.name}: source {raw.source} has {n} {split} images, expected {expected}"
        if raw.source.startswith("tfds-prepared:"):
            files = "the gzip/ folder of NIST's gzip.zip" if spec.nist_url else "the gzip IDX files"
            message += (
                f"; TFDS's prepared {spec.tfds_name} is not the official split: keep TFDS's "
                f"downloads (<tfds_data_dir>/downloads) or set source.idx_dir to {files}"
            )
        raise DataError(message)
