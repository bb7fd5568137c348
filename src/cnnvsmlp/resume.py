"""Resume a training from its newest complete epoch, or reuse a finished one, found by its key.

:class:`Training` owns a training's output folder and its mirror (contract: docs/resume.md).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import ValidationError

from cnnvsmlp import progress, storage
from cnnvsmlp import training_files as files
from cnnvsmlp.config import RunSpec, TrainConfig
from cnnvsmlp.data.store import read_metadata
from cnnvsmlp.outputs import claim_dir, one_writer, write_atomically
from cnnvsmlp.records import Epoch, Hardware, TrainResult

if TYPE_CHECKING:  # Keras loads TensorFlow: imported where a model is saved or loaded.
    import keras

_log = logging.getLogger(__name__)


def rng_variables(model: keras.Model) -> list:
    """The model's random generator states (Dropout's), which its weights do not include."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def reuse_training(
    data_dir: str | os.PathLike,
    run: RunSpec,
    config: TrainConfig,
    out_dir: str | os.PathLike,
    store: str | None,
) -> TrainResult | None:
    """A finished training with this run's key, put in ``out_dir``, found without Keras; or None."""
    if (hardware := Hardware.remembered(files.machine_memo(store))) is None:
        return None
    training = Training.open(data_dir, run, config, out_dir, hardware, store)
    with training.writing():
        return training.reuse()


@dataclass
class Training:
    """The resume protocol of one training: its output folder ``out`` and, optionally, a mirror."""

    out: Path
    key: str
    state_key: str  # the key without the epoch count
    run: RunSpec
    config: TrainConfig
    mirror: str | None = None
    meta: dict | None = None  # the data set's metadata.json
    hardware: Hardware | None = None

    def __post_init__(self) -> None:
        self.mirror = self.mirror.rstrip("/") if self.mirror else None
        self.origin = str(self.out.resolve())  # who trains, recorded for a later reuse

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike,
        run: RunSpec,
        config: TrainConfig,
        out_dir: str | os.PathLike,
        hardware: Hardware,
        store: str | None = None,
        resume_uri: str | None = None,
    ) -> Training:
        """The training of ``run`` in ``out_dir``, mirrored in ``<store>/<run id>/<key>``."""
        out = claim_dir(out_dir, files.OUTPUTS, "training output")
        meta = read_metadata(data_dir)
        key = files.training_key(meta, run, config, hardware)
        if store:
            resume_uri = f"{store.rstrip('/')}/{run.run_id}/{key}"
        state_key = files.training_key(meta, run, config, hardware, epochs=False)
        return cls(out, key, state_key, run, config, resume_uri, meta, hardware)

    def writing(self) -> contextlib.AbstractContextManager:
        """Be this training's one writer while the block runs (a local mirror's lock), or wait."""
        if not self.mirror or "://" in self.mirror:
            return contextlib.nullcontext()
        busy = "%s: %s is being trained by another process (pid %s); waiting for it to end"
        warn = functools.partial(_log.warning, busy, self.run.run_id, self.mirror)
        return one_writer(Path(f"{self.mirror}.lock"), warn)

    def reuse(self) -> TrainResult | None:
        """The record of a finished training with this key, here or the mirror's, put in ``out``."""
        found = self._finished_here()
        marker = f"{self.mirror}/{files.FINISHED}"
        if found is None and self.mirror and storage.read_text(marker) is not None:
            names = (files.MODEL, files.RESULT, files.HISTORY, files.FINISHED)  # the marker last
            if all(storage.fetch_file(f"{self.mirror}/{n}", self.out / n) for n in names):
                found = self._finished_here()
        if found is None:
            return None
        origin, result = found
        progress.report("reused", self.run.run_id, f"reused from {origin}", from_=origin)
        if origin == self.origin or (result.reused_from == origin and result.run == self.run):
            return result  # this folder's own training, or a reuse recorded already
        update = {"run": self.run, "train": self.config, "reused_from": origin}
        result = result.model_copy(update=update)
        result.write(self.out / files.RESULT)
        return result

    def _finished_here(self) -> tuple[str, TrainResult] | None:
        """The output folder's finished training and its origin, if whole; else set aside."""
        path = self.out / files.FINISHED
        if not path.is_file():
            return None
        try:
            finished = files.Finished.model_validate_json(files.read_record(path))
            result = TrainResult.model_validate_json(files.read_record(self.out / files.RESULT))
        except (ValidationError, FileNotFoundError) as err:
            self._set_aside([path], f"is not a whole finished training ({files.why(err)})")
            return None
        if finished.key != self.key:
            return None  # another epoch count of this training: replaced when this one finishes
        for field, name in files.WHOLE.items():
            file, digest = self.out / name, getattr(finished, f"{field}_sha256")
            if not file.is_file() or files.sha256_file(file) != digest:
                self._set_aside([path], f"names a {name} that is missing or has other content")
                return None
        return finished.origin, result

    def finish(self, model: keras.Model, result: TrainResult) -> TrainResult:
        """Write the inference model and the record, mark the training finished, drop its state."""
        import keras

        result = result.model_copy(update={"training_key": self.key})
        # What evaluation loads: no optimizer, not compiled; a user's layer classes from its layers.
        own = {type(layer).__name__: type(layer) for layer in model._flatten_layers()}
        with keras.saving.custom_object_scope(own):
            bare = type(model).from_config(model.get_config())
        bare.set_weights(model.get_weights())
        write_atomically(self.out / files.MODEL, bare.save)  # keeps ``.keras``, which Keras needs
        result.write(self.out / files.RESULT)
        # A retry that found every epoch done trained none, so wrote no history of its own.
        files.write_history(self.out / files.HISTORY, result.history)
        digests = {f"{f}_sha256": files.sha256_file(self.out / n) for f, n in files.WHOLE.items()}
        marker = {"key": self.key, "run_id": self.run.run_id, "origin": self.origin, **digests}
        files.Finished(format=files.FINISHED_FORMAT, **marker).write(self.out / files.FINISHED)
        if not self.config.keep_checkpoints:
            for name in (files.CHECKPOINTS, files.STATES):
                shutil.rmtree(self.out / name, ignore_errors=True)
        self._mirror({files.MODEL, files.RESULT, files.HISTORY}, {files.FINISHED})
        return result

    def start(self, fresh: Callable[[], keras.Model]) -> tuple[keras.Model, list[Epoch]]:
        """The model ``fresh`` builds and its history, restored from the newest trusted state."""
        model = fresh()
        shapes = [tuple(v.shape) for v in rng_variables(model)]
        state = self.fetch(shapes)
        while state is not None:
            try:
                model.optimizer.build(model.trainable_variables)
                model.load_weights(files.checkpoint_path(self.out, state.epoch))
                for v, value in zip(rng_variables(model), state.rng, strict=True):
                    v.assign(np.asarray(value, dtype=v.dtype).reshape(v.shape))
            except Exception as err:  # noqa: BLE001 - any checkpoint that fails to load is set aside
                why = f"names a checkpoint that does not load ({err.__class__.__name__})"
                self._set_aside(files.epoch_files(self.out, state.epoch), why)
                model, state = fresh(), self._latest(shapes)
                continue
            where = self.mirror or str(self.out)
            text = f"resumed after epoch {state.epoch} from {where}"
            fields = {"epoch": state.epoch, "epochs": self.config.epochs, "from_": where}
            progress.report("resumed", self.run.run_id, text, **fields)
            return model, list(state.history)
        return model, []

    def fetch(self, rng_shapes: list[tuple]) -> files.State | None:
        """The newest trusted state in ``out``, or else in what the mirror holds, fetched."""
        if (state := self._latest(rng_shapes)) is None and self.mirror:
            for name in (files.CHECKPOINTS, files.STATES, files.TENSORBOARD):
                storage.fetch_dir(f"{self.mirror}/{name}", self.out / name)
            storage.fetch_file(f"{self.mirror}/{files.HISTORY}", self.out / files.HISTORY)
            state = self._latest(rng_shapes)
        return state

    def _latest(self, rng_shapes: list[tuple]) -> files.State | None:
        """The newest complete, trusted epoch's state; every newer one that fails is set aside."""
        found = sorted(
            (int(m.group(1)), p)
            for p in (self.out / files.STATES).glob("*")
            if (m := files.STATE_NAME.match(p.name))
        )
        for epoch, path in reversed(found):
            try:
                state = files.State.model_validate_json(files.read_record(path))
            except ValidationError as err:
                reason = f"is not a valid state ({files.why(err)})"
            else:
                if (reason := self._distrust(state, epoch, rng_shapes)) is None:
                    return state
            self._set_aside(files.epoch_files(self.out, epoch), reason)
        return None

    def _distrust(self, s: files.State, named: int, rng_shapes: list[tuple]) -> str | None:
        """Why the state ``s``, read from the file of epoch ``named``, is not to be trusted."""
        run, epochs = self.run, self.config.epochs
        owner = (self.state_key, run.run_id, run.variant, run.seed)
        if (s.key, s.run_id, s.variant, s.seed) != owner:
            return f"belongs to another training ({s.run_id}, seed {s.seed})"
        if s.epoch != named:
            return f"is named for epoch {named} but holds epoch {s.epoch}"
        if s.epoch > epochs:
            return f"holds {s.epoch} epochs, more than the {epochs} asked for"
        got, expected = [len(r) for r in s.rng], [math.prod(shape) for shape in rng_shapes]
        if got != expected:
            return f"has {len(got)} random generator states of sizes {got}, the model {expected}"
        ckpt = files.checkpoint_path(self.out, s.epoch)
        if not ckpt.is_file():
            return f"names {s.checkpoint}, which is missing"
        recorded = (s.checkpoint_bytes, s.checkpoint_sha256)
        if (ckpt.stat().st_size, files.sha256_file(ckpt)) != recorded:
            return f"names {s.checkpoint}, whose content differs from its recorded sha256"
        if s.best_checkpoint_sha256 is not None:
            best = files.checkpoint_path(self.out, s.best_epoch)
            if not best.is_file() or files.sha256_file(best) != s.best_checkpoint_sha256:
                return (
                    f"names the best epoch's {files.checkpoint_name(s.best_epoch)}, which is "
                    "missing or differs from its recorded sha256"
                )
        return None

    def _set_aside(self, paths: list[Path], reason: str) -> None:
        """Move what failed validation to ``set-aside/``, saying so in one line."""
        aside = self.out / files.SET_ASIDE / time.strftime("%Y%m%dT%H%M%S")
        try:
            aside.mkdir(parents=True, exist_ok=True)
            for path in filter(Path.exists, paths):
                names = (f"{path.name}.{n}" if n else path.name for n in itertools.count())
                path.replace(next(aside / m for m in names if not (aside / m).exists()))
        except OSError as err:
            raise files.ResumeError(
                f"{paths[0]}: {reason}, and it cannot be set aside ({err.strerror}); "
                f"remove it to train those epochs again"
            ) from None
        name, where = paths[0].relative_to(self.out).as_posix(), aside.relative_to(self.out)
        text = f"{name} {reason}; set aside in {where}, its epochs train again"
        progress.report("set_aside", self.run.run_id, text, from_=str(paths[0]), level="warning")

    def save_epoch(
        self, model: keras.Model, history: list[Epoch], best_epoch: int | None = None
    ) -> None:
        """Write the epoch's checkpoint, then its state; drop older ones but ``best_epoch``'s."""
        epoch = history[-1].epoch
        earlier = best_epoch not in (None, epoch)
        best = files.checkpoint_path(self.out, best_epoch) if earlier else None
        ckpt = files.checkpoint_path(self.out, epoch)
        ckpt.parent.mkdir(exist_ok=True)
        write_atomically(ckpt, model.save)  # the partial name keeps ``.keras``, which Keras needs
        path = files.state_path(self.out, epoch)
        path.parent.mkdir(exist_ok=True)
        files.State(
            format=files.STATE_FORMAT,
            key=self.state_key,
            run_id=self.run.run_id,
            variant=self.run.variant,
            seed=self.run.seed,
            epoch=epoch,
            checkpoint=files.checkpoint_name(epoch),
            checkpoint_bytes=ckpt.stat().st_size,
            checkpoint_sha256=files.sha256_file(ckpt),
            history=history,
            rng=[v.numpy().ravel().tolist() for v in rng_variables(model)],  # in layer order
            best_epoch=best_epoch,
            best_checkpoint_sha256=files.sha256_file(best) if best else None,
        ).write(path)
        files.write_history(self.out / files.HISTORY, history)
        if not self.config.keep_checkpoints:
            for older in range(1, epoch):
                files.state_path(self.out, older).unlink(missing_ok=True)
                if older != best_epoch:
                    files.checkpoint_path(self.out, older).unlink(missing_ok=True)
        self._mirror({files.CHECKPOINTS, files.HISTORY}, {files.STATES})

    def _mirror(self, names: set[str], marker: set[str]) -> None:
        """Copy ``names``, then the ``marker`` naming them, to the mirror; then drop the stale."""
        if self.mirror:
            storage.mirror_dir(self.out, self.mirror, only={*names, files.TENSORBOARD})
            storage.mirror_dir(self.out, self.mirror, only={*marker, files.TENSORBOARD})
            storage.prune_dir(self.out, self.mirror, only={files.CHECKPOINTS, files.STATES})
