"""Train one model variant on a prepared data set.

The output folder of a run holds:

- ``model.keras``: the trained model in Keras' native format;
- ``checkpoints/epoch-NN.keras``: the model and its optimizer after each epoch;
- ``state/epoch-NN.json``: what else resuming after epoch NN needs (the
  history so far and the random generators' state); written after that
  epoch's checkpoint, it marks the epoch complete;
- ``history.csv``: loss and accuracy, train and validation, and seconds per epoch;
- ``tensorboard/``: TensorBoard logs;
- ``train.json``: the :class:`~cnnvsmlp.records.TrainResult`.

An epoch's outputs are one unit: a checkpoint counts only once the state
file that names it is there, and both are written whole or not at all
(written beside, then renamed). A task that restarts in the same folder goes
on from the newest complete epoch; a checkpoint without its state file (a
kill in between) is trained again. Every epoch's order of the training
images and every Dropout mask depend only on the seed and the epoch, so a
resumed training ends with the same weights as an uninterrupted one.

On a cluster a retried task starts in a new, empty folder, so training can
also mirror its outputs after every epoch to a ``resume_uri`` (a ``gs://``
prefix or a folder) and fetch them back before it starts. The mirror gets
each epoch's checkpoint before its state file, so there, too, a state file
means a whole epoch.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from cnnvsmlp import backend, storage
from cnnvsmlp.config import RunSpec, TrainConfig
from cnnvsmlp.data.store import load_split, read_metadata
from cnnvsmlp.errors import UserError
from cnnvsmlp.models import build_model
from cnnvsmlp.outputs import claim_dir, write_atomically
from cnnvsmlp.records import Epoch, Hardware, TrainResult

# What train() writes into its folder; anything else there is the user's and stops it.
OUTPUTS = {"model.keras", "checkpoints", "state", "history.csv", "tensorboard", "train.json"}
MIRRORED = ("checkpoints", "state", "tensorboard")
STATE_NAME = re.compile(r"^epoch-(\d{2,4})\.json$")
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: the model is not worth keeping."""


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend and make its ops deterministic."""
    backend.make_deterministic(seed)


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """The optimizer a config names, at its learning rate or the Keras default."""
    optimizer = keras.optimizers.get(config.optimizer)
    if config.learning_rate is not None:
        optimizer.learning_rate = config.learning_rate
    return optimizer


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the training images in an epoch (0-based): new each epoch, fixed by the seed."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training when the running loss is NaN or infinite, naming where."""

    def __init__(self, run: RunSpec, epoch: int, steps_per_check: int) -> None:
        super().__init__()
        self.run, self.epoch, self.steps_per_check = run, epoch, steps_per_check

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:  # noqa: D102
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            every = (
                f" (checked every {self.steps_per_check} steps)" if self.steps_per_check > 1 else ""
            )
            raise TrainingDiverged(
                f"{self.run.run_id}: loss became {float(loss)} in epoch {self.epoch + 1} by step "
                f"{batch + 1}{every}; lower train.learning_rate or check the data"
            )


def _rng_variables(model: keras.Model) -> list:
    """The model's random generator states (Dropout's), which its weights do not include."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def checkpoint_path(out: Path, epoch: int) -> Path:
    """The checkpoint of an epoch (1-based)."""
    return out / "checkpoints" / f"epoch-{epoch:02d}.keras"


def state_path(out: Path, epoch: int) -> Path:
    """The state file that marks an epoch (1-based) complete."""
    return out / "state" / f"epoch-{epoch:02d}.json"


def save_epoch(out: Path, model: keras.Model, history: list[Epoch]) -> None:
    """Write the epoch's checkpoint, then its state file: the epoch is complete once both are."""
    epoch = history[-1].epoch
    ckpt = checkpoint_path(out, epoch)
    ckpt.parent.mkdir(exist_ok=True)
    write_atomically(ckpt, model.save)  # the partial name keeps ``.keras``, which Keras needs
    state = {
        "epoch": epoch,
        "checkpoint": ckpt.relative_to(out).as_posix(),
        "checkpoint_bytes": ckpt.stat().st_size,
        "history": [e.model_dump() for e in history],
        "rng": [v.numpy().tolist() for v in _rng_variables(model)],  # in layer order
    }
    path = state_path(out, epoch)
    path.parent.mkdir(exist_ok=True)
    write_atomically(path, lambda p: p.write_text(json.dumps(state, indent=1) + "\n"))
    write_atomically(out / "history.csv", lambda p: p.write_text(history_csv(history)))


def history_csv(history: list[Epoch]) -> str:
    """The history as CSV: one row per epoch, 0-based ``epoch`` as Keras' CSVLogger writes it."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["epoch", *METRICS, "time_s"])
    for e in history:
        writer.writerow([e.epoch - 1, *(getattr(e, k) for k in METRICS), e.time_s])
    return buf.getvalue()


def latest_state(out: Path) -> dict | None:
    """The newest complete epoch's state in ``out``, or None when no epoch is complete.

    A state file whose checkpoint is missing or of another size (a copy cut
    short), or that names another file, does not count; an older complete
    one is used instead.
    """
    folder = out / "state"
    if not folder.is_dir():
        return None
    found = sorted(
        (int(m.group(1)), p) for p in folder.iterdir() if (m := STATE_NAME.match(p.name))
    )
    for epoch, path in reversed(found):
        try:
            state = json.loads(path.read_text())
            ckpt = checkpoint_path(
                out, epoch
            )  # never a path the file names: it may come from a bucket
            if (
                state["epoch"] == epoch
                and state["checkpoint"] == ckpt.relative_to(out).as_posix()
                and ckpt.stat().st_size == state["checkpoint_bytes"]
            ):
                return state
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def restore(out: Path, model: keras.Model, state: dict) -> list[Epoch]:
    """Load an epoch's weights, optimizer and random state into ``model``; return its history."""
    model.optimizer.build(model.trainable_variables)
    model.load_weights(out / state["checkpoint"])
    for v, value in zip(_rng_variables(model), state["rng"], strict=True):
        v.assign(np.asarray(value, dtype=v.dtype))
    return [Epoch(**e) for e in state["history"]]


def mirror_epoch(out: Path, dest: str) -> None:
    """Copy the outputs to ``dest``, the state files last so one marks a whole epoch there too."""
    storage.mirror_dir(out, dest, only={"checkpoints", "tensorboard"})
    storage.mirror_dir(out, dest, only={"state"})


def fetch_state(out: Path, src: str) -> int:
    """Bring back what an earlier attempt mirrored to ``src``, unless ``out`` has its own state.

    Returns:
        The epochs that the newest complete state had finished (0 when none).
    """
    if latest_state(out) is None:
        for name in MIRRORED:
            storage.fetch_dir(f"{src.rstrip('/')}/{name}", out / name)
    state = latest_state(out)
    return state["epoch"] if state else 0


def read_history(path: Path) -> list[Epoch]:
    """Read ``history.csv``; a re-run epoch keeps its last row."""
    if not path.exists():
        return []
    rows: dict[int, Epoch] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            epoch = int(row["epoch"]) + 1
            rows[epoch] = Epoch(epoch=epoch, **{k: float(row[k]) for k in (*METRICS, "time_s")})
    return [rows[e] for e in sorted(rows)]


def train(
    data_dir: str | os.PathLike,
    run: RunSpec,
    config: TrainConfig,
    out_dir: str | os.PathLike,
    verbose: int = 2,
    resume_uri: str | None = None,
) -> TrainResult:
    """Train one variant, going on from the newest complete epoch an earlier attempt left.

    Args:
        data_dir: a data set written by :func:`cnnvsmlp.data.store.write_dataset`.
        run: the variant and the seed.
        config: epochs, batch size, optimizer and execution settings.
        out_dir: folder for the model, checkpoints, logs and ``train.json``;
            empty, or holding an earlier attempt's outputs.
        verbose: Keras' fit verbosity.
        resume_uri: a ``gs://`` prefix or folder that mirrors ``out_dir``
            after every epoch; what an earlier attempt left there is fetched
            first, so training goes on from its last finished epoch.

    Returns:
        The training record, also written to ``out_dir/train.json``.

    Raises:
        TrainingDiverged: the loss became NaN or infinite.
        UserError: ``out_dir`` holds files this project did not write.
    """
    out = claim_dir(out_dir, OUTPUTS, "training output")
    meta = read_metadata(data_dir)

    # Data
    x_train, y_train = load_split(data_dir, "train")
    x_val, y_val = load_split(data_dir, "validation")

    # Model
    make_deterministic(run.seed)
    model = build_model(run.variant, len(meta["classes"]))
    model.compile(
        optimizer=make_optimizer(config),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=config.steps_per_execution,
    )

    # Resume
    if resume_uri:
        fetch_state(out, resume_uri)
    state = latest_state(out)
    history = restore(out, model, state) if state else []
    done_before = len(history)
    if done_before > config.epochs:
        raise UserError(
            f"{out}: holds a training of {done_before} epochs, more than the {config.epochs} "
            "asked for; use a new folder"
        )

    # Train, one epoch per fit so every epoch gets its own order and a whole snapshot.
    tensorboard = backend.tensorboard_callback(out / "tensorboard")
    for epoch in range(done_before, config.epochs):
        order = epoch_order(run.seed, epoch, len(x_train))
        start = time.perf_counter()
        fit = model.fit(
            x_train[order],
            y_train[order],
            batch_size=config.batch_size,
            initial_epoch=epoch,
            epochs=epoch + 1,
            validation_data=(x_val, y_val),
            validation_batch_size=config.validation_batch_size,
            shuffle=False,
            callbacks=[StopOnNonFinite(run, epoch, config.steps_per_execution), tensorboard],
            verbose=verbose,
        )
        seconds = time.perf_counter() - start
        metrics = {k: float(fit.history[k][-1]) for k in METRICS}
        if not all(math.isfinite(v) for v in metrics.values()):
            raise TrainingDiverged(
                f"{run.run_id}: epoch {epoch + 1} ended with non-finite metrics {metrics}; "
                "lower train.learning_rate or check the data"
            )
        history.append(Epoch(epoch=epoch + 1, **metrics, time_s=seconds))
        save_epoch(out, model, history)
        if resume_uri:
            mirror_epoch(out, resume_uri)

    last = checkpoint_path(out, config.epochs)
    write_atomically(out / "model.keras", lambda p: shutil.copyfile(last, p))

    new_epochs = history[done_before:]
    train_time = float(sum(e.time_s for e in new_epochs))
    # Throughput over every epoch of the history: a task retried after its
    # last epoch trains none itself.
    all_time = float(sum(e.time_s for e in history))
    result = TrainResult(
        run=run,
        dataset=meta["dataset"],
        train=config,
        history=history,
        params=int(model.count_params()),
        n_train=len(x_train),
        n_validation=len(x_val),
        train_time_s=train_time,
        train_images_per_s=len(x_train) * len(history) / all_time if all_time > 0 else 0.0,
        resumed_from_epoch=done_before,
        hardware=Hardware.detect(),
    )
    result.write(out / "train.json")
    return result
