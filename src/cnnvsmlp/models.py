"""The model variants, by one name each: built-in ones, and a user's ``module:function``.

A user's function takes ``(input_shape, num_classes)`` and declares its family (README); its
source travels in the experiment config (``model_sources``). Batch norm: docs/batchnorm.md.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import inspect
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from cnnvsmlp.errors import UserError

if TYPE_CHECKING:  # Keras loads TensorFlow: imported where a model is built, not to list names.
    import keras


@dataclass(frozen=True)
class Variant:
    """A named architecture and where it comes from."""

    name: str
    family: str  # "mlp" or "cnn": the headline's primary contrast is between families
    seed_writeup: str
    summary: str
    build: Callable[[tuple[int, ...], int], keras.Model]
    step_ms: float  # per step (batch 32, Adam, 2 CPU cores): runners start the longest first


def _sequential(name: str, layers: Callable, input_shape: tuple[int, ...], num_classes: int):
    """The ``keras.Sequential`` model ``name`` of an image input and the ``layers`` it makes."""
    import keras

    image = keras.Input(shape=tuple(input_shape), name="image")
    return keras.Sequential([image, *layers(keras.layers, num_classes)], name=name)


def _mlp(layers: types.ModuleType, num_classes: int) -> list:
    """Seed 000's multilayer perceptron (6,206,526 parameters with 26 classes)."""
    return [
        layers.Flatten(),
        layers.Dense(1500, activation="relu"),
        layers.Dense(2000, activation="relu"),
        layers.Dropout(0.25),
        layers.Dense(1000, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ]


def _cnn_deep(layers: types.ModuleType, num_classes: int) -> list:
    """Seed 000's deep CNN, the classic Keras MNIST CNN (1,201,946 parameters, 26 classes)."""
    return [
        layers.Conv2D(32, 3, activation="relu"),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(num_classes, activation="softmax"),
    ]


def _cnn(layers: types.ModuleType, num_classes: int) -> list:
    """Seed 004's first CNN (804,554 parameters with 10 classes)."""
    return [
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(num_classes, activation="softmax"),
    ]


def _cnn_3conv(layers: types.ModuleType, num_classes: int, batch_norm: float | None) -> list:
    """Seed 004's "+2 conv layers" network; with BatchNorm of momentum ``batch_norm`` if given."""

    def block(units_layer: keras.layers.Layer) -> list[keras.layers.Layer]:
        norm = [] if batch_norm is None else [layers.BatchNormalization(momentum=batch_norm)]
        return [units_layer, *norm, layers.Activation("relu")]

    stack: list = []
    for filters in (32, 64, 128):
        stack += block(layers.Conv2D(filters, 3, padding="same"))
        stack.append(layers.MaxPooling2D(2))
    stack.append(layers.Flatten())
    stack += block(layers.Dense(512))
    stack.append(layers.Dense(num_classes, activation="softmax"))
    return stack


_SUMMARIES = {
    "mlp": "Dense 1500-2000-Dropout 0.25-1000, ReLU",
    "cnn-deep": "Conv 32-64 (valid) - MaxPool - Dropout 0.25 - Dense 128 - Dropout 0.5",
    "cnn": "Conv 32 (same) - MaxPool - Dense 128",
    "cnn-3conv": "3 x [Conv (same) - MaxPool]: 32, 64, 128 - Dense 512",
    "cnn-3conv-bn": "cnn-3conv with BatchNorm before each ReLU (3 conv + Dense 512)",
    "cnn-3conv-bn-m90": (
        "cnn-3conv-bn with BatchNorm momentum 0.9 (moving statistics keep up with Adam)"
    ),
}
VARIANTS: dict[str, Variant] = {
    name: Variant(name, family, writeup, _SUMMARIES[name], partial(_sequential, name, layers), ms)
    for name, family, writeup, layers, ms in (
        ("mlp", "mlp", "000", _mlp, 19.9),
        ("cnn-deep", "cnn", "000", _cnn_deep, 18.4),
        ("cnn", "cnn", "004", _cnn, 4.7),
        ("cnn-3conv", "cnn", "004", partial(_cnn_3conv, batch_norm=None), 16.1),
        ("cnn-3conv-bn", "cnn", "004", partial(_cnn_3conv, batch_norm=0.99), 19.2),
        ("cnn-3conv-bn-m90", "cnn", "004", partial(_cnn_3conv, batch_norm=0.9), 19.4),
    )
}


FAMILIES = ("mlp", "cnn")
# A user variant's step cost is not measured: it only orders the runs and the ETA.
USER_STEP_MS = 10.0
_SOURCES: dict[str, str] = {}  # user module -> the source it was installed from


class ModelError(UserError, ValueError):
    """A user variant (``module:function``) cannot be found, loaded or built."""


def is_user_variant(name: str) -> bool:
    """Whether a variant name is a user's ``module:function``."""
    return ":" in name


def module_source(module: str, variant: str) -> str:
    """The source of a user's one-file module, found in the working directory or on ``sys.path``."""
    try:
        if "." in module:
            found = importlib.util.find_spec(module)
        else:
            found = importlib.machinery.PathFinder.find_spec(module, [os.getcwd(), *sys.path])
    except ImportError:
        found = None
    if found is None or not found.origin or not found.origin.endswith(".py"):
        raise ModelError(
            f"variant {variant}: no module file {module}.py in the working directory or "
            "PYTHONPATH; put it there or add its folder to PYTHONPATH"
        )
    return Path(found.origin).read_text()


def install_sources(sources: dict[str, str]) -> None:
    """Load user modules from their source text, as a task that has no copy of the files does."""
    for module, source in sources.items():
        if _SOURCES.get(module) == source:
            continue
        loaded = types.ModuleType(module)
        loaded.__file__ = f"{module.replace('.', '/')}.py"
        try:
            exec(compile(source, loaded.__file__, "exec"), loaded.__dict__)  # noqa: S102
        except Exception as err:  # noqa: BLE001 - any error of the user's code ends here
            where = f"{err.__class__.__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            raise ModelError(
                f"module {module} ({loaded.__file__}) does not import ({where}); "
                "fix it and run again"
            ) from None
        sys.modules[module] = loaded
        _SOURCES[module] = source


def _user_variant(name: str) -> Variant:
    module, _, function = name.partition(":")
    if not module or not function.isidentifier():
        raise ModelError(f"variant {name}: expected module:function, e.g. my_models:wide_cnn")
    if module not in _SOURCES:
        install_sources({module: module_source(module, name)})
    build = getattr(sys.modules[module], function, None)
    if not callable(build):
        raise ModelError(f"variant {name}: module {module} has no function {function}; define it")
    try:
        inspect.signature(build).bind((28, 28, 1), 10)
    except (TypeError, ValueError):
        raise ModelError(
            f"variant {name}: {function} must take (input_shape, num_classes); change its signature"
        ) from None
    declared = getattr(build, "family", None)
    if declared not in FAMILIES:
        raise ModelError(
            f"variant {name}: declare its family below the function: "
            f'{function}.family = "cnn" (or "mlp")'
        )
    summary = (inspect.getdoc(build) or f"{function} from {module}.py").splitlines()[0]
    return Variant(name, declared, "user", summary, build, USER_STEP_MS)


def get_variant(name: str) -> Variant:
    """A variant by name: a built-in one (else KeyError), or a user's ``module:function``."""
    if is_user_variant(name):
        return _user_variant(name)
    if name not in VARIANTS:
        raise KeyError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[name]


def user_source(name: str) -> str | None:
    """The source of a user variant's module (None for a built-in one): it names the training."""
    if not is_user_variant(name):
        return None
    get_variant(name)
    return _SOURCES[name.partition(":")[0]]


def check_user_variants(
    variants: list[str], input_shape: tuple[int, ...], num_classes: int
) -> None:
    """Build each user variant once for the data, so a bad function fails before training."""
    shape = "x".join(map(str, input_shape))
    for name in filter(is_user_variant, variants):
        try:
            build_model(name, input_shape, num_classes)
        except ModelError:
            raise
        except Exception as err:  # noqa: BLE001 - any error of the user's code ends here
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise ModelError(
                f"variant {name}: building it for {shape} images and {num_classes} classes "
                f"failed ({err.__class__.__name__}: {first}); fix the function"
            ) from None


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Build an uncompiled model of a variant for images of ``input_shape``."""
    import keras

    model = get_variant(name).build(tuple(input_shape), num_classes)
    if not isinstance(model, keras.Model):
        raise ModelError(
            f"variant {name}: returned {type(model).__name__}, not a keras.Model; "
            "return the uncompiled model"
        )
    return model
