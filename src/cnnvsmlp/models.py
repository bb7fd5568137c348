"""The model variants of the two seed experiments, by one name each.

A variant is an architecture; the number of classes comes from the data set,
so ``mlp`` is the same network with 26 outputs on EMNIST Letters and 10 on
Fashion-MNIST.

======================  ======  ================================================
name                    seed    architecture
======================  ======  ================================================
``mlp``                 000     784-1500-2000-Dropout(0.25)-1000-classes
``cnn-deep``            000     Conv32-Conv64-Pool-Drop(0.25)-Dense128-Drop(0.5)
``cnn``                 004     Conv32(same)-Pool-Dense128
``cnn-3conv``           004     3 x (Conv same, Pool): 32, 64, 128 - Dense512
``cnn-3conv-bn``        004     ``cnn-3conv`` with BatchNormalization after each
                                convolution and the 512 dense layer, before ReLU
``cnn-3conv-bn-m90``    004     ``cnn-3conv-bn`` whose moving statistics follow
                                the batches with momentum 0.9, not Keras' 0.99
======================  ======  ================================================

``cnn-3conv-bn`` is the seed's intent with Keras' defaults. Trained with Adam
at batch 32, its weights move faster than its moving statistics (momentum
0.99, a memory of about 100 steps) follow them, so in inference mode it scores
several points below what the same weights score with statistics of the
current weights, and its accuracy swings from epoch to epoch and from seed to
seed. ``cnn-3conv-bn-m90`` is the same network with momentum 0.9 (PyTorch's
default, a memory of about 10 steps): it trains the very same weights, and
its moving statistics follow them closer, so most of that gap closes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Keras loads TensorFlow: imported where a model is built, not to list names.
    import keras


@dataclass(frozen=True)
class Variant:
    """A named architecture and where it comes from."""

    name: str
    family: str  # "mlp" or "cnn": the headline's primary contrast is between families
    seed_writeup: str
    summary: str
    build: Callable[[int], keras.Model]
    # Milliseconds per training step (batch 32, Adam) on 2 CPU cores, measured on
    # Fashion-MNIST: how long a run of it takes against the others. Runners with
    # fewer slots than runs start the longest first; nothing else reads it.
    step_ms: float


def _input():
    import keras

    return keras.Input(shape=(28, 28, 1), name="image")


def build_mlp(num_classes: int) -> keras.Model:
    """Seed 000's multilayer perceptron (6,206,526 parameters with 26 classes)."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            _input(),
            layers.Flatten(),
            layers.Dense(1500, activation="relu"),
            layers.Dense(2000, activation="relu"),
            layers.Dropout(0.25),
            layers.Dense(1000, activation="relu"),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="mlp",
    )


def build_cnn_deep(num_classes: int) -> keras.Model:
    """Seed 000's deep CNN, the classic Keras MNIST CNN (1,201,946 parameters, 26 classes)."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            _input(),
            layers.Conv2D(32, 3, activation="relu"),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="cnn-deep",
    )


def build_cnn(num_classes: int) -> keras.Model:
    """Seed 004's first CNN (804,554 parameters with 10 classes)."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            _input(),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="cnn",
    )


def _cnn_3conv(
    num_classes: int, batch_norm: bool, name: str, momentum: float = 0.99
) -> keras.Model:
    import keras
    from keras import layers

    def block(units_layer: keras.layers.Layer) -> list[keras.layers.Layer]:
        norm = [layers.BatchNormalization(momentum=momentum)] if batch_norm else []
        return [units_layer, *norm, layers.Activation("relu")]

    stack: list = [_input()]
    for filters in (32, 64, 128):
        stack += block(layers.Conv2D(filters, 3, padding="same"))
        stack.append(layers.MaxPooling2D(2))
    stack.append(layers.Flatten())
    stack += block(layers.Dense(512))
    stack.append(layers.Dense(num_classes, activation="softmax"))
    return keras.Sequential(stack, name=name)


def build_cnn_3conv(num_classes: int) -> keras.Model:
    """Seed 004's "+2 conv layers" network."""
    return _cnn_3conv(num_classes, batch_norm=False, name="cnn-3conv")


def build_cnn_3conv_bn(num_classes: int) -> keras.Model:
    """Seed 004's third network with batch normalisation actually in the model."""
    return _cnn_3conv(num_classes, batch_norm=True, name="cnn-3conv-bn")


def build_cnn_3conv_bn_m90(num_classes: int) -> keras.Model:
    """``cnn-3conv-bn`` with the moving statistics' momentum 0.9 instead of 0.99."""
    return _cnn_3conv(num_classes, batch_norm=True, name="cnn-3conv-bn-m90", momentum=0.9)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("mlp", "mlp", "000", "Dense 1500-2000-Dropout 0.25-1000, ReLU", build_mlp, 19.9),
        Variant(
            "cnn-deep",
            "cnn",
            "000",
            "Conv 32-64 (valid) - MaxPool - Dropout 0.25 - Dense 128 - Dropout 0.5",
            build_cnn_deep,
            18.4,
        ),
        Variant("cnn", "cnn", "004", "Conv 32 (same) - MaxPool - Dense 128", build_cnn, 4.7),
        Variant(
            "cnn-3conv",
            "cnn",
            "004",
            "3 x [Conv (same) - MaxPool]: 32, 64, 128 - Dense 512",
            build_cnn_3conv,
            16.1,
        ),
        Variant(
            "cnn-3conv-bn",
            "cnn",
            "004",
            "cnn-3conv with BatchNorm before each ReLU (3 conv + Dense 512)",
            build_cnn_3conv_bn,
            19.2,
        ),
        Variant(
            "cnn-3conv-bn-m90",
            "cnn",
            "004",
            "cnn-3conv-bn with BatchNorm momentum 0.9 (moving statistics keep up with Adam)",
            build_cnn_3conv_bn_m90,
            19.4,
        ),
    )
}


def family(variant: str) -> str:
    """The declared family of a variant: ``mlp`` or ``cnn`` for the built-in ones.

    Raises:
        KeyError: unknown variant name.
    """
    try:
        return VARIANTS[variant].family
    except KeyError:
        raise KeyError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}") from None


def build_model(variant: str, num_classes: int) -> keras.Model:
    """Build an uncompiled model of a variant.

    Raises:
        KeyError: unknown variant name (the message lists the known ones).
    """
    try:
        return VARIANTS[variant].build(num_classes)
    except KeyError:
        raise KeyError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}") from None
