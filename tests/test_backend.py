"""The jax backend: trains and evaluates without TensorFlow, deterministically, and resumes exactly.

The test process runs Keras on TensorFlow, and Keras loads one backend per
process, so every jax training here runs in a child process, once per module:
its TensorFlow import is blocked, it trains through the training and
evaluation components, then twice more with ``train()`` (the same seed again,
and a copy stopped in epoch 3 that resumes), and the tests read what it wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from cnnvsmlp import backend
from cnnvsmlp.config import ConfigError, load_config
from cnnvsmlp.errors import UserError
from cnnvsmlp.records import EvalResult, TrainResult

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")

JAX_RUNS = textwrap.dedent(
    """
    import importlib.abc, json, shutil, sys
    from pathlib import Path

    class NoTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ImportError(f"{name} is blocked in this test")

    sys.meta_path.insert(0, NoTensorFlow())
    data, work = Path(sys.argv[1]), Path(sys.argv[2])

    from kfp import dsl
    from cnnvsmlp.config import RunSpec, load_config
    from cnnvsmlp_components import evaluate_model, train_model

    config = load_config(
        "fashion-mnist", ["train.backend=jax", "epochs=3", "train.keep_checkpoints=true"]
    )
    (work / "config.json").write_text(config.model_dump_json())
    run = RunSpec(variant="mlp", repeat=0, seed=3)
    assert "keras" not in sys.modules  # the component sets the backend before Keras loads
    model = dsl.Model(uri=str(work / "first"))
    train_model.python_func(
        config=dsl.Artifact(uri=str(work / "config.json")),
        run_json=run.model_dump_json(),
        job_id="job-1",
        dataset=dsl.Dataset(uri=str(data)),
        model=model,
    )
    evaluate_model.python_func(
        dataset=dsl.Dataset(uri=str(data)),
        model=model,
        metrics=dsl.Metrics(uri=str(work / "metrics")),
        classification=dsl.ClassificationMetrics(uri=str(work / "classification")),
        result=dsl.Artifact(uri=str(work / "eval.json")),
    )

    from cnnvsmlp.training_files import checkpoint_path, state_path
    from cnnvsmlp.train import train

    train(data, run, config.train, work / "again", verbose=0)
    resumed = work / "resumed"
    shutil.copytree(work / "first", resumed)
    for name in ("model.keras", "train.json", "finished.json"):
        (resumed / name).unlink()
    state_path(resumed, 3).unlink()
    checkpoint_path(resumed, 3).unlink()
    train(data, run, config.train, resumed, verbose=0)
    import keras
    print(json.dumps({"keras_backend": keras.backend.backend(),
                      "tensorflow_loaded": "tensorflow" in sys.modules}))
    """
)


@pytest.fixture(scope="module")
def jax_runs(small_fashion, tmp_path_factory) -> Path:
    """What the child process trained on the jax backend with TensorFlow blocked."""
    work = tmp_path_factory.mktemp("jax")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("KERAS_BACKEND", None)
    done = subprocess.run(
        [sys.executable, "-c", JAX_RUNS, str(small_fashion), str(work)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (work / "child.json").write_text(done.stdout.strip().splitlines()[-1])
    return work


def weights(model_file: Path) -> list[np.ndarray]:
    return [w.numpy() for w in keras.saving.load_model(model_file).weights]


def assert_same_weights(a: Path, b: Path) -> None:
    for x, y in zip(weights(a), weights(b), strict=True):
        np.testing.assert_array_equal(x, y)


def metrics(history) -> list[tuple]:
    return [(e.epoch, *(getattr(e, k) for k in METRICS)) for e in history]


@pytest.mark.slow
def test_jax_trains_and_evaluates_with_tensorflow_blocked(jax_runs):
    child = json.loads((jax_runs / "child.json").read_text())
    assert child == {"keras_backend": "jax", "tensorflow_loaded": False}
    trained = TrainResult.read(jax_runs / "first" / "train.json")
    assert trained.train.backend == "jax"
    assert [e.epoch for e in trained.history] == [1, 2, 3]
    scored = EvalResult.read(jax_runs / "eval.json")
    assert scored.n_test == 1200 and 0.5 < scored.accuracy <= 1.0


@pytest.mark.slow
def test_a_jax_run_records_its_backend_in_its_numerics(jax_runs):
    trained = TrainResult.read(jax_runs / "first" / "train.json")
    scored = EvalResult.read(jax_runs / "eval.json")
    for hardware in (trained.hardware, scored.hardware):
        assert hardware.backend == "jax"
        assert hardware.jax and hardware.keras == keras.__version__
        assert hardware.tensorflow == "" and hardware.onednn is None
        assert hardware.build["platform"] == "cpu"
        assert "jax" in hardware.numerics()
    assert trained.hardware.numerics() != _tensorflow_numerics(trained.hardware)


def _tensorflow_numerics(hardware) -> tuple:
    return hardware.model_copy(update={"backend": "tensorflow"}).numerics()


@pytest.mark.slow
def test_jax_writes_tensorboard_scalars_without_tensorflow(jax_runs):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    from tensorboard.util import tensor_util

    logs = EventMultiplexer().AddRunsFromDirectory(str(jax_runs / "first" / "tensorboard"))
    logs.Reload()
    assert set(logs.Runs()) == {"train", "validation"}
    trained = TrainResult.read(jax_runs / "first" / "train.json")
    for run, prefix in (("train", ""), ("validation", "val_")):
        loss = logs.Tensors(run, "epoch_loss")
        assert [e.step for e in loss] == [0, 1, 2]
        expected = [getattr(e, f"{prefix}loss") for e in trained.history]
        got = [float(tensor_util.make_ndarray(e.tensor_proto)) for e in loss]
        np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.slow
def test_the_same_seed_twice_gives_the_same_weights_on_jax_cpu(jax_runs):
    assert_same_weights(jax_runs / "first" / "model.keras", jax_runs / "again" / "model.keras")
    first = TrainResult.read(jax_runs / "first" / "train.json")
    again = TrainResult.read(jax_runs / "again" / "train.json")
    assert metrics(first.history) == metrics(again.history)


@pytest.mark.slow
def test_resumed_after_a_kill_in_epoch_3_equals_uninterrupted_on_jax(jax_runs):
    full = TrainResult.read(jax_runs / "first" / "train.json")
    resumed = TrainResult.read(jax_runs / "resumed" / "train.json")
    assert resumed.resumed_from_epoch == 2
    assert metrics(resumed.history) == metrics(full.history)
    assert_same_weights(jax_runs / "first" / "model.keras", jax_runs / "resumed" / "model.keras")


@pytest.mark.slow
def test_jax_and_tensorflow_train_different_weights_from_one_seed(
    jax_runs, small_fashion, tmp_path
):
    from cnnvsmlp.train import train

    full = TrainResult.read(jax_runs / "first" / "train.json")
    config = full.train.model_copy(update={"backend": "tensorflow", "epochs": 1})
    on_tf = train(small_fashion, full.run, config, tmp_path / "tf", verbose=0)
    assert on_tf.hardware.backend == "tensorflow" and on_tf.hardware.tensorflow
    assert on_tf.history[0].loss != full.history[0].loss


def test_the_backend_is_a_config_field(tmp_path):
    assert load_config("fashion-mnist").train.backend == "tensorflow"
    assert load_config("fashion-mnist", ["train.backend=jax"]).train.backend == "jax"
    with pytest.raises(ConfigError, match=r"train\.backend: got 'torch'; input should be"):
        load_config("fashion-mnist", ["train.backend=torch"])


def test_use_refuses_a_backend_keras_was_not_loaded_with():
    assert keras.backend.backend() == "tensorflow"  # this process's Keras
    backend.use("tensorflow")
    with pytest.raises(UserError, match=r"train.backend=jax: Keras was imported already"):
        backend.use("jax")
    with pytest.raises(UserError, match=r"unknown backend 'torch'"):
        backend.use("torch")


def test_out_of_memory_is_recognised_on_both_backends():
    import jax
    import tensorflow as tf

    assert backend.is_out_of_memory(tf.errors.ResourceExhaustedError(None, None, "OOM"))
    assert backend.is_out_of_memory(jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: 2.0GiB"))
    assert not backend.is_out_of_memory(jax.errors.JaxRuntimeError("INTERNAL: other"))
    assert not backend.is_out_of_memory(ValueError("RESOURCE_EXHAUSTED"))
