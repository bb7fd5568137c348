"""A resume state that fails validation is set aside and trained again; a finished one is reused."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from cnnvsmlp import progress
from cnnvsmlp.config import RunSpec, TrainConfig, load_config
from cnnvsmlp.data.store import read_metadata
from cnnvsmlp.records import Epoch, Hardware, is_permanent, read_failure, record_failure
from cnnvsmlp.train import train
from cnnvsmlp.training_files import (
    ResumeError,
    checkpoint_path,
    state_path,
    training_key,
    write_history,
)

RUN = RunSpec(variant="cnn", repeat=0, seed=2)
ONE = TrainConfig(epochs=1, batch_size=32, optimizer="adam", keep_checkpoints=True)


@pytest.fixture(scope="module")
def finished(small_fashion, tmp_path_factory):
    """One epoch of cnn with its checkpoint and state kept."""
    out = tmp_path_factory.mktemp("finished") / "cnn"
    return out, train(small_fashion, RUN, ONE, out)


def interrupted(finished_out: Path, dest: Path) -> Path:
    """What a kill after epoch 1's state, before the end, leaves."""
    shutil.copytree(finished_out, dest)
    for name in ("model.keras", "train.json", "finished.json"):
        (dest / name).unlink()
    return dest


def same_weights(a: Path, b: Path) -> bool:
    wa = keras.saving.load_model(a / "model.keras").get_weights()
    wb = keras.saving.load_model(b / "model.keras").get_weights()
    return all(np.array_equal(x, y) for x, y in zip(wa, wb, strict=True))


def progress_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == progress.LOGGER.name]


def _edit_state(out: Path, change) -> None:
    path = state_path(out, 1)
    state = json.loads(path.read_text())
    change(state)
    path.write_text(json.dumps(state))


def zero_checkpoint(out: Path) -> None:
    ckpt = checkpoint_path(out, 1)
    ckpt.write_bytes(bytes(ckpt.stat().st_size))


def rng_of_wrong_length(out: Path) -> None:
    _edit_state(out, lambda s: s.update(rng=[[0, 1]]))  # cnn has no Dropout: no generators


def null_history_value(out: Path) -> None:
    _edit_state(out, lambda s: s["history"][0].update(loss=None))


def bad_history_value(out: Path) -> None:
    _edit_state(out, lambda s: s["history"][0].update(val_accuracy="abc"))


def another_variants_state(out: Path) -> None:
    _edit_state(out, lambda s: s.update(variant="mlp", run_id="mlp-r0"))


def truncated_json(out: Path) -> None:
    path = state_path(out, 1)
    path.write_text(path.read_text()[: len(path.read_text()) // 2])


def missing_checkpoint(out: Path) -> None:
    checkpoint_path(out, 1).unlink()


CORRUPTIONS = {
    f.__name__: f
    for f in (
        zero_checkpoint,
        rng_of_wrong_length,
        null_history_value,
        bad_history_value,
        another_variants_state,
        truncated_json,
        missing_checkpoint,
    )
}


def test_a_whole_state_is_resumed_not_trained_again(small_fashion, finished, tmp_path):
    out, first = finished
    copy = interrupted(out, tmp_path / "copy")
    resumed = train(small_fashion, RUN, ONE, copy)
    assert resumed.resumed_from_epoch == 1 and resumed.train_time_s == 0
    assert resumed.history == first.history
    assert not (copy / "set-aside").exists()


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_state_that_fails_validation_is_set_aside_and_its_epochs_trained_again(
    corruption, small_fashion, finished, tmp_path, caplog
):
    out, first = finished
    copy = interrupted(out, tmp_path / "copy")
    CORRUPTIONS[corruption](copy)
    with caplog.at_level(logging.INFO, logger=progress.LOGGER.name):
        again = train(small_fashion, RUN, ONE, copy)
    assert again.resumed_from_epoch == 0 and again.train_time_s > 0
    assert [e.epoch for e in again.history] == [1]
    assert same_weights(out, copy)  # trained again from the seed: the very same weights
    aside = [r for r in progress_records(caplog) if r.event["kind"] == "set_aside"]
    assert len(aside) == 1 and aside[0].levelno == logging.WARNING
    assert "state/epoch-01.json" in aside[0].getMessage()
    assert "set aside" in aside[0].getMessage() and "\n" not in aside[0].getMessage()
    assert [p.name for p in (copy / "set-aside").rglob("epoch-01.json")] == ["epoch-01.json"]


def test_a_state_that_can_neither_be_trusted_nor_set_aside_is_a_permanent_failure(
    small_fashion, finished, tmp_path
):
    out, _ = finished
    copy = interrupted(out, tmp_path / "copy")
    truncated_json(copy)
    (copy / "set-aside").write_text("")  # where the state would go is taken
    with pytest.raises(ResumeError, match="cannot be set aside") as err:
        train(small_fashion, RUN, ONE, copy)
    assert is_permanent(err.value) and "\n" not in str(err.value)
    record_failure(err.value, RUN, "fashion-mnist", "train", tmp_path / "model" / "failure.json")
    assert read_failure(tmp_path / "model").error == "ResumeError"


def test_a_finished_training_is_reused_and_one_with_other_content_is_trained_again(
    small_fashion, tmp_path, caplog
):
    store = str(tmp_path / "store" / "shared")
    config = ONE.model_copy(update={"keep_checkpoints": False})
    with caplog.at_level(logging.INFO, logger=progress.LOGGER.name):
        first = train(small_fashion, RUN, config, tmp_path / "a", store=store)
    events = [r.event for r in progress_records(caplog)]
    assert all(tuple(e) == progress.EVENT_KEYS for e in events)
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("epoch") == 1
    assert set(kinds) <= {"start", "step", "epoch", "done"}
    epoch = next(e for e in events if e["kind"] == "epoch")
    assert epoch["epoch"] == 1 and epoch["epochs"] == 1 and epoch["run_id"] == "cnn-r0"
    assert epoch["val_accuracy"] == first.history[0].val_accuracy and epoch["seconds"] > 0
    mirror = Path(store) / "cnn-r0" / first.training_key
    assert sorted(p.name for p in mirror.iterdir()) == [
        "finished.json",
        "history.csv",
        "model.keras",
        "tensorboard",
        "train.json",
    ]

    caplog.clear()
    with caplog.at_level(logging.INFO, logger=progress.LOGGER.name):
        second = train(small_fashion, RUN, config, tmp_path / "b", store=store)
    [reused] = progress_records(caplog)
    assert reused.event["kind"] == "reused"
    assert reused.event["from"] == str((tmp_path / "a").resolve())
    assert "reused from" in reused.getMessage()
    assert second.reused_from == str((tmp_path / "a").resolve())
    assert second.history == first.history and second.training_key == first.training_key
    assert json.loads((tmp_path / "b" / "train.json").read_text())["reused_from"]
    # Copies, never links: a run folder's file edited in place leaves the store whole.
    model = tmp_path / "b" / "model.keras"
    assert (tmp_path / "a" / "model.keras").read_bytes() == model.read_bytes()
    assert not os.path.samefile(mirror / "model.keras", model)
    with model.open("r+b") as f:
        f.write(b"edited")
    assert (mirror / "model.keras").read_bytes() == (tmp_path / "a" / "model.keras").read_bytes()
    assert store_bytes(tmp_path / "store") > model.stat().st_size

    (mirror / "model.keras").unlink()
    (mirror / "model.keras").write_bytes(b"not the model")
    third = train(small_fashion, RUN, config, tmp_path / "c", store=store)
    assert third.reused_from is None and third.train_time_s > 0
    assert same_weights(tmp_path / "a", tmp_path / "c")
    assert list((tmp_path / "c" / "set-aside").rglob("finished.json"))


def cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def edited_in_place(path: Path) -> None:
    with path.open("r+b") as f:
        f.seek(100)
        f.write(b"edited in place")


def binary(path: Path) -> None:
    path.write_bytes(bytes(range(256)))


STORE_DAMAGE = [
    ("finished.json", cut_short),
    ("finished.json", binary),
    ("model.keras", edited_in_place),
    ("train.json", binary),
    ("history.csv", cut_short),
]


@pytest.mark.parametrize(("name", "damage"), STORE_DAMAGE, ids=lambda x: getattr(x, "__name__", x))
def test_a_damaged_store_entry_is_set_aside_trained_again_and_healed(
    name, damage, small_fashion, tmp_path, caplog
):
    store = str(tmp_path / "store" / "shared")
    config = ONE.model_copy(update={"keep_checkpoints": False})
    first = train(small_fashion, RUN, config, tmp_path / "a", store=store)
    damage(Path(store) / "cnn-r0" / first.training_key / name)
    with caplog.at_level(logging.INFO, logger=progress.LOGGER.name):
        again = train(small_fashion, RUN, config, tmp_path / "b", store=store)
    assert again.reused_from is None and again.train_time_s > 0
    [aside] = [r for r in progress_records(caplog) if r.event["kind"] == "set_aside"]
    assert "finished.json" in aside.getMessage() and "\n" not in aside.getMessage()
    healed = train(small_fashion, RUN, config, tmp_path / "c", store=store)
    assert healed.reused_from == str((tmp_path / "b").resolve())
    assert same_weights(tmp_path / "a", tmp_path / "c")


def test_the_training_key_names_what_the_weights_depend_on(small_fashion):
    meta, hardware = read_metadata(small_fashion), Hardware.detect()
    key = training_key(meta, RUN, ONE, hardware)
    assert key == training_key(meta, RUN.model_copy(update={"repeat": 3}), ONE, hardware)
    kept = ONE.model_copy(update={"keep_checkpoints": False})
    assert key == training_key(meta, RUN, kept, hardware)
    moved = {**meta, "source": "idx:/somewhere/else"}
    assert key == training_key(moved, RUN, ONE, hardware)
    others = [
        training_key(meta, RUN.model_copy(update={"seed": 3}), ONE, hardware),
        training_key(meta, RUN.model_copy(update={"variant": "mlp"}), ONE, hardware),
        training_key(meta, RUN, ONE.model_copy(update={"batch_size": 64}), hardware),
        training_key(meta, RUN, ONE.model_copy(update={"epochs": 2}), hardware),
        training_key({**meta, "input_sha256": {"x": "0"}}, RUN, ONE, hardware),
        training_key(meta, RUN, ONE, hardware.model_copy(update={"intra_op_threads": 99})),
        training_key(meta, RUN.model_copy(update={"n_train": 100}), ONE, hardware),
        training_key(meta, RUN.model_copy(update={"n_train": 200}), ONE, hardware),
    ]
    assert len({key, *others}) == len(others) + 1
    whole = RUN.model_copy(update={"n_train": meta["counts"]["train"]})
    assert key == training_key(meta, whole, ONE, hardware)  # the whole split is no subset
    two = ONE.model_copy(update={"epochs": 2})
    assert training_key(meta, RUN, ONE, hardware, epochs=False) == training_key(
        meta, RUN, two, hardware, epochs=False
    )


def test_the_scope_of_a_store_follows_the_config():
    base = ["resume_uri=/tmp/store"]
    assert load_config("fashion-mnist", base).resume_path("job-7") == "/tmp/store/job-7"
    scoped = load_config("fashion-mnist", [*base, "resume_scope=run-1"])
    assert scoped.resume_path("job-7") == "/tmp/store/run-1"
    shared = load_config("fashion-mnist", [*base, "reuse_trainings=true"])
    assert shared.resume_path("job-7") == "/tmp/store/shared"
    assert load_config("fashion-mnist").resume_path("job-7") is None
    with pytest.raises(Exception, match="resume_scope: set it or reuse_trainings, not both"):
        load_config("fashion-mnist", [*base, "reuse_trainings=true", "resume_scope=run-1"])


def test_history_numbers_epochs_from_1(tmp_path):
    rows = [
        Epoch(epoch=e, loss=1, accuracy=0.5, val_loss=1, val_accuracy=0.5, time_s=2) for e in (1, 2)
    ]
    new = tmp_path / "new.csv"
    write_history(new, rows)
    assert [line.split(",")[0] for line in new.read_text().splitlines()] == ["epoch", "1", "2"]


def store_bytes(folder: Path) -> int:
    """The bytes a local training store holds, each hard-linked file once."""
    seen = {}
    for path in folder.rglob("*"):
        if path.is_file():
            st = path.stat()
            seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values())
