"""The on-disk data set: the train/validation split and the npz files with their metadata.

The format is documented in ``docs/dataset-format.md``; :func:`load_split`
reads it back as float32 images in [0, 1], NHWC.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from cnnvsmlp.config import Split
from cnnvsmlp.data.spec import IMAGE_SHAPE, DataError, DatasetSpec, RawData
from cnnvsmlp.outputs import PARTIAL_PREFIX, claim_dir

FORMAT = "cnnvsmlp-dataset/1"
SPLITS = ("train", "validation", "test")
DATASET_FILES = {f"{name}.npz" for name in SPLITS} | {"metadata.json"}


def split_train(
    images: np.ndarray, labels: np.ndarray, split: Split
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Cut the official training split into train and validation.

    With no shuffle seed the validation set is the last fraction in file
    order, exactly as Keras' ``validation_split``; with a seed the images
    are permuted first.
    """
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
    """Split, and write the normalised data set atomically into ``out_dir``.

    ``out_dir`` holds ``train.npz``, ``validation.npz``, ``test.npz`` (arrays
    ``images`` uint8 ``(N, 28, 28, 1)`` and ``labels`` uint8) and
    ``metadata.json``. Nothing is left behind when writing fails.

    Returns:
        The metadata written.
    """
    train_x, train_y = raw.train_images, raw.train_labels
    test_x, test_y = raw.test_images, raw.test_labels
    if limit is not None:
        train_x, train_y, test_x, test_y = (
            train_x[:limit],
            train_y[:limit],
            test_x[:limit],
            test_y[:limit],
        )
    (tr_x, tr_y), (va_x, va_y) = split_train(train_x, train_y, split)
    parts = {"train": (tr_x, tr_y), "validation": (va_x, va_y), "test": (test_x, test_y)}
    out_dir = claim_dir(out_dir, DATASET_FILES, "data set")
    tmp = Path(tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}{out_dir.name}.", dir=out_dir.parent))
    old = out_dir.with_name(f"{PARTIAL_PREFIX}old-{tmp.name}")
    try:
        for name, (x, y) in parts.items():
            np.savez(tmp / f"{name}.npz", images=x.reshape(-1, *IMAGE_SHAPE), labels=y)
        meta = {
            "format": FORMAT,
            "dataset": spec.name,
            "classes": list(spec.classes),
            "image_shape": list(IMAGE_SHAPE),
            "layout": "NHWC",
            "stored_dtype": "uint8",
            "scale": "divide by 255 to get float32 in [0, 1]",
            "counts": {name: int(len(y)) for name, (_, y) in parts.items()},
            "split": split.model_dump(),
            "limit": limit,
            "source": raw.source,
            "input_sha256": raw.input_sha256,
        }
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
        # The folder holds nothing but an earlier data set (claim_dir checked): swap it whole.
        out_dir.rename(old)
        tmp.rename(out_dir)
    except BaseException:
        if old.exists() and not out_dir.exists():
            old.rename(out_dir)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return meta


def read_metadata(data_dir: str | os.PathLike) -> dict:
    """Read and check ``metadata.json`` of a written data set.

    Raises:
        DataError: missing metadata or an unknown format.
    """
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
    """Load one split as float32 images in [0, 1] (NHWC) and int64 labels.

    Raises:
        DataError: unknown split name or missing file.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    path = Path(data_dir) / f"{split}.npz"
    if not path.is_file():
        raise DataError(f"{path}: missing")
    with np.load(path) as npz:
        images = npz["images"].astype(np.float32)
        labels = npz["labels"].astype(np.int64)
    images /= np.float32(255.0)
    return images, labels


def labels_digest(labels: np.ndarray) -> str:
    """SHA-256 of a label vector as uint8: ties predictions to the split they score."""
    return hashlib.sha256(np.asarray(labels, dtype=np.uint8).tobytes()).hexdigest()
