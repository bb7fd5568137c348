"""Nested, class-stratified training subsets drawn by the seed.

One order of the training split per seed: every prefix of it holds each
class in its share of the split, up to rounding (within one image), so a
subset of ``n`` images is the first ``n`` of the order and a larger subset of
the same seed contains every smaller one. Within a class the order is a
random permutation; across classes the ``k``-th image of a class with ``N_c``
images comes at the place ``(k + 1/2) / N_c`` of the whole, ties in a random
order (Sainte-Laguë's divisors, which keep every prefix within one image of
its share for the ten near-equal classes here).

Validation and test splits are never cut: every size is scored on the same images.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cnnvsmlp.config import RunSpec
from cnnvsmlp.data.store import DATASET_FILES
from cnnvsmlp.errors import UserError


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """The order in which a seed draws the training images.

    Args:
        labels: the label of each training image.
        seed: the seed of the repeat.

    Returns:
        A permutation of ``range(len(labels))`` whose every prefix is stratified.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(labels))
    # Rank of each image within its class, in the shuffled order.
    by_class = shuffled[np.argsort(labels[shuffled], kind="stable")]
    _, starts, counts = np.unique(labels[by_class], return_index=True, return_counts=True)
    rank = np.arange(len(labels)) - np.repeat(starts, counts)
    place = (rank + 0.5) / np.repeat(counts, counts)
    tie_break = rng.random(len(labels))
    return by_class[np.lexsort((tie_break, place))]


def subset_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of the ``n``-image subset a seed draws, in the split's order.

    Args:
        labels: the label of each training image.
        n: images in the subset.
        seed: the seed of the repeat.

    Returns:
        ``n`` sorted indices into the training split.

    Raises:
        ValueError: ``n`` is not between 1 and the number of images.
    """
    if not 1 <= n <= len(labels):
        raise ValueError(f"a subset of {n} images from {len(labels)}: expected 1 to {len(labels)}")
    return np.sort(stratified_order(labels, seed)[:n])


@contextlib.contextmanager
def training_data(data_dir: str | os.PathLike, run: RunSpec) -> Iterator[Path]:
    """The data set a run trains on: ``data_dir`` itself, or a copy with its subset.

    With ``run.n_train`` set below the size of the training split, a temporary
    data set holds the subset ``subset_indices(labels, run.n_train, run.seed)``
    as its training split and the whole validation and test splits; it is
    removed on exit.

    Args:
        data_dir: a prepared data set.
        run: the run; its ``n_train`` and ``seed`` choose the subset.

    Yields:
        The folder to train on.

    Raises:
        UserError: ``run.n_train`` is larger than the training split.
    """
    data_dir = Path(data_dir)
    if run.n_train is None:
        yield data_dir
        return
    with np.load(data_dir / "train.npz") as npz:
        images, labels = npz["images"], npz["labels"]
    if run.n_train > len(labels):
        raise UserError(
            f"{run.run_id}: n_train {run.n_train} is more than the {len(labels)} training "
            f"images of {data_dir}; use sizes up to {len(labels)}"
        )
    if run.n_train == len(labels):
        yield data_dir
        return
    keep = subset_indices(labels, run.n_train, run.seed)
    with tempfile.TemporaryDirectory(prefix=f"subset-{run.run_id}-") as tmp:
        out = Path(tmp)
        np.savez(out / "train.npz", images=images[keep], labels=labels[keep])
        for name in DATASET_FILES - {"train.npz"}:
            shutil.copyfile(data_dir / name, out / name)
        yield out
