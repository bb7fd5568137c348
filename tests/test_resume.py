"""Resumed training equals uninterrupted training, for every variant and wherever it stopped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from cnnvsmlp import progress
from cnnvsmlp.config import RunSpec, StoppingRule, TrainConfig
from cnnvsmlp.errors import UserError
from cnnvsmlp.models import VARIANTS
from cnnvsmlp.records import EarlyStop, TrainResult
from cnnvsmlp.train import TrainingDiverged, train
from cnnvsmlp.training_files import checkpoint_path, state_path

# Every epoch's checkpoint kept, so a test can cut the training short after any of them.
THREE = TrainConfig(epochs=3, batch_size=32, optimizer="adam", keep_checkpoints=True)
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def uninterrupted(small_fashion, tmp_path_factory):
    """Three epochs of a variant in one go, trained once per module."""
    done = {}

    def get(variant: str):
        if variant not in done:
            out = tmp_path_factory.mktemp(variant) / "out"
            run = RunSpec(variant=variant, repeat=0, seed=3)
            done[variant] = (out, train(small_fashion, run, THREE, out, verbose=0))
        return done[variant]

    return get


def weights(model_file: Path) -> list[np.ndarray]:
    return [w.numpy() for w in keras.saving.load_model(model_file).weights]


def assert_same_training(a: Path, b: Path) -> None:
    for x, y in zip(weights(a / "model.keras"), weights(b / "model.keras"), strict=True):
        np.testing.assert_array_equal(x, y)


def metrics(history) -> list[tuple]:
    return [(e.epoch, *(getattr(e, k) for k in METRICS)) for e in history]


def stopped_in_epoch_3(out: Path, dest: Path) -> Path:
    """What a kill during epoch 3 leaves: epochs 1 and 2 complete, nothing final."""
    shutil.copytree(out, dest)
    for name in ("model.keras", "train.json", "finished.json"):
        (dest / name).unlink()
    state_path(dest, 3).unlink()
    checkpoint_path(dest, 3).unlink()
    return dest


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_resumed_after_a_kill_in_epoch_3_equals_uninterrupted(
    variant, small_fashion, uninterrupted, tmp_path
):
    out, full = uninterrupted(variant)
    copy = stopped_in_epoch_3(out, tmp_path / "resumed")
    resumed = train(small_fashion, full.run, THREE, copy, verbose=0)
    assert resumed.resumed_from_epoch == 2
    assert metrics(resumed.history) == metrics(full.history)
    assert_same_training(out, copy)


def test_a_checkpoint_without_its_state_is_trained_again_once(
    small_fashion, uninterrupted, tmp_path
):
    # Killed after epoch 3's checkpoint, before its state file: the epoch is not complete.
    out, full = uninterrupted("mlp")
    copy = stopped_in_epoch_3(out, tmp_path / "resumed")
    shutil.copyfile(checkpoint_path(out, 2), checkpoint_path(copy, 3))  # stale, must be replaced
    resumed = train(small_fashion, full.run, THREE, copy, verbose=0)
    assert resumed.resumed_from_epoch == 2
    assert [e.epoch for e in resumed.history] == [1, 2, 3]
    assert (copy / "history.csv").read_text().count("\n") == 4  # header and three epochs
    assert_same_training(out, copy)


def test_a_half_written_checkpoint_is_never_read(small_fashion, uninterrupted, tmp_path):
    # Killed while epoch 3's checkpoint was written: a partial file, and the state of epoch 2.
    out, full = uninterrupted("mlp")
    copy = stopped_in_epoch_3(out, tmp_path / "resumed")
    (copy / "checkpoints" / ".partial-epoch-03.keras").write_bytes(b"")
    resumed = train(small_fashion, full.run, THREE, copy, verbose=0)
    assert resumed.resumed_from_epoch == 2
    assert not list((copy / "checkpoints").glob(".partial-*"))
    assert_same_training(out, copy)


def test_a_state_whose_checkpoint_was_cut_short_falls_back(small_fashion, uninterrupted, tmp_path):
    out, full = uninterrupted("mlp")
    copy = stopped_in_epoch_3(out, tmp_path / "resumed")
    ckpt = checkpoint_path(copy, 2)
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    resumed = train(small_fashion, full.run, THREE, copy, verbose=0)
    assert resumed.resumed_from_epoch == 1
    assert_same_training(out, copy)


KILLED_TRAINING = textwrap.dedent(
    """
    import sys
    from cnnvsmlp.config import RunSpec, TrainConfig
    from cnnvsmlp.train import train
    run = RunSpec(variant="mlp", repeat=0, seed=3)
    train(sys.argv[1], run, TrainConfig(epochs=3, batch_size=32, optimizer="adam"), sys.argv[2],
          verbose=0)
    """
)


def test_sigkill_during_training_then_restart(small_fashion, uninterrupted, tmp_path):
    """A real kill -9 while epoch 2 or 3 runs (checkpoint writes included), then a restart."""
    out, full = uninterrupted("mlp")
    target = tmp_path / "killed"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-c", KILLED_TRAINING, str(small_fashion), str(target)]
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not state_path(target, 1).exists() and child.poll() is None:
        assert time.monotonic() < deadline, "the child never finished epoch 1"
        time.sleep(0.005)
    time.sleep(0.2)  # into epoch 2
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not (target / "train.json").exists()
    resumed = train(small_fashion, full.run, THREE, target, verbose=0)
    assert resumed.resumed_from_epoch in (1, 2)
    assert metrics(resumed.history) == metrics(full.history)
    assert_same_training(out, target)


def test_speed_settings_do_not_change_the_weights(small_fashion, tmp_path):
    # Steps per execution only groups the same steps into one call, and the validation batch
    # size does not touch training: the weights are identical, not merely close.
    run = RunSpec(variant="mlp", repeat=0, seed=5)
    plain = TrainConfig(
        epochs=1, batch_size=32, optimizer="adam", steps_per_execution=1, validation_batch_size=None
    )
    fast = plain.model_copy(update={"steps_per_execution": 64, "validation_batch_size": 1024})
    a = train(small_fashion, run, plain, tmp_path / "plain", verbose=0)
    b = train(small_fashion, run, fast, tmp_path / "fast", verbose=0)
    assert_same_training(tmp_path / "plain", tmp_path / "fast")
    assert a.history[0].val_accuracy == b.history[0].val_accuracy


def test_non_finite_loss_stops_training_naming_where(small_fashion, tmp_path):
    run = RunSpec(variant="mlp", repeat=1, seed=0)
    config = TrainConfig(
        epochs=2, batch_size=32, optimizer="sgd", learning_rate=1e12, steps_per_execution=4
    )
    with pytest.raises(TrainingDiverged, match=r"mlp-r1: loss became (nan|inf) in epoch 1 by step"):
        train(small_fashion, run, config, tmp_path / "out", verbose=0)
    assert not (tmp_path / "out" / "model.keras").exists()
    assert not (tmp_path / "out" / "train.json").exists()


def test_a_folder_with_a_user_file_is_refused(small_fashion, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    run = RunSpec(variant="cnn", repeat=0, seed=0)
    with pytest.raises(UserError, match="holds 'notes.txt'"):
        train(small_fashion, run, THREE, out, verbose=0)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


# Early stopping. min_delta 10 makes every epoch after the first "not improving", so the rule
# stops at epoch 1 + patience whatever the losses are, and the best epoch is epoch 1.
EARLY = TrainConfig(
    epochs=10,
    batch_size=32,
    optimizer="adam",
    early_stopping=StoppingRule(patience=2, min_delta=10.0),
)


class Killed(Exception):
    """Stands for a kill right after an epoch's state was written."""


def kill_after_epoch(monkeypatch, epoch: int) -> None:
    real = progress.report

    def report(kind, run_id, message, **fields):
        real(kind, run_id, message, **fields)
        if kind == "epoch" and fields.get("epoch") == epoch:
            raise Killed

    monkeypatch.setattr(progress, "report", report)


@pytest.fixture(scope="module")
def early_stopped(small_fashion, tmp_path_factory):
    """An uninterrupted early-stopped training of the MLP."""
    out = tmp_path_factory.mktemp("early") / "out"
    return out, train(small_fashion, RunSpec(variant="mlp", repeat=0, seed=3), EARLY, out)


def test_early_stopping_stops_by_the_rule_and_keeps_the_best_epoch(
    small_fashion, early_stopped, tmp_path
):
    out, result = early_stopped
    assert [e.epoch for e in result.history] == [1, 2, 3]
    assert result.early_stop == EarlyStop(
        stopped_epoch=3, best_epoch=1, reason="patience", capped_improving=False
    )
    assert TrainResult.read(out / "train.json").early_stop == result.early_stop
    # The exported model holds epoch 1's weights: those of a one-epoch training of the same seed.
    one = TrainConfig(epochs=1, batch_size=32, optimizer="adam")
    train(small_fashion, result.run, one, tmp_path / "one", verbose=0)
    assert_same_training(out, tmp_path / "one")
    assert not (out / "checkpoints").exists()


def test_early_stopping_at_the_cap_is_flagged(small_fashion, tmp_path):
    capped = EARLY.model_copy(update={"epochs": 2})
    result = train(small_fashion, RunSpec(variant="mlp", repeat=0, seed=3), capped, tmp_path / "c")
    assert result.early_stop == EarlyStop(
        stopped_epoch=2, best_epoch=1, reason="cap", capped_improving=True
    )


def test_a_killed_early_stopped_training_keeps_its_best_checkpoint_and_resumes_exactly(
    small_fashion, early_stopped, tmp_path, monkeypatch
):
    out, full = early_stopped
    target = tmp_path / "killed"
    kill_after_epoch(monkeypatch, 2)
    with pytest.raises(Killed):
        train(small_fashion, full.run, EARLY, target, verbose=0)
    monkeypatch.undo()
    # The newest epoch's checkpoint and the best one's, nothing older.
    assert sorted(p.name for p in (target / "checkpoints").iterdir()) == [
        "epoch-01.keras",
        "epoch-02.keras",
    ]
    assert sorted(p.name for p in (target / "state").iterdir()) == ["epoch-02.json"]
    resumed = train(small_fashion, full.run, EARLY, target, verbose=0)
    assert resumed.resumed_from_epoch == 2
    assert resumed.early_stop == full.early_stop
    assert metrics(resumed.history) == metrics(full.history)
    assert_same_training(out, target)


def test_a_resume_after_the_stopping_epoch_trains_no_further(
    small_fashion, early_stopped, tmp_path, monkeypatch
):
    # Killed after the epoch where the rule stops, before the model was written.
    out, full = early_stopped
    target = tmp_path / "killed"
    kill_after_epoch(monkeypatch, 3)
    with pytest.raises(Killed):
        train(small_fashion, full.run, EARLY, target, verbose=0)
    monkeypatch.undo()
    resumed = train(small_fashion, full.run, EARLY, target, verbose=0)
    assert resumed.resumed_from_epoch == 3
    assert [e.epoch for e in resumed.history] == [1, 2, 3]
    assert_same_training(out, target)


def test_a_missing_best_checkpoint_distrusts_the_state(
    small_fashion, early_stopped, tmp_path, monkeypatch
):
    out, full = early_stopped
    target = tmp_path / "killed"
    kill_after_epoch(monkeypatch, 2)
    with pytest.raises(Killed):
        train(small_fashion, full.run, EARLY, target, verbose=0)
    monkeypatch.undo()
    checkpoint_path(target, 1).unlink()
    resumed = train(small_fashion, full.run, EARLY, target, verbose=0)
    assert resumed.resumed_from_epoch == 0
    assert_same_training(out, target)
