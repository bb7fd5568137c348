"""What a source (``read(spec) -> RawData``) yields; SourceUnavailable moves a search on."""

from __future__ import annotations

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
    official_counts: dict[str, int]
    files: dict[str, str] = field(default_factory=dict)  # the gzip IDX files by role
    transposed: bool = False
    label_offset: int = 0
    tfds_name: str = ""
    default_idx_dir: str | None = None
    nist_url: str | None = None
    image_shape: tuple[int, ...] | None = (28, 28, 1)  # None: each image file says


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
    """Upright uint8 ``(N, height, width)`` images and 0-based uint8 labels, checked in range."""
    images = np.asarray(images, dtype=np.uint8).reshape(-1, *spec.image_shape[:2])
    if spec.transposed:
        images = images.transpose(0, 2, 1)
    labels = np.asarray(labels).reshape(-1)
    lo, hi = spec.label_offset, spec.label_offset + len(spec.classes) - 1
    bad = np.flatnonzero((labels < lo) | (labels > hi))
    if bad.size:
        raise DataError(
            f"{spec.name}: {where}: label {int(labels[bad[0]])} at index {int(bad[0])} "
            f"is out of range {lo}..{hi}"
        )
    return np.ascontiguousarray(images), (labels - lo).astype(np.uint8)
