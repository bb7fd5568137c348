"""The comparison artifact: structure, verdicts and errors, on hand-made runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnvsmlp.config import RunSpec, TrainConfig, load_config
from cnnvsmlp.data import labels_digest
from cnnvsmlp.records import ClassMetrics, Epoch, EvalResult, Hardware, TrainResult
from cnnvsmlp.report import Comparison, ReportError, terminal_table, write_comparison

CLASSES = [str(i) for i in range(10)]
LABELS = np.arange(2000) % 10
HARDWARE = Hardware(device="cpu", name="test CPU", cpu_count=2, tensorflow="2.21.0")


def make_run(variant: str, repeat: int, accuracy: float, val: list[float]) -> EvalResult:
    """A run whose first ``accuracy`` share of test images is predicted right."""
    rng = np.random.default_rng(repeat)
    correct = rng.random(len(LABELS)) < accuracy
    predictions = np.where(correct, LABELS, (LABELS + 1) % 10)
    run = RunSpec(variant=variant, repeat=repeat, seed=repeat)
    history = [
        Epoch(
            epoch=i + 1,
            loss=1.0 / (i + 1),
            accuracy=v,
            val_loss=1.1 / (i + 1),
            val_accuracy=v,
            time_s=2.0,
        )
        for i, v in enumerate(val)
    ]
    confusion = np.zeros((10, 10), int)
    np.add.at(confusion, (LABELS, predictions), 1)
    training = TrainResult(
        run=run,
        dataset="fashion-mnist",
        train=TrainConfig(epochs=len(val), batch_size=32, optimizer="adam"),
        history=history,
        params=1000 if variant == "mlp" else 500,
        n_train=100,
        n_validation=20,
        train_time_s=4.0,
        train_images_per_s=50.0,
        hardware=HARDWARE,
    )
    return EvalResult(
        run=run,
        dataset="fashion-mnist",
        classes=CLASSES,
        accuracy=float(np.mean(predictions == LABELS)),
        loss=0.3,
        n_test=len(LABELS),
        per_class=[
            ClassMetrics(
                name=c, precision=0.9, recall=float(confusion[i, i] / 200), f1=0.9, support=200
            )
            for i, c in enumerate(CLASSES)
        ],
        confusion=confusion.tolist(),
        predictions=predictions.tolist(),
        labels_sha256=labels_digest(LABELS),
        params=training.params,
        model_size_bytes=4000,
        inference_images_per_s=1000.0,
        training=training,
        hardware=HARDWARE,
    )


@pytest.fixture
def config():
    return load_config("fashion-mnist", ["variants=mlp,cnn,cnn-3conv", "repeats=3"])


@pytest.fixture
def runs():
    return [
        make_run(variant, r, acc, [0.80, acc + 0.01, acc])
        for variant, acc in (("cnn", 0.95), ("mlp", 0.80), ("cnn-3conv", 0.951))
        for r in range(3)
    ]


def test_report_files_and_json(config, runs, tmp_path):
    comparison = write_comparison(runs[::-1], config, LABELS, tmp_path)
    data = json.loads((tmp_path / "comparison.json").read_text())
    assert Comparison.model_validate(data) == comparison
    assert data["schema_version"] == "1.0"
    assert [v["variant"] for v in data["variants"]] == ["mlp", "cnn", "cnn-3conv"]
    cnn = data["variants"][1]
    assert [r["repeat"] for r in cnn["runs"]] == [0, 1, 2]
    assert cnn["runs"][0]["best_epoch"] == 2
    assert cnn["test_accuracy"]["method"] == "t"
    accs = [r["test_accuracy"] for r in cnn["runs"]]
    assert cnn["test_accuracy"]["estimate"] == pytest.approx(np.mean(accs))
    assert cnn["reference"]["accuracy"] == 0.9101 and cnn["reference"]["split"] == "test"
    assert cnn["reference"]["difference"] == pytest.approx(np.mean(accs) - 0.9101)
    assert len(data["pairs"]) == 3 and all(len(p["tests"]) == 3 for p in data["pairs"])

    markdown = (tmp_path / "report.md").read_text()
    for variant in ("mlp", "cnn", "cnn-3conv"):
        assert f"| {variant} " in markdown
    assert "91.01" in markdown and "91.10" in markdown  # the seed's numbers beside ours
    assert "McNemar" in markdown and "![Learning curves](plots/learning_curves.png)" in markdown
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "<table>" in html
    plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert plots == [
        "accuracy_vs_cost.png",
        "confusion_matrices.png",
        "learning_curves.png",
        "per_class_accuracy.png",
    ]
    for plot in (tmp_path / "plots").iterdir():
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_verdicts(config, runs, tmp_path):
    comparison = write_comparison(runs, config, LABELS, tmp_path)
    pairs = {(p.a, p.b): p for p in comparison.pairs}
    strong = pairs[("cnn", "mlp")] if ("cnn", "mlp") in pairs else pairs[("cnn-3conv", "mlp")]
    assert strong.significant
    assert "beats mlp by" in strong.verdict and "p < 0.001 in all 3 repeats" in strong.verdict
    close = pairs.get(("cnn-3conv", "cnn")) or pairs[("cnn", "cnn-3conv")]
    assert not close.significant
    assert close.verdict.startswith("No significant difference between")
    assert "of 3 repeats" in close.verdict
    assert "beats mlp" in terminal_table(comparison)


def test_single_run_uses_test_set_intervals(tmp_path):
    config = load_config("fashion-mnist", ["variants=cnn,mlp"])
    runs = [make_run("cnn", 0, 0.9, [0.9]), make_run("mlp", 0, 0.8, [0.8])]
    comparison = write_comparison(runs, config, LABELS, tmp_path)
    assert comparison.variants[0].test_accuracy.method == "wilson"
    assert comparison.pairs[0].difference.method == "wald-paired"
    assert "in its single run" in comparison.pairs[0].verdict


def test_validation_reference_compared_with_final_validation(tmp_path):
    config = load_config("emnist-letters", ["variants=mlp"])
    run = make_run("mlp", 0, 0.9, [0.85, 0.88])
    run = run.model_copy(update={"dataset": "emnist-letters"})
    comparison = write_comparison([run], config, LABELS, tmp_path)
    ref = comparison.variants[0].reference
    assert ref.split == "validation" and ref.ours == pytest.approx(0.88)
    assert comparison.pairs == []
    assert "nothing to compare" in (tmp_path / "report.md").read_text()


def test_predictions_on_other_labels_are_refused(config, runs, tmp_path):
    with pytest.raises(ReportError, match="run cnn-r0 was scored on other test labels"):
        write_comparison(runs, config, LABELS[::-1], tmp_path)
    assert not (tmp_path / "comparison.json").exists()
