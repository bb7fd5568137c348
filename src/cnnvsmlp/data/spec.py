"""The data sets by their one name, and the arrays every source yields."""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass, field

import numpy as np

from cnnvsmlp.errors import UserError

# A user's data set: tfds:<TFDS name> or folder:<path or gs:// folder>.
USER_PREFIXES = ("tfds:", "folder:")


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
    image_shape: tuple[int, ...] | None = (28, 28, 1)  # None: each image file says

    @property
    def user(self) -> bool:
        """Whether the data set is a user's (``tfds:`` or ``folder:``), read as it comes."""
        return self.name.startswith(USER_PREFIXES)


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

    A user's data set (``tfds:NAME``, ``folder:PATH``) is described by what
    its source says (:mod:`cnnvsmlp.data.sources.user`).

    Raises:
        DataError: the name is not a known data set, or a user's cannot be described.
    """
    if name.startswith(USER_PREFIXES):
        return _user_spec(name)
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(
            f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}"
        ) from None


@functools.lru_cache(maxsize=8)
def _user_spec(name: str) -> DatasetSpec:
    from cnnvsmlp.data.sources.user import describe

    return describe(name)


@dataclass
class RawData:
    """Official train and test splits as read from a source, before splitting."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    input_sha256: dict[str, str] = field(default_factory=dict)


def normalise_raw(
    spec: DatasetSpec, images: np.ndarray, labels: np.ndarray, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Turn images upright and labels 0-based, checking the label range.

    Returns:
        ``(images, labels)``: uint8 ``(N, height, width)`` upright, uint8 0-based labels.

    Raises:
        DataError: a label outside the data set's range.
    """
    images = np.asarray(images, dtype=np.uint8).reshape(-1, *spec.image_shape[:2])
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


def check_official_counts(spec: DatasetSpec, raw: RawData) -> None:
    """Refuse a TFDS source whose splits are not the official ones.

    IDX folders may hold fewer images (tests, synthetic letters); what TFDS
    gives must be the whole official split.

    Raises:
        DataError: a split's size differs from the official count; for TFDS's
            prepared records the message says which source to use instead.
    """
    if raw.source.startswith(("idx:", "synthetic:")) or spec.user:
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
