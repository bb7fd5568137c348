"""Train one model variant on a prepared data set.

The output folder of a run holds:

- ``model.keras``: the trained model in Keras' native format;
- ``checkpoints/epoch-NN.keras``: the model after each epoch;
- ``backup/``: Keras' BackupAndRestore state, from which a restarted run resumes;
- ``history.csv``: loss and accuracy, train and validation, and seconds per epoch;
- ``tensorboard/``: TensorBoard logs;
- ``train.json``: the :class:`~cnnvsmlp.records.TrainResult`.

A task that restarts in the same folder resumes from ``backup/``. On a
cluster a retried task starts in a new, empty folder, so training can also
mirror its state after every epoch to a ``resume_uri`` (a ``gs://`` prefix)
and fetch it back before it starts. There, ``state/epoch-NNN/`` holds
``backup/`` and ``history.csv`` as they were after epoch NNN, and
``state/LATEST`` names the newest complete one: it is written only once that
epoch's files are all up, so a task killed while uploading leaves the
previous epoch's state whole. ``files/`` mirrors the checkpoints and the
TensorBoard logs.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import keras
import tensorflow as tf

from cnnvsmlp import storage
from cnnvsmlp.config import RunSpec, TrainConfig
from cnnvsmlp.data import load_split, read_metadata
from cnnvsmlp.models import build_model
from cnnvsmlp.records import Epoch, Hardware, TrainResult


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow's ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """The optimizer a config names, at its learning rate or the Keras default."""
    optimizer = keras.optimizers.get(config.optimizer)
    if config.learning_rate is not None:
        optimizer.learning_rate = config.learning_rate
    return optimizer


class EpochTimer(keras.callbacks.Callback):
    """Adds ``time_s``, the wall time of the epoch, to the epoch's logs."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:  # noqa: D102
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:  # noqa: D102
        if logs is not None:
            logs["time_s"] = time.perf_counter() - self._start


STATE = {"backup", "history.csv"}  # what resuming needs, copied as one snapshot per epoch
FILES = {"checkpoints", "tensorboard"}  # the rest of the output, copied as it grows


class Mirror(keras.callbacks.Callback):
    """Copies the training state to ``dest`` after every epoch, once the other callbacks wrote."""

    def __init__(self, out: Path, dest: str) -> None:
        super().__init__()
        self.out, self.dest = out, dest.rstrip("/")
        self.latest: str | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:  # noqa: D102
        self.latest = storage.read_text(f"{self.dest}/state/LATEST")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:  # noqa: D102
        storage.mirror_dir(self.out, f"{self.dest}/files", only=FILES)
        snapshot = f"epoch-{epoch + 1:03d}"
        storage.mirror_dir(self.out, f"{self.dest}/state/{snapshot}", only=STATE)
        storage.write_text(f"{self.dest}/state/LATEST", snapshot)
        if self.latest and self.latest != snapshot:
            storage.remove_dir(f"{self.dest}/state/{self.latest}")
        self.latest = snapshot


def fetch_state(out: Path, src: str) -> int:
    """Bring back the newest complete state mirrored to ``src``, unless ``out`` has its own.

    Returns:
        The epochs that state had finished (0 when there was none).
    """
    src = src.rstrip("/")
    if (out / "backup").is_dir():
        return 0  # the same folder survived: its own state is the newest
    snapshot = storage.read_text(f"{src}/state/LATEST")
    if not snapshot:
        return 0
    storage.fetch_dir(f"{src}/files", out)
    storage.fetch_dir(f"{src}/state/{snapshot}", out)
    return int(snapshot.removeprefix("epoch-"))


def read_history(path: Path) -> list[Epoch]:
    """Read ``history.csv``; a re-run epoch (after a crash) keeps its last row."""
    if not path.exists():
        return []
    rows: dict[int, Epoch] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            epoch = int(row["epoch"]) + 1
            rows[epoch] = Epoch(
                epoch=epoch,
                **{
                    k: float(row[k])
                    for k in ("loss", "accuracy", "val_loss", "val_accuracy", "time_s")
                },
            )
    return [rows[e] for e in sorted(rows)]


def train(
    data_dir: str | os.PathLike,
    run: RunSpec,
    config: TrainConfig,
    out_dir: str | os.PathLike,
    verbose: int = 2,
    resume_uri: str | None = None,
) -> TrainResult:
    """Train one variant, resuming from ``out_dir/backup`` when a previous attempt stopped.

    Args:
        data_dir: a data set written by :func:`cnnvsmlp.data.write_dataset`.
        run: the variant and the seed.
        config: epochs, batch size and optimizer.
        out_dir: folder for the model, checkpoints, logs and ``train.json``.
        verbose: Keras' fit verbosity.
        resume_uri: a ``gs://`` prefix or folder that mirrors ``out_dir``
            after every epoch; what an earlier attempt left there is fetched
            first, so training goes on from its last finished epoch.

    Returns:
        The training record, also written to ``out_dir/train.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
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
    )

    # Train
    if resume_uri:
        fetch_state(out, resume_uri)
    history_csv = out / "history.csv"
    done_before = len(read_history(history_csv))
    (out / "checkpoints").mkdir(exist_ok=True)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(out / "backup"), delete_checkpoint=False),
        EpochTimer(),
        keras.callbacks.CSVLogger(str(history_csv), append=True),
        keras.callbacks.ModelCheckpoint(str(out / "checkpoints" / "epoch-{epoch:02d}.keras")),
        keras.callbacks.TensorBoard(str(out / "tensorboard")),
    ]
    if resume_uri:
        callbacks.append(Mirror(out, resume_uri))
    model.fit(
        x_train,
        y_train,
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation_data=(x_val, y_val),
        shuffle=True,
        callbacks=callbacks,
        verbose=verbose,
    )
    model.save(out / "model.keras")

    history = read_history(history_csv)
    new_epochs = [e for e in history if e.epoch > done_before]
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
