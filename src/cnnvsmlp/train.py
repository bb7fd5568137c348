"""Train one model variant on a prepared data set, one ``fit`` per epoch, resumable.

Each epoch's image order and Dropout masks depend only on the seed and the epoch, so a
resumed training ends with the weights of an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import time

import keras
import numpy as np

from cnnvsmlp import backend, progress
from cnnvsmlp import training_files as files
from cnnvsmlp.adam import fuse_updates
from cnnvsmlp.backend import make_deterministic
from cnnvsmlp.config import RunSpec, TrainConfig
from cnnvsmlp.data.store import load_split, read_metadata
from cnnvsmlp.errors import UserError
from cnnvsmlp.models import build_model
from cnnvsmlp.outputs import claim_dir
from cnnvsmlp.records import EarlyStop, Epoch, Hardware, TrainResult
from cnnvsmlp.resume import Training, open_training
from cnnvsmlp.stopping import StopDecision, decide

STEP_EVERY_S = 1.0  # seconds between two ``step`` progress events of an epoch, at least


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: the model is not worth keeping."""


def initial_model(run: RunSpec, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """The uncompiled model before training: weights from the init seed, dropout from its own."""
    dropout = []
    if run.seed_of("dropout") != run.seed_of("init"):
        make_deterministic(run.seed_of("dropout"))
        dropout = files.rng_variables(build_model(run.variant, input_shape, num_classes))
    make_deterministic(run.seed_of("init"))
    model = build_model(run.variant, input_shape, num_classes)
    for mine, theirs in zip(files.rng_variables(model), dropout, strict=False):
        mine.assign(theirs)  # dropout's generators as the dropout seed starts them
    return model


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """The optimizer a config names, at its learning rate or the Keras default, Adam fused."""
    optimizer = keras.optimizers.get(config.optimizer)
    if config.learning_rate is not None:
        optimizer.learning_rate = config.learning_rate
    return fuse_updates(optimizer)  # Adam's update in one pass, the same weights


class Progress(keras.callbacks.Callback):
    """Stops on a non-finite running loss, and reports it at most every :data:`STEP_EVERY_S`."""

    async_safe = True  # Keras runs it beside the training loop, which does not wait for it

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
    """Train one variant into ``out_dir``, or reuse a finished training, or resume a stopped one."""
    out = claim_dir(out_dir, files.OUTPUTS, "training output")
    meta = read_metadata(data_dir)
    hardware = Hardware.detect(memo=files.machine_memo(store))
    state = open_training(
        out, meta, run, config, hardware, store=store, resume_uri=resume_uri, origin=origin
    )
    with state.writing():
        return state.reuse() or _fit(state, data_dir, meta, hardware, verbose)


def _fit(
    state: Training, data_dir: str | os.PathLike, meta: dict, hardware: Hardware, verbose: int
) -> TrainResult:
    """Train ``state``'s run from its newest trusted epoch to the end, and finish it."""
    run, config = state.run, state.config
    data = (*load_split(data_dir, "train"), *load_split(data_dir, "validation"))

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
    tensorboard = backend.tensorboard_callback(state.out / "tensorboard")
    progress.report(
        "start",
        run.run_id,
        f"training epochs {done_before + 1}..{config.epochs} of {len(data[0])} images",
        epoch=done_before + 1,
        epochs=config.epochs,
    )
    decision = stop_decision(history, config)
    for epoch in range(done_before + 1, config.epochs + 1):
        if decision is not None and decision.stop:
            break  # a resumed training that had stopped already
        history.append(_fit_epoch(model, run, config, epoch, data, tensorboard, verbose))
        decision = stop_decision(history, config)
        state.save_epoch(model, history, decision.best_epoch if decision else None)
        row = history[-1]
        metrics = " ".join(f"{k} {getattr(row, k):.4f}" for k in files.METRICS)
        text = f"epoch {epoch}/{config.epochs} {metrics} ({row.time_s:.1f} s)"
        _report("epoch", run, config, row, text, row.time_s)
    return _finish(state, model, history, decision, done_before, meta, hardware, data)


def _fit_epoch(
    model: keras.Model,
    run: RunSpec,
    config: TrainConfig,
    epoch: int,
    data: tuple[np.ndarray, ...],
    tensorboard: keras.callbacks.Callback,
    verbose: int,
) -> Epoch:
    """Train epoch ``epoch`` (1-based) in the seed's order of the images; its row of the history."""
    x_train, y_train, x_val, y_val = data
    # New each epoch, fixed by the seed.
    order = np.random.default_rng([run.seed_of("order"), epoch - 1]).permutation(len(x_train))
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
        every = config.steps_per_execution
        raise TrainingDiverged(
            f"{run.run_id}: loss became {loss} in epoch {epoch} by step {step}"
            f"{f' (checked every {every} steps)' if every > 1 else ''}; "
            "lower train.learning_rate or check the data"
        )
    metrics = {k: float(fit.history[k][-1]) for k in files.METRICS}
    if not all(math.isfinite(v) for v in metrics.values()):
        raise TrainingDiverged(
            f"{run.run_id}: epoch {epoch} ended with non-finite metrics {metrics}; "
            "lower train.learning_rate or check the data"
        )
    return Epoch(epoch=epoch, **metrics, time_s=seconds)


def _report(event: str, run: RunSpec, config: TrainConfig, row: Epoch, text: str, s: float) -> None:
    """Report ``event`` with the metrics of the history's row ``row`` and ``s`` seconds."""
    metrics = {k: getattr(row, k) for k in files.METRICS}
    progress.report(
        event, run.run_id, text, epoch=row.epoch, epochs=config.epochs, **metrics, seconds=s
    )


def _finish(
    state: Training,
    model: keras.Model,
    history: list[Epoch],
    decision: StopDecision | None,
    done_before: int,
    meta: dict,
    hardware: Hardware,
    data: tuple[np.ndarray, ...],
) -> TrainResult:
    """Keep the best epoch's weights under early stopping, and write the finished training."""
    run, config = state.run, state.config
    early_stop = None
    if decision is not None:
        if decision.best_epoch != len(history):
            model.load_weights(files.checkpoint_path(state.out, decision.best_epoch))
        early_stop = EarlyStop(
            stopped_epoch=len(history),
            best_epoch=decision.best_epoch,
            reason=decision.reason or "cap",
            capped_improving=decision.capped_improving,
        )
    train_time = float(sum(e.time_s for e in history[done_before:]))
    # Throughput over every epoch: a task retried after its last epoch trains none itself.
    all_time = float(sum(e.time_s for e in history))
    result = state.finish(
        model,
        TrainResult(
            run=run,
            dataset=meta["dataset"],
            train=config,
            history=history,
            params=int(model.count_params()),
            n_train=len(data[0]),
            n_validation=len(data[2]),
            train_time_s=train_time,
            train_images_per_s=len(data[0]) * len(history) / all_time if all_time > 0 else 0.0,
            resumed_from_epoch=done_before,
            hardware=hardware,
            early_stop=early_stop,
        ),
    )
    last = history[-1]
    stopped = f", best epoch {early_stop.best_epoch} kept" if early_stop else ""
    text = f"done: {last.epoch} epochs{stopped}, val_accuracy {last.val_accuracy:.4f}"
    _report("done", run, config, last, f"{text} ({train_time:.1f} s)", train_time)
    return result
