"""The Keras backend a run computes with, and the few things that differ between backends.

The models are plain Keras 3, so they train on TensorFlow (``train.backend:
tensorflow``, the default) or on JAX (``train.backend: jax``). Keras reads
its backend once, from ``KERAS_BACKEND``, when it is first imported:
:func:`use` sets it, and a process must call it before anything imports
Keras. With ``jax``, nothing on the training and evaluation path of this
package imports TensorFlow (``tests/test_backend.py`` trains with its import
blocked); the TFDS data sources still need it, in the data step.

Determinism, as far as each backend goes:

- **tensorflow**: Keras' seeds and ``enable_op_determinism``, which makes
  every op, cuDNN's included, choose a deterministic kernel; one machine
  gives the same weights bit for bit (``tests/test_reproducibility.py``).
- **jax**: Keras' seeds; XLA's CPU kernels are deterministic for a fixed
  thread count (``tests/test_backend.py``: the same seed twice gives the same
  weights), and on a GPU :func:`use` sets ``--xla_gpu_deterministic_ops``,
  which makes XLA's GPU reductions and scatters deterministic. Dropout's
  masks come from JAX's counter-based generator, so they differ from
  TensorFlow's: the two backends train different weights from one seed.

A resumed training equals an uninterrupted one on both backends: Dropout's
generator state is a Keras variable that the checkpoint's state file keeps.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cnnvsmlp.errors import UserError

if TYPE_CHECKING:  # Keras loads its backend: imported where it is used.
    import keras

Backend = Literal["tensorflow", "jax"]
BACKENDS: tuple[str, ...] = ("tensorflow", "jax")
DEFAULT: Backend = "tensorflow"
ENV = "KERAS_BACKEND"
JAX_DETERMINISM = "--xla_gpu_deterministic_ops=true"


def use(backend: str) -> None:
    """Make Keras compute with ``backend`` in this process.

    Call it before anything imports Keras (first thing in a component's body).

    Args:
        backend: ``tensorflow`` or ``jax``.

    Raises:
        UserError: the backend is unknown or not installed, or Keras was
            imported already with another backend.
    """
    if backend not in BACKENDS:
        raise UserError(f"train.backend: unknown backend {backend!r}; use one of {BACKENDS}")
    if "keras" in sys.modules:
        loaded = sys.modules["keras"].backend.backend()
        if loaded != backend:
            raise UserError(
                f"train.backend={backend}: Keras was imported already with the {loaded} backend; "
                f"set {ENV}={backend} before importing Keras"
            )
        return
    module = "tensorflow" if backend == "tensorflow" else "jax"
    if importlib.util.find_spec(module) is None:
        raise UserError(
            f"train.backend={backend}: {module} is not installed here; install it "
            "(jax is in the dev extra) or train with the other backend"
        )
    os.environ[ENV] = backend
    if backend == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_gpu_deterministic_ops" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {JAX_DETERMINISM}".strip()


def active() -> str:
    """The backend Keras loaded with in this process (imports Keras)."""
    import keras

    return keras.backend.backend()


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and the backend, and make the backend's ops deterministic.

    Args:
        seed: the run's seed.
    """
    import keras

    # With TensorFlow installed, Keras seeds it too, whichever the backend.
    keras.utils.set_random_seed(seed)
    if active() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def write_epoch_scalars(log_dir: str | os.PathLike, epoch: int, logs: dict | None) -> None:
    """Log an epoch's metrics for TensorBoard as Keras' callback does, without TensorFlow.

    Writes ``epoch_loss``, ``epoch_accuracy``, ... under ``train/`` and the
    ``val_`` metrics under ``validation/``, at step ``epoch`` (0-based),
    through TensorBoard's own writer.

    Args:
        log_dir: the folder of the logs.
        epoch: the epoch, 0-based as Keras counts.
        logs: the metrics Keras passes at the epoch's end.
    """
    from tensorboard.summary import DirectoryOutput, Writer

    logs = logs or {}
    for split, keys in (
        ("train", {k: k for k in logs if not k.startswith("val_")}),
        ("validation", {k[len("val_") :]: k for k in logs if k.startswith("val_")}),
    ):
        if keys:
            writer = Writer(DirectoryOutput(str(Path(log_dir) / split)))
            for name, key in sorted(keys.items()):
                writer.add_scalar(f"epoch_{name}", float(logs[key]), step=epoch)
            writer.close()


def tensorboard_callback(log_dir: str | os.PathLike) -> keras.callbacks.Callback:
    """The callback that writes a training's TensorBoard logs on this backend.

    Args:
        log_dir: the folder of the logs.

    Returns:
        Keras' ``TensorBoard`` callback on TensorFlow (no graph written); on
        JAX, one that writes the same epoch scalars without TensorFlow
        (:func:`write_epoch_scalars`).
    """
    import keras

    if active() == "tensorflow":
        return keras.callbacks.TensorBoard(str(log_dir), write_graph=False)
    return keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: write_epoch_scalars(log_dir, epoch, logs)
    )


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is the backend running out of accelerator (or host) memory.

    Looks only at the frameworks this process has imported: an error cannot
    come from one that is not loaded.
    """
    if "tensorflow" in sys.modules and sys.modules["tensorflow"] is not None:
        import tensorflow as tf

        if isinstance(err, tf.errors.ResourceExhaustedError):
            return True
    if "jax" in sys.modules and sys.modules["jax"] is not None:
        import jax

        if isinstance(err, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(err):
            return True
    return False


def describe() -> dict:
    """What the backend says about this machine, for :class:`~cnnvsmlp.records.Hardware`.

    Returns:
        ``backend``, ``keras``, ``device`` ('gpu' or 'cpu'), ``accelerator``
        (the GPUs' count and name, or '' on a CPU), ``gpu_compute_capability``,
        the framework's versions and build (``tensorflow``,
        ``tensorflow_git``, ``jax``, ``build``) and ``intra_op_threads``
        (TensorFlow's; None on JAX, whose CPU client uses every core).
    """
    import keras

    backend = active()
    info = {
        "backend": backend,
        "keras": keras.__version__,
        "tensorflow": "",
        "tensorflow_git": "",
        "jax": "",
        "build": {},
        "device": "cpu",
        "accelerator": "",
        "gpu_compute_capability": "",
        "intra_op_threads": None,
    }
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            info["device"] = "gpu"
            info["accelerator"] = f"{len(gpus)} x {details.get('device_name', 'GPU')}"
            if details.get("compute_capability"):
                info["gpu_compute_capability"] = ".".join(
                    str(x) for x in details["compute_capability"]
                )
        info.update(
            tensorflow=tf.__version__,
            tensorflow_git=tf.version.GIT_VERSION,
            build={k: str(v) for k, v in tf.sysconfig.get_build_info().items()},
            intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads(),
        )
        return info
    import jax
    import jax.extend.backend
    import jaxlib

    devices = jax.devices()
    if devices[0].platform == "gpu":
        info["device"] = "gpu"
        info["accelerator"] = f"{len(devices)} x {devices[0].device_kind}"
        info["gpu_compute_capability"] = str(getattr(devices[0], "compute_capability", ""))
    info.update(
        jax=jax.__version__,
        build={
            "jaxlib": jaxlib.__version__,
            "platform": devices[0].platform,
            "platform_version": str(jax.extend.backend.get_backend().platform_version),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
        },
    )
    return info
