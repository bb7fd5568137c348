"""The Keras backend a run computes with (TensorFlow or JAX), and what differs between them.

:func:`use` must run before anything imports Keras; what each makes deterministic: docs/gpu.md.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cnnvsmlp.errors import UserError

if TYPE_CHECKING:  # Keras loads its backend: imported where it is used.
    import keras

BACKENDS = ("tensorflow", "jax")
ENV = "KERAS_BACKEND"
JAX_DETERMINISM = "--xla_gpu_deterministic_ops=true"


def use(backend: str) -> None:
    """Make Keras compute with ``backend`` in this process (on JAX, with deterministic GPU ops)."""
    if backend not in BACKENDS:
        raise UserError(f"train.backend: unknown backend {backend!r}; use one of {BACKENDS}")
    if "keras" in sys.modules:
        if (loaded := sys.modules["keras"].backend.backend()) != backend:
            raise UserError(
                f"train.backend={backend}: Keras was imported already with the {loaded} backend; "
                f"set {ENV}={backend} before importing Keras"
            )
        return
    if importlib.util.find_spec(backend) is None:
        raise UserError(
            f"train.backend={backend}: {backend} is not installed here; install it "
            "(jax is in the dev extra) or train with the other backend"
        )
    os.environ[ENV] = backend
    if backend == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_gpu_deterministic_ops" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {JAX_DETERMINISM}".strip()


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and the backend, and make the backend's ops deterministic."""
    import keras

    # With TensorFlow installed, Keras seeds it too, whichever the backend.
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def tensorboard_callback(log_dir: str | os.PathLike) -> keras.callbacks.Callback:
    """Keras' ``TensorBoard`` callback (no graph) on TensorFlow; on JAX, the same epoch scalars."""
    import keras

    if keras.backend.backend() == "tensorflow":
        return keras.callbacks.TensorBoard(str(log_dir), write_graph=False)

    def write_epoch_scalars(epoch: int, logs: dict | None) -> None:
        from tensorboard.summary import DirectoryOutput, Writer

        for split, validation in (("train", False), ("validation", True)):
            if keys := sorted(k for k in logs or {} if k.startswith("val_") == validation):
                writer = Writer(DirectoryOutput(str(Path(log_dir) / split)))
                for key in keys:
                    name = key.removeprefix("val_")
                    writer.add_scalar(f"epoch_{name}", float(logs[key]), step=epoch)
                writer.close()

    return keras.callbacks.LambdaCallback(on_epoch_end=write_epoch_scalars)


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is a loaded framework running out of accelerator (or host) memory."""
    if (tf := sys.modules.get("tensorflow")) and isinstance(err, tf.errors.ResourceExhaustedError):
        return True
    jax = sys.modules.get("jax")
    on_jax = jax and isinstance(err, jax.errors.JaxRuntimeError)
    return bool(on_jax and "RESOURCE_EXHAUSTED" in str(err))


def onednn_in_use() -> bool | None:
    """Whether this process's TensorFlow uses its oneDNN kernels; None when it cannot say."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


def describe() -> dict:
    """What the backend says about this machine: :class:`~cnnvsmlp.records.Hardware`'s fields."""
    import keras

    name = keras.backend.backend()
    info = {"backend": name, "keras": keras.__version__, "device": "cpu", "accelerator": ""}
    return info | (_tensorflow() if name == "tensorflow" else _jax())


def _tensorflow() -> dict:
    import tensorflow as tf

    info = {
        "tensorflow": tf.__version__,
        "tensorflow_git": tf.version.GIT_VERSION,
        "build": {k: str(v) for k, v in tf.sysconfig.get_build_info().items()},
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
    }
    if gpus := tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpus[0])
        info["device"] = "gpu"
        info["accelerator"] = f"{len(gpus)} x {details.get('device_name', 'GPU')}"
        if details.get("compute_capability"):
            info["gpu_compute_capability"] = ".".join(str(x) for x in details["compute_capability"])
    return info


def _jax() -> dict:
    import jax.extend.backend
    import jaxlib

    devices = jax.devices()
    info = {
        "tensorflow": "",
        "jax": jax.__version__,
        "build": {
            "jaxlib": jaxlib.__version__,
            "platform": devices[0].platform,
            "platform_version": str(jax.extend.backend.get_backend().platform_version),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
        },
    }
    if devices[0].platform == "gpu":
        info["device"] = "gpu"
        info["accelerator"] = f"{len(devices)} x {devices[0].device_kind}"
        info["gpu_compute_capability"] = str(getattr(devices[0], "compute_capability", ""))
    return info
