"""Adam's fused update (cnnvsmlp.train): Keras' weights and moments to the bit, or Keras' own."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from cnnvsmlp import train as adam
from cnnvsmlp.config import TrainConfig
from cnnvsmlp.models import build_model
from cnnvsmlp.train import make_optimizer

X86 = platform.machine().lower() in ("x86_64", "amd64")


def _python(code: str) -> str:
    """The last line ``code`` prints in a fresh interpreter (XLA reads its flags once a process)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("XLA_FLAGS", None)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


TRAIN_BOTH = """
    import hashlib
    import keras, numpy as np, tensorflow as tf
    from cnnvsmlp import train as adam
    from cnnvsmlp.models import build_model

    def train(variant, fused):
        keras.utils.set_random_seed(0)
        tf.config.experimental.enable_op_determinism()
        model = build_model(variant, (28, 28, 1), 10)
        optimizer = keras.optimizers.Adam()
        if fused:
            adam.fuse_updates(optimizer)
            assert "update_step" in vars(optimizer), "the fused update was not used"
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                      steps_per_execution=4)
        rng = np.random.default_rng(1)
        x = rng.random((8 * 32, 28, 28, 1), dtype=np.float32)
        y = rng.integers(0, 10, len(x))
        model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
        state = model.get_weights() + [v.numpy() for v in optimizer.variables]
        return hashlib.sha256(b"".join(a.tobytes() for a in state)).hexdigest()

    # The second fused training of a variant has variables of the same shapes
    # as the first's, which is gone by then.
    print(all(train(v, True) == train(v, False) == train(v, True) for v in ("mlp", "cnn-3conv-bn")))
"""


@pytest.mark.slow
@pytest.mark.skipif(not X86, reason="the no-FMA XLA flag is x86's")
def test_the_fused_update_trains_the_weights_and_moments_keras_adam_trains():
    # Two epochs of the MLP (its 3M- and 2M-weight kernels fused, biases not)
    # and of the batch-norm CNN: every weight, moving statistic, moment and
    # the step counter equal to the bit; twice in one process.
    assert _python(TRAIN_BOTH) == "True"


@pytest.mark.slow
@pytest.mark.skipif(not X86, reason="the no-FMA XLA flag is x86's")
def test_after_an_xla_compilation_with_fma_keras_update_is_kept():
    # XLA read its flags before the project could set them: the fused update
    # would round differently, so the optimizer stays Keras' own.
    out = _python(
        """
        import keras, tensorflow as tf
        tf.function(lambda a, b, c: a * b + c, jit_compile=True)(*[tf.ones(8)] * 3)
        from cnnvsmlp import train as adam
        optimizer = adam.fuse_updates(keras.optimizers.Adam())
        print(adam.fused_is_exact(), "update_step" in vars(optimizer))
        """
    )
    assert out == "False False"


@pytest.mark.slow
def test_the_check_leaves_the_process_environment_as_it_was(monkeypatch):
    # The environment id (cnnvsmlp.records) reads XLA_FLAGS: a training must not change it.
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/nonexistent")
    out = _python(
        """
        import os
        os.environ["XLA_FLAGS"] = "--xla_cpu_use_thunk_runtime=true"
        from cnnvsmlp import train as adam
        adam.fused_is_exact()
        print(os.environ["XLA_FLAGS"])
        """
    )
    assert out == "--xla_cpu_use_thunk_runtime=true"


def test_other_optimizers_and_amsgrad_keep_keras_update():
    for optimizer in (
        keras.optimizers.SGD(),
        keras.optimizers.RMSprop(),
        keras.optimizers.Adam(amsgrad=True),
    ):
        assert "update_step" not in vars(adam.fuse_updates(optimizer))


def test_a_checkpoint_of_the_fused_optimizer_loads_as_keras_adam(tmp_path):
    model = build_model("cnn", (28, 28, 1), 10)
    model.compile(
        optimizer=make_optimizer(TrainConfig(epochs=1, batch_size=32, optimizer="adam")),
        loss="sparse_categorical_crossentropy",
    )
    x = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    model.fit(x, np.arange(64) % 10, batch_size=32, verbose=0)
    model.save(tmp_path / "checkpoint.keras")
    loaded = keras.saving.load_model(tmp_path / "checkpoint.keras")
    assert type(loaded.optimizer) is keras.optimizers.Adam
    assert [v.numpy().tobytes() for v in loaded.optimizer.variables] == [
        v.numpy().tobytes() for v in model.optimizer.variables
    ]
