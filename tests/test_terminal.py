"""What a person sees of a local run: per-task logs, progress lines and bars, the run list."""

import io
import json
import os
import re

import pytest
from kfp import dsl, local

from cnnvsmlp import progress
from cnnvsmlp.config import load_config
from cnnvsmlp_pipelines.kfp_local import LocalSession, TaskLog, killed_by
from cnnvsmlp_pipelines.runs import (
    header,
    list_runs,
    point_latest,
    read_status,
    write_status,
)

ANSI = re.compile(r"\x1b\[")


@dsl.component(base_image="python:3.11")
def noisy_training(epochs: int) -> str:
    """Stands in for a training: kfp-like noise on both streams, and progress events."""
    import sys

    from cnnvsmlp import progress

    progress.forward()
    print("E0000 00:00:1 node_def_util.cc:682] NodeDef mentions attribute", file=sys.stderr)
    print("1500/1500 - 47s - 32ms/step - accuracy: 0.8683", flush=True)
    progress.report("start", "mlp-r0", "starting", epoch=1, epochs=epochs)
    for epoch in range(1, epochs + 1):
        progress.report("step", "mlp-r0", "step", epoch=epoch, epochs=epochs, step=5, steps=10)
        progress.report(
            "epoch",
            "mlp-r0",
            f"epoch {epoch}",
            epoch=epoch,
            epochs=epochs,
            loss=0.5 / epoch,
            accuracy=0.8,
            val_loss=0.6,
            val_accuracy=0.75,
            seconds=1.5,
        )
    progress.report("done", "mlp-r0", "done", epochs=epochs, seconds=3.0, val_accuracy=0.75)
    return "trained"


@dsl.component(base_image="python:3.11")
def killed(after: str):
    """Ends the way the out-of-memory killer ends a training."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


@dsl.pipeline(name="two-steps")
def two_steps(epochs: int = 2):
    trained = noisy_training(epochs=epochs).set_cpu_request("1")  # kfp warns it is ignored
    killed(after=trained.output)


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    events = root / "progress.jsonl"
    ended = []
    session = LocalSession(
        root / "logs",
        job_id="job-1",
        environment={progress.ENV: str(events)},
        on_task_end=ended.append,
    )
    with pytest.raises(RuntimeError):
        session.run(two_steps, {"epochs": 2}, local.SubprocessRunner(use_venv=False), root / "p")
    return root, session, ended


def test_every_task_output_goes_whole_to_its_log_and_nothing_to_the_screen(killed_run, capfd):
    root, session, ended = killed_run
    # The fixture ran before capfd started: run a second, quick session under it.
    again = LocalSession(root / "logs2", job_id="job-2")
    with pytest.raises(RuntimeError):
        again.run(two_steps, {"epochs": 1}, local.SubprocessRunner(use_venv=False), root / "p2")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    log = (root / "logs2" / "noisy-training.log").read_text()
    assert "Got executor_input" in log  # kfp's dump, kept whole
    assert "NodeDef mentions attribute" in log and "1500/1500" in log
    kfp_log = (root / "logs2" / "run.log").read_text()
    assert "Executing task" in kfp_log
    assert "settings ['cpu_request'] have no effect" in kfp_log
    assert sorted(p.name for p in (root / "logs").iterdir()) == [
        "killed.log",
        "noisy-training.log",
        "run.log",
    ]
    assert [t.task for t in ended] == ["noisy-training", "killed"]


def test_a_task_killed_by_sigkill_is_named_with_its_signal_and_likely_cause(killed_run):
    root, session, _ = killed_run
    failed = session.failed()
    assert failed.task == "killed" and killed_by(failed.returncode).name == "SIGKILL"
    line = failed.explain()
    assert "\n" not in line
    assert line.startswith("task 'killed' was killed by SIGKILL, most likely by the out-of-memory")
    assert "lower batch_size (BATCH=) or limit (LIMIT=)" in line
    assert line.endswith(f"its log: {root / 'logs' / 'killed.log'}")


def test_a_failed_task_names_its_run_the_exception_and_its_log(tmp_path):
    from cnnvsmlp.config import RunSpec

    log = tmp_path / "train-model-cnn-r1.log"
    log.write_text(
        "Traceback (most recent call last):\n  File 'x', line 1\n"
        "cnnvsmlp.train.TrainingDiverged: cnn-r1: loss became nan\nKilled? no\n"
    )
    task = TaskLog("train-model", log, RunSpec(variant="cnn", repeat=1, seed=1), returncode=1)
    assert task.explain() == (
        "task 'train-model' of cnn-r1 (variant cnn, repeat 1, seed 1) failed: "
        f"cnnvsmlp.train.TrainingDiverged: cnn-r1: loss became nan; its log: {log}"
    )
    assert killed_by(-15).name == "SIGTERM" and killed_by(1) is None and killed_by(0) is None


def test_progress_events_reach_the_runner_through_the_file(killed_run):
    root, _, _ = killed_run
    events = next(progress.read_events(root / "progress.jsonl"))
    assert [e.kind for e in events] == ["start", "step", "epoch", "step", "epoch", "done"]
    assert {e.run_id for e in events} == {"mlp-r0"}
    assert events[2].epoch == 1 and events[2].loss == 0.5


def test_without_the_runner_events_are_plain_lines_on_stderr(capfd):
    progress.forward(environ={})
    progress.report("epoch", "cnn-r0", "epoch 2/5 loss 0.4100", epoch=2, epochs=5, loss=0.41)
    assert capfd.readouterr().err == "progress: cnn-r0: epoch 2/5 loss 0.4100\n"
    with pytest.raises(ValueError, match="unknown progress keys"):
        progress.report("epoch", "cnn-r0", "x", acc=1.0)


def test_an_event_line_names_its_training():
    event = progress.Event(kind="epoch", run_id="cnn-r0", epoch=2, epochs=5, loss=0.41, seconds=31)
    assert event.line() == "cnn-r0  epoch 2/5  loss 0.410  0:31"
    resumed = progress.Event(kind="resumed", run_id="cnn-r0", epoch=3, epochs=5, **{"from": "x"})
    assert resumed.line() == "cnn-r0  resumed after epoch 3 of 5"


def _preset_events(config):
    runs = [r.run_id for r in config.scheduled_runs()]
    epochs = config.train.epochs
    for run in runs:
        yield progress.Event(kind="start", run_id=run, epochs=epochs)
        for epoch in range(1, epochs + 1):
            for step in (500, 1000):
                yield progress.Event(
                    kind="step", run_id=run, epoch=epoch, epochs=epochs, step=step, steps=1500
                )
            yield progress.Event(
                kind="epoch",
                run_id=run,
                epoch=epoch,
                epochs=epochs,
                loss=0.4,
                accuracy=0.85,
                val_accuracy=0.84,
                seconds=30.0,
            )
        yield progress.Event(kind="done", run_id=run, epochs=epochs, seconds=150.0)


def test_the_preset_run_prints_a_named_line_per_epoch_and_at_most_60_in_all(tmp_path):
    from cnnvsmlp.report.compare import compare
    from cnnvsmlp_pipelines import get_pipeline
    from cnnvsmlp_pipelines.runs import closing, epoch_seconds
    from test_report import LABELS, make_run

    config = load_config("fashion-mnist")
    out = io.StringIO()
    screen = progress.display(out, progress.Estimate(epoch_seconds(config), 5, 25.0))
    assert isinstance(screen, progress.PlainDisplay)
    for event in _preset_events(config):
        screen.event(event)
    lines = header("compare", config, tmp_path / "run", False, config.scheduled_runs())
    lines += out.getvalue().splitlines()
    assert not ANSI.search(out.getvalue())
    runs = {r.run_id for r in config.scheduled_runs()}
    assert all(line.split()[0] in runs for line in out.getvalue().splitlines())
    assert len(lines) == 3 + 4 * (1 + 5 + 1)
    accuracy = {"mlp": 0.87, "cnn": 0.91, "cnn-3conv": 0.905, "cnn-3conv-bn": 0.908}
    results = [make_run(v, 0, a, [a - 0.01] * 5) for v, a in accuracy.items()]
    table = closing(compare(results, config, LABELS), tmp_path / "run", 8.5)
    make_lines = 1  # setup's "data: Fashion-MNIST found in ..."
    assert make_lines + len(lines) + len(get_pipeline("compare").slow_steps) + len(table) <= 60
    assert "mlp-r0  epoch 2/5  loss 0.400  acc 0.850  val_acc 0.840  0:30" in lines
    assert lines[-1].endswith("(4/4 trainings done)")
    assert "(1/4 trainings done, about " in out.getvalue()
    assert "4 variants x 1 repeat = 4 trainings, 5 epochs each" in lines[0]
    assert re.search(r"about \d+ min", lines[2])


def test_the_live_display_has_a_bar_per_training_and_the_count(tmp_path):
    config = load_config("fashion-mnist")
    from cnnvsmlp_pipelines.runs import epoch_seconds

    out = io.StringIO()
    screen = progress.LiveDisplay(out, progress.Estimate(epoch_seconds(config), 5, 25.0))
    for event in _preset_events(config):
        screen.event(event)
    screen.close()
    text = out.getvalue()
    assert "4/4 done" in text
    for run in ("mlp-r0", "cnn-r0", "cnn-3conv-r0", "cnn-3conv-bn-r0"):
        assert run in text


def test_the_estimate_follows_the_measured_epochs():
    estimate = progress.Estimate({"a-r0": 10.0, "b-r0": 20.0}, epochs=2)
    assert estimate.seconds_left() == 60.0
    estimate.update(progress.Event(kind="epoch", run_id="a-r0", epoch=1, epochs=2, seconds=20.0))
    # a's epoch took twice the step-cost estimate: the rest is expected twice as slow too
    assert estimate.seconds_left() == 2 * (10.0 + 40.0)
    estimate.update(progress.Event(kind="reused", run_id="b-r0", **{"from": "runs/x"}))
    assert estimate.seconds_left() == 20.0


def test_runs_lists_status_config_and_best_accuracy(tmp_path):
    config = load_config("fashion-mnist", ["variants=cnn,mlp", "epochs=2"])
    done, stopped = tmp_path / "20261201-100000-fashion-mnist", tmp_path / "20261201-110000-x"
    for run_dir in (done, stopped):
        run_dir.mkdir()
        (run_dir / "config.json").write_text(config.model_dump_json())
    (done / "report").mkdir()
    (done / "report" / "comparison.json").write_text(
        json.dumps(
            {
                "variants": [
                    {"variant": "mlp", "test_accuracy": {"estimate": 0.87}},
                    {"variant": "cnn", "test_accuracy": {"estimate": 0.91}},
                ]
            }
        )
    )
    write_status(done, "complete", pid=os.getpid())
    write_status(stopped, "running", pid=2**22 + 12345)  # no such process: it was stopped
    point_latest(done)
    point_latest(stopped)
    assert os.readlink(tmp_path / "latest") == stopped.name
    assert read_status(stopped)["status"] == "interrupted"
    write_status(stopped, "interrupted", signal="SIGINT")
    write_status(stopped, "failed", error="prepare-data: bad input")
    assert read_status(stopped)["error"] == "prepare-data: bad input"
    assert "signal" not in read_status(stopped)  # the reason is the last attempt's only
    write_status(stopped, "running", pid=2**22 + 12345)
    assert "error" not in read_status(stopped) and read_status(stopped)["pid"] == 2**22 + 12345
    rows = list_runs(tmp_path)
    assert [(r["run"], r["status"], r["best"]) for r in rows] == [
        (stopped.name, "interrupted", ""),
        (done.name, "complete", "cnn 0.9100"),
    ]
    assert rows[0]["variants"] == "cnn,mlp" and rows[0]["epochs"] == 2


def test_a_local_run_keeps_its_trainings_where_a_resume_finds_them(tmp_path):
    from cnnvsmlp_pipelines.local_runner import local_config

    config = load_config("fashion-mnist")
    local = local_config(config, tmp_path, "run-1")
    assert local.resume_uri == str(tmp_path.resolve() / ".trainings")
    if "reuse_trainings" in type(config).model_fields:
        assert local.reuse_trainings and not local.resume_scope
        uncached = local_config(config, tmp_path, "run-1", cache=False)
        assert not uncached.reuse_trainings and uncached.resume_scope == "run-1"
    own = load_config("fashion-mnist", [f"resume_uri={tmp_path / 'mine'}"])
    assert local_config(own, tmp_path, "run-1").resume_uri == str(tmp_path / "mine")


def test_verbose_streams_every_line_named_by_its_task(tmp_path):
    out = io.StringIO()
    session = LocalSession(tmp_path / "logs", job_id="job-3", verbose=True, stream=out)
    with pytest.raises(RuntimeError):
        session.run(
            two_steps, {"epochs": 1}, local.SubprocessRunner(use_venv=False), tmp_path / "p"
        )
    text = out.getvalue()
    assert "noisy-training | 1500/1500 - 47s" in text
    assert "noisy-training | [KFP Executor" in text
    assert "Executing task" in text  # kfp's own lines, as it prints them
    assert "1500/1500 - 47s" in (tmp_path / "logs" / "noisy-training.log").read_text()


def test_a_partial_study_comparison_is_copied_to_the_report_and_named(tmp_path):
    from cnnvsmlp_pipelines import get_pipeline
    from cnnvsmlp_pipelines.local_runner import _keep_partial

    study = get_pipeline("data-efficiency")

    found = tmp_path / "pipeline" / "data-efficiency-x" / "compare-efficiency" / "comparison"
    found.mkdir(parents=True)
    failure = {"run": {"variant": "mlp", "repeat": 0, "seed": 0, "n_train": 375}}
    failure["run"]["run_id"] = "mlp-n375-r0"
    record = {"status": "partial", "failures": [failure]}
    (found / "comparison.json").write_text(json.dumps(record))
    (found / "report.md").write_text("# partial\n")
    report = tmp_path / "report"
    line = _keep_partial(tmp_path / "pipeline", report, study)
    assert (
        line
        == f"1 run failed for good: mlp-n375-r0. The partial comparison is in {report}/report.md"
    )
    assert (report / "report.md").read_text() == "# partial\n"
    record["status"] = "complete"
    (found / "comparison.json").write_text(json.dumps(record))
    assert _keep_partial(tmp_path / "pipeline", tmp_path / "r2", study) == ""


def test_a_reused_training_names_the_run_folder_it_came_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    origin = (
        tmp_path / "runs" / "20261201-144639-x" / "pipeline" / "compare-1" / "train-model" / "model"
    )
    event = progress.Event(kind="reused", run_id="mlp-r0", **{"from": str(origin)})
    assert event.line() == "mlp-r0  reused from runs/20261201-144639-x"
    elsewhere = progress.Event(kind="reused", run_id="mlp-r0", **{"from": "gs://b/resume/x/model"})
    assert elsewhere.line() == "mlp-r0  reused from gs://b/resume/x/model"
