"""Evaluate a trained model on the test split, or reuse its kept evaluation (docs/resume.md).

Shifted test images move each ``k`` pixels in one of eight directions, drawn by a fixed seed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import ValidationError

from cnnvsmlp import storage
from cnnvsmlp.data.store import labels_digest, load_split, read_metadata
from cnnvsmlp.models import get_variant, is_user_variant
from cnnvsmlp.records import ClassMetrics, EvalResult, Hardware, ShiftResult, TrainResult
from cnnvsmlp.training_files import evaluation_key, machine_memo

if TYPE_CHECKING:  # Keras loads its backend: imported where a model is loaded.
    import keras

PREDICT_BATCH = 1024
SHIFTS = (1, 2, 3, 4)
SHIFT_SEED = 0
DIRECTIONS = np.array(
    [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)], dtype=np.int64
)


def translate(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """A batch ``(N, H, W, ...)`` moved ``dy`` pixels down and ``dx`` right, zero filled."""
    height, width = images.shape[1:3]
    if abs(dy) >= height or abs(dx) >= width:
        raise ValueError(f"shift ({dy}, {dx}) moves a {height} x {width} image out of its frame")
    out = np.zeros_like(images)
    out[:, max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = images[
        :, max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
    ]
    return out


def directions(n: int, shift: int, seed: int = SHIFT_SEED) -> np.ndarray:
    """The ``(dy, dx)`` of each of ``n`` images, ``max(|dy|, |dx|) == shift``, drawn by ``seed``."""
    rng = np.random.default_rng([seed, shift])
    return DIRECTIONS[rng.integers(0, len(DIRECTIONS), size=n)] * shift


def shift_images(images: np.ndarray, shift: int, seed: int = SHIFT_SEED) -> np.ndarray:
    """The images, in their order, each moved ``shift`` pixels in its own :func:`directions`."""
    offsets = directions(len(images), shift, seed)
    out = np.zeros_like(images)
    for dy, dx in np.unique(offsets, axis=0):
        chosen = np.flatnonzero((offsets[:, 0] == dy) & (offsets[:, 1] == dx))
        out[chosen] = translate(images[chosen], int(dy), int(dx))
    return out


def evaluate_shifted(
    model: keras.Model, images: np.ndarray, labels: np.ndarray, shifts: tuple[int, ...] = SHIFTS
) -> list[ShiftResult]:
    """Accuracy and every prediction on the images shifted by each of ``shifts`` pixels."""
    scored = []
    for shift in shifts:
        shifted = shift_images(images, shift, SHIFT_SEED)
        predictions = model.predict(shifted, batch_size=PREDICT_BATCH, verbose=0).argmax(axis=1)
        accuracy = float(np.mean(predictions == labels))
        found = {"accuracy": accuracy, "predictions": predictions.astype(int).tolist()}
        scored.append(ShiftResult(shift=shift, seed=SHIFT_SEED, **found))
    return scored


def _scores(probs: np.ndarray, y_test: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, loss, per-class metrics, confusion matrix and predictions of ``probs``."""
    from sklearn.metrics import confusion_matrix, log_loss, precision_recall_fscore_support

    probs = probs.astype(np.float64)
    probs /= probs.sum(axis=1, keepdims=True)  # float32 softmax rows sum to 1 only roughly
    predictions = probs.argmax(axis=1)
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_test, predictions, labels=labels, zero_division=0
    )
    return {
        "accuracy": float(np.mean(predictions == y_test)),
        "loss": float(log_loss(y_test, probs, labels=labels)),
        "per_class": [
            ClassMetrics(name=c, precision=p, recall=r, f1=f, support=int(s))
            for c, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
        ],
        "confusion": confusion_matrix(y_test, predictions, labels=labels).tolist(),
        "predictions": predictions.astype(int).tolist(),
    }


def evaluate(
    model_dir: str | os.PathLike, data_dir: str | os.PathLike, out_path: str | os.PathLike
) -> EvalResult:
    """Score a training output folder's model on the test split; the record goes to ``out_path``."""
    import keras

    model_dir = Path(model_dir)
    training = TrainResult.read(model_dir / "train.json")
    variant, own = training.run.variant, None
    if is_user_variant(variant):  # the classes its module defines: its own layers
        get_variant(variant)  # installs the module, from the config's sources or the working dir
        module = vars(sys.modules[variant.partition(":")[0]])
        own = {k: v for k, v in module.items() if isinstance(v, type)}
    # The inference model: no optimizer, nothing to compile (folders of older runs load too).
    model = keras.saving.load_model(model_dir / "model.keras", compile=False, custom_objects=own)
    meta = read_metadata(data_dir)
    x_test, y_test = load_split(data_dir, "test")

    model.predict(x_test[:PREDICT_BATCH], batch_size=PREDICT_BATCH, verbose=0)  # a warm-up
    start = time.perf_counter()
    probs = model.predict(x_test, batch_size=PREDICT_BATCH, verbose=0)
    images_per_s = len(x_test) / (time.perf_counter() - start)
    result = EvalResult(
        run=training.run,
        dataset=meta["dataset"],
        classes=meta["classes"],
        **_scores(probs, y_test, meta["classes"]),
        n_test=len(y_test),
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


def _kept(store: str, model_dir: str | os.PathLike, data_dir, trained: TrainResult, hw) -> str:
    """Where the evaluation of this model on this data and machine ``hw`` is kept in ``store``."""
    key = evaluation_key(Path(model_dir) / "model.keras", read_metadata(data_dir), hw)
    return f"{store.rstrip('/')}/{trained.run.run_id}/{trained.training_key}/evaluations/{key}.json"


def reuse_evaluation(
    model_dir: str | os.PathLike, data_dir: str | os.PathLike, store: str | None, out_path: Path
) -> EvalResult | None:
    """The evaluation of this model kept in ``store``, with this run's training, in ``out_path``."""
    hardware = Hardware.remembered(machine_memo(store))
    trained = TrainResult.read(Path(model_dir) / "train.json")
    if hardware is None or not trained.training_key or not store:
        return None
    text = storage.read_text(_kept(store, model_dir, data_dir, trained, hardware))
    try:
        found = EvalResult.model_validate_json(text)  # None, where none is kept, fails too
    except ValidationError:
        return None
    if found.run != trained.run:
        return None
    result = found.model_copy(update={"training": trained})
    result.write(out_path)
    return result


def keep_evaluation(
    model_dir: str | os.PathLike, data_dir: str | os.PathLike, store: str | None, result
) -> None:
    """Keep an evaluation in ``store`` for :func:`reuse_evaluation`; nothing without a store."""
    if store and result.training.training_key:
        hardware = Hardware.detect(memo=machine_memo(store))
        uri = _kept(store, model_dir, data_dir, result.training, hardware)
        storage.write_text(uri, result.model_dump_json())
