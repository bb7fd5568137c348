"""The on-disk data set (``docs/dataset-format.md``): the train/validation split, the files."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnvsmlp.data.sources import DataError, DatasetSpec, RawData
from cnnvsmlp.outputs import build_dir

if TYPE_CHECKING:  # the config imports the data set registry: a type, not a module, here
    from cnnvsmlp.config import Split

FORMAT = "cnnvsmlp-dataset/1"
DATASET_FILES = {"train.npz", "validation.npz", "test.npz", "metadata.json"}
MIN_IMAGES = 1  # in each split: Keras' fit and evaluate see no batch in an empty one


def split_train(
    images: np.ndarray, labels: np.ndarray, split: Split
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Cut validation off the training split: the last fraction, shuffled first with a seed."""
    n = len(images)
    n_train = n - int(n * split.validation_fraction)
    order = np.arange(n)
    if split.shuffle_seed is not None:
        order = np.random.default_rng(split.shuffle_seed).permutation(n)
    tr, va = order[:n_train], order[n_train:]
    return (images[tr], labels[tr]), (images[va], labels[va])


def write_dataset(
    raw: RawData, spec: DatasetSpec, split: Split, out_dir: str | os.PathLike, limit: int | None
) -> dict:
    """Split, write the data set atomically into ``out_dir``, and return its metadata."""
    train_x, test_x = (  # grey (N, H, W) images gain a channel axis
        x[..., np.newaxis][:limit] if x.ndim == 3 else x[:limit]
        for x in (raw.train_images, raw.test_images)
    )
    train, validation = split_train(train_x, raw.train_labels[:limit], split)
    parts = {"train": train, "validation": validation, "test": (test_x, raw.test_labels[:limit])}
    counts = {name: int(len(y)) for name, (_, y) in parts.items()}
    if min(counts.values()) < MIN_IMAGES:
        have = ", ".join(f"{n} {name}" for name, n in counts.items())
        cut = f"limit={limit} and " if limit is not None else ""
        need = math.ceil(MIN_IMAGES / split.validation_fraction)
        need += int(need * split.validation_fraction) < MIN_IMAGES  # rounding of the fraction
        raise DataError(
            f"{spec.name}: {raw.source} with {cut}split.validation_fraction="
            f"{split.validation_fraction} gives {have} images; each split needs at least "
            f"{MIN_IMAGES}, so the official training split at least {need} at this fraction: "
            "give more images" + (" or a larger limit" if limit is not None else "")
        )
    meta = {
        "format": FORMAT,
        "dataset": spec.name,
        "classes": list(spec.classes),
        "image_shape": list(train_x.shape[1:]),
        "layout": "NHWC",
        "stored_dtype": "uint8",
        "scale": "divide by 255 to get float32 in [0, 1]",
        "counts": counts,
        "split": split.model_dump(),
        "limit": limit,
        "source": raw.source,
        "input_sha256": raw.input_sha256,
    }

    def build(folder: Path) -> None:
        for name, (x, y) in parts.items():
            np.savez(folder / f"{name}.npz", images=x, labels=y)
        (folder / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")

    build_dir(out_dir, DATASET_FILES, "data set", build)
    return meta


def read_metadata(data_dir: str | os.PathLike) -> dict:
    """Read ``metadata.json`` of a written data set; DataError if missing or of another format."""
    path = Path(data_dir) / "metadata.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: missing; not a data set written by cnnvsmlp") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg})") from None
    if meta.get("format") != FORMAT:
        raise DataError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def load_split(data_dir: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load one split as float32 images in [0, 1] (NHWC) and int64 labels."""
    path = Path(data_dir) / f"{split}.npz"
    if not path.is_file():
        raise DataError(f"{path}: missing")
    with np.load(path) as npz:
        images = npz["images"].astype(np.float32)
        labels = npz["labels"].astype(np.int64)
    if len(labels) < MIN_IMAGES:
        raise DataError(
            f"{path}: holds {len(labels)} images, fewer than the {MIN_IMAGES} a training "
            "needs; prepare the data set again from more images"
        )
    images /= np.float32(255.0)
    return images, labels


def labels_digest(labels: np.ndarray) -> str:
    """SHA-256 of a label vector as uint8: ties predictions to the split they score."""
    return hashlib.sha256(np.asarray(labels, dtype=np.uint8).tobytes()).hexdigest()
