"""Train one model variant on a prepared data set.

The output folder of a finished training holds:

- ``model.keras``: the trained model in Keras' native format, without its
  optimizer (the inference model);
- ``history.csv``: loss and accuracy, train and validation, and seconds per
  epoch, numbered from 1;
- ``tensorboard/``: TensorBoard logs;
- ``train.json``: the :class:`~cnnvsmlp.records.TrainResult`;
- ``finished.json``: the marker that these files make one finished training.

With ``train.early_stopping`` set, training ends once validation loss has
not improved for ``patience`` epochs (:func:`cnnvsmlp.efficiency.stopping.decide`,
after every epoch), ``train.epochs`` being the cap, and ``model.keras`` holds
the best epoch's weights; ``train.json`` says where it stopped
(:class:`~cnnvsmlp.records.EarlyStop`).

While it runs it also holds the newest complete epoch's checkpoint and state
(``checkpoints/``, ``state/``), and with early stopping the best epoch's
checkpoint, kept after the end with ``train.keep_checkpoints``.
:mod:`cnnvsmlp.resume` owns those files: a task that restarts in the same
folder, or fetches them from ``resume_uri``, goes on from the newest complete
epoch, and one whose training key matches a finished training reuses it.
Every epoch's order of the training images and every Dropout mask depend only
on the seed and the epoch, so a resumed training ends with the same weights as
an uninterrupted one.

Progress goes to the ``cnnvsmlp.progress`` logger (:mod:`cnnvsmlp.progress`).
"""

from __future__ import annotations

import math
import os
import time

import keras
import numpy as np

from cnnvsmlp import backend, progress
from cnnvsmlp.adam import fuse_updates
from cnnvsmlp.config import RunSpec, TrainConfig
from cnnvsmlp.data.store import load_split, read_metadata
from cnnvsmlp.efficiency.stopping import StopDecision, decide
from cnnvsmlp.errors import UserError
from cnnvsmlp.models import build_model
from cnnvsmlp.outputs import claim_dir
from cnnvsmlp.records import EarlyStop, Epoch, Hardware, TrainResult
from cnnvsmlp.resume import (
    METRICS,
    OUTPUTS,
    Training,
    machine_memo,
    open_training,
    rng_variables,
)

STEP_EVERY_S = 1.0
"""Seconds between two ``step`` progress events of an epoch, at least."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: the model is not worth keeping."""


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend and make its ops deterministic."""
    backend.make_deterministic(seed)


def initial_model(run: RunSpec, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """The uncompiled model before training: weights from the init seed, dropout from its own."""
    dropout = []
    if run.seed_of("dropout") != run.seed_of("init"):
        make_deterministic(run.seed_of("dropout"))
        dropout = rng_variables(build_model(run.variant, input_shape, num_classes))
    make_deterministic(run.seed_of("init"))
    model = build_model(run.variant, input_shape, num_classes)
    for mine, theirs in zip(rng_variables(model), dropout, strict=False):
        mine.assign(theirs)  # dropout's generators as the dropout seed starts them
    return model


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """The optimizer a config names, at its learning rate or the Keras default.

    Adam's per-variable update runs fused where that gives Keras' weights to
    the bit (:mod:`cnnvsmlp.adam`).
    """
    optimizer = keras.optimizers.get(config.optimizer)
    if config.learning_rate is not None:
        optimizer.learning_rate = config.learning_rate
    return fuse_updates(optimizer)  # Adam's update in one pass, the same weights


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the training images in an epoch (0-based): new each epoch, fixed by the seed."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class Progress(keras.callbacks.Callback):
    """Stops on a non-finite running loss, and reports it at most every :data:`STEP_EVERY_S`.

    Keras calls it in a thread beside the training loop (``async_safe``), so
    the steps do not wait for it to read the loss, which it sees every
    ``steps_per_execution`` steps.
    """

    async_safe = True

    def __init__(self, run: RunSpec, epoch: int, epochs: int) -> None:
        super().__init__()
        self.run, self.epoch, self.epochs = run, epoch, epochs
        self.diverged: tuple[int, float] | None = None
        self._last = -math.inf

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:  # noqa: D102
        if not logs or "loss" not in logs or self.diverged:
            return
        loss = float(logs["loss"])
        if not math.isfinite(loss):
            self.diverged = (batch + 1, loss)
            self.model.stop_training = True
            return
        now = time.monotonic()
        if now - self._last < STEP_EVERY_S:
            return
        self._last = now
        accuracy = float(logs.get("accuracy", math.nan))
        steps = self.params.get("steps")
        # Keras names the last step of a steps_per_execution chunk, which can pass the epoch's end.
        step = min(batch + 1, steps) if steps else batch + 1
        progress.report(
            "step",
            self.run.run_id,
            f"epoch {self.epoch}/{self.epochs} step {step}/{steps} loss {loss:.4f} "
            f"accuracy {accuracy:.4f}",
            epoch=self.epoch,
            epochs=self.epochs,
            step=step,
            steps=steps,
            loss=loss,
            accuracy=accuracy,
        )


def stop_decision(history: list[Epoch], config: TrainConfig) -> StopDecision | None:
    """What early stopping makes of the epochs so far; None when the config has none."""
    if config.early_stopping is None:
        return None
    return decide([e.val_loss for e in history], config.early_stopping, config.epochs)


def train(
    data_dir: str | os.PathLike,
    run: RunSpec,
    config: TrainConfig,
    out_dir: str | os.PathLike,
    verbose: int = 0,
    resume_uri: str | None = None,
    origin: str | None = None,
    store: str | None = None,
) -> TrainResult:
    """Train one variant: reuse a finished training, or go on from the newest complete epoch.

    Args:
        data_dir: a data set written by :func:`cnnvsmlp.data.store.write_dataset`.
        run: the variant and the seed.
        config: epochs, batch size, optimizer and execution settings.
        out_dir: folder for the model, logs and ``train.json``; empty, or
            holding an earlier attempt's outputs.
        verbose: Keras' fit verbosity; progress goes to the
            ``cnnvsmlp.progress`` logger whatever it is.
        resume_uri: this training's ``gs://`` prefix or folder
            (``<resume_path>/<run id>/<training key>``): its state is mirrored
            there after every epoch, and a finished training or the state of
            an interrupted one found there is reused or resumed.
        origin: who trains, recorded for a later reuse; by default ``out_dir``.
        store: instead of ``resume_uri``, the scope that holds trainings by key
            (:meth:`~cnnvsmlp.config.ExperimentConfig.resume_path`): this
            training's ``resume_uri`` is then ``<store>/<run id>/<training key>``.

    Returns:
        The training record, also written to ``out_dir/train.json``.

    Raises:
        TrainingDiverged: the loss became NaN or infinite.
        UserError: ``out_dir`` holds files this project did not write.
        cnnvsmlp.resume.ResumeError: a training state can be neither trusted
            nor set aside.
    """
    out = claim_dir(out_dir, OUTPUTS, "training output")
    meta = read_metadata(data_dir)
    hardware = Hardware.detect(memo=machine_memo(store))
    state = open_training(
        out, data_dir, run, config, hardware, store=store, resume_uri=resume_uri, origin=origin
    )
    with state.writing():
        return state.reuse() or _fit(state, data_dir, meta, hardware, verbose)


def _fit(
    state: Training, data_dir: str | os.PathLike, meta: dict, hardware: Hardware, verbose: int
) -> TrainResult:
    """Train ``state``'s run from its newest trusted epoch to the end, and finish it."""
    run, config, out = state.run, state.config, state.out

    # Data
    x_train, y_train = load_split(data_dir, "train")
    x_val, y_val = load_split(data_dir, "validation")

    # Model
    def fresh() -> keras.Model:
        model = initial_model(run, tuple(meta["image_shape"]), len(meta["classes"]))
        model.compile(
            optimizer=make_optimizer(config),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=config.steps_per_execution,
        )
        return model

    model, history = state.start(fresh)
    done_before = len(history)

    # Train, one epoch per fit so every epoch gets its own order and a whole snapshot.
    tensorboard = backend.tensorboard_callback(out / "tensorboard")
    progress.report(
        "start",
        run.run_id,
        f"training epochs {done_before + 1}..{config.epochs} of {len(x_train)} images",
        epoch=done_before + 1,
        epochs=config.epochs,
    )
    for epoch in range(done_before + 1, config.epochs + 1):
        decision = stop_decision(history, config)
        if decision is not None and decision.stop:
            break  # a resumed training that had stopped already
        order = epoch_order(run.seed_of("order"), epoch - 1, len(x_train))
        steps = Progress(run, epoch, config.epochs)
        start = time.perf_counter()
        fit = model.fit(
            x_train[order],
            y_train[order],
            batch_size=config.batch_size,
            initial_epoch=epoch - 1,
            epochs=epoch,
            validation_data=(x_val, y_val),
            validation_batch_size=config.validation_batch_size,
            shuffle=False,
            callbacks=[steps, tensorboard],
            verbose=verbose,
        )
        seconds = time.perf_counter() - start
        if steps.diverged:
            step, loss = steps.diverged
            every = (
                f" (checked every {config.steps_per_execution} steps)"
                if config.steps_per_execution > 1
                else ""
            )
            raise TrainingDiverged(
                f"{run.run_id}: loss became {loss} in epoch {epoch} by step {step}{every}; "
                "lower train.learning_rate or check the data"
            )
        metrics = {k: float(fit.history[k][-1]) for k in METRICS}
        if not all(math.isfinite(v) for v in metrics.values()):
            raise TrainingDiverged(
                f"{run.run_id}: epoch {epoch} ended with non-finite metrics {metrics}; "
                "lower train.learning_rate or check the data"
            )
        history.append(Epoch(epoch=epoch, **metrics, time_s=seconds))
        decision = stop_decision(history, config)
        state.save_epoch(model, history, decision.best_epoch if decision else None)
        progress.report(
            "epoch",
            run.run_id,
            f"epoch {epoch}/{config.epochs} loss {metrics['loss']:.4f} accuracy "
            f"{metrics['accuracy']:.4f} val_loss {metrics['val_loss']:.4f} val_accuracy "
            f"{metrics['val_accuracy']:.4f} ({seconds:.1f} s)",
            epoch=epoch,
            epochs=config.epochs,
            **metrics,
            seconds=seconds,
        )

    decision = stop_decision(history, config)
    early_stop = None
    if decision is not None:
        state.restore_best(model, len(history), decision.best_epoch)
        early_stop = EarlyStop(
            stopped_epoch=len(history),
            best_epoch=decision.best_epoch,
            reason=decision.reason or "cap",
            capped_improving=decision.capped_improving,
        )
    new_epochs = history[done_before:]
    train_time = float(sum(e.time_s for e in new_epochs))
    # Throughput over every epoch of the history: a task retried after its
    # last epoch trains none itself.
    all_time = float(sum(e.time_s for e in history))
    result = state.finish(
        model,
        TrainResult(
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
            hardware=hardware,
            early_stop=early_stop,
        ),
    )
    last = history[-1]
    stopped = f", best epoch {early_stop.best_epoch} kept" if early_stop else ""
    progress.report(
        "done",
        run.run_id,
        f"done: {len(history)} epochs{stopped}, val_accuracy {last.val_accuracy:.4f} "
        f"({train_time:.1f} s)",
        epoch=len(history),
        epochs=config.epochs,
        **{k: getattr(last, k) for k in METRICS},
        seconds=train_time,
    )
    return result
