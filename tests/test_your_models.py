"""A user's model, named module:function: found, declared, carried in the config, keyed."""

from __future__ import annotations

import json
import sys

import pytest

from cnnvsmlp import models
from cnnvsmlp.config import ConfigError, RunSpec, TrainConfig, load_config, parse_config_json
from cnnvsmlp.records import Hardware
from cnnvsmlp.training_files import training_key

WIDE_CNN = '''
import keras
from keras import layers


def wide_cnn(input_shape, num_classes):
    """Conv 16 (same) - MaxPool - Dense 32."""
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(32, activation="relu"),
            layers.Dense(num_classes, activation="softmax"),
        ]
    )


wide_cnn.family = "cnn"
'''
# 32x32x3 in, 10 classes: conv 3*3*3*16+16, dense 16*16*16*32+32, output 32*10+10.
WIDE_CNN_PARAMS = 448 + 131_104 + 330


def forget(module: str) -> None:
    """As a fresh process: the module neither imported nor installed."""
    sys.modules.pop(module, None)
    models._SOURCES.pop(module, None)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """``<name>.py`` with ``text`` in a temporary working directory."""
    monkeypatch.chdir(tmp_path)
    written = []

    def write(name: str, text: str):
        forget(name)
        written.append(name)
        (tmp_path / f"{name}.py").write_text(text)
        return tmp_path / f"{name}.py"

    yield write
    for name in written:
        forget(name)


def test_a_user_variant_is_built_for_the_data_and_declares_its_family(user_module):
    user_module("my_models", WIDE_CNN)
    config = load_config("fashion-mnist", ["variants=mlp,my_models:wide_cnn"])
    assert config.model_sources == {"my_models": WIDE_CNN}
    assert models.get_variant("my_models:wide_cnn").family == "cnn"
    assert models.get_variant("mlp").family == "mlp"
    model = models.build_model("my_models:wide_cnn", (32, 32, 3), 10)
    assert model.count_params() == WIDE_CNN_PARAMS
    assert (
        models.get_variant("my_models:wide_cnn").summary == "Conv 16 (same) - MaxPool - Dense 32."
    )


def test_a_task_without_the_file_runs_the_source_the_config_carries(user_module, tmp_path):
    path = user_module("carried", WIDE_CNN)
    text = load_config("fashion-mnist", ["variants=carried:wide_cnn"]).model_dump_json()
    path.unlink()
    forget("carried")
    config = parse_config_json(text)  # what every component does first
    assert config.model_sources == {"carried": WIDE_CNN}
    assert models.build_model("carried:wide_cnn", (8, 8, 1), 3).output_shape == (None, 3)


def test_the_training_key_covers_the_module_source_and_nothing_else(user_module):
    meta = {"format": "cnnvsmlp-dataset/1", "counts": {"train": 10}, "image_shape": [8, 8, 1]}
    run = RunSpec(variant="keyed:wide_cnn", repeat=0, seed=0)
    train = TrainConfig(epochs=1, batch_size=32, optimizer="adam")
    hardware = Hardware.detect()
    user_module("keyed", WIDE_CNN)
    load_config("fashion-mnist", ["variants=keyed:wide_cnn"])
    key = training_key(meta, run, train, hardware)
    assert key == training_key(meta, run.model_copy(update={"repeat": 2}), train, hardware)
    plain = training_key(meta, RunSpec(variant="cnn", repeat=0, seed=0), train, hardware)
    user_module("keyed", WIDE_CNN + "\n# an edit\n")
    load_config("fashion-mnist", ["variants=keyed:wide_cnn"])
    assert training_key(meta, run, train, hardware) != key
    assert training_key(meta, RunSpec(variant="cnn", repeat=0, seed=0), train, hardware) == plain


BAD_MODULES = [
    # (module text, or None for no file; the one line the config refuses it with)
    (None, "variant bad:build: no module file bad.py in the working directory or PYTHONPATH"),
    ("import no_such_package\n", "module bad (bad.py) does not import (ModuleNotFoundError"),
    ("def other(a, b):\n    pass\n", "variant bad:build: module bad has no function build"),
    (
        "def build(shape):\n    pass\nbuild.family = 'cnn'\n",
        "variant bad:build: build must take (input_shape, num_classes)",
    ),
    (
        "def build(shape, classes):\n    pass\n",
        'variant bad:build: declare its family below the function: build.family = "cnn"',
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_MODULES)
def test_a_bad_user_module_is_refused_in_one_line_before_training(user_module, text, message):
    if text is not None:
        user_module("bad", text)
    else:
        forget("bad")
    with pytest.raises(ConfigError) as err:
        load_config("fashion-mnist", ["variants=mlp,bad:build"])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_function_that_returns_no_model_is_named(user_module):
    user_module("empty", "def build(shape, classes):\n    return None\nbuild.family = 'mlp'\n")
    load_config("fashion-mnist", ["variants=empty:build"])
    with pytest.raises(models.ModelError, match="variant empty:build: returned NoneType, not a"):
        models.build_model("empty:build", (28, 28, 1), 10)


@pytest.mark.slow
def test_a_user_model_on_a_png_folder_runs_end_to_end(user_module, tmp_path):
    from cnnvsmlp_pipelines.local_runner import run_local
    from test_your_data import write_pngs

    user_module("my_models", WIDE_CNN)
    images = write_pngs(tmp_path / "images", {"a": 40, "b": 40, "c": 40}, shape=(16, 16, 3))
    overrides = ["variants=mlp,my_models:wide_cnn", f"dataset=folder:{images}", "epochs=1"]
    config = load_config("fashion-mnist", [*overrides, f"resume_uri={tmp_path / 'resume'}"])
    run_dir = run_local("compare", config, runs_dir=tmp_path / "runs", quiet=True)
    comparison = json.loads((run_dir / "report" / "comparison.json").read_text())
    assert [v["variant"] for v in comparison["variants"]] == ["mlp", "my_models:wide_cnn"]
    assert comparison["classes"] == ["a", "b", "c"] and comparison["n_test"] == 24
    # 16x16x3 in, 3 classes: conv 3*3*3*16+16, dense 8*8*16*32+32, output 32*3+3.
    assert comparison["variants"][1]["params"] == 448 + 32_800 + 99
    report = (run_dir / "report" / "report.md").read_text()
    assert f"folder:{images} (16x16x3 images)" in report
    assert "## Your models" in report and 'wide_cnn.family = "cnn"' in report


def test_a_function_that_cannot_build_for_the_data_is_named_before_training(user_module):
    user_module(
        "small",
        "import keras\n\n\ndef net(shape, classes):\n"
        "    return keras.Sequential([keras.Input(shape), keras.layers.Conv2D(4, 9),\n"
        "        keras.layers.Dense(classes)])\n\n\nnet.family = 'cnn'\n",
    )
    load_config("fashion-mnist", ["variants=mlp,small:net"])
    models.check_user_variants(["mlp", "small:net"], (16, 16, 1), 3)  # builds
    with pytest.raises(models.ModelError) as err:
        models.check_user_variants(["mlp", "small:net"], (4, 4, 1), 3)
    assert str(err.value).startswith("variant small:net: building it for 4x4x1 images and 3 ")
    assert "\n" not in str(err.value)


CUSTOM_LAYER = '''
import keras
from keras import layers


class Scale(layers.Layer):
    """Multiplies by a learned scalar: a layer Keras does not know by name."""

    def build(self, input_shape):
        self.factor = self.add_weight(shape=(), initializer="ones")

    def call(self, x):
        return x * self.factor


def scaled(input_shape, num_classes):
    return keras.Sequential(
        [keras.Input(shape=input_shape), layers.Flatten(), Scale(),
         layers.Dense(num_classes, activation="softmax")]
    )


scaled.family = "mlp"
'''


def test_a_user_model_with_its_own_layer_is_trained_and_evaluated(user_module, small_fashion):
    from cnnvsmlp.evaluate import evaluate
    from cnnvsmlp.train import train

    user_module("layered", CUSTOM_LAYER)
    run = RunSpec(variant="layered:scaled", repeat=0, seed=0)
    out = small_fashion.parent / "layered-model"
    train(
        small_fashion, run, TrainConfig(epochs=1, batch_size=64, optimizer="adam"), out, verbose=0
    )
    forget("layered")  # a later process: the module is found again from the working directory
    result = evaluate(out, small_fashion, out.parent / "layered-eval.json")
    assert result.params == 28 * 28 * 10 + 10 + 1 and result.accuracy > 0.3
