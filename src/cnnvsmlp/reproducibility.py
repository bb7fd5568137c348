"""What makes a run with one seed give the same numbers again, and where that ends.

Within one machine, :func:`cnnvsmlp.train.make_deterministic` (Keras' seeds
and TensorFlow's op determinism) makes every variant train bit for bit the
same, in one process and across processes (``tests/test_reproducibility.py``);
on the jax backend, see :mod:`cnnvsmlp.backend`. A run's
:class:`~cnnvsmlp.records.Hardware` records its backend, and
``Hardware.numerics()`` includes it: runs on different backends never
count as bit-identical. What follows is about TensorFlow.
Across machines, two settings that TensorFlow chooses by itself change the
arithmetic of every variant (measured with :mod:`cnnvsmlp.batchnorm_study`:
after 50 steps the weights differ bit-wise):

- **oneDNN.** Linux x86 wheels of TensorFlow turn their oneDNN kernels on by
  default only on CPUs with AVX512-VNNI, AVX512-BF16, AVX-VNNI or AMX (most
  Intel Xeons since Cascade Lake, AMD since Zen 4), and off elsewhere (an
  AMD EPYC with AVX2 only). oneDNN also picks its kernels by the CPU's
  instruction set at run time. ``TF_ENABLE_ONEDNN_OPTS`` overrides the
  default, but TensorFlow reads it once, while it is imported.
- **Threads.** TensorFlow splits an op over one thread per core unless told
  otherwise, and the split changes the order of the sums.

:func:`pin_numerics` fixes both for the process. GPUs use other kernels
altogether: a GPU run matches no CPU run bit for bit.
"""

from __future__ import annotations

import os
import sys

ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"


class NumericsError(RuntimeError):
    """TensorFlow was imported before its numerics could be pinned."""


def onednn_in_use() -> bool | None:
    """Whether this process's TensorFlow uses its oneDNN kernels.

    Returns:
        True or False as TensorFlow decided it (by ``TF_ENABLE_ONEDNN_OPTS``,
        or by the CPU when that is unset); None when this TensorFlow cannot
        say.
    """
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


def pin_numerics(onednn: bool = False, threads: int | None = None) -> None:
    """Make TensorFlow compute the same way on every CPU with the same build.

    Call it before anything imports TensorFlow (or Keras), e.g. first thing in
    a training process's entry point.

    Args:
        onednn: whether to use TensorFlow's oneDNN kernels. The default, off,
            gives the kernels that do not depend on the CPU's instruction set.
        threads: TensorFlow's intra-op and inter-op threads; None keeps
            TensorFlow's default (one per core).

    Raises:
        NumericsError: TensorFlow was imported already with another oneDNN
            setting, so the setting cannot take effect in this process.
    """
    wanted = "1" if onednn else "0"
    if "tensorflow" in sys.modules:
        if onednn_in_use() is not None and onednn_in_use() != onednn:
            raise NumericsError(
                f"TensorFlow was imported with oneDNN {'on' if onednn_in_use() else 'off'} "
                f"before pin_numerics(onednn={onednn}); call it before importing "
                f"TensorFlow or Keras, or set {ONEDNN_ENV}={wanted} in the environment"
            )
    os.environ[ONEDNN_ENV] = wanted
    if threads is not None:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
