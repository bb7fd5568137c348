"""Shared fixtures: real Fashion-MNIST where the machine has it, NIST-layout files made here."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """Debian's dataset-fashion-mnist files: required, never skipped."""
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(
            f"real Fashion-MNIST missing in {FASHION_DIR}: run 'make setup' as root, "
            "or 'apt-get install dataset-fashion-mnist'"
        )
    return FASHION_DIR


def idx_bytes(array: np.ndarray) -> bytes:
    """An uncompressed IDX file of unsigned bytes holding ``array``."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_gz(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload))
    return path


def upright_letters(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images with an asymmetric mark (so a missed transpose shows) and labels 0..25."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(n, 28, 28), dtype=np.uint8)
    images[:, 2, 20:26] = 255  # a bar near the top right: moves to the left if transposed
    labels = (np.arange(n) % 26).astype(np.uint8)
    rng.shuffle(labels)
    return images, labels


def write_nist_letters(folder: Path, n_train: int = 260, n_test: int = 52) -> dict:
    """EMNIST Letters files in NIST's exact layout: transposed images, labels 1..26."""
    truth = {}
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        images, labels = upright_letters(n, seed)
        write_gz(
            folder / f"emnist-letters-{split}-images-idx3-ubyte.gz",
            idx_bytes(images.transpose(0, 2, 1)),
        )
        write_gz(folder / f"emnist-letters-{split}-labels-idx1-ubyte.gz", idx_bytes(labels + 1))
        truth[split] = (images, labels)
    return truth


@pytest.fixture
def nist_letters(tmp_path: Path) -> tuple[Path, dict]:
    folder = tmp_path / "emnist"
    return folder, write_nist_letters(folder)


@pytest.fixture(scope="session")
def small_fashion(tmp_path_factory: pytest.TempPathFactory, fashion_dir: Path) -> Path:
    """A prepared slice of the real Fashion-MNIST: 1,200 training and 1,200 test images."""
    from cnnvsmlp.config import DataSource, Split
    from cnnvsmlp.data import prepare

    out = tmp_path_factory.mktemp("data") / "fashion-small"
    prepare(
        "fashion-mnist",
        DataSource(kind="idx", idx_dir=str(fashion_dir)),
        Split(validation_fraction=0.2),
        out,
        limit=1200,
    )
    return out


# The files whose tests take minutes run first, so that the other workers of a parallel run
# (make test) take the rest meanwhile instead of waiting for them at the end.
LONGEST_FIRST = ("test_pipeline.py", "test_interrupt.py", "test_your_models.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in LONGEST_FIRST)
