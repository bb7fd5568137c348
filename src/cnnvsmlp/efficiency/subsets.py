"""Nested, class-stratified training subsets drawn by the seed (docs/statistics.md, Subsets)."""

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
    """The seed's permutation of the training images; every prefix of it is stratified."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(labels))
    by_class = shuffled[np.argsort(labels[shuffled], kind="stable")]
    _, starts, counts = np.unique(labels[by_class], return_index=True, return_counts=True)
    rank = np.arange(len(labels)) - np.repeat(starts, counts)
    place = (rank + 0.5) / np.repeat(counts, counts)
    tie_break = rng.random(len(labels))
    return by_class[np.lexsort((tie_break, place))]


@contextlib.contextmanager
def training_data(data_dir: str | os.PathLike, run: RunSpec) -> Iterator[Path]:
    """The data set a run trains on: ``data_dir``, or a temporary copy with its subset."""
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
    keep = np.sort(stratified_order(labels, run.seed)[: run.n_train])  # the run's subset
    with tempfile.TemporaryDirectory(prefix=f"subset-{run.run_id}-") as tmp:
        out = Path(tmp)
        np.savez(out / "train.npz", images=images[keep], labels=labels[keep])
        for name in DATASET_FILES - {"train.npz"}:
            shutil.copyfile(data_dir / name, out / name)
        yield out
