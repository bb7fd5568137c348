"""What makes a run with one seed give the same numbers again, and where that ends.

Within one machine, :func:`cnnvsmlp.train.make_deterministic` (Keras' seeds
and TensorFlow's op determinism) makes every variant train bit for bit the
same, in one process and across processes (``tests/test_reproducibility.py``);
on the jax backend, see :mod:`cnnvsmlp.backend`. A run's
:class:`~cnnvsmlp.records.Hardware` records its backend, and
``Hardware.numerics()`` includes it: runs on different backends never
count as bit-identical. What follows is about TensorFlow.
Across machines, two settings that TensorFlow chooses by itself change the
arithmetic of every variant (measured with ``tools/batchnorm_study.py``:
after 50 steps the weights differ bit-wise):

- **oneDNN.** Linux x86 wheels of TensorFlow turn their oneDNN kernels on by
  default only on CPUs with AVX512-VNNI, AVX512-BF16, AVX-VNNI or AMX (most
  Intel Xeons since Cascade Lake, AMD since Zen 4), and off elsewhere (an
  AMD EPYC with AVX2 only). oneDNN also picks its kernels by the CPU's
  instruction set at run time. ``TF_ENABLE_ONEDNN_OPTS`` overrides the
  default, but TensorFlow reads it once, while it is imported.
- **Threads.** TensorFlow splits an op over one thread per core unless told
  otherwise, and the split changes the order of the sums.

``TF_ENABLE_ONEDNN_OPTS`` and the thread settings, set before TensorFlow is
imported, fix both for a process. GPUs use other kernels
altogether: a GPU run matches no CPU run bit for bit.
"""

from __future__ import annotations

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
