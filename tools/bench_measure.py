"""One measurement of ``make bench`` in a fresh process; its JSON is the last line it prints.

``python -m tools.bench_measure KIND DATA_DIR VARIANT OUT``: KIND is plain (a plain Keras
``fit``), project (``train()``), tensorflow or jax (``train()`` on that backend) or overheads.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from cnnvsmlp.config import RunSpec, load_config
from cnnvsmlp.data.store import load_split


def plain_fit(data_dir: Path, variant: str, seed: int) -> dict:
    """The script a user would write: build, compile with Adam, fit with batch 32."""
    import keras

    from cnnvsmlp.models import build_model

    x, y = load_split(data_dir, "train")
    xv, yv = load_split(data_dir, "validation")
    xt, yt = load_split(data_dir, "test")
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    model = build_model(variant, (28, 28, 1), 10)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=1, validation_data=(xv, yv), verbose=0)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(xt, yt, batch_size=1024, verbose=0)
    return {"s": seconds, "test_accuracy": float(accuracy)}


def project_train(data_dir: Path, variant: str, out: Path, backend_name: str | None = None) -> dict:
    """One epoch of the project's ``train()``, everything it writes included, then its test score.

    With ``backend_name``, on that Keras backend, set before Keras loads.
    """
    overrides = ["epochs=1"]
    if backend_name:
        from cnnvsmlp import backend

        backend.use(backend_name)
        overrides.append(f"train.backend={backend_name}")
    from cnnvsmlp.evaluate import evaluate
    from cnnvsmlp.train import train

    config = load_config("fashion-mnist", overrides)
    start = time.perf_counter()
    trained = train(data_dir, RunSpec(variant=variant, repeat=0, seed=0), config.train, out, 0)
    seconds = time.perf_counter() - start
    scored = evaluate(out, data_dir, out / "eval.json")
    return {
        "s": seconds,
        "epoch_s": trained.history[0].time_s,
        "test_accuracy": scored.accuracy,
        "params": trained.params,
        "inference_images_per_s": scored.inference_images_per_s,
        "n_train": trained.n_train,
        "backend": trained.hardware.backend,
    }


def overheads(data_dir: Path, out: Path) -> dict:
    """What an MLP training task spends besides its training steps, each timed once."""
    start = time.perf_counter()
    import tensorflow as tf  # noqa: F401 - the import is what is timed

    from cnnvsmlp.models import build_model
    from cnnvsmlp.resume import Training

    import_s = time.perf_counter() - start
    start = time.perf_counter()
    xv, yv = load_split(data_dir, "validation")
    x, y = load_split(data_dir, "train")
    load_s = time.perf_counter() - start
    model = build_model("mlp", (28, 28, 1), 10)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:64], y[:64], batch_size=32, verbose=0)
    result = {"tensorflow_import_s": import_s, "load_train_and_validation_s": load_s}
    for batch in (32, 1024):
        model.evaluate(xv[:batch], yv[:batch], batch_size=batch, verbose=0)  # traced, not timed
        start = time.perf_counter()
        model.evaluate(xv, yv, batch_size=batch, verbose=0)
        result[f"validation_pass_batch_{batch}_s"] = time.perf_counter() - start
    from cnnvsmlp.records import Epoch

    row = Epoch(epoch=1, loss=0, accuracy=0, val_loss=0, val_accuracy=0, time_s=0)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    config = load_config("fashion-mnist").train
    placeholder = "0" * 64  # the key names a training; a snapshot's cost does not depend on it
    run = RunSpec(variant="mlp", repeat=0, seed=0)
    Training(out, placeholder, placeholder, run, config).save_epoch(model, [row])
    result["epoch_snapshot_s"] = time.perf_counter() - start
    result["epoch_snapshot_bytes"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return result


def main(argv: list[str]) -> None:
    """Measure one KIND (see the module's docstring) and print its JSON."""
    kind, data_dir, variant, out = argv
    if kind == "plain":
        result = plain_fit(Path(data_dir), variant, seed=0)
    elif kind == "overheads":
        result = overheads(Path(data_dir), Path(out))
    else:
        result = project_train(
            Path(data_dir), variant, Path(out), None if kind == "project" else kind
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
