"""Train one model variant on a prepared data set, one ``fit`` per epoch, resumable.

Image order and Dropout masks depend only on seed and epoch: a resume trains the same weights.
Adam's update is fused where that gives Keras' weights to the bit (docs/performance.md).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time

import keras
import numpy as np
from keras import ops

from cnnvsmlp import backend, progress
from cnnvsmlp import training_files as files
from cnnvsmlp.config import RunSpec, TrainConfig
from cnnvsmlp.data.store import load_split
from cnnvsmlp.errors import UserError
from cnnvsmlp.models import build_model
from cnnvsmlp.records import EarlyStop, Epoch, Hardware, TrainResult
from cnnvsmlp.resume import Training, rng_variables

STEP_EVERY_S = 1.0  # seconds between two ``step`` progress events of an epoch, at least

_log = logging.getLogger(__name__)

NO_FMA_FLAG = "--xla_cpu_max_isa=AVX"  # XLA's CPU code kept to AVX, which has no fused multiply-add
FUSE_MIN_SIZE = 65536  # smaller variables keep Keras' ops: a fused call costs more than it saves


def _fused_step():
    """The XLA-compiled update: Keras' ``Adam.update_step`` after its scalars, op for op."""
    import tensorflow as tf

    @tf.function(jit_compile=True, autograph=False)
    def step(variable, m, v, gradient, alpha, one_minus_beta_1, one_minus_beta_2, epsilon):
        m.assign_add(tf.multiply(tf.subtract(gradient, m), one_minus_beta_1))
        v.assign_add(tf.multiply(tf.subtract(tf.square(gradient), v), one_minus_beta_2))
        variable.assign_sub(tf.divide(tf.multiply(m, alpha), tf.add(tf.sqrt(v), epsilon)))

    return step


@functools.cache
def fused_is_exact() -> bool:
    """Whether the update, XLA's first compilation made without FMA, rounds as TensorFlow's."""
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        return False
    before = os.environ.get("XLA_FLAGS")
    os.environ["XLA_FLAGS"] = f"{before or ''} {NO_FMA_FLAG}".strip()
    try:
        rng = np.random.default_rng(0)
        values = [rng.standard_normal(4096).astype("float32") for _ in range(4)]
        values[2] = np.abs(values[2])  # the second moment is never negative
        gradient = tf.constant(values[3])
        scalars = [tf.constant(x, tf.float32) for x in (1e-3, 1 - 0.9, 1 - 0.999, 1e-7)]
        results = []
        fused = _fused_step()
        for step in (fused, fused.python_function):
            state = [tf.Variable(x) for x in values[:3]]
            step(*state, gradient, *scalars)
            results.append([s.numpy() for s in state])
        exact = all(np.array_equal(a, b) for a, b in zip(*results, strict=True))
    except Exception as err:  # noqa: BLE001 - no XLA here: Keras' own update is used
        _log.debug("fused Adam update unavailable: %s", err)
        return False
    finally:
        if before is None:
            os.environ.pop("XLA_FLAGS", None)
        else:
            os.environ["XLA_FLAGS"] = before
    if not exact:
        _log.debug("fused Adam update rounds differently here; Keras' own update is used")
    return exact


def _update_step(self, fused, gradient, variable, learning_rate):
    """``keras.optimizers.Adam.update_step`` (Keras 3) with the element-wise part fused."""
    if math.prod(variable.shape) < FUSE_MIN_SIZE:
        return keras.optimizers.Adam.update_step(self, gradient, variable, learning_rate)

    lr = ops.cast(learning_rate, variable.dtype)
    gradient = ops.cast(gradient, variable.dtype)
    local_step = ops.cast(self.iterations + 1, variable.dtype)
    beta_1_power = ops.power(ops.cast(self.beta_1, variable.dtype), local_step)
    beta_2_power = ops.power(ops.cast(self.beta_2, variable.dtype), local_step)
    index = self._get_variable_index(variable)
    alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
    # Keras multiplies by the Python floats 1 - beta and adds epsilon, each
    # converted to the variable's dtype: the same constants here.
    constants = (1 - self.beta_1, 1 - self.beta_2, self.epsilon)
    state = (variable, self._momentums[index], self._velocities[index])
    fused(
        *(x.value if isinstance(x, keras.Variable) else x for x in state),  # the tf.Variables
        gradient,
        alpha,
        *(ops.convert_to_tensor(c, variable.dtype) for c in constants),
    )


def fuse_updates(optimizer):
    """``optimizer`` (not yet used) with the fused update where it gives Keras' weights exactly."""
    if (
        type(optimizer) is keras.optimizers.Adam
        and not optimizer.amsgrad
        and keras.backend.backend() == "tensorflow"
        and fused_is_exact()
    ):
        optimizer.update_step = functools.partial(_update_step, optimizer, _fused_step())
    return optimizer


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: the model is not worth keeping."""


def initial_model(run: RunSpec, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """The uncompiled model before training: weights from the init seed, dropout from its own."""
    dropout = []
    if run.seed_of("dropout") != run.seed_of("init"):
        backend.make_deterministic(run.seed_of("dropout"))
        dropout = rng_variables(build_model(run.variant, input_shape, num_classes))
    backend.make_deterministic(run.seed_of("init"))
    model = build_model(run.variant, input_shape, num_classes)
    for mine, theirs in zip(rng_variables(model), dropout, strict=False):
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
        self.diverged: str | None = None  # why the training stopped
        self._last = -math.inf

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:  # noqa: D102
        if not logs or "loss" not in logs or self.diverged:
            return
        loss = float(logs["loss"])
        if not math.isfinite(loss):
            self.diverged = f"loss became {loss} in epoch {self.epoch} by step {batch + 1}"
            self.model.stop_training = True
            return
        now = time.monotonic()
        if now - self._last < STEP_EVERY_S:
            return
        self._last = now
        steps = self.params.get("steps")
        # Keras names the last step of a steps_per_execution chunk, which can pass the epoch's end.
        step = min(batch + 1, steps) if steps else batch + 1
        fields = {"epoch": self.epoch, "epochs": self.epochs, "step": step, "steps": steps}
        fields |= {"loss": loss, "accuracy": float(logs.get("accuracy", math.nan))}
        text = "epoch {epoch}/{epochs} step {step}/{steps} loss {loss:.4f} accuracy {accuracy:.4f}"
        progress.report("step", self.run.run_id, text.format(**fields), **fields)


def train(
    data_dir: str | os.PathLike,
    run: RunSpec,
    config: TrainConfig,
    out_dir: str | os.PathLike,
    verbose: int = 0,
    resume_uri: str | None = None,
    store: str | None = None,
) -> TrainResult:
    """Train one variant into ``out_dir``, or reuse a finished training, or resume a stopped one."""
    hardware = Hardware.detect(memo=files.machine_memo(store))
    fitting = _Fitting.open(data_dir, run, config, out_dir, hardware, store, resume_uri)
    with fitting.writing():
        return fitting.reuse() or fitting.fit(data_dir, verbose)


class _Fitting(Training):
    """A training fitted one epoch at a time, from its newest trusted state to the end."""

    def fit(self, data_dir: str | os.PathLike, verbose: int) -> TrainResult:
        """Train on ``data_dir``'s splits from the newest trusted epoch, and finish the training."""
        self.data = (*load_split(data_dir, "train"), *load_split(data_dir, "validation"))
        self.verbose, epochs = verbose, self.config.epochs
        model, history = self.start(self.fresh)
        done_before = len(history)
        tensorboard = backend.tensorboard_callback(self.out / "tensorboard")
        text = f"training epochs {done_before + 1}..{epochs} of {len(self.data[0])} images"
        progress.report("start", self.run.run_id, text, epoch=done_before + 1, epochs=epochs)
        for epoch in range(done_before + 1, epochs + 1):
            if (decision := self.decision(history)) and decision.stop:
                break  # a resumed training that had stopped already
            history.append(row := self.fit_epoch(model, epoch, tensorboard))
            self.save_epoch(model, history, (d := self.decision(history)) and d.best_epoch)
            metrics = " ".join(f"{k} {getattr(row, k):.4f}" for k in files.METRICS)
            self.report("epoch", row, f"epoch {epoch}/{epochs} {metrics}", row.time_s)
        return self.end(model, history, done_before)

    def fresh(self) -> keras.Model:
        """The compiled model before training."""
        model = initial_model(self.run, tuple(self.meta["image_shape"]), len(self.meta["classes"]))
        model.compile(
            optimizer=make_optimizer(self.config),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=self.config.steps_per_execution,
        )
        return model

    def decision(self, history: list[Epoch]) -> files.StopDecision | None:
        """What early stopping makes of the epochs so far; None when the config has none."""
        rule = self.config.early_stopping
        return rule and files.decide([e.val_loss for e in history], rule, self.config.epochs)

    def fit_epoch(self, model: keras.Model, epoch: int, tensorboard: keras.callbacks.Callback):
        """Train epoch ``epoch`` (1-based) in the seed's order of the images; its history row."""
        run, config = self.run, self.config
        x_train, y_train, x_val, y_val = self.data
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
            verbose=self.verbose,
        )
        seconds = time.perf_counter() - start
        why = steps.diverged
        if why and config.steps_per_execution > 1:
            why += f" (checked every {config.steps_per_execution} steps)"
        metrics = {} if why else {k: float(fit.history[k][-1]) for k in files.METRICS}
        if not why and not all(math.isfinite(v) for v in metrics.values()):
            why = f"epoch {epoch} ended with non-finite metrics {metrics}"
        if why:
            lower = "lower train.learning_rate or check the data"
            raise TrainingDiverged(f"{run.run_id}: {why}; {lower}")
        return Epoch(epoch=epoch, **metrics, time_s=seconds)

    def report(self, event: str, row: Epoch, text: str, seconds: float) -> None:
        """Report ``event`` with the metrics of the history's ``row``, and ``seconds``."""
        metrics = {k: getattr(row, k) for k in files.METRICS}
        fields = {"epoch": row.epoch, "epochs": self.config.epochs, "seconds": seconds}
        progress.report(event, self.run.run_id, f"{text} ({seconds:.1f} s)", **fields, **metrics)

    def end(self, model: keras.Model, history: list[Epoch], done_before: int) -> TrainResult:
        """Keep the best epoch's weights under early stopping, and write the finished training."""
        n_train, n_validation = len(self.data[0]), len(self.data[2])
        early_stop = None
        if (decision := self.decision(history)) is not None:
            if decision.best_epoch != len(history):
                model.load_weights(files.checkpoint_path(self.out, decision.best_epoch))
            early_stop = EarlyStop(
                stopped_epoch=len(history),
                best_epoch=decision.best_epoch,
                reason=decision.reason or "cap",
                capped_improving=decision.capped_improving,
            )
        train_time = float(sum(e.time_s for e in history[done_before:]))
        # Throughput over every epoch: a task retried after its last epoch trains none itself.
        all_time = float(sum(e.time_s for e in history))
        result = self.finish(
            model,
            TrainResult(
                run=self.run,
                dataset=self.meta["dataset"],
                train=self.config,
                history=history,
                params=int(model.count_params()),
                n_train=n_train,
                n_validation=n_validation,
                train_time_s=train_time,
                train_images_per_s=n_train * len(history) / all_time if all_time > 0 else 0.0,
                resumed_from_epoch=done_before,
                hardware=self.hardware,
                early_stop=early_stop,
            ),
        )
        last = history[-1]
        stopped = f", best epoch {early_stop.best_epoch} kept" if early_stop else ""
        text = f"done: {last.epoch} epochs{stopped}, val_accuracy {last.val_accuracy:.4f}"
        self.report("done", last, text, train_time)
        return result
