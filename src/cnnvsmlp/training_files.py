"""The files of a training's output folder: their names, and the records that mark them whole."""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, ValidationError, model_validator

from cnnvsmlp.errors import UserError
from cnnvsmlp.jsonmodel import Record
from cnnvsmlp.keys import sha256_file
from cnnvsmlp.outputs import write_atomically
from cnnvsmlp.records import Epoch

if TYPE_CHECKING:  # Keras loads TensorFlow: imported where a model is saved.
    import keras

CHECKPOINTS, STATES, SET_ASIDE = "checkpoints", "state", "set-aside"
MODEL, RESULT, HISTORY, FINISHED, TENSORBOARD = (
    "model.keras",
    "train.json",
    "history.csv",
    "finished.json",
    "tensorboard",
)
OUTPUTS = {CHECKPOINTS, STATES, SET_ASIDE, MODEL, RESULT, HISTORY, FINISHED, TENSORBOARD}
"""What a training writes at the top of its output folder."""
STATE_NAME = re.compile(r"^epoch-(\d{2,4})\.json$")
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
STATE_FORMAT = "cnnvsmlp-training-state/1"
FINISHED_FORMAT = "cnnvsmlp-finished-training/1"
WHOLE = {"model": MODEL, "result": RESULT, "history": HISTORY}
"""The files a finished training is made of, by the field of their digest in :class:`Finished`."""

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ResumeError(UserError):
    """A training state that can be neither trusted nor set aside: a retry would meet it again."""


class State(Record):
    """What resuming after one epoch needs besides its checkpoint; it marks the epoch complete."""

    format: Literal["cnnvsmlp-training-state/1"]
    key: Sha256 = Field(description="The training key without the epoch count (see training_key).")
    run_id: str
    variant: str
    seed: int
    epoch: int = Field(ge=1)
    checkpoint: str
    checkpoint_bytes: int = Field(ge=1)
    checkpoint_sha256: Sha256
    history: list[Epoch]
    rng: list[list[int]] = Field(description="Dropout's generator states, in layer order.")
    best_epoch: int | None = Field(
        default=None,
        ge=1,
        description="With early stopping, the best epoch so far, whose checkpoint is kept too.",
    )
    best_checkpoint_sha256: Sha256 | None = Field(
        default=None, description="The best epoch's checkpoint, when it is not this epoch's."
    )

    @model_validator(mode="after")
    def _whole(self) -> State:
        if [e.epoch for e in self.history] != list(range(1, self.epoch + 1)):
            epochs = [e.epoch for e in self.history]
            raise ValueError(f"history: epochs {epochs}, not 1..{self.epoch}")
        for e in self.history:
            for k in (*METRICS, "time_s"):
                if not math.isfinite(getattr(e, k)):
                    raise ValueError(f"history: epoch {e.epoch}'s {k} is {getattr(e, k)}")
        if self.checkpoint != checkpoint_name(self.epoch):
            expected = checkpoint_name(self.epoch)
            raise ValueError(f"checkpoint: {self.checkpoint!r}, not {expected!r}")
        if self.best_epoch is not None and self.best_epoch > self.epoch:
            raise ValueError(f"best_epoch: {self.best_epoch}, after epoch {self.epoch}")
        if (self.best_epoch not in (None, self.epoch)) != (self.best_checkpoint_sha256 is not None):
            raise ValueError("best_checkpoint_sha256: needed exactly when best_epoch is earlier")
        return self

    def distrust(
        self, out: Path, named: int, owner: tuple, epochs: int, rng_shapes: list[tuple]
    ) -> str | None:
        """Why this state, read from ``out``'s file of epoch ``named``, cannot be resumed from.

        ``owner`` is the training's (state key, run id, variant, seed), ``epochs``
        the epochs asked for, ``rng_shapes`` those of the model's :func:`rng_variables`.
        None when the state can be trusted.
        """
        if (self.key, self.run_id, self.variant, self.seed) != owner:
            return f"belongs to another training ({self.run_id}, seed {self.seed})"
        if self.epoch != named:
            return f"is named for epoch {named} but holds epoch {self.epoch}"
        if self.epoch > epochs:
            return f"holds {self.epoch} epochs, more than the {epochs} asked for"
        sizes, expected = [len(r) for r in self.rng], [math.prod(s) for s in rng_shapes]
        if sizes != expected:
            return (
                f"has {len(sizes)} random generator states of sizes {sizes}, the model {expected}"
            )
        ckpt = checkpoint_path(out, self.epoch)
        if not ckpt.is_file():
            return f"names {self.checkpoint}, which is missing"
        if ckpt.stat().st_size != self.checkpoint_bytes or sha256_file(ckpt) != (
            self.checkpoint_sha256
        ):
            return f"names {self.checkpoint}, whose content differs from its recorded sha256"
        if self.best_checkpoint_sha256 is not None:
            best = checkpoint_path(out, self.best_epoch)
            if not best.is_file() or sha256_file(best) != self.best_checkpoint_sha256:
                return (
                    f"names the best epoch's {checkpoint_name(self.best_epoch)}, which is "
                    "missing or differs from its recorded sha256"
                )
        return None


class Finished(Record):
    """The marker of a finished training: which files make it up, by digest, and who trained it."""

    format: Literal["cnnvsmlp-finished-training/1"]
    key: Sha256
    run_id: str
    origin: str = Field(description="The output folder of the training that produced it.")
    model_sha256: Sha256
    result_sha256: Sha256
    history_sha256: Sha256

    @classmethod
    def of(cls, out: Path, key: str, run_id: str, origin: str) -> Finished:
        """The marker of the files in ``out``."""
        return cls(
            format=FINISHED_FORMAT,
            key=key,
            run_id=run_id,
            origin=origin,
            **{f"{field}_sha256": sha256_file(out / name) for field, name in WHOLE.items()},
        )

    def differing(self, out: Path) -> str | None:
        """The first file this marker names that is missing from ``out`` or differs; else None."""
        for field, name in WHOLE.items():
            file = out / name
            if not file.is_file() or sha256_file(file) != getattr(self, f"{field}_sha256"):
                return name
        return None


def checkpoint_name(epoch: int) -> str:
    """The checkpoint of an epoch (1-based), relative to the folder."""
    return f"{CHECKPOINTS}/epoch-{epoch:02d}.keras"


def checkpoint_path(out: Path, epoch: int) -> Path:
    """The checkpoint of an epoch (1-based)."""
    return out / checkpoint_name(epoch)


def state_path(out: Path, epoch: int) -> Path:
    """The state file that marks an epoch (1-based) complete."""
    return out / STATES / f"epoch-{epoch:02d}.json"


def history_csv(history: list[Epoch]) -> str:
    """The history as CSV: one row per epoch, numbered from 1."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["epoch", *METRICS, "time_s"])
    for e in history:
        writer.writerow([e.epoch, *(getattr(e, k) for k in METRICS), e.time_s])
    return buf.getvalue()


def rng_variables(model: keras.Model) -> list:
    """The model's random generator states (Dropout's), which its weights do not include."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def save_inference_model(model: keras.Model, path: Path) -> None:
    """Save ``model`` without its optimizer or compile settings: what evaluation loads."""
    import keras

    # from_config, unlike clone_model and model_from_json, does not compile the copy; a
    # user's own layer classes are found among the model's layers.
    own = {type(layer).__name__: type(layer) for layer in model._flatten_layers()}
    with keras.saving.custom_object_scope(own):
        bare = type(model).from_config(model.get_config())
    bare.set_weights(model.get_weights())
    write_atomically(path, bare.save)  # the partial name keeps ``.keras``, which Keras needs


def read_record(path: Path) -> bytes:
    """A state file's bytes (invalid UTF-8 fails validation); an unreadable one is a ResumeError."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as err:
        raise ResumeError(
            f"{path}: cannot read the training state ({err.strerror}); remove it to train again"
        ) from None


def why(err: Exception) -> str:
    """The first problem a validation error names, on one line."""
    if isinstance(err, ValidationError):
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the file"
        return f"{where}: {first['msg']}"
    return str(err)
