"""Resume a training from its last complete epoch, or reuse a finished one: the whole protocol.

Contract for runners. A training is named by its *training key*
(:func:`training_key`): a sha256 over the data set's content, the variant, the
seed, the training config, the code that trains and the numerics fingerprint
of the machine (:meth:`~cnnvsmlp.records.Hardware.numerics`); two trainings
with one key give the same weights bit for bit. With the config's
``resume_uri`` set (a ``gs://`` prefix or a folder), training keeps its state
in ``<resume_uri>/<scope>/<run id>/<training key>``
(``ExperimentConfig.resume_path`` is the scope; the run id, e.g. ``mlp-r0``,
lets a person find a run's state), where the scope is ``shared`` when
``reuse_trainings`` is on, else ``resume_scope``, else the pipeline job's id
(on the cluster: a retry of the same job resumes, and KFP's own caching is
untouched). What :func:`cnnvsmlp.train.train` finds
there decides what it does: a finished training is *reused* (its inference
model copied, its record returned with ``reused_from`` naming
the folder that trained it); an interrupted one *resumes* from its newest
complete epoch; anything else trains from the start. A local runner sets
``resume_uri=<runs_dir>/.trainings`` and ``reuse_trainings=true`` to share
trainings across runs, or ``resume_scope=<run id>`` so that only that run's
own state resumes.
Training reports ``reused``, ``resumed`` and ``set_aside`` (and its epochs)
as :mod:`cnnvsmlp.progress` events; ``reused_from`` and the event's ``from``
are the producer's output folder (locally under ``runs/<run id>/``).
A store's files are copied to and from the run folders, never linked, and
each is checked against the digest recorded with it before it is trusted, so
a file damaged or edited in either place is set aside and trained again.

The files, in a training's output folder and its mirror alike:

- ``checkpoints/epoch-NN.keras``: model and optimizer after epoch NN; while a
  training runs, only the newest complete epoch's is kept (an older one is
  deleted once the newer state is written), and with ``train.early_stopping``
  also the best epoch's so far, whose weights the finished model holds (the
  newest state names it by digest; it is deleted once a newer epoch is best);
- ``state/epoch-NN.json``: a :class:`State`, written after the checkpoint it
  names (with its sha256): it marks the epoch complete;
- ``history.csv``, ``tensorboard/``;
- when finished: ``model.keras`` (the inference model, no optimizer),
  ``train.json`` and last ``finished.json`` (a :class:`Finished`); the
  checkpoints and states then go, unless ``train.keep_checkpoints``.

A state is trusted only once it is whole: its schema, its checkpoint's
content digest, and that it belongs to this training (key, run, variant,
seed). One that fails is moved to ``set-aside/`` with one log line, and its
epochs are trained again; an error that leaves nothing to fall back on (a
state that cannot even be read or moved) is a :class:`ResumeError`, which a
task records as a permanent failure (:mod:`cnnvsmlp.failures`). The mirror
gets a checkpoint before its state file, and ``finished.json`` after the
model, so there, too, each marker means whole files. docs/resume.md has the
reasons.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, ValidationError, model_validator

from cnnvsmlp import progress, storage
from cnnvsmlp.config import SEED_SOURCES, RunSpec, TrainConfig
from cnnvsmlp.errors import UserError
from cnnvsmlp.jsonmodel import Record
from cnnvsmlp.models import user_source
from cnnvsmlp.outputs import claim_dir, one_writer, write_atomically
from cnnvsmlp.records import Epoch, Hardware, TrainResult

if TYPE_CHECKING:  # Keras loads TensorFlow: imported where a model is saved or loaded.
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
# The library modules whose source decides what a training computes.
TRAINING_CODE = (
    "train.py",
    "adam.py",
    "resume.py",
    "backend.py",
    "models.py",
    "data/store.py",
    "efficiency/stopping.py",
    "efficiency/subsets.py",
)
STATE_FORMAT = "cnnvsmlp-training-state/1"
FINISHED_FORMAT = "cnnvsmlp-finished-training/1"

_log = logging.getLogger(__name__)
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ResumeError(UserError):
    """A training state that can be neither trusted nor set aside: a retry would meet it again."""


class State(Record):
    """What resuming after one epoch needs besides its checkpoint."""

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


class Finished(Record):
    """The marker of a finished training: which files make it up, by digest, and who trained it."""

    format: Literal["cnnvsmlp-finished-training/1"]
    key: Sha256
    run_id: str
    origin: str = Field(description="The output folder of the training that produced it.")
    model_sha256: Sha256
    result_sha256: Sha256
    history_sha256: Sha256


# Keys and paths


def code_digest() -> str:
    """The sha256 of the source of the library modules that training runs."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for name in TRAINING_CODE:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    return digest.hexdigest()


def training_key(
    meta: dict, run: RunSpec, config: TrainConfig, hardware: Hardware, epochs: bool = True
) -> str:
    """The sha256 naming a training: equal keys train the same weights, bit for bit.

    Args:
        meta: the prepared data set's ``metadata.json`` (its content digest and
            split; the folder it was read from does not count).
        run: the variant, the seed and the training subset's size (the repeat's
            number does not count, nor a "subset" as large as the training split).
        config: the training config (``keep_checkpoints`` does not count).
        hardware: the machine, by its numerics fingerprint.
        epochs: whether the epoch count counts. Without it the key names what
            an epoch's state depends on: the state after epoch 2 is the same
            whether 2 or 5 epochs were asked for.
    """
    parts = {
        "data": data_identity(meta),
        "variant": run.variant,
        "seed": run.seed,
        **({"model_source": source} if (source := user_source(run.variant)) else {}),
        "train": config.model_dump(mode="json", exclude=_untrained(config, epochs)),
        "code": code_digest(),
        "keras": metadata.version("keras"),  # keras.__version__, without loading TensorFlow
        "numerics": list(hardware.numerics()),
    }
    own = {s: run.seed_of(s) for s in SEED_SOURCES if run.seed_of(s) != run.seed}
    if own:
        parts["seeds"] = own  # a source held at another seed than the run's
    whole = meta.get("counts", {}).get("train")
    if run.n_train is not None and (whole is None or run.n_train < whole):
        parts["n_train"] = run.n_train  # cnnvsmlp.efficiency's subset: n images of the seed's order
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def data_identity(meta: dict) -> dict:
    """What of a data set's ``metadata.json`` counts in a key: not the folder it came from."""
    return {k: v for k, v in meta.items() if not (k == "source" and meta.get("input_sha256"))}


def machine_memo(store: str | None) -> Path | None:
    """The folder where a local store remembers each environment's :class:`Hardware`; else None.

    A task that finds its machine there computes its keys without loading
    TensorFlow, so a reused training or evaluation costs only the reading of
    its files (:func:`reuse_training`, :func:`reuse_evaluation`).
    """
    if not store or "://" in store:
        return None
    return Path(store).parent  # the resume_uri: one memo for every scope in it


def open_training(
    out: Path,
    data_dir: str | os.PathLike,
    run: RunSpec,
    config: TrainConfig,
    hardware: Hardware,
    *,
    store: str | None = None,
    resume_uri: str | None = None,
    origin: str | None = None,
) -> Training:
    """The :class:`Training` of ``run`` on this data set and machine, its mirror found by key.

    Args:
        out: the training's output folder (claimed by the caller).
        data_dir: the prepared data set (its ``metadata.json`` is read).
        run: the variant and seed.
        config: the training config.
        hardware: the machine, for the key's numerics.
        store: the scope that holds trainings by key: the mirror is then
            ``<store>/<run id>/<training key>``.
        resume_uri: the mirror itself, when no ``store`` is given.
        origin: who trains, recorded for a later reuse.
    """
    from cnnvsmlp.data.store import read_metadata

    meta = read_metadata(data_dir)
    key = training_key(meta, run, config, hardware)
    if store:
        resume_uri = f"{store.rstrip('/')}/{run.run_id}/{key}"
    state_key = training_key(meta, run, config, hardware, epochs=False)
    return Training(out, key, state_key, run, config, mirror=resume_uri, origin=origin)


def reuse_training(
    data_dir: str | os.PathLike,
    run: RunSpec,
    config: TrainConfig,
    out_dir: str | os.PathLike,
    store: str | None,
) -> TrainResult | None:
    """A finished training with this run's key, put in ``out_dir``, found without Keras; or None.

    None also when the store has not seen this machine yet (:func:`machine_memo`):
    :func:`cnnvsmlp.train.train` then decides, after loading the framework.
    """
    hardware = Hardware.remembered(machine_memo(store))
    if hardware is None:
        return None
    out = claim_dir(out_dir, OUTPUTS, "training output")
    training = open_training(out, data_dir, run, config, hardware, store=store)
    with training.writing():
        return training.reuse()


def _untrained(config: TrainConfig, epochs: bool) -> set[str]:
    """The training config's fields a key leaves out (no early stopping counts as before it)."""
    out = {"keep_checkpoints"} | (set() if epochs else {"epochs"})
    return out | ({"early_stopping"} if config.early_stopping is None else set())


def checkpoint_name(epoch: int) -> str:
    """The checkpoint of an epoch (1-based), relative to the folder."""
    return f"{CHECKPOINTS}/epoch-{epoch:02d}.keras"


def checkpoint_path(out: Path, epoch: int) -> Path:
    """The checkpoint of an epoch (1-based)."""
    return out / checkpoint_name(epoch)


def state_path(out: Path, epoch: int) -> Path:
    """The state file that marks an epoch (1-based) complete."""
    return out / STATES / f"epoch-{epoch:02d}.json"


def sha256_file(path: Path) -> str:
    """The sha256 of a file's content."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# History


def history_csv(history: list[Epoch]) -> str:
    """The history as CSV: one row per epoch, numbered from 1."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["epoch", *METRICS, "time_s"])
    for e in history:
        writer.writerow([e.epoch, *(getattr(e, k) for k in METRICS), e.time_s])
    return buf.getvalue()


# Model state


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


class Training:
    """The resume protocol of one training: its output folder and, optionally, its mirror.

    Args:
        out: the training's output folder (claimed by the caller).
        key: its :func:`training_key`.
        state_key: its :func:`training_key` without the epoch count.
        run: the variant and seed.
        config: the training config.
        mirror: ``gs://`` prefix or folder for this training, or None.
        origin: who trains, recorded for a later reuse; by default ``out``.
    """

    def __init__(
        self,
        out: Path,
        key: str,
        state_key: str,
        run: RunSpec,
        config: TrainConfig,
        mirror: str | None = None,
        origin: str | None = None,
    ) -> None:
        self.out, self.key, self.state_key, self.run, self.config = (
            out,
            key,
            state_key,
            run,
            config,
        )
        self.mirror = mirror.rstrip("/") if mirror else None
        self.origin = origin or str(out.resolve())

    # Finished trainings

    def reuse(self) -> TrainResult | None:
        """The record of a finished training with this key, its files put in ``out``; or None.

        The output folder's own finished training counts first, then the
        mirror's. A marker whose files do not match it is set aside.
        """
        found = self._finished_here()
        if found is None and self.mirror and self._fetch_finished():
            found = self._finished_here()
        if found is None:
            return None
        finished, result = found
        progress.report(
            "reused", self.run.run_id, f"reused from {finished.origin}", from_=finished.origin
        )
        if finished.origin == self.origin or (
            result.reused_from == finished.origin and result.run == self.run
        ):
            return result  # this folder's own training, or a reuse recorded already
        result = result.model_copy(
            update={"run": self.run, "train": self.config, "reused_from": finished.origin}
        )
        result.write(self.out / RESULT)
        return result

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Be this training's one writer while the block runs; wait while another process is.

        Only a local mirror is locked (``<mirror>.lock``): two runs of one
        config at once then train it once, the second reusing the first.
        """
        if not self.mirror or "://" in self.mirror:
            yield
            return

        def busy(pid: int | None) -> None:
            _log.warning(
                "%s: %s is being trained by another process (pid %s); waiting for it to end",
                self.run.run_id,
                self.mirror,
                pid,
            )

        with one_writer(Path(f"{self.mirror}.lock"), busy):
            yield

    def _finished_here(self) -> tuple[Finished, TrainResult] | None:
        path = self.out / FINISHED
        if not path.is_file():
            return None
        try:
            finished = Finished.model_validate_json(_read(path))
            result = TrainResult.model_validate_json(_read(self.out / RESULT))
        except (ValidationError, FileNotFoundError) as err:
            self._set_aside([path], f"is not a whole finished training ({_why(err)})")
            return None
        if finished.key != self.key:
            return None  # another epoch count of this training: replaced when this one finishes
        for name, digest in (
            (MODEL, finished.model_sha256),
            (RESULT, finished.result_sha256),
            (HISTORY, finished.history_sha256),
        ):
            file = self.out / name
            if not file.is_file() or sha256_file(file) != digest:
                self._set_aside([path], f"names a {name} that is missing or has other content")
                return None
        return finished, result

    def _fetch_finished(self) -> bool:
        """Bring a finished training's files from the mirror; False when it has none."""
        assert self.mirror
        if storage.read_text(f"{self.mirror}/{FINISHED}") is None:
            return False
        for name in (MODEL, RESULT, HISTORY, FINISHED):  # the marker last, as it was written
            if not storage.fetch_file(f"{self.mirror}/{name}", self.out / name):
                return False
        return True

    def finish(self, model: keras.Model, result: TrainResult) -> TrainResult:
        """Write the inference model and the record, mark the training finished, drop its state."""
        result = result.model_copy(update={"training_key": self.key})
        save_inference_model(model, self.out / MODEL)
        result.write(self.out / RESULT)
        # A retry that found every epoch done trained none, so wrote no history of its own.
        write_atomically(self.out / HISTORY, lambda p: p.write_text(history_csv(result.history)))
        finished = Finished(
            format=FINISHED_FORMAT,
            key=self.key,
            run_id=self.run.run_id,
            origin=self.origin,
            model_sha256=sha256_file(self.out / MODEL),
            result_sha256=sha256_file(self.out / RESULT),
            history_sha256=sha256_file(self.out / HISTORY),
        )
        finished.write(self.out / FINISHED)
        if not self.config.keep_checkpoints:
            for name in (CHECKPOINTS, STATES):
                shutil.rmtree(self.out / name, ignore_errors=True)
        if self.mirror:
            self._mirror({MODEL, RESULT, HISTORY})
            self._mirror({FINISHED})
            storage.prune_dir(self.out, self.mirror, only={CHECKPOINTS, STATES})
        return result

    # Interrupted trainings

    def start(self, fresh: Callable[[], keras.Model]) -> tuple[keras.Model, list[Epoch]]:
        """A model to train on and its history: restored from the newest trusted state, or new.

        Args:
            fresh: builds and compiles the model from its seed; called again
                when a state's checkpoint fails to load into the model.

        Returns:
            The model and the epochs it has done.
        """
        model = fresh()
        shapes = [tuple(v.shape) for v in rng_variables(model)]
        state = self.fetch(shapes)
        while state is not None:
            try:
                history = self._restore(model, state)
            except Exception as err:  # noqa: BLE001 - any checkpoint that fails to load is set aside
                self._set_aside(
                    [state_path(self.out, state.epoch), checkpoint_path(self.out, state.epoch)],
                    f"names a checkpoint that does not load ({err.__class__.__name__})",
                )
                model = fresh()
                state = self._latest(shapes)
                continue
            where = self.mirror or str(self.out)
            progress.report(
                "resumed",
                self.run.run_id,
                f"resumed after epoch {state.epoch} from {where}",
                epoch=state.epoch,
                epochs=self.config.epochs,
                from_=where,
            )
            return model, history
        return model, []

    def fetch(self, rng_shapes: list[tuple]) -> State | None:
        """The newest trusted state in ``out``, or else in what the mirror holds, fetched.

        A folder with a trusted state of its own (a restart in place) is
        left as it is.

        Args:
            rng_shapes: the shapes of the model's random generator states
                (:func:`rng_variables`), which a state must match.
        """
        state = self._latest(rng_shapes)
        if state is None and self.mirror:
            for name in (CHECKPOINTS, STATES, TENSORBOARD):
                storage.fetch_dir(f"{self.mirror}/{name}", self.out / name)
            storage.fetch_file(f"{self.mirror}/{HISTORY}", self.out / HISTORY)
            state = self._latest(rng_shapes)
        return state

    def _latest(self, rng_shapes: list[tuple]) -> State | None:
        """The newest complete, trusted epoch's state; every newer one that fails is set aside."""
        folder = self.out / STATES
        if not folder.is_dir():
            return None
        found = sorted(
            (int(m.group(1)), p) for p in folder.iterdir() if (m := STATE_NAME.match(p.name))
        )
        for epoch, path in reversed(found):
            ckpt = checkpoint_path(self.out, epoch)
            reason = self._distrust(epoch, path, rng_shapes)
            if isinstance(reason, State):
                return reason
            self._set_aside([path, ckpt], reason)
        return None

    def _distrust(self, epoch: int, path: Path, rng_shapes: list[tuple]) -> State | str:
        """The state in ``path`` when it can be trusted, else why not."""
        try:
            state = State.model_validate_json(_read(path))
        except ValidationError as err:
            return f"is not a valid state ({_why(err)})"
        if (state.key, state.run_id, state.variant, state.seed) != (
            self.state_key,
            self.run.run_id,
            self.run.variant,
            self.run.seed,
        ):
            return f"belongs to another training ({state.run_id}, seed {state.seed})"
        if state.epoch != epoch:
            return f"is named for epoch {epoch} but holds epoch {state.epoch}"
        if state.epoch > self.config.epochs:
            return f"holds {state.epoch} epochs, more than the {self.config.epochs} asked for"
        if [len(r) for r in state.rng] != [math.prod(s) for s in rng_shapes]:
            return (
                f"has {len(state.rng)} random generator states of sizes "
                f"{[len(r) for r in state.rng]}, the model {[math.prod(s) for s in rng_shapes]}"
            )
        ckpt = checkpoint_path(self.out, epoch)
        if not ckpt.is_file():
            return f"names {state.checkpoint}, which is missing"
        if ckpt.stat().st_size != state.checkpoint_bytes or sha256_file(ckpt) != (
            state.checkpoint_sha256
        ):
            return f"names {state.checkpoint}, whose content differs from its recorded sha256"
        if state.best_checkpoint_sha256 is not None:
            best = checkpoint_path(self.out, state.best_epoch)
            if not best.is_file() or sha256_file(best) != state.best_checkpoint_sha256:
                return (
                    f"names the best epoch's {checkpoint_name(state.best_epoch)}, which is "
                    "missing or differs from its recorded sha256"
                )
        return state

    def _restore(self, model: keras.Model, state: State) -> list[Epoch]:
        """Load an epoch's weights, optimizer and random state into ``model``; its history."""
        import numpy as np

        model.optimizer.build(model.trainable_variables)
        model.load_weights(checkpoint_path(self.out, state.epoch))
        for v, value in zip(rng_variables(model), state.rng, strict=True):
            v.assign(np.asarray(value, dtype=v.dtype).reshape(v.shape))
        return list(state.history)

    def _set_aside(self, paths: list[Path], reason: str) -> None:
        """Move what failed validation to ``set-aside/``, saying so in one line."""
        aside = self.out / SET_ASIDE / time.strftime("%Y%m%dT%H%M%S")
        try:
            aside.mkdir(parents=True, exist_ok=True)
            for path in paths:
                if path.exists():
                    target = aside / path.name
                    n = 1
                    while target.exists():
                        target, n = aside / f"{path.name}.{n}", n + 1
                    path.replace(target)
        except OSError as err:
            raise ResumeError(
                f"{paths[0]}: {reason}, and it cannot be set aside ({err.strerror}); "
                f"remove it to train those epochs again"
            ) from None
        name = paths[0].relative_to(self.out).as_posix()
        progress.report(
            "set_aside",
            self.run.run_id,
            f"{name} {reason}; set aside in {aside.relative_to(self.out)}, its epochs train again",
            from_=str(paths[0]),
            level="warning",
        )

    # Epochs

    def save_epoch(
        self, model: keras.Model, history: list[Epoch], best_epoch: int | None = None
    ) -> None:
        """Write the epoch's checkpoint, then its state file, then drop the older epoch's.

        The epoch is complete once both are written; the mirror gets them in
        that order too, and loses the older ones only after.

        Args:
            model: the model after the epoch.
            history: every epoch so far, this one last.
            best_epoch: with early stopping, the best epoch so far: its
                checkpoint is kept beside the newest, and named in the state.
        """
        epoch = history[-1].epoch
        best = checkpoint_path(self.out, best_epoch) if best_epoch not in (None, epoch) else None
        ckpt = checkpoint_path(self.out, epoch)
        ckpt.parent.mkdir(exist_ok=True)
        write_atomically(ckpt, model.save)  # the partial name keeps ``.keras``, which Keras needs
        state = State(
            format=STATE_FORMAT,
            key=self.state_key,
            run_id=self.run.run_id,
            variant=self.run.variant,
            seed=self.run.seed,
            epoch=epoch,
            checkpoint=checkpoint_name(epoch),
            checkpoint_bytes=ckpt.stat().st_size,
            checkpoint_sha256=sha256_file(ckpt),
            history=history,
            rng=[v.numpy().ravel().tolist() for v in rng_variables(model)],  # in layer order
            best_epoch=best_epoch,
            best_checkpoint_sha256=sha256_file(best) if best else None,
        )
        path = state_path(self.out, epoch)
        path.parent.mkdir(exist_ok=True)
        state.write(path)
        write_atomically(self.out / HISTORY, lambda p: p.write_text(history_csv(history)))
        if not self.config.keep_checkpoints:
            for older in range(1, epoch):
                state_path(self.out, older).unlink(missing_ok=True)
                if older != best_epoch:
                    checkpoint_path(self.out, older).unlink(missing_ok=True)
        if self.mirror:
            self._mirror({CHECKPOINTS, HISTORY})
            self._mirror({STATES})
            storage.prune_dir(self.out, self.mirror, only={CHECKPOINTS, STATES})

    def restore_best(self, model: keras.Model, state_epoch: int, best_epoch: int) -> None:
        """Load the best epoch's weights into ``model``, which holds epoch ``state_epoch``'s."""
        if best_epoch != state_epoch:
            model.load_weights(checkpoint_path(self.out, best_epoch))

    def _mirror(self, names: set[str]) -> None:
        """Copy the files of ``names`` to the mirror, with TensorBoard's logs so far."""
        assert self.mirror
        storage.mirror_dir(self.out, self.mirror, only={*names, TENSORBOARD})


def _read(path: Path) -> bytes:
    """A state file's bytes (invalid UTF-8 fails validation); an unreadable one is a ResumeError."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as err:
        raise ResumeError(
            f"{path}: cannot read the training state ({err.strerror}); remove it to train again"
        ) from None


def _why(err: Exception) -> str:
    """The first problem a validation error names, on one line."""
    if isinstance(err, ValidationError):
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the file"
        return f"{where}: {first['msg']}"
    return str(err)


# Finished evaluations: kept beside the training they score, by their own key

EVALUATIONS = "evaluations"
# The library modules whose source decides what an evaluation computes.
EVALUATION_CODE = ("evaluate.py", "shift.py", "backend.py", "data/store.py")


def evaluation_key(model_dir: Path, meta: dict, hardware: Hardware) -> str:
    """The sha256 naming an evaluation: the model's bytes, the data, the code and the numerics."""
    root = Path(__file__).parent
    code = hashlib.sha256()
    for name in EVALUATION_CODE:
        code.update(name.encode() + b"\0" + (root / name).read_bytes())
    parts = {
        "model": sha256_file(model_dir / MODEL),
        "data": data_identity(meta),
        "code": code.hexdigest(),
        "keras": metadata.version("keras"),
        "numerics": list(hardware.numerics()),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def evaluation_uri(store: str, trained: TrainResult, key: str) -> str:
    """Where an evaluation is kept: ``<store>/<run id>/<training key>/evaluations/<key>.json``."""
    training = f"{store.rstrip('/')}/{trained.run.run_id}/{trained.training_key}"
    return f"{training}/{EVALUATIONS}/{key}.json"


def reuse_evaluation(
    model_dir: str | os.PathLike, data_dir: str | os.PathLike, store: str | None, out_path: Path
):
    """The evaluation of this model kept in ``store``, written to ``out_path``; or None.

    Found without loading Keras (the machine is read from :func:`machine_memo`);
    None when the store has none, has not seen this machine, or holds one that
    does not read as a whole record (a later evaluation replaces it). The record's
    ``training`` is this run's, so a reused evaluation names the run it is in.
    """
    from cnnvsmlp.data.store import read_metadata
    from cnnvsmlp.records import EvalResult

    model_dir = Path(model_dir)
    hardware = Hardware.remembered(machine_memo(store))
    trained = TrainResult.read(model_dir / RESULT)
    if hardware is None or not trained.training_key or not store:
        return None
    key = evaluation_key(model_dir, read_metadata(data_dir), hardware)
    uri = evaluation_uri(store, trained, key)
    text = storage.read_text(uri)
    if text is None:
        return None
    try:
        found = EvalResult.model_validate_json(text)
    except ValidationError:
        return None
    if found.run != trained.run:
        return None
    result = found.model_copy(update={"training": trained})
    result.write(out_path)
    return result


def keep_evaluation(
    model_dir: str | os.PathLike, data_dir: str | os.PathLike, store: str | None, result
) -> None:
    """Keep an evaluation in ``store`` for :func:`reuse_evaluation`; nothing without a store."""
    from cnnvsmlp.data.store import read_metadata

    model_dir = Path(model_dir)
    if not store or not result.training.training_key:
        return
    memo = machine_memo(store)
    key = evaluation_key(model_dir, read_metadata(data_dir), Hardware.detect(memo=memo))
    storage.write_text(evaluation_uri(store, result.training, key), result.model_dump_json())
