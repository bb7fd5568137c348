"""Ctrl-C and SIGTERM to ``cnnvsmlp run``: nothing left running, one line, and a resume.

A real tiny run (2 variants, 2 epochs, 600 images) is stopped while it trains;
every process it started must be gone, stderr must hold the one line that
says how to continue, and the run folder must be marked interrupted.
``--resume`` then finishes it in the same folder, each training going on from
its last complete epoch (the training state the runner keeps in
``<runs_dir>/.trainings``, which ``cnnvsmlp.train`` resumes from), with the
weights of a run that was never stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import FASHION_DIR

CONFIG = ["epochs=2", "limit=600", "variants=cnn,mlp", "source=idx", f"idx_dir={FASHION_DIR}"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _cli(runs: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "cnnvsmlp_pipelines.cli", "run", "--runs-dir", str(runs), *args]


def _processes_naming(path: Path) -> list[int]:
    """Processes whose command line names ``path`` (every task's names its run folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if str(path).encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _run_dir(runs: Path) -> Path:
    (run_dir,) = [p for p in runs.iterdir() if not p.name.startswith(".") and not p.is_symlink()]
    return run_dir


def _stop_while_training(
    runs: Path, signum: int, after_epoch: bool, config: list[str] = CONFIG
) -> tuple[Path, str, int]:
    """Start a run, stop it once a training runs (or has finished an epoch); wait for its end."""
    child = subprocess.Popen(
        _cli(runs, *config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    deadline = time.monotonic() + 600
    while True:
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "no training started"
        # <resume_uri>/<scope>/<run id>/<training key>/state/: a complete epoch (docs/resume.md)
        states = list((runs / ".trainings").glob("*/*/*/state/epoch-*.json"))
        trainings = [
            p
            for p in runs.glob("*/logs/train-model-*.log")
            if "Got executor_input" in p.read_text()
        ]
        if (states if after_epoch else trainings) and _processes_naming(_run_dir(runs)):
            break
        time.sleep(0.2)
    child.send_signal(signum)
    out, err = child.communicate(timeout=120)
    return _run_dir(runs), out + err, child.returncode


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_run_ends_every_process_and_says_how_to_continue(tmp_path, signum):
    runs = tmp_path / "runs"
    run_dir, output, returncode = _stop_while_training(runs, signum, after_epoch=False)
    name = signal.Signals(signum).name
    assert returncode == 128 + signum
    assert "Traceback" not in output
    last = output.strip().splitlines()[-1]
    assert last == (
        f"run {run_dir.name} interrupted by {name}; its folder is {run_dir}; "
        f"continue it with: make run RESUME={run_dir.name}"
    )
    time.sleep(0.5)
    assert _processes_naming(run_dir) == []
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == name
    assert os.readlink(runs / "latest") == run_dir.name


@pytest.mark.slow
def test_a_runner_killed_by_sigkill_leaves_no_task_running_and_its_run_resumes(tmp_path):
    runs = tmp_path / "runs"
    tiny = ["epochs=1", "limit=300", "variants=cnn", *CONFIG[-2:]]
    run_dir, _, returncode = _stop_while_training(runs, signal.SIGKILL, False, tiny)
    assert returncode == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while _processes_naming(run_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_naming(run_dir) == []
    done = subprocess.run(
        _cli(runs, "--resume", run_dir.name), capture_output=True, text=True, env=ENV
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((run_dir / "status.json").read_text())["status"] == "complete"


def _weights(run_dir: Path) -> dict[str, list[np.ndarray]]:
    import keras

    job = sorted(p for p in (run_dir / "pipeline").iterdir() if p.is_dir())[-1]
    found = {}
    for model in job.glob("for-loop-*/train-model/model/model.keras"):
        train = json.loads((model.parent / "train.json").read_text())
        found[train["run"]["variant"]] = keras.saving.load_model(model).get_weights()
    return found


@pytest.mark.slow
def test_a_resumed_run_ends_with_the_weights_of_one_never_stopped(tmp_path):
    runs = tmp_path / "runs"
    run_dir, _, returncode = _stop_while_training(runs, signal.SIGINT, after_epoch=True)
    assert returncode == 128 + signal.SIGINT
    done = subprocess.run(
        _cli(runs, "--resume", run_dir.name), capture_output=True, text=True, env=ENV
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("resuming: compare / fashion-mnist")
    assert json.loads((run_dir / "status.json").read_text())["status"] == "complete"
    assert (run_dir / "report" / "comparison.json").is_file()
    resumed = [
        json.loads(p.read_text())["resumed_from_epoch"]
        for p in sorted(run_dir.glob("pipeline/*/for-loop-*/train-model/model/train.json"))
    ]
    assert 1 in resumed  # at least the training stopped after its first epoch went on from it

    straight = tmp_path / "straight"
    subprocess.run(_cli(straight, *CONFIG), check=True, capture_output=True, env=ENV)
    expected, got = _weights(_run_dir(straight)), _weights(run_dir)
    assert sorted(got) == sorted(expected) == ["cnn", "mlp"]
    for variant, weights in expected.items():
        assert all(np.array_equal(a, b) for a, b in zip(weights, got[variant], strict=True))


def test_resume_refuses_an_unknown_run_and_overrides(tmp_path):
    done = subprocess.run(
        _cli(tmp_path, "--resume", "nope"), capture_output=True, text=True, env=ENV
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: --resume nope: no run folder {tmp_path / 'nope'} with a config.json; "
        f"'cnnvsmlp runs --runs-dir {tmp_path}' lists the runs"
    )
    done = subprocess.run(
        _cli(tmp_path, "--resume", "x", "epochs=3"), capture_output=True, text=True, env=ENV
    )
    assert done.returncode == 2 and "keeps its recorded config" in done.stderr
    assert list(tmp_path.iterdir()) == []


class _FakeContainer:
    """A task container: its logs block until docker stops it."""

    def __init__(self, engine, labels):
        self.id, self.labels, self.engine = f"c{len(engine.made)}", labels, engine
        self.stopped, self.removed = threading.Event(), False

    def logs(self, stream, follow):
        yield b"Got executor_input\n"
        self.stopped.wait(30)

    def wait(self):
        return {"StatusCode": 137 if self.stopped.is_set() else 0}

    def stop(self, timeout):
        self.stopped.set()

    def remove(self, force):
        self.removed = True


class _FakeEngine:
    """The part of docker's client a run uses, for both the runner thread and stop()."""

    def __init__(self):
        self.made = []
        self.containers = self

    def run(self, image, command, labels, **kwargs):
        assert "auto_remove" not in kwargs  # the exit status must outlive the container
        self.made.append(_FakeContainer(self, labels))
        return self.made[-1]

    def list(self, all, filters):
        key, value = filters["label"].split("=", 1)
        return [c for c in self.made if c.labels.get(key) == value and not c.removed]

    def get(self, container_id):
        return next(c for c in self.made if c.id == container_id)

    def close(self):
        pass


def test_stopping_a_docker_run_stops_and_removes_every_container_it_started(tmp_path, monkeypatch):
    import docker

    from cnnvsmlp_pipelines.kfp_local import CONTAINER_LABEL, LocalSession

    engine = _FakeEngine()
    monkeypatch.setattr(docker, "from_env", lambda: engine)
    session = LocalSession(tmp_path / "logs", job_id="run-7")
    session.logs.mkdir()
    executor = json.dumps({"outputs": {"outputFile": "/p/train-model/executor_output.json"}})
    command = ["python", "--executor_input", executor]
    codes = []
    runner = threading.Thread(
        target=lambda: codes.append(
            session._run_container(engine, "img", command, {}, auto_remove=True)
        )
    )
    runner.start()
    while not engine.made:
        time.sleep(0.01)
    session.stop()
    runner.join(10)
    (container,) = engine.made
    assert container.labels == {CONTAINER_LABEL: "run-7"}
    assert container.stopped.is_set() and container.removed
    assert codes == [137]
    assert "Got executor_input" in (tmp_path / "logs" / "train-model.log").read_text()
    # A task the runner would start after the signal is not started.
    assert session._run_container(engine, "img", command, {}) == 1 and len(engine.made) == 1
