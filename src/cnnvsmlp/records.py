"""Result records written by training and evaluation, and failures a retry cannot fix."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Literal
from zipfile import BadZipFile

from pydantic import Field, TypeAdapter, ValidationError

from cnnvsmlp import backend
from cnnvsmlp.config import RunSpec, TrainConfig
from cnnvsmlp.errors import UserError
from cnnvsmlp.outputs import Record, write_atomically


class Hardware(Record):
    """What a run ran on: what decides whether its numbers reproduce bit for bit."""

    device: str = Field(description="'gpu' or 'cpu'")
    name: str = Field(description="The GPU (`1 x NVIDIA L4`) or, without one, the CPU model.")
    cpu_count: int = Field(description="CPU cores the process saw.")
    tensorflow: str = Field(description="TensorFlow's version; empty when the run did not use it.")
    cpu: str = Field(default="", description="The CPU model, also on a GPU machine.")
    cpu_flags: list[str] = Field(default_factory=list)
    """The CPU's vector and matrix extensions that kernels dispatch on (avx2, fma, amx*, ...)."""
    tensorflow_git: str = Field(default="", description="tf.version.GIT_VERSION")
    build: dict[str, str] = Field(default_factory=dict)
    """tf.sysconfig.get_build_info(); on JAX: jaxlib's version, the XLA platform, XLA_FLAGS."""
    gpu_compute_capability: str = Field(default="", description="e.g. '8.9'; empty on a CPU")
    onednn_opts: str | None = None
    """TF_ENABLE_ONEDNN_OPTS as the process had it; None when unset."""
    onednn: bool | None = None
    """Whether TensorFlow's oneDNN kernels were in use."""
    intra_op_threads: int | None = None
    """TensorFlow's intra-op threads; 0 means one per core."""
    backend: str = "tensorflow"
    """The Keras backend: 'tensorflow' or 'jax'."""
    keras: str = Field(default="", description="Keras' version.")
    jax: str = Field(default="", description="JAX's version; empty when the run did not use it.")

    @classmethod
    def detect(cls, memo: Path | None = None) -> Hardware:
        """Describe this machine, remembered in the folder ``memo`` per :func:`environment_id`."""
        found = cls.remembered(memo)
        if found is not None:
            return found
        info = backend.describe()
        on_tensorflow = info["backend"] == "tensorflow"
        found = cls(
            **{key: value for key, value in info.items() if key in cls.model_fields},
            name=info["accelerator"] or _cpu_name(),
            cpu_count=os.cpu_count() or 1,
            cpu=_cpu_name(),
            cpu_flags=_cpu_flags(),
            onednn_opts=os.environ.get("TF_ENABLE_ONEDNN_OPTS") if on_tensorflow else None,
            onednn=backend.onednn_in_use() if on_tensorflow else None,
        )
        if memo is not None:
            path = memo_file(memo)
            with contextlib.suppress(OSError):  # a read-only store costs the next task a detection
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(path, lambda p: p.write_text(found.model_dump_json(indent=2)))
        return found

    @classmethod
    def remembered(cls, memo: Path | None) -> Hardware | None:
        """The description :meth:`detect` remembered in ``memo``, or None; loads no framework."""
        try:
            return cls.model_validate_json(memo_file(memo).read_text()) if memo else None
        except (OSError, ValueError):
            return None

    def numerics(self) -> tuple:
        """What must be equal for two runs with one seed to give bit-identical numbers."""
        return (
            self.device,
            self.name,
            self.cpu,
            tuple(self.cpu_flags),
            self.tensorflow,
            self.tensorflow_git,
            tuple(sorted(self.build.items())),
            self.onednn,
            self.intra_op_threads or self.cpu_count,
            self.backend,
            self.jax,
        )


# The CPU extensions whose presence changes the kernels oneDNN and XLA pick at run time.
_CPU_FLAG_PREFIXES = ("sse4", "avx", "fma", "f16c", "amx", "vnni")
# The distributions whose build decides the numbers: their versions and RECORDs count.
_NUMERICS_DISTRIBUTIONS = (
    "tensorflow tensorflow-cpu tensorflow-intel keras jax jaxlib jax-cuda12-plugin "
    "jax-cuda12-pjrt numpy"
).split()
# The variables that change the kernels, the threads or the devices a framework picks.
_NUMERICS_ENVIRONMENT = (
    "KERAS_BACKEND TF_ENABLE_ONEDNN_OPTS TF_NUM_INTRAOP_THREADS TF_NUM_INTEROP_THREADS "
    "OMP_NUM_THREADS CUDA_VISIBLE_DEVICES XLA_FLAGS JAX_PLATFORMS TF_DETERMINISTIC_OPS"
).split()


def memo_file(memo: Path) -> Path:
    """The file in a folder where :meth:`Hardware.detect` remembers this environment."""
    return Path(memo) / f".hardware-{environment_id()}.json"


def environment_id() -> str:
    """A sha256 of what :meth:`Hardware.detect` reports, computed without importing a framework."""
    dists = {}
    for name in _NUMERICS_DISTRIBUTIONS:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        record = dist.read_text("RECORD") or ""
        dists[name] = [dist.version, hashlib.sha256(record.encode()).hexdigest()]
    gpus = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        try:
            gpus.append(info.read_text())
        except OSError:
            gpus.append(str(info))
    affinity = getattr(os, "sched_getaffinity", None)  # Linux only
    cores = len(affinity(0)) if affinity else None
    parts = {
        "python": [sys.executable, sys.version],
        "distributions": dists,
        "cpu": [_cpu_name(), _cpu_flags(), os.cpu_count(), cores],
        "gpus": gpus,
        "environment": {k: os.environ.get(k) for k in _NUMERICS_ENVIRONMENT},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _cpuinfo(*keys: str) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(keys):
                return line.split(":", 1)[1]
    return None


def _cpu_name() -> str:
    name = _cpuinfo("model name")
    return name.strip() if name is not None else platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    flags = (_cpuinfo("flags", "Features") or "").split()
    return sorted({f for f in flags if f.startswith(_CPU_FLAG_PREFIXES)})


class Epoch(Record):
    """Metrics at the end of one epoch."""

    epoch: int = Field(ge=1, description="The epoch, from 1.")
    loss: float = Field(description="Mean training loss over the epoch's batches.")
    accuracy: float = Field(description="Training accuracy over the epoch's batches.")
    val_loss: float = Field(description="Loss on the validation split after the epoch.")
    val_accuracy: float = Field(description="Accuracy on the validation split after the epoch.")
    time_s: float = Field(description="Wall time of the epoch's training, validation included.")


class EarlyStop(Record):
    """Where early stopping (``train.early_stopping``) ended a training."""

    stopped_epoch: int = Field(description="The last epoch trained.")
    best_epoch: int = Field(description="The epoch whose weights the model holds.")
    reason: Literal["patience", "cap"]
    """patience: converged by the rule; cap: train.epochs reached first."""
    capped_improving: bool
    """The cap came while validation loss was still improving (within patience)."""


class TrainResult(Record):
    """What one training run produced."""

    run: RunSpec
    dataset: str
    train: TrainConfig
    history: list[Epoch]
    params: int
    n_train: int
    n_validation: int
    train_time_s: float = Field(description="Wall time of the epochs trained in this record.")
    train_images_per_s: float
    resumed_from_epoch: int = 0
    hardware: Hardware
    training_key: str = ""
    """What the weights depend on (cnnvsmlp.training_files.training_key)."""
    reused_from: str | None = None
    """The output folder of the training these weights were reused from; None: trained here."""
    early_stop: EarlyStop | None = None
    """Where early stopping ended it; None: fixed epochs."""


class ClassMetrics(Record):
    """Precision, recall and F1 of one class on the test split."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int


class ShiftResult(Record):
    """The model on the test images translated by ``shift`` pixels (:mod:`cnnvsmlp.evaluate`)."""

    shift: int = Field(description="Pixels moved along each axis that moves (1 to 4).")
    seed: int = Field(description="Seed of the directions: the same images for every model.")
    accuracy: float
    predictions: list[int] = Field(description="Predicted class of each shifted test image.")


class EvalResult(Record):
    """Test-split evaluation of one trained model, with its training record."""

    run: RunSpec
    dataset: str
    classes: list[str]
    accuracy: float
    loss: float
    n_test: int
    per_class: list[ClassMetrics]
    confusion: list[list[int]] = Field(description="Rows: true class; columns: predicted.")
    predictions: list[int] = Field(description="Predicted class of each test image, in order.")
    labels_sha256: str = Field(description="Digest of the test labels the predictions refer to.")
    params: int
    model_size_bytes: int
    inference_images_per_s: float
    training: TrainResult
    hardware: Hardware
    shifted: list[ShiftResult] = Field(default_factory=list)
    """Scores on the shifted test images, one per shift; empty in older records."""


class RunFailure(Record):
    """A run that failed for good (:func:`record_failure`), in place of its result."""

    run: RunSpec
    dataset: str
    stage: Literal["train", "evaluate"]
    error: str = Field(description="The exception's class name, e.g. 'TrainingDiverged'.")
    message: str = Field(description="The error's message, on one line.")


def read_result(path: str | os.PathLike) -> EvalResult | RunFailure:
    """Read what an evaluation left: a run's :class:`EvalResult` or its :class:`RunFailure`."""
    return TypeAdapter(EvalResult | RunFailure).validate_json(Path(path).read_text())


FAILURE_FILE = "failure.json"  # in a training task's model folder


def is_permanent(err: BaseException) -> bool:
    """Whether ``err`` would happen again on a retry: bad input, unparsable bytes, no memory."""
    return not getattr(err, "transient", False) and (
        isinstance(err, UserError | ValidationError | BadZipFile) or backend.is_out_of_memory(err)
    )


def record_failure(
    err: BaseException,
    run: RunSpec,
    dataset: str,
    stage: Literal["train", "evaluate"],
    path: str | Path,
) -> RunFailure | None:
    """Write and return a RunFailure at ``path`` when ``err`` is permanent, so the others count."""
    if not is_permanent(err):
        return None
    message = " ".join(str(err).split()) or err.__class__.__name__
    failure = RunFailure(
        run=run, dataset=dataset, stage=stage, error=err.__class__.__name__, message=message
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    failure.write(path)
    return failure


def read_failure(model_dir: str | Path) -> RunFailure | None:
    """The failure record a training task left in its model folder, if any."""
    path = Path(model_dir) / FAILURE_FILE
    return RunFailure.read(path) if path.is_file() else None
