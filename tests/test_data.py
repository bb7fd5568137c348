"""Readers and the on-disk format: real Fashion-MNIST, NIST-layout EMNIST, and bad input."""

from __future__ import annotations

import gzip
import json
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnvsmlp.config import DataSource, Split
from cnnvsmlp.data import (
    DATASETS,
    DataError,
    get_spec,
    load_split,
    prepare,
    read_idx_dir,
    read_metadata,
    read_source,
    split_train,
)
from conftest import idx_bytes, write_gz, write_nist_letters

FASHION = DATASETS["fashion-mnist"]
LETTERS = DATASETS["emnist-letters"]
KERAS_SPLIT = Split(validation_fraction=0.2)


# ---------------------------------------------------------------- real Fashion-MNIST


def test_fashion_mnist_real_files(fashion_dir):
    raw = read_idx_dir(FASHION, fashion_dir)
    assert raw.train_images.shape == (60000, 28, 28)
    assert raw.test_images.shape == (10000, 28, 28)
    # Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class.
    assert np.bincount(raw.train_labels).tolist() == [6000] * 10
    assert np.bincount(raw.test_labels).tolist() == [1000] * 10
    assert set(raw.input_sha256) == set(FASHION.files.values())


def test_fashion_mnist_prepared_like_keras_validation_split(fashion_dir, tmp_path):
    meta = prepare(
        "fashion-mnist",
        DataSource(kind="idx", idx_dir=str(fashion_dir)),
        KERAS_SPLIT,
        tmp_path / "fm",
    )
    assert meta["counts"] == {"train": 48000, "validation": 12000, "test": 10000}
    assert meta["classes"][0] == "T-shirt/top" and meta["classes"][9] == "Ankle boot"
    raw = read_idx_dir(FASHION, fashion_dir)
    x_val, y_val = load_split(tmp_path / "fm", "validation")
    # Keras' validation_split=0.2 holds out the last 20% in file order.
    np.testing.assert_array_equal(y_val, raw.train_labels[48000:])
    np.testing.assert_array_equal(x_val[:, :, :, 0], raw.train_images[48000:] / np.float32(255))
    x_test, _ = load_split(tmp_path / "fm", "test")
    assert x_test.dtype == np.float32 and x_test.shape == (10000, 28, 28, 1)
    assert 0.0 <= x_test.min() and x_test.max() <= 1.0
    on_disk = sum(p.stat().st_size for p in (tmp_path / "fm").iterdir())
    assert on_disk < 70000 * 784 * 1.01 + 100_000  # stored as uint8, not float32
    assert read_metadata(tmp_path / "fm")["input_sha256"] == meta["input_sha256"]


def test_auto_source_falls_back_to_offline_default(fashion_dir):
    raw = read_source(FASHION, DataSource(kind="auto", download=False))
    assert raw.source == f"idx:{fashion_dir}"


# ---------------------------------------------------------------- EMNIST Letters, NIST layout


def test_emnist_reader_returns_upright_zero_based(nist_letters):
    folder, truth = nist_letters
    raw = read_idx_dir(LETTERS, folder)
    np.testing.assert_array_equal(raw.train_images, truth["train"][0])
    np.testing.assert_array_equal(raw.test_labels, truth["test"][1])
    assert raw.train_labels.min() == 0 and raw.train_labels.max() == 25
    assert (raw.train_images[:, 2, 20:26] == 255).all()  # the mark is top right: upright
    assert LETTERS.classes == tuple(string.ascii_uppercase)


def test_emnist_split_is_75_25_shuffled_with_fixed_seed(nist_letters, tmp_path):
    folder, truth = nist_letters
    split = Split(validation_fraction=0.25, shuffle_seed=0)
    a = prepare(
        "emnist-letters", DataSource(kind="idx", idx_dir=str(folder)), split, tmp_path / "a"
    )
    prepare("emnist-letters", DataSource(kind="idx", idx_dir=str(folder)), split, tmp_path / "b")
    assert a["counts"] == {"train": 195, "validation": 65, "test": 52}
    assert a["classes"] == list(string.ascii_uppercase)
    for name in ("train", "validation"):
        xa, ya = load_split(tmp_path / "a", name)
        xb, yb = load_split(tmp_path / "b", name)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    _, y_train = load_split(tmp_path / "a", "train")
    _, y_val = load_split(tmp_path / "a", "validation")
    assert not np.array_equal(y_train, truth["train"][1][:195])  # shuffled, not file order
    assert sorted(np.concatenate([y_train, y_val]).tolist()) == sorted(truth["train"][1].tolist())


def test_split_train_without_seed_takes_the_tail():
    x = np.arange(10)
    (tr, _), (va, _) = split_train(x, x, Split(validation_fraction=0.2))
    assert tr.tolist() == list(range(8)) and va.tolist() == [8, 9]


def test_limit_caps_each_official_split(nist_letters, tmp_path):
    folder, _ = nist_letters
    meta = prepare(
        "emnist-letters",
        DataSource(kind="idx", idx_dir=str(folder)),
        Split(validation_fraction=0.25),
        tmp_path / "d",
        limit=100,
    )
    assert meta["counts"] == {"train": 75, "validation": 25, "test": 52}


# ---------------------------------------------------------------- bad input


def _fashion_copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in FASHION.files.values():
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


@pytest.fixture
def tiny_fashion(tmp_path) -> Path:
    folder = tmp_path / "tiny"
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("t10k", 10)):
        write_gz(
            folder / f"{split}-images-idx3-ubyte.gz", idx_bytes(rng.integers(0, 255, (n, 28, 28)))
        )
        write_gz(folder / f"{split}-labels-idx1-ubyte.gz", idx_bytes(np.arange(n) % 10))
    return folder


def _expect(folder: Path, spec, *parts: str) -> str:
    with pytest.raises(DataError) as err:
        read_idx_dir(spec, folder)
    message = str(err.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message
    return message


def test_not_gzip(tiny_fashion):
    (tiny_fashion / "train-images-idx3-ubyte.gz").write_bytes(b"PK\x03\x04rest")
    _expect(
        tiny_fashion,
        FASHION,
        "fashion-mnist",
        "train-images-idx3-ubyte.gz",
        "not gzip data (first bytes 50 4b 03 04)",
    )


def test_truncated_gzip_stream(tiny_fashion):
    path = tiny_fashion / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    _expect(tiny_fashion, FASHION, "train-labels-idx1-ubyte.gz", "truncated or corrupt gzip")


def test_truncated_payload(tiny_fashion):
    payload = idx_bytes(np.zeros((20, 28, 28)))[:-100]
    write_gz(tiny_fashion / "train-images-idx3-ubyte.gz", payload)
    _expect(
        tiny_fashion,
        FASHION,
        "train-images-idx3-ubyte.gz",
        "is truncated",
        "header declares 20 items",
    )


def test_wrong_magic(tiny_fashion):
    write_gz(tiny_fashion / "t10k-labels-idx1-ubyte.gz", b"\x00\x00\x0d\x01" + b"\x00" * 8)
    _expect(
        tiny_fashion,
        FASHION,
        "t10k-labels-idx1-ubyte.gz",
        "IDX magic 00 00 0d 01",
        "expected 00 00 08 01",
    )


def test_wrong_dimensions(tiny_fashion):
    write_gz(tiny_fashion / "train-images-idx3-ubyte.gz", idx_bytes(np.zeros((20, 27, 27))))
    _expect(tiny_fashion, FASHION, "train-images-idx3-ubyte.gz", "27x27", "expected 28x28")
    write_gz(tiny_fashion / "train-images-idx3-ubyte.gz", idx_bytes(np.zeros((20, 784))))
    _expect(tiny_fashion, FASHION, "train-images-idx3-ubyte.gz", "2 dimensions, expected 3")


def test_counts_differ(tiny_fashion):
    write_gz(tiny_fashion / "train-labels-idx1-ubyte.gz", idx_bytes(np.zeros(19)))
    _expect(tiny_fashion, FASHION, "has 20 images but", "has 19 labels")


def test_label_out_of_range_emnist(tmp_path):
    folder = tmp_path / "em"
    write_nist_letters(folder)
    labels = np.ones(52, dtype=np.uint8)
    labels[7] = 0  # NIST letters are 1..26; 0 is not a letter
    write_gz(folder / "emnist-letters-test-labels-idx1-ubyte.gz", idx_bytes(labels))
    _expect(
        folder,
        LETTERS,
        "emnist-letters-test-labels-idx1-ubyte.gz",
        "label 0 at index 7 is out of range 1..26",
    )


def test_label_out_of_range_fashion(tiny_fashion):
    write_gz(tiny_fashion / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.full(10, 10)))
    _expect(tiny_fashion, FASHION, "label 10 at index 0 is out of range 0..9")


def test_missing_file(tiny_fashion):
    (tiny_fashion / "t10k-images-idx3-ubyte.gz").unlink()
    _expect(tiny_fashion, FASHION, "t10k-images-idx3-ubyte.gz", "is missing")


def test_unknown_dataset_name():
    with pytest.raises(
        DataError, match="unknown data set 'mnist'; known: emnist-letters, fashion-mnist"
    ):
        get_spec("mnist")


def test_cli_bad_input_exits_2_and_writes_nothing(tiny_fashion, tmp_path):
    (tiny_fashion / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cnnvsmlp.cli",
            "prepare",
            "--out",
            str(out),
            "source=idx",
            f"idx_dir={tiny_fashion}",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: fashion-mnist: file train-images-idx3-ubyte.gz is not gzip data")
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_failed_write_leaves_earlier_output_intact(tiny_fashion, tmp_path):
    out = tmp_path / "ds"
    source = DataSource(kind="idx", idx_dir=str(tiny_fashion))
    prepare("fashion-mnist", source, KERAS_SPLIT, out)
    before = json.loads((out / "metadata.json").read_text())
    with gzip.open(tiny_fashion / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(idx_bytes(np.full(10, 42)))
    with pytest.raises(DataError):
        prepare("fashion-mnist", source, KERAS_SPLIT, out)
    assert json.loads((out / "metadata.json").read_text()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "tiny"]


# ---------------------------------------------------------------- TFDS cache source


def _tfds_cache(downloads: Path, files: dict[str, Path]) -> None:
    """Lay files out as TFDS's download manager does: each with a ``.INFO`` naming its URL."""
    downloads.mkdir(parents=True)
    for n, (url, path) in enumerate(files.items()):
        target = downloads / f"file{n}"
        target.write_bytes(path.read_bytes())
        (downloads / f"file{n}.INFO").write_text(json.dumps({"urls": [url]}))


def test_tfds_cache_gives_identical_arrays_fashion(fashion_dir, tmp_path):
    from cnnvsmlp.data import tfds_urls

    urls = tfds_urls(FASHION)
    assert urls["train_images"].endswith("/train-images-idx3-ubyte.gz")
    _tfds_cache(
        tmp_path / "tfds" / "downloads",
        {url: fashion_dir / FASHION.files[key] for key, url in urls.items()},
    )
    source = DataSource(kind="tfds", tfds_data_dir=str(tmp_path / "tfds"), download=False)
    via_tfds = read_source(FASHION, source)
    via_idx = read_idx_dir(FASHION, fashion_dir)
    assert via_tfds.source.startswith("tfds:")
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(via_tfds, name), getattr(via_idx, name))
    assert via_tfds.input_sha256 == via_idx.input_sha256


def test_tfds_cache_gives_identical_arrays_emnist(nist_letters, tmp_path):
    import zipfile

    folder, truth = nist_letters
    archive = tmp_path / "gzip.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in LETTERS.files.values():
            z.write(folder / name, f"gzip/{name}")
    _tfds_cache(tmp_path / "tfds" / "downloads", {LETTERS.nist_url: archive})
    raw = read_source(
        LETTERS, DataSource(kind="tfds", tfds_data_dir=str(tmp_path / "tfds"), download=False)
    )
    via_idx = read_idx_dir(LETTERS, folder)
    np.testing.assert_array_equal(raw.train_images, via_idx.train_images)
    np.testing.assert_array_equal(raw.test_labels, truth["test"][1])


def test_tfds_without_cache_or_download_names_the_folder(tmp_path):
    source = DataSource(kind="tfds", tfds_data_dir=str(tmp_path), download=False)
    with pytest.raises(DataError, match=f"fashion-mnist: no TFDS download of it under {tmp_path}"):
        read_source(FASHION, source)


def test_synthetic_emnist_is_read_as_nist_files(tmp_path):
    from cnnvsmlp.synthetic import render_letters, write_nist_layout

    folder = write_nist_layout(tmp_path / "syn", n_train=52, n_test=26, seed=3)
    raw = read_idx_dir(LETTERS, folder)
    images, labels = render_letters(52, 3)
    np.testing.assert_array_equal(raw.train_images, images)  # upright again after the reader
    np.testing.assert_array_equal(raw.train_labels, labels)
    assert raw.test_images.shape == (26, 28, 28)
