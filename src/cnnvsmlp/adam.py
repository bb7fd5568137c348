"""Keras' Adam with each large variable's update fused into one XLA pass, rounded as Keras rounds.

Where that cannot be shown to give Keras' weights to the bit, Keras' own update runs
(docs/performance.md).
"""

from __future__ import annotations

import functools
import logging
import math
import os

log = logging.getLogger(__name__)

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
    """Whether the fused update rounds as TensorFlow's ops do, in this process.

    Sets :data:`NO_FMA_FLAG` for XLA's first compilation (FMA would round once where
    TensorFlow rounds twice), then compares one update of 4,096 values.
    """
    import numpy as np
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
        log.debug("fused Adam update unavailable: %s", err)
        return False
    finally:
        if before is None:
            os.environ.pop("XLA_FLAGS", None)
        else:
            os.environ["XLA_FLAGS"] = before
    if not exact:
        log.debug("fused Adam update rounds differently here; Keras' own update is used")
    return exact


def _update_step(self, fused, gradient, variable, learning_rate):
    """``keras.optimizers.Adam.update_step`` (Keras 3) with the element-wise part fused."""
    import keras
    from keras import ops

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
    import keras

    if (
        type(optimizer) is keras.optimizers.Adam
        and not optimizer.amsgrad
        and keras.backend.backend() == "tensorflow"
        and fused_is_exact()
    ):
        optimizer.update_step = functools.partial(_update_step, optimizer, _fused_step())
    return optimizer
