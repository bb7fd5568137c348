"""The compare pipeline end to end with kfp's local runner, on a slice of the real Fashion-MNIST."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cnnvsmlp.config import load_config
from cnnvsmlp.records import EvalResult
from cnnvsmlp_pipelines.local_runner import describe_failure, local_copy, run_local
from cnnvsmlp_pipelines.runs import new_run_dir

VARIANTS = ["mlp", "cnn", "cnn-3conv", "cnn-3conv-bn"]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory, fashion_dir):
    resume = tmp_path_factory.mktemp("resume")
    config = load_config(
        "fashion-mnist",
        ["epochs=1", "limit=3000", "source=idx", f"idx_dir={fashion_dir}", f"resume_uri={resume}"],
    )
    runs = tmp_path_factory.mktemp("runs")
    return config, run_local("compare", config, runs_dir=runs, quiet=True)


def test_dry_run_writes_a_comparison_of_every_variant(dry_run):
    config, run_dir = dry_run
    report = run_dir / "report"
    comparison = json.loads((report / "comparison.json").read_text())
    assert comparison["experiment"] == "fashion-mnist"
    assert [v["variant"] for v in comparison["variants"]] == VARIANTS
    for variant in comparison["variants"]:
        accuracy = variant["test_accuracy"]["estimate"]
        assert variant["test_accuracy"]["low"] <= accuracy <= variant["test_accuracy"]["high"]
        assert variant["params"] > 600_000
        # 75 steps leave batch norm's moving statistics unsettled; the others learn at once.
        if variant["variant"] != "cnn-3conv-bn":
            assert accuracy > 0.5, variant
    assert len(comparison["pairs"]) == 6
    markdown = (report / "report.md").read_text()
    assert all(f"| {v} " in markdown for v in VARIANTS)
    assert "data:image/png;base64," in (report / "report.html").read_text()
    assert list((report / "plots").glob("*.png"))
    assert json.loads((run_dir / "config.json").read_text())["limit"] == 3000


def test_dry_run_keeps_every_artifact(dry_run):
    _, run_dir = dry_run
    pipeline = run_dir / "pipeline"
    results = sorted(pipeline.rglob("evaluate-model*/result"))
    assert len(results) == 4
    scored = [EvalResult.read(p) for p in results]
    assert sorted(r.run.variant for r in scored) == sorted(VARIANTS)
    assert all(r.n_test == 3000 and len(r.predictions) == 3000 for r in scored)
    models = sorted(pipeline.rglob("train-model*/model/model.keras"))
    assert len(models) == 4
    dataset = next(pipeline.rglob("prepare-data/dataset/metadata.json"))
    assert json.loads(dataset.read_text())["counts"] == {
        "train": 2400,
        "validation": 600,
        "test": 3000,
    }


def test_dry_run_keeps_every_task_log_and_marks_the_run_complete(dry_run):
    _, run_dir = dry_run
    per_run = [f"{t}-{v}-r0.log" for v in VARIANTS for t in ("train-model", "evaluate-model")]
    fixed = ["run.log", "prepare-data.log", "plan-runs.log", "compare-runs.log", "check-runs.log"]
    assert sorted(p.name for p in (run_dir / "logs").iterdir()) == sorted(fixed + per_run)
    assert "Got executor_input" in (run_dir / "logs" / "train-model-mlp-r0.log").read_text()
    assert json.loads((run_dir / "status.json").read_text())["status"] == "complete"
    assert (run_dir.parent / "latest").resolve() == run_dir.resolve()


def test_training_state_is_mirrored_per_job_and_run(dry_run):
    config, _ = dry_run
    jobs = [p for p in Path(config.resume_uri).iterdir() if p.is_dir()]
    assert len(jobs) == 1 and "{{" not in jobs[0].name  # the job id placeholder was filled in
    assert sorted(p.name for p in jobs[0].iterdir()) == sorted(f"{v}-r0" for v in VARIANTS)
    for run in jobs[0].iterdir():
        # One folder per training key (beside it, its writer's lock); a finished training
        # keeps its model, not its epoch state.
        (training,) = [p for p in run.iterdir() if p.is_dir()]
        assert sorted(p.name for p in run.iterdir()) == sorted(
            [training.name, f"{training.name}.lock"]
        )
        marker = json.loads((training / "finished.json").read_text())
        assert marker["key"] == training.name and marker["run_id"] == run.name
        assert (training / "model.keras").is_file()
        assert not (training / "checkpoints").exists()


def test_a_second_local_run_reuses_every_training_and_evaluation(dry_run, tmp_path):
    config, first = dry_run
    second = run_local("compare", config, runs_dir=tmp_path, quiet=True)
    a = json.loads((first / "report" / "comparison.json").read_text())
    b = json.loads((second / "report" / "comparison.json").read_text())
    assert [v["test_accuracy"] for v in a["variants"]] == [
        v["test_accuracy"] for v in b["variants"]
    ]
    assert a["pairs"] == b["pairs"]
    events = [
        json.loads(line)
        for line in (second / "pipeline" / "progress.jsonl").read_text().splitlines()
    ]
    run_ids = sorted(f"{v}-r0" for v in VARIANTS)
    assert sorted(e["run_id"] for e in events if e["kind"] == "reused") == run_ids
    assert not [e for e in events if e["kind"] in ("start", "epoch")]
    for run_id in run_ids:
        log = (second / "logs" / f"evaluate-model-{run_id}.log").read_text()
        assert f"evaluate: {run_id}: evaluation reused from " in log


def test_run_folders_never_overwrite(tmp_path):
    config = load_config("fashion-mnist")
    first, second = new_run_dir(tmp_path, config), new_run_dir(tmp_path, config)
    assert first != second and first.is_dir() and second.is_dir()


def test_invalid_config_fails_before_running(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cnnvsmlp_pipelines.cli",
            "run",
            "--runs-dir",
            str(tmp_path),
            "repeats=0",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: preset fashion-mnist: repeats: Input should be greater than or equal to 1"
    )
    assert not list(tmp_path.iterdir())


def test_runs_dir_that_cannot_hold_runs_is_one_line(tmp_path):
    from cnnvsmlp.errors import UserError

    config = load_config("fashion-mnist")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="file: is a file, not a folder for runs"):
        new_run_dir(tmp_path / "file", config)
    with pytest.raises(UserError, match="cannot create a run folder"):
        new_run_dir(tmp_path / "file" / "below", config)


def test_local_runs_are_not_retried_but_the_cluster_ones_are():
    from cnnvsmlp_pipelines import get_pipeline

    pipeline = get_pipeline("compare").pipeline

    def retried(spec) -> list[str]:
        dags = [spec.root.dag] + [c.dag for c in spec.components.values() if c.HasField("dag")]
        return [n for d in dags for n, t in d.tasks.items() if t.HasField("retry_policy")]

    assert retried(pipeline.pipeline_spec) == ["train-model"]
    local = local_copy(pipeline, parallel=1).pipeline_spec
    assert retried(local) == []
    assert local.root.dag.tasks["for-loop-1"].iterator_policy.parallelism_limit == 1
    assert retried(pipeline.pipeline_spec) == ["train-model"]  # the original is untouched


def test_a_failed_iteration_names_its_run():
    config = load_config("fashion-mnist", ["repeats=2"])
    # The loop's items are the runs in the order they start (plan_runs).
    iteration = [r.run_id for r in config.scheduled_runs()].index("cnn-r1")
    message = (
        "Pipeline \x1b[95m'compare'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m. Inner task "
        f"failed: \x1b[96m'train-model'\x1b[0m inside \x1b[96m'for-loop-1-iteration-{iteration}'"
        "\x1b[0m."
    )
    assert describe_failure(message, config).startswith(
        "task 'train-model' of cnn-r1 (variant cnn, repeat 1, seed 1) failed; its log above"
    )


def test_a_run_folder_is_compared_again_from_its_records(dry_run, tmp_path):
    """Every prediction is in the evaluation records: a later analysis needs no retraining."""
    import shutil

    from cnnvsmlp.report.__main__ import main

    _, run_dir = dry_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, symlinks=True)
    before = json.loads((copy / "report" / "comparison.json").read_text())
    (copy / "report" / "comparison.json").unlink()
    assert main([str(copy)]) == 0
    after = json.loads((copy / "report" / "comparison.json").read_text())
    assert [p["estimate"] for p in after["pairs"]] == [p["estimate"] for p in before["pairs"]]
    assert [(p["low"], p["high"]) for p in after["pairs"]] == [
        (p["low"], p["high"]) for p in before["pairs"]
    ]
    assert not list(copy.rglob("train-model*/model/*.partial*"))  # nothing was trained
