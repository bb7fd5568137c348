"""Evaluate a trained model on the held-out test split."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import keras
import numpy as np
from sklearn.metrics import confusion_matrix, log_loss, precision_recall_fscore_support

from cnnvsmlp.data.store import labels_digest, load_split, read_metadata
from cnnvsmlp.records import ClassMetrics, EvalResult, Hardware, ShiftResult, TrainResult
from cnnvsmlp.shift import SHIFT_SEED, SHIFTS, shift_images

PREDICT_BATCH = 1024


def timed_predict(model: keras.Model, images: np.ndarray) -> tuple[np.ndarray, float]:
    """Class probabilities for ``images`` and the images per second of the pass.

    One warm-up batch runs first so graph tracing is not timed.
    """
    model.predict(images[:PREDICT_BATCH], batch_size=PREDICT_BATCH, verbose=0)
    start = time.perf_counter()
    probs = model.predict(images, batch_size=PREDICT_BATCH, verbose=0)
    seconds = time.perf_counter() - start
    return probs, len(images) / seconds


def evaluate_shifted(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    shifts: tuple[int, ...] = SHIFTS,
    seed: int = SHIFT_SEED,
) -> list[ShiftResult]:
    """Score a model on the test images shifted by each of ``shifts`` pixels.

    Args:
        model: a trained model.
        images: the test images.
        labels: their labels.
        shifts: the shifts, in pixels (see :mod:`cnnvsmlp.shift`).
        seed: the seed of the directions; fixed, so every model sees the same images.

    Returns:
        Accuracy and every prediction per shift.
    """
    scored = []
    for shift in shifts:
        shifted = shift_images(images, shift, seed)
        probs = model.predict(shifted, batch_size=PREDICT_BATCH, verbose=0)
        predictions = probs.argmax(axis=1)
        scored.append(
            ShiftResult(
                shift=shift,
                seed=seed,
                accuracy=float(np.mean(predictions == labels)),
                predictions=predictions.astype(int).tolist(),
            )
        )
    return scored


def user_classes(variant: str) -> dict[str, type] | None:
    """The classes a user variant's module defines (its custom layers), for loading its model."""
    from cnnvsmlp.models import get_variant, is_user_variant

    if not is_user_variant(variant):
        return None
    get_variant(variant)  # installs the module, from the config's sources or the working directory
    module = sys.modules[variant.partition(":")[0]]
    return {k: v for k, v in vars(module).items() if isinstance(v, type)}


def evaluate(
    model_dir: str | os.PathLike, data_dir: str | os.PathLike, out_path: str | os.PathLike
) -> EvalResult:
    """Score a trained model on the test split.

    Args:
        model_dir: a training output folder (``model.keras`` and ``train.json``).
        data_dir: the data set the model was trained on.
        out_path: where the :class:`~cnnvsmlp.records.EvalResult` JSON is written.

    Returns:
        Accuracy, loss, per-class metrics, confusion matrix, the predictions,
        size and speed, and the scores on the shifted test images.
    """
    model_dir = Path(model_dir)
    training = TrainResult.read(model_dir / "train.json")
    # The inference model: no optimizer, nothing to compile (folders of older runs load too).
    model = keras.saving.load_model(
        model_dir / "model.keras", compile=False, custom_objects=user_classes(training.run.variant)
    )
    meta = read_metadata(data_dir)
    classes = meta["classes"]
    x_test, y_test = load_split(data_dir, "test")

    probs, images_per_s = timed_predict(model, x_test)
    probs = probs.astype(np.float64)
    probs /= probs.sum(axis=1, keepdims=True)  # float32 softmax rows sum to 1 only roughly
    predictions = probs.argmax(axis=1)
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_test, predictions, labels=labels, zero_division=0
    )
    result = EvalResult(
        run=training.run,
        dataset=meta["dataset"],
        classes=classes,
        accuracy=float(np.mean(predictions == y_test)),
        loss=float(log_loss(y_test, probs, labels=labels)),
        n_test=len(y_test),
        per_class=[
            ClassMetrics(name=c, precision=p, recall=r, f1=f, support=int(s))
            for c, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
        ],
        confusion=confusion_matrix(y_test, predictions, labels=labels).tolist(),
        predictions=predictions.astype(int).tolist(),
        labels_sha256=labels_digest(y_test),
        params=int(model.count_params()),
        model_size_bytes=(model_dir / "model.keras").stat().st_size,
        inference_images_per_s=images_per_s,
        training=training,
        hardware=Hardware.detect(),
        shifted=evaluate_shifted(model, x_test, y_test),
    )
    result.write(out_path)
    return result
