"""A training's key, its files and its early-stopping rule; the key of an evaluation.

A key is a sha256 over the data set, the run, the config, the source of the code that
computes and the machine's numerics (docs/resume.md): equal keys compute the same numbers.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, model_validator

from cnnvsmlp.config import SEED_SOURCES, RunSpec, StoppingRule, TrainConfig
from cnnvsmlp.errors import UserError
from cnnvsmlp.models import user_source
from cnnvsmlp.outputs import Record, write_atomically
from cnnvsmlp.records import Epoch, Hardware

CHECKPOINTS, STATES, SET_ASIDE = "checkpoints", "state", "set-aside"
MODEL, RESULT, HISTORY = "model.keras", "train.json", "history.csv"
FINISHED, TENSORBOARD = "finished.json", "tensorboard"
OUTPUTS = {CHECKPOINTS, STATES, SET_ASIDE, MODEL, RESULT, HISTORY, FINISHED, TENSORBOARD}
"""What a training writes at the top of its output folder."""
STATE_NAME = re.compile(r"^epoch-(\d{2,4})\.json$")
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
STATE_FORMAT = "cnnvsmlp-training-state/1"
FINISHED_FORMAT = "cnnvsmlp-finished-training/1"
WHOLE = {"model": MODEL, "result": RESULT, "history": HISTORY}
"""The files a finished training is made of, by the field of their digest in :class:`Finished`."""
# The library modules whose source decides what a training, or an evaluation, computes.
TRAINING_CODE = (
    "train.py",
    "resume.py",
    "training_files.py",
    "backend.py",
    "models.py",
    "data/store.py",
    "efficiency/subsets.py",
)
EVALUATION_CODE = ("evaluate.py", "backend.py", "data/store.py")

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
    best_epoch: int | None = Field(default=None, ge=1)
    """With early stopping, the best epoch so far, whose checkpoint is kept too."""
    best_checkpoint_sha256: Sha256 | None = None
    """The best epoch's checkpoint, when it is not this epoch's."""

    @model_validator(mode="after")
    def _whole(self) -> State:
        epochs = [e.epoch for e in self.history]
        if epochs != list(range(1, self.epoch + 1)):
            raise ValueError(f"history: epochs {epochs}, not 1..{self.epoch}")
        for e in self.history:
            for k in (*METRICS, "time_s"):
                if not math.isfinite(getattr(e, k)):
                    raise ValueError(f"history: epoch {e.epoch}'s {k} is {getattr(e, k)}")
        if self.checkpoint != (expected := checkpoint_name(self.epoch)):
            raise ValueError(f"checkpoint: {self.checkpoint!r}, not {expected!r}")
        if self.best_epoch is not None and self.best_epoch > self.epoch:
            raise ValueError(f"best_epoch: {self.best_epoch}, after epoch {self.epoch}")
        if (self.best_epoch not in (None, self.epoch)) != (self.best_checkpoint_sha256 is not None):
            raise ValueError("best_checkpoint_sha256: needed exactly when best_epoch is earlier")
        return self


class Finished(Record):
    """The marker of a finished training: which files make it up, by digest, and who trained it."""

    format: Literal["cnnvsmlp-finished-training/1"]
    key: Sha256
    run_id: str
    origin: str = Field(description="The output folder of the training that produced it.")
    model_sha256: Sha256
    result_sha256: Sha256
    history_sha256: Sha256


def checkpoint_name(epoch: int) -> str:
    """The checkpoint of an epoch (1-based), relative to the folder."""
    return f"{CHECKPOINTS}/epoch-{epoch:02d}.keras"


def checkpoint_path(out: Path, epoch: int) -> Path:
    """The checkpoint of an epoch (1-based)."""
    return out / checkpoint_name(epoch)


def state_path(out: Path, epoch: int) -> Path:
    """The state file that marks an epoch (1-based) complete."""
    return out / STATES / f"epoch-{epoch:02d}.json"


def epoch_files(out: Path, epoch: int) -> list[Path]:
    """An epoch's state file and checkpoint."""
    return [state_path(out, epoch), checkpoint_path(out, epoch)]


def write_history(path: Path, history: list[Epoch]) -> None:
    """Write the history as CSV, atomically: one row per epoch, numbered from 1."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows([Epoch.model_fields, *(e.model_dump().values() for e in history)])
    write_atomically(path, lambda p: p.write_text(buf.getvalue()))


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


def sha256_file(path: Path) -> str:
    """The sha256 of a file's content."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _key(parts: dict, meta: dict, code: tuple[str, ...], hardware: Hardware) -> str:
    """The sha256 of ``parts``, the data, the source of the modules ``code``, Keras and numerics."""
    root, source = Path(__file__).parent, hashlib.sha256()
    for name in code:
        source.update(name.encode() + b"\0" + (root / name).read_bytes())
    parts |= {
        # Not the folder the data set was read from, where its files' digest names it.
        "data": {k: v for k, v in meta.items() if not (k == "source" and meta.get("input_sha256"))},
        "code": source.hexdigest(),
        "keras": metadata.version("keras"),  # keras.__version__, without loading TensorFlow
        "numerics": list(hardware.numerics()),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def training_key(
    meta: dict, run: RunSpec, config: TrainConfig, hardware: Hardware, epochs: bool = True
) -> str:
    """The sha256 naming a training: equal keys train the same weights, bit for bit.

    Not counted: the repeat, a subset as large as the split, and without ``epochs`` the epochs.
    """
    untrained = {"keep_checkpoints"} | (set() if epochs else {"epochs"})
    if config.early_stopping is None:
        untrained.add("early_stopping")  # no early stopping counts as before it existed
    parts = {
        "variant": run.variant,
        "seed": run.seed,
        **({"model_source": source} if (source := user_source(run.variant)) else {}),
        "train": config.model_dump(mode="json", exclude=untrained),
    }
    if own := {s: run.seed_of(s) for s in SEED_SOURCES if run.seed_of(s) != run.seed}:
        parts["seeds"] = own  # a source held at another seed than the run's
    whole = meta.get("counts", {}).get("train")
    if run.n_train is not None and (whole is None or run.n_train < whole):
        parts["n_train"] = run.n_train  # cnnvsmlp.efficiency's subset: n images of the seed's order
    return _key(parts, meta, TRAINING_CODE, hardware)


def evaluation_key(model: Path, meta: dict, hardware: Hardware) -> str:
    """The sha256 naming an evaluation: the model's bytes, the data, the code and the numerics."""
    return _key({"model": sha256_file(model)}, meta, EVALUATION_CODE, hardware)


def machine_memo(store: str | None) -> Path | None:
    """Where a local store remembers each machine's :class:`Hardware`: its resume_uri, for all."""
    return Path(store).parent if store and "://" not in store else None


@dataclass(frozen=True)
class StopDecision:
    """Where the rule stopped (``epochs``), whose weights it keeps (0: no finite loss), and why."""

    stop: bool
    epochs: int
    best_epoch: int
    reason: Literal["patience", "cap"] | None  # converged, still improving at the cap, or running

    @property
    def capped_improving(self) -> bool:
        """Whether the training ended at the cap on epochs, not converged by the rule."""
        return self.reason == "cap"


def decide(val_losses: Sequence[float], rule: StoppingRule, max_epochs: int) -> StopDecision:
    """The decision at the first epoch where the rule stops, else after the last one given."""
    best, best_epoch, wait = math.inf, 0, 0
    for epoch, loss in enumerate(val_losses, start=1):
        if math.isfinite(loss) and loss < best - rule.min_delta:
            best, best_epoch, wait = loss, epoch, 0
        else:
            wait += 1
        if wait >= rule.patience:
            return StopDecision(True, epoch, best_epoch, "patience")
        if epoch >= max_epochs:
            return StopDecision(True, epoch, best_epoch, "cap")
    return StopDecision(False, len(val_losses), best_epoch, None)
