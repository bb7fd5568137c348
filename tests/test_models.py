"""Every variant of both seeds, with the parameter count the seed prints."""

from __future__ import annotations

import numpy as np
import pytest

from cnnvsmlp.models import VARIANTS, build_model

SEED_PARAMS = [
    # (variant, classes, parameters): seed 000 prints the first two, seed 004 the third;
    # the others follow from the architectures the seeds describe.
    ("mlp", 26, 6_206_526),
    ("cnn-deep", 26, 1_201_946),
    ("cnn", 10, 804_554),
    ("cnn-3conv", 10, 688_138),
    ("cnn-3conv-bn", 10, 691_082),
    ("mlp", 10, 6_190_510),
]


# The same variants on the other data set, as the README's table lists them.
OTHER_PARAMS = [
    ("cnn-deep", 10, 1_199_882),
    ("cnn", 26, 806_618),
    ("cnn-3conv", 26, 696_346),
    ("cnn-3conv-bn", 26, 699_290),
    ("cnn-3conv-bn-m90", 10, 691_082),
    ("cnn-3conv-bn-m90", 26, 699_290),
]


@pytest.mark.parametrize(("variant", "classes", "params"), SEED_PARAMS + OTHER_PARAMS)
def test_parameter_count(variant, classes, params):
    assert build_model(variant, (28, 28, 1), classes).count_params() == params


def test_batch_norm_really_in_the_model():
    plain = build_model("cnn-3conv", (28, 28, 1), 10).count_params()
    with_bn = build_model("cnn-3conv-bn", (28, 28, 1), 10).count_params()
    # gamma, beta, moving mean and variance for 32 + 64 + 128 conv channels and 512 units
    assert with_bn - plain == 4 * (32 + 64 + 128 + 512)


def test_batch_norm_momentum_is_the_only_difference_of_m90():
    import keras

    def norms(model):
        return [
            layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
        ]

    seed, m90 = (
        build_model("cnn-3conv-bn", (28, 28, 1), 10),
        build_model("cnn-3conv-bn-m90", (28, 28, 1), 10),
    )
    assert [type(layer) for layer in seed.layers] == [type(layer) for layer in m90.layers]
    assert [layer.momentum for layer in norms(seed)] == [0.99] * 4
    assert [layer.momentum for layer in norms(m90)] == [0.9] * 4
    assert [layer.epsilon for layer in norms(m90)] == [layer.epsilon for layer in norms(seed)]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_outputs_are_class_probabilities(variant):
    model = build_model(variant, (28, 28, 1), 26)
    probs = np.asarray(model(np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)))
    assert probs.shape == (3, 26)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_unknown_variant():
    with pytest.raises(KeyError, match="unknown variant 'resnet'"):
        build_model("resnet", (28, 28, 1), 10)


def test_models_command_lists_every_variant_once_per_data_set(capsys):
    from cnnvsmlp_pipelines.cli import main

    assert main(["models"]) == 0
    stdout = capsys.readouterr().out
    for variant, classes, params in SEED_PARAMS:
        dataset = "emnist-letters" if classes == 26 else "fashion-mnist"
        assert any(
            line.split()[:2] == [variant, dataset] and line.endswith(f"{params:,}")
            for line in stdout.splitlines()
        ), (variant, dataset, stdout)
    rows = [line.split()[:2] for line in stdout.splitlines()[2:]]
    assert len(rows) == len({tuple(r) for r in rows})
    mlp = next(line for line in stdout.splitlines() if line.split()[:2] == ["mlp", "fashion-mnist"])
    assert "fashion-mnist, fashion-mnist-data-efficiency" in mlp


@pytest.mark.parametrize(("variant", "params"), [("mlp", 9_622_510), ("cnn", 1_050_890)])
def test_parameter_count_follows_the_input_shape(variant, params):
    # 32x32x3 (CIFAR-10): the MLP flattens 3,072 inputs; the CNN's dense layer sees 16x16x32.
    assert build_model(variant, (32, 32, 3), 10).count_params() == params


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("shape", [(32, 32, 3), (20, 24, 1)])
def test_every_variant_takes_any_image_shape(variant, shape):
    model = build_model(variant, shape, 3)
    probs = np.asarray(model(np.zeros((2, *shape), dtype=np.float32)))
    assert model.input_shape == (None, *shape) and probs.shape == (2, 3)
