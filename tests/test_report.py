"""The comparison artifact: numbers, verdicts, files and errors, on hand-made runs."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from markupsafe import escape

from cnnvsmlp import pairwise
from cnnvsmlp.config import ConfigError, RunSpec, TrainConfig, load_config
from cnnvsmlp.data.store import labels_digest
from cnnvsmlp.provenance import Provenance, stamp
from cnnvsmlp.records import (
    ClassMetrics,
    EarlyStop,
    Epoch,
    EvalResult,
    Hardware,
    RunFailure,
    ShiftResult,
    TrainResult,
    is_permanent,
    read_result,
    record_failure,
)
from cnnvsmlp.report import write_comparison
from cnnvsmlp.report.blocks import MARKDOWN_LIMIT
from cnnvsmlp.report.compare import compare, read_comparison
from cnnvsmlp.report.model import (
    SPREAD_LIMIT,
    Comparison,
    ReportError,
    RunsFailed,
    check_complete,
)
from cnnvsmlp.report.plots import PLOTS
from cnnvsmlp.report.render import main_table, terminal_table
from cnnvsmlp.report.verdict import headline, verdict
from cnnvsmlp.storage import StorageError, StorageUnavailable

CLASSES = [f"class {i}" for i in range(10)]
LABELS = np.arange(2000) % 10
HARDWARE = Hardware(device="cpu", name="test CPU", cpu_count=2, tensorflow="2.21.0")
# On a cluster training runs on a GPU node and evaluation on a CPU node.
GPU = Hardware(device="gpu", name="test GPU", cpu_count=4, tensorflow="2.21.0")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Mean test accuracy of each variant; the CNNs differ by a few images, the MLP by hundreds.
ACCURACY = {"mlp": 0.80, "cnn": 0.95, "cnn-3conv": 0.951, "cnn-3conv-bn": 0.9505}


def make_run(
    variant: str, repeat: int, accuracy: float, val: list[float], dataset: str = "fashion-mnist"
) -> EvalResult:
    """A run right on the test images whose draw (seeded by the repeat) is below ``accuracy``.

    Runs of one repeat share the draw, so a more accurate variant is right on
    every image a less accurate one is right on.
    """
    correct = np.random.default_rng(repeat).random(len(LABELS)) < accuracy
    predictions = np.where(correct, LABELS, (LABELS + 1) % 10)
    run = RunSpec(variant=variant, repeat=repeat, seed=repeat)
    history = [
        Epoch(
            epoch=i + 1,
            loss=1.0 / (i + 1),
            accuracy=v + 0.01,
            val_loss=1.1 / (i + 1),
            val_accuracy=v,
            time_s=2.0 + i,
        )
        for i, v in enumerate(val)
    ]
    params = 1000 if variant == "mlp" else 500
    training = TrainResult(
        run=run,
        dataset=dataset,
        train=TrainConfig(epochs=len(val), batch_size=32, optimizer="adam"),
        history=history,
        params=params,
        n_train=100,
        n_validation=20,
        train_time_s=4.0,
        train_images_per_s=50.0,
        hardware=GPU,
    )
    confusion = np.zeros((10, 10), int)
    np.add.at(confusion, (LABELS, predictions), 1)
    return EvalResult(
        run=run,
        dataset=dataset,
        classes=CLASSES,
        accuracy=float(np.mean(correct)),
        loss=0.3 + repeat / 100,
        n_test=len(LABELS),
        per_class=[
            ClassMetrics(name=c, precision=0.9, recall=confusion[i, i] / 200, f1=0.9, support=200)
            for i, c in enumerate(CLASSES)
        ],
        confusion=confusion.tolist(),
        predictions=predictions.tolist(),
        labels_sha256=labels_digest(LABELS),
        params=params,
        model_size_bytes=4_000_000,
        inference_images_per_s=1000.0,
        training=training,
        hardware=HARDWARE,
    )


@pytest.fixture(scope="module")
def config():
    return load_config("fashion-mnist", ["repeats=3"])


@pytest.fixture(scope="module")
def runs(config):
    return [
        make_run(v, r, ACCURACY[v], [0.80, ACCURACY[v] + 0.01, ACCURACY[v]])
        for v in config.variants
        for r in range(3)
    ]


@pytest.fixture(scope="module")
def written(config, runs, tmp_path_factory):
    """The report of four variants, three repeats each, handed over in shuffled order."""
    out = tmp_path_factory.mktemp("comparison")
    shuffled = [runs[i] for i in np.random.default_rng(0).permutation(len(runs))]
    return write_comparison(shuffled, config, LABELS, out), out


def test_writes_every_file(written):
    _, out = written
    assert sorted(p.name for p in out.iterdir()) == [
        "comparison.json",
        "plots",
        "report.html",
        "report.md",
    ]
    plots = sorted((out / "plots").iterdir())
    assert [p.name for p in plots] == [
        "accuracy_vs_cost.png",
        "confusion_matrices.png",
        "learning_curves.png",
        "per_class_accuracy.png",
        "test_accuracy.png",
    ]
    for plot in plots:
        data = plot.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000, plot.name


def test_json_validates_and_holds_every_number(written):
    comparison, out = written
    data = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    assert Comparison.model_validate(data) == comparison
    assert data["schema_version"] == "3.0"
    assert (data["status"], data["failures"]) == ("complete", [])
    assert {"experiment", "dataset", "classes", "n_test", "repeats", "verdict_rule"} <= set(data)
    assert (data["n_test"], data["repeats"], data["confidence"]) == (2000, 3, 0.95)
    assert [v["variant"] for v in data["variants"]] == ["mlp", "cnn", "cnn-3conv", "cnn-3conv-bn"]

    cnn = data["variants"][1]
    assert [r["repeat"] for r in cnn["runs"]] == [0, 1, 2]
    run = cnn["runs"][0]
    assert (run["best_epoch"], run["best_val_accuracy"]) == (2, pytest.approx(0.96))
    assert run["final_val_accuracy"] == pytest.approx(0.95)
    assert (run["train_time_s"], run["epoch_time_s"]) == (9.0, 3.0)
    assert len(run["history"]) == 3
    accuracies = [r["test_accuracy"] for r in cnn["runs"]]
    interval = pairwise.accuracy_interval([round(a * 2000) for a in accuracies], 2000)
    assert cnn["test_accuracy"] == pytest.approx(vars(interval))
    assert cnn["test_loss"] == pytest.approx(0.31)
    assert (cnn["params"], cnn["model_size_bytes"]) == (500, 4_000_000)
    assert (cnn["train_images_per_s"], cnn["inference_images_per_s"]) == (50.0, 1000.0)
    assert cnn["hardware"] == [GPU.model_dump()]
    assert cnn["inference_hardware"] == [HARDWARE.model_dump()]
    assert (cnn["runs"][0]["hardware"], cnn["runs"][0]["inference_hardware"]) == (
        "test GPU",
        "test CPU",
    )
    assert np.sum(cnn["confusion"]) == 3 * 2000 and len(cnn["per_class_recall"]) == 10

    assert data["variants"][0]["reference"] is None  # the seeds train no MLP on Fashion-MNIST
    reference = cnn["reference"]
    assert (reference["accuracy"], reference["split"]) == (0.9101, "test")
    assert reference["test_difference"] == pytest.approx(np.mean(accuracies) - 0.9101)
    assert reference["validation_difference"] is None

    assert len(data["pairs"]) == 6 and all(len(p["tests"]) == 3 for p in data["pairs"])


def test_pairs_state_the_cnn_minus_the_mlp_and_otherwise_the_better_first(written):
    comparison, _ = written
    for pair in comparison.pairs:
        a = next(v for v in comparison.variants if v.variant == pair.a)
        b = next(v for v in comparison.variants if v.variant == pair.b)
        if "mlp" in (pair.a, pair.b):
            assert pair.b == "mlp"  # the baseline family second, whichever is better
        else:
            assert a.test_accuracy.estimate >= b.test_accuracy.estimate
        for test, run_a, run_b in zip(pair.tests, a.runs, b.runs, strict=True):
            assert test.difference == pytest.approx(run_a.test_accuracy - run_b.test_accuracy)
        assert pair.per_seed == pytest.approx([t.difference for t in pair.tests])
        assert pair.estimate == pytest.approx(np.mean(pair.per_seed))
        assert [t.p_holm for t in pair.tests] == pytest.approx(
            pairwise.holm([t.p_value for t in pair.tests])
        )
        # One family: the pairs; each interval at 1 - 0.05 / 6.
        assert pair.family == 6 and pair.level == pytest.approx(1 - 0.05 / 6)
        assert pair.method == "seeds-and-images" and pair.seeds == 3


def test_verdicts_of_the_comparison(written):
    comparison, _ = written
    pairs = {(p.a, p.b): p for p in comparison.pairs}
    strong = pairs[("cnn", "mlp")]
    assert strong.verdict == "different"
    assert re.fullmatch(
        r"cnn beats mlp: \+1[45]\.\d\d points, simultaneous 95% CI \[\+[\d.]+, \+[\d.]+\] "
        r"\(3 seeds, adjusted p [<=] 0\.\d+\)\.",
        verdict(strong),
    )
    close = pairs[("cnn-3conv", "cnn")]
    assert close.verdict != "different"
    assert verdict(close).startswith(
        "cnn-3conv against cnn is inconclusive: "
        if close.verdict == "inconclusive"
        else "cnn-3conv and cnn are equivalent within +-1 point: "
    )


def test_input_order_does_not_change_the_comparison(config, runs, written):
    assert compare(runs, config, LABELS) == written[0]


def test_markdown_report(written):
    comparison, out = written
    markdown = (out / "report.md").read_text(encoding="utf-8")
    for v in comparison.variants:
        assert re.search(rf"^\| {re.escape(v.variant)} +\|", markdown, re.MULTILINE), v.variant
        if v.reference:
            assert f"{100 * v.reference.accuracy:.2f}" in markdown
    assert "91.01" in markdown and "91.10" in markdown and "91.24" in markdown
    assert "BatchNormalization() without adding it to the model" in markdown
    assert all(f"- {verdict(p)}" in markdown for p in comparison.pairs)
    assert comparison.verdict_rule in markdown
    assert "](data:image/png;base64," in markdown  # the artifact embeds its plots
    assert re.search(r"</?[a-z]", markdown) is None  # plain GitHub markdown: no raw HTML


def test_html_report_is_self_contained(written):
    _, out = written
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == len(PLOTS) == 5
    assert re.findall(r'(?:src|href)="(?!data:)', html) == []
    assert html.count("<table>") == 5
    assert "cnn beats mlp: +" in html and "&lt;" in html  # text escaped, tables kept as HTML


def test_terminal_table(written):
    comparison, _ = written
    text = terminal_table(comparison)
    assert "test acc % (95% CI)" in text and "seed %" in text
    for v in comparison.variants:
        assert f"\n{v.variant} " in text
    assert "cnn beats mlp: +" in text and "After 5 epochs, " in text


def test_single_repeat_uses_test_set_intervals(tmp_path):
    config = load_config("fashion-mnist", ["variants=cnn,mlp"])
    runs = [make_run("mlp", 0, 0.8, [0.8]), make_run("cnn", 0, 0.9, [0.9])]
    comparison = write_comparison(runs, config, LABELS, tmp_path)
    cnn = comparison.variants[0]
    assert cnn.test_accuracy.method == "wilson"
    correct = cnn.runs[0].test_correct
    assert vars(pairwise.accuracy_interval([correct], 2000)) == cnn.test_accuracy.model_dump()
    (pair,) = comparison.pairs
    test = pair.tests[0]
    b, c, n = test.only_a_correct, test.only_b_correct, 2000
    se = np.sqrt((b + c) / n - ((b - c) / n) ** 2) / np.sqrt(n - 1)  # the paired t over images
    assert (pair.method, pair.seeds, pair.estimate) == ("images", 1, pytest.approx((b - c) / n))
    assert pair.se == pytest.approx(se) and test.p_holm == test.p_value
    assert verdict(pair).endswith(
        "(one seed: the interval covers the test images, not the seed-to-seed spread, p < 0.001)."
    )
    assert "Wilson interval" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_one_variant_against_a_validation_reference(tmp_path):
    config = load_config("emnist-letters", ["variants=mlp"])
    run = make_run("mlp", 0, 0.9, [0.85, 0.88], dataset="emnist-letters")
    comparison = write_comparison([run], config, LABELS, tmp_path)
    (mlp,) = comparison.variants
    assert mlp.reference.split == "validation"
    assert mlp.reference.test_difference == pytest.approx(mlp.test_accuracy.estimate - 0.9204)
    assert mlp.reference.validation_difference == pytest.approx(0.88 - 0.9204)
    assert comparison.pairs == []
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "One variant only: nothing to compare." in markdown
    assert "92.04 (val)" in markdown and "-4.04" in markdown
    assert "printed by the seed as test accuracy" in markdown


def _difference(estimate, low, high, verdict, seeds=3, p=0.0001, p_eq=0.5):
    from cnnvsmlp.pairwise import Difference

    return Difference(
        a="cnn", b="mlp", estimate=estimate, low=low, high=high, level=0.95, se=0.01, df=2,
        p_value=p, p_adjusted=p, margin=0.01, p_equivalence=p_eq, p_equivalence_adjusted=p_eq,
        family=1, seeds=seeds, images=2000, method="seeds-and-images", verdict=verdict,
        per_seed=[estimate] * seeds,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("difference", "expected"),
    [
        (
            _difference(0.014, 0.011, 0.017, "different"),
            "cnn beats mlp: +1.40 points, 95% CI [+1.10, +1.70] (3 seeds, p < 0.001).",
        ),
        (
            _difference(-0.02, -0.03, -0.01, "different", p=0.012),
            "mlp beats cnn: +2.00 points, 95% CI [+1.00, +3.00] (3 seeds, p = 0.012).",
        ),
        (
            _difference(0.002, -0.004, 0.008, "equivalent", p=0.5, p_eq=0.01),
            "cnn and mlp are equivalent within +-1 point: cnn - mlp = +0.20 points, 95% CI "
            "[-0.40, +0.80] (3 seeds, TOST p = 0.010).",
        ),
        (
            _difference(0.001, -0.05, 0.05, "inconclusive", seeds=1, p=0.9),
            "cnn against mlp is inconclusive: +0.10 points, 95% CI [-5.00, +5.00] (one seed: "
            "the interval covers the test images, not the seed-to-seed spread); neither a "
            "difference nor equivalence within +-1 point is shown.",
        ),
    ],
)
def test_verdict_wording(difference, expected):
    assert verdict(difference) == expected


def _relabel(run: EvalResult, **changes) -> EvalResult:
    return run.model_copy(update={"run": run.run.model_copy(update=changes)})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda runs: runs,
            r"^compare: run mlp-r0 was scored on other test labels \(sha256 \w{12}\) than the "
            r"data set's \(\w{12}\); evaluate it again on this data set$",
        ),
        (lambda runs: [*runs, runs[4]], r"^compare: run cnn-r1 appears twice$"),
        (
            lambda runs: [r for r in runs if r.run.run_id != "cnn-3conv-r2"],
            r"^compare: variant cnn-3conv has repeats \[0, 1\] but mlp has \[0, 1, 2\]",
        ),
        (
            lambda runs: [r for r in runs if r.run.variant != "cnn"],
            r"^compare: no run of variant cnn$",
        ),
        (
            lambda runs: [*runs, _relabel(runs[0], variant="cnn-deep")],
            r"^compare: run cnn-deep-r0 is of variant cnn-deep, which experiment fashion-mnist "
            r"does not list \(mlp, cnn, cnn-3conv, cnn-3conv-bn\)$",
        ),
        (
            lambda runs: [runs[0].model_copy(update={"predictions": [10] * 2000}), *runs[1:]],
            r"^compare: run mlp-r0 predicts classes outside 0\.\.9$",
        ),
        (lambda runs: [], r"^compare: no runs to compare$"),
    ],
)
def test_runs_that_do_not_fit_are_refused(config, runs, tmp_path, change, message):
    labels = LABELS[::-1] if "test labels" in message else LABELS
    with pytest.raises(ReportError, match=message):
        write_comparison(change(runs), config, labels, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_repeats_spread_wider_than_the_limit_are_flagged(tmp_path):
    config = load_config("fashion-mnist", ["repeats=3", "variants=cnn,cnn-3conv-bn"])
    accuracy = {"cnn": [0.95, 0.95, 0.95], "cnn-3conv-bn": [0.95, 0.90, 0.95]}
    runs = [make_run(v, r, accuracy[v][r], [0.8, 0.9]) for v in accuracy for r in range(3)]
    comparison = write_comparison(runs, config, LABELS, tmp_path)
    cnn, bn = comparison.variants
    for v in (cnn, bn):
        each = [r.test_accuracy for r in v.runs]
        assert v.test_accuracy_spread == pytest.approx(max(each) - min(each))
    assert cnn.test_accuracy_spread <= SPREAD_LIMIT < bn.test_accuracy_spread
    assert cnn.spread_flag == ""
    low = bn.runs[1].test_accuracy
    assert bn.spread_flag.startswith(
        f"cnn-3conv-bn is unstable: its 3 repeats span {100 * bn.test_accuracy_spread:.2f} "
        f"points of test accuracy (repeat 1: {100 * low:.2f}%, "
    )
    data = json.loads((tmp_path / "comparison.json").read_text(encoding="utf-8"))
    assert data["spread_limit"] == SPREAD_LIMIT
    assert [v["spread_flag"] == "" for v in data["variants"]] == [True, False]
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    verdicts = markdown.split("## Verdicts", 1)[1].split("##", 1)[0]
    assert f"- **Unstable:** {bn.spread_flag}" in verdicts
    assert f"- {bn.spread_flag}" in terminal_table(comparison)


def _trained_on(run: EvalResult, hardware: Hardware) -> EvalResult:
    return run.model_copy(
        update={"training": run.training.model_copy(update={"hardware": hardware})}
    )


def test_reproducibility_envelope_names_the_numerics(tmp_path):
    config = load_config("fashion-mnist", ["variants=cnn,mlp"])
    amd = Hardware(
        device="cpu",
        name="AMD EPYC",
        cpu_count=2,
        tensorflow="2.21.0",
        cpu="AMD EPYC",
        cpu_flags=["avx", "avx2", "f16c", "fma"],
        tensorflow_git="v2.21.0-rc1-5-ga481b10260d",
        build={"is_cuda_build": "False"},
        onednn=False,
        intra_op_threads=0,
    )
    xeon = amd.model_copy(
        update={
            "name": "Intel Xeon",
            "cpu": "Intel Xeon",
            "cpu_flags": ["avx2", "avx512f", "avx512_vnni", "fma"],
            "onednn": True,
            "cpu_count": 16,
        }
    )
    mlp, cnn = make_run("mlp", 0, 0.8, [0.8]), make_run("cnn", 0, 0.9, [0.9])
    same = compare([_trained_on(mlp, amd), _trained_on(cnn, amd)], config, LABELS)
    assert same.reproducibility.startswith(
        "Every run trained with the same numerics: AMD EPYC [avx avx2 fma], TensorFlow 2.21.0 "
        "(v2.21.0-rc1-5-ga481b10260d), oneDNN off (TF_ENABLE_ONEDNN_OPTS unset), 2 threads. "
    )
    runs = [_trained_on(mlp, amd), _trained_on(cnn, xeon)]
    comparison = write_comparison(runs, config, LABELS, tmp_path)
    text = comparison.reproducibility
    assert text.startswith("The runs trained with 2 different numerics: ")
    assert "Intel Xeon [avx2 avx512f avx512_vnni fma]" in text
    assert "oneDNN on (TF_ENABLE_ONEDNN_OPTS unset), 16 threads" in text
    section = (tmp_path / "report.md").read_text(encoding="utf-8").split("## Reproducibility")[1]
    assert text in section
    assert re.search(
        r"^\| cnn +\| 0\.00 +\| Intel Xeon +\| avx2 avx512f avx512_vnni fma", section, re.M
    )


def test_comparisons_of_schema_2_1_still_read(written):
    comparison, _ = written
    data = json.loads(comparison.model_dump_json())
    del data["spread_limit"], data["reproducibility"]
    new_hardware_fields = set(Hardware.model_fields) - {"device", "name", "cpu_count", "tensorflow"}
    for v in data["variants"]:
        del v["test_accuracy_spread"], v["spread_flag"]
        for h in v["hardware"] + v["inference_hardware"]:
            for field in new_hardware_fields:
                del h[field]
    old = Comparison.model_validate(data)
    assert old.variants[0].hardware[0].onednn is None and old.reproducibility == ""


# ---------------------------------------------------------------- runs that failed for good


def _failure(variant: str, repeat: int, message: str = "loss is nan at epoch 2") -> RunFailure:
    return RunFailure(
        run=RunSpec(variant=variant, repeat=repeat, seed=repeat),
        dataset="fashion-mnist",
        stage="train",
        error="TrainingDiverged",
        message=message,
    )


def test_a_failed_variant_is_listed_and_the_others_compared(config, runs, tmp_path):
    # mlp's repeat 1 diverged; its other repeats finished but cannot be paired.
    mixed = [r for r in runs if (r.run.variant, r.run.repeat) != ("mlp", 1)]
    mixed.append(_failure("mlp", 1))
    comparison = write_comparison(mixed, config, LABELS, tmp_path)
    complete = compare(
        [r for r in runs if r.run.variant != "mlp"],
        config.model_copy(update={"variants": ["cnn", "cnn-3conv", "cnn-3conv-bn"]}),
        LABELS,
    )
    assert comparison.status == "partial"
    assert [v.variant for v in comparison.variants] == ["cnn", "cnn-3conv", "cnn-3conv-bn"]
    assert comparison.variants == complete.variants and comparison.pairs == complete.pairs
    assert [(f.variant, f.repeat, f.error, f.message) for f in comparison.failures] == [
        ("mlp", 1, "TrainingDiverged", "loss is nan at epoch 2")
    ]
    data = Comparison.model_validate_json((tmp_path / "comparison.json").read_text())
    assert data == comparison
    summary = (
        "1 run failed for good: mlp-r1 (TrainingDiverged: loss is nan at epoch 2); "
        "variant mlp left out; cnn, cnn-3conv, cnn-3conv-bn compared."
    )
    markdown = (tmp_path / "report.md").read_text()
    assert f"**Partial comparison.** {summary}" in markdown
    assert "## Failed runs" in markdown
    assert "| mlp-r1 | 1      | train   | TrainingDiverged | loss is nan at epoch 2 |" in markdown
    html = (tmp_path / "report.html").read_text()
    assert '<h2 id="failed-runs">Failed runs</h2>' in html and "<td>mlp-r1</td>" in html
    assert terminal_table(comparison).endswith(f"PARTIAL: {summary}")
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(
        f"{name}.png" for name in PLOTS
    )
    with pytest.raises(RunsFailed) as err:
        check_complete(tmp_path / "comparison.json")
    assert str(err.value) == f"partial comparison ({tmp_path / 'comparison.json'}): {summary}"


def test_every_variant_failed_still_writes_the_failures(config, tmp_path):
    failures = [_failure(v, r, "out of memory") for v in config.variants for r in range(3)]
    comparison = write_comparison(failures, config, LABELS, tmp_path)
    assert comparison.status == "failed" and not comparison.variants and not comparison.pairs
    assert len(comparison.failures) == 12
    assert [f.variant for f in comparison.failures][:3] == ["mlp"] * 3  # the config's order
    assert "nothing left to compare" in (tmp_path / "report.md").read_text()
    assert '<h2 id="failed-runs">' in (tmp_path / "report.html").read_text()
    assert not (tmp_path / "plots").exists()
    with pytest.raises(RunsFailed, match=r"^failed comparison \("):
        check_complete(tmp_path / "comparison.json")


def test_a_complete_comparison_passes_the_check(written):
    _, out = written
    check_complete(out / "comparison.json")
    assert "Failed runs" not in (out / "report.md").read_text()


def test_a_comparison_of_the_previous_schema_still_reads(written):
    _, out = written
    data = json.loads((out / "comparison.json").read_text())
    del data["status"], data["failures"]
    data["schema_version"] = "2.1"
    assert Comparison.model_validate(data).status == "complete"


def test_a_failure_of_another_data_set_is_refused(config, runs, tmp_path):
    other = _failure("mlp", 0).model_copy(update={"dataset": "emnist-letters"})
    with pytest.raises(ReportError, match=r"^compare: run mlp-r0 is on emnist-letters"):
        write_comparison([*runs[1:], other], config, LABELS, tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_results_and_failures_read_back_as_what_they_are(runs, tmp_path):
    runs[0].write(tmp_path / "ok.json")
    _failure("cnn", 0).write(tmp_path / "failed.json")
    assert read_result(tmp_path / "ok.json") == runs[0]
    assert read_result(tmp_path / "failed.json") == _failure("cnn", 0)


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (ConfigError("config: epochs: bad"), True),
        (StorageError("gs://b/x: permission denied (403)"), True),
        (StorageUnavailable("gs://b/x: Cloud Storage did not answer"), False),
        (RuntimeError("worker preempted"), False),
        (OSError("disk full"), False),
    ],
)
def test_only_errors_a_retry_cannot_fix_become_failure_records(error, permanent, tmp_path):
    run = RunSpec(variant="cnn", repeat=0, seed=0)
    written = record_failure(error, run, "fashion-mnist", "train", tmp_path / "failure.json")
    assert (written is not None) == permanent
    assert (tmp_path / "failure.json").is_file() == permanent


def test_out_of_accelerator_memory_is_permanent():
    import tensorflow as tf

    assert is_permanent(tf.errors.ResourceExhaustedError(None, None, "OOM when allocating"))


# ---------------------------------------------------------------- what a reviewer sees


def _first(text: str, *needles: str) -> int:
    found = [text.find(n) for n in needles if n in text]
    return min(found) if found else -1


def test_the_first_screen_is_title_headline_plot_then_table(written):
    comparison, out = written
    html = (out / "report.html").read_text(encoding="utf-8")
    markdown = (out / "report.md").read_text(encoding="utf-8")
    head = headline(comparison)
    assert head.startswith("After 5 epochs, cnn beats mlp by ")
    assert "(3 seeds and the test images; simultaneous over the 6 pairs)" in head
    assert "; among the CNNs, " in head
    assert "<title>fashion-mnist comparison, run " in html
    for text, image, table in ((html, "<img", "<table>"), (markdown, "![", "\n| ")):
        assert 0 < text.index(str(escape(head)) if text is html else head)
        plot, first_table = text.index(image), text.index(table)
        assert plot < first_table, "a plot must come before the first table"
        assert text.find("Test accuracy of each variant") < first_table
    # The evidence is folded in the HTML: hardware, reproducibility, each run, the seeds.
    for section in ("Each run", "Against the seeds&#39; numbers", "Hardware", "Reproducibility"):
        assert f"<details><summary><h2>{section}</h2></summary>" in html


def test_the_markdown_artifact_renders_alone(written, tmp_path):
    from markdown_it import MarkdownIt

    _, out = written
    alone = tmp_path / "report.md"
    alone.write_bytes((out / "report.md").read_bytes())  # nothing beside it
    text = alone.read_text(encoding="utf-8")
    assert len(text) <= MARKDOWN_LIMIT
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    images = [
        child.attrGet("src")
        for token in tokens
        if token.type == "inline"
        for child in token.children or []
        if child.type == "image"
    ]
    assert len(images) == len(PLOTS)
    for src in images:
        if src.startswith("data:image/png;base64,"):
            assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_SIGNATURE)
        else:
            assert (tmp_path / src).is_file(), f"image {src[:60]} does not resolve"


_VERDICT_CI = re.compile(r"95% CI \[([-+]?[\d.]+), ([-+]?[\d.]+)\]")


def test_every_printed_interval_agrees_with_its_verdict(written):
    comparison, out = written
    markdown = (out / "report.md").read_text(encoding="utf-8")
    verdicts = markdown.split("## Verdicts", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in verdicts.splitlines() if _VERDICT_CI.search(line)]
    assert len(lines) == len(comparison.pairs)
    for line in lines:
        low, high = (float(x) for x in _VERDICT_CI.search(line).groups())
        assert (" beats " in line) == (low > 0 or high < 0), line
        if " equivalent within +-1 point" in line:
            assert -1 < low and high < 1, line
    table = markdown.split("## Pairwise differences", 1)[1].split("\n## ", 1)[0]
    rows = [r for r in table.splitlines() if " vs " in r and not r.startswith("| a vs b")]
    assert len(rows) == len(comparison.pairs)
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        low, high = (float(x) for x in re.search(r"\[(\S+), (\S+)\]", cells[1]).groups())
        assert (cells[2] == "different") == (low > 0 or high < 0), row
    for pair in comparison.pairs:
        assert (pair.verdict == "different") == (pair.low > 0 or pair.high < 0)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One repeat of cnn and mlp, stamped as the local runner stamps a run."""
    out = tmp_path_factory.mktemp("single")
    config = load_config("fashion-mnist", ["variants=cnn,mlp", "batch_size=64", "limit=3000"])
    provenance = stamp("20261201-101500-fashion-mnist", trainings_at_once=2, threads_per_training=1)
    runs = [make_run("mlp", 0, 0.8, [0.8]), make_run("cnn", 0, 0.9, [0.9])]
    return write_comparison(runs, config, LABELS, out, provenance), out


def test_one_repeat_warns_and_drops_the_columns_it_cannot_fill(single):
    comparison, out = single
    headers = main_table(comparison).headers
    assert "each run %" not in headers and "spread, points" not in headers
    markdown = (out / "report.md").read_text(encoding="utf-8")
    html = (out / "report.html").read_text(encoding="utf-8")
    first_screen = markdown.split("![", 1)[0]
    assert "**One repeat.** Seed-to-seed spread is unknown" in first_screen
    assert "REPEATS=5" in first_screen
    assert "<strong>One repeat.</strong> Seed-to-seed spread is unknown" in html
    assert "One repeat: Seed-to-seed spread is unknown" in terminal_table(comparison)


def test_provenance_in_all_three_forms(single):
    comparison, out = single
    p = comparison.provenance
    assert p.run_id == "20261201-101500-fashion-mnist" and p.started is not None
    assert p.trainings_at_once == 2 and p.threads_per_training == 1
    data = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
    assert data["provenance"]["run_id"] == p.run_id
    assert data["config"] == {
        "dataset": "fashion-mnist",
        "variants": ["cnn", "mlp"],
        "epochs": 5,
        "batch_size": 64,
        "optimizer": "adam",
        "learning_rate": None,
        "validation_fraction": 0.2,
        "limit": 3000,
        "repeats": 1,
        "seeds": [0],
        "vary_seeds": ["init", "order", "dropout"],
        "model_sources": {},
    }
    started = p.started.strftime("%Y-%m-%d %H:%M UTC")
    for name in ("report.md", "report.html"):
        text = (out / name).read_text(encoding="utf-8")
        assert "fashion-mnist comparison, run 20261201-101500-fashion-mnist" in text
        assert started in text
        assert "batch 64, adam (default learning rate), at most 3,000 images a split" in text
        assert "1 repeat (seed 0)" in text
        if p.commit:
            assert p.commit[:10] in text
    assert "2 trainings at once sharing 4 CPUs (1 TensorFlow threads each)" in markdown_of(out)


def markdown_of(out) -> str:
    return (out / "report.md").read_text(encoding="utf-8")


def test_the_machine_is_named_once_when_every_run_shared_it(written):
    _, out = written
    markdown = markdown_of(out)
    assert markdown.split("![", 1)[0].count("Every run trained on test GPU (4 CPUs") == 1
    assert "| variant | stage" not in markdown  # no table of identical machines


def test_provenance_goes_to_the_report_apart_from_the_config(single):
    from cnnvsmlp_pipelines import run_arguments as arguments

    args = arguments(load_config("fashion-mnist"), stamp("r1"))
    assert "provenance" not in json.loads(args["config_json"])  # data step's cache key
    assert Provenance.model_validate_json(args["provenance_json"]).run_id == "r1"
    assert arguments(load_config("fashion-mnist"))["provenance_json"] == ""


def test_a_newer_minor_schema_is_refused_in_one_line(written, tmp_path):
    _, out = written
    data = json.loads((out / "comparison.json").read_text())
    data["schema_version"] = "3.9"
    data["a_field_of_3_9"] = 1
    (tmp_path / "comparison.json").write_text(json.dumps(data))
    with pytest.raises(ReportError, match=r"comparison schema 3\.9; this cnnvsmlp reads 3\.0 to"):
        Comparison.read(tmp_path / "comparison.json")
    data["schema_version"] = "4.0"
    (tmp_path / "comparison.json").write_text(json.dumps(data))
    with pytest.raises(ReportError, match="comparison schema 4.0"):
        read_comparison(tmp_path / "comparison.json")


def _as_schema_2(comparison) -> dict:
    """The comparison as schema 2 wrote it: per-repeat McNemar counts, no images, old verdicts."""
    data = json.loads(comparison.model_dump_json())
    data["schema_version"] = "2.3"
    del data["provenance"], data["config"], data["margin"]
    data["pairs"] = [
        {
            "a": p["a"],
            "b": p["b"],
            "difference": {"estimate": p["estimate"], "low": 0, "high": 0, "method": "t"},
            "tests": p["tests"],
            "significant": True,
            "verdict": "old words",
        }
        for p in data["pairs"]
    ]
    data["shift_differences"] = []
    return data


def test_an_older_comparison_renders_again_with_bounded_verdicts(written, tmp_path, capsys):
    from cnnvsmlp.report.__main__ import main

    comparison, out = written
    (tmp_path / "comparison.json").write_text(json.dumps(_as_schema_2(comparison)))
    restated = read_comparison(tmp_path / "comparison.json")
    for old, new in zip(comparison.pairs, restated.pairs, strict=True):
        assert (new.a, new.b, new.estimate) == (old.a, old.b, pytest.approx(old.estimate))
        assert new.method == "seeds-and-images-bound" and new.tests == old.tests
        assert new.high - new.low >= (old.high - old.low) * 0.999  # the bound is conservative
    before = (tmp_path / "comparison.json").read_text()
    assert main([str(tmp_path), "--note", "Made by hand."]) == 0
    assert (tmp_path / "comparison.json").read_text() == before  # a render never rewrites it
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "Made by hand. Rendered again from a comparison.json of schema 2.3" in markdown
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "comparison.json",
        "plots",
        "report.html",
        "report.md",
    ]
    assert main([str(tmp_path / "nothing")]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("no comparison.json; pass the folder compare wrote")
    )


# ---------------------------------------------------------------- shifted test images


def with_shifts(run: EvalResult, drop: float) -> EvalResult:
    """The run also scored on shifted images: ``drop`` more of them wrong per pixel of shift."""
    shifted = []
    for shift in (1, 2, 3, 4):
        keep = np.random.default_rng([run.run.repeat, shift]).random(len(LABELS)) >= drop * shift
        predictions = np.where(keep, run.predictions, (LABELS + 2) % 10)
        shifted.append(
            ShiftResult(
                shift=shift,
                seed=0,
                accuracy=float(np.mean(predictions == LABELS)),
                predictions=predictions.tolist(),
            )
        )
    return run.model_copy(update={"shifted": shifted})


def images_of(markdown: str) -> list[str]:
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    return [
        child.attrGet("src")
        for token in tokens
        if token.type == "inline"
        for child in token.children or []
        if child.type == "image"
    ]


def assert_renders_alone(markdown: str) -> list[str]:
    images = images_of(markdown)
    assert images
    for src in images:
        assert src.startswith("data:image/png;base64,"), f"image {src[:60]} does not resolve alone"
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_SIGNATURE)
    return images


def test_the_shift_section_shows_accuracy_and_the_gap_against_shift(tmp_path):
    config = load_config("fashion-mnist", ["repeats=2", "variants=[mlp,cnn]"])
    drop = {"mlp": 0.05, "cnn": 0.01}
    runs = [
        with_shifts(make_run(v, r, ACCURACY[v], [0.8, ACCURACY[v]]), drop[v])
        for v in config.variants
        for r in range(2)
    ]
    comparison = write_comparison(runs, config, LABELS, tmp_path)
    accuracy = {(a.variant, a.shift): a.accuracy.estimate for a in comparison.shift_accuracy}
    assert sorted({s for _, s in accuracy}) == [0, 1, 2, 3, 4]
    for v in ("mlp", "cnn"):
        tested = [r for r in runs if r.run.variant == v]
        assert accuracy[(v, 0)] == pytest.approx(np.mean([r.accuracy for r in tested]))
        assert accuracy[(v, 4)] == pytest.approx(np.mean([r.shifted[3].accuracy for r in tested]))
        assert accuracy[(v, 4)] < accuracy[(v, 1)] < accuracy[(v, 0)]
    gaps = {d.shift: d.estimate for d in comparison.shift_differences}
    gaps[0] = comparison.pairs[0].estimate
    assert {(d.a, d.b) for d in comparison.shift_differences} == {("cnn", "mlp")}
    assert gaps[0] == pytest.approx(accuracy[("cnn", 0)] - accuracy[("mlp", 0)])
    assert gaps[4] > gaps[0]  # the MLP loses more to the shift
    assert (tmp_path / "plots" / "accuracy_vs_shift.png").read_bytes().startswith(PNG_SIGNATURE)
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    section = markdown[markdown.index("## Shifted test images") :]
    section = section[: section.index("\n## ", 1)]
    assert "![Test accuracy against shift of the test images](data:image/png;base64," in section
    change = 100 * (gaps[4] - gaps[0])
    assert re.search(rf"\| cnn vs mlp +\|.*\| {re.escape(f'{change:+.2f}')} +\|", section)
    widest = max(gaps, key=lambda k: abs(gaps[k]))
    assert re.search(rf"\| {re.escape(f'{100 * gaps[widest]:+.2f}')} \({widest} px\) +\|", section)
    assert len(assert_renders_alone(markdown)) == len(PLOTS) + 1
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<h2>Shifted test images</h2>" in html


def test_without_shifted_scores_there_is_no_shift_section(written):
    comparison, out = written
    assert comparison.shift_accuracy == [] and comparison.shift_differences == []
    assert "Shifted test images" not in (out / "report.md").read_text(encoding="utf-8")
    assert not (out / "plots" / "accuracy_vs_shift.png").exists()


# ---------------------------------------------------------------- the data-efficiency layout


def efficiency_runs(sizes: list[int]) -> list[EvalResult]:
    """Both variants at every size, three repeats; the CNN's lead shrinks as data grows."""
    rate = {
        "mlp": lambda n: 0.95 - 0.1 * (n / 1000) ** -0.45,
        "cnn": lambda n: 0.96 - 0.06 * (n / 1000) ** -0.5,
    }
    out = []
    for v in ("mlp", "cnn"):
        for n in sizes:
            for r in range(3):
                run = make_run(v, r, rate[v](n), [0.7, 0.72, 0.71])
                spec = RunSpec(variant=v, repeat=r, seed=r, n_train=n)
                stop = EarlyStop(
                    stopped_epoch=3,
                    best_epoch=2,
                    reason="cap" if n == sizes[0] else "patience",
                    capped_improving=n == sizes[0],
                )
                training = run.training.model_copy(update={"run": spec, "early_stop": stop})
                run = run.model_copy(update={"run": spec, "training": training})
                out.append(with_shifts(run, 0.04 if v == "mlp" else 0.01))
    return out


@pytest.fixture(scope="module")
def efficiency_written(tmp_path_factory):
    from cnnvsmlp.efficiency.analysis import analyze
    from cnnvsmlp.efficiency.curves import EfficiencyConfig, settle
    from cnnvsmlp.report.efficiency import write_efficiency_report as write_analysis

    sizes = [375, 750, 1500, 3000, 6000, 12000]
    study = EfficiencyConfig(sizes=sizes)
    config = settle(load_config("fashion-mnist-data-efficiency", ["epochs=3"]), study)
    provenance = stamp("20261201-1200-abcd", "local", 2, 1)
    runs = efficiency_runs(sizes)
    analysis = analyze(runs, config, study, LABELS, bootstrap_samples=40, provenance=provenance)
    out = tmp_path_factory.mktemp("efficiency")
    write_analysis(analysis, out)
    return analysis, out


def test_the_efficiency_report_answers_first_then_plots_then_tables(efficiency_written):
    analysis, out = efficiency_written
    markdown = (out / "report.md").read_text(encoding="utf-8")
    html = (out / "report.html").read_text(encoding="utf-8")
    lo, hi = analysis.gaps[0], analysis.gaps[-1]
    head = markdown.split("\n\n")[1]
    assert head.startswith("**cnn - mlp test accuracy: ")
    assert f"{100 * lo.estimate:+.2f} [{100 * lo.low:+.2f}, " in head
    assert f"{100 * hi.estimate:+.2f} [" in head and "with 12,000" in head
    if "needs" in head:
        assert re.search(r"mlp needs [\d.]+x \[[^]]+; range over resampled 3 repeats\]", head)
    for text, image, table in ((html, "<img", "<table>"), (markdown, "![", "\n| ")):
        plots = [text.index(c) for c in ("size", "Gap to the baseline", "against shift")]
        assert text.index(image) < text.index(table), "a plot must come before the first table"
        assert max(plots) < text.index(table)
    assert html.count('src="data:image/png;base64,') == 3
    assert "Run 20261201-1200-abcd" in markdown and "**Commit:**" in markdown
    assert json.loads((out / "comparison.json").read_text())["schema_version"] == "efficiency/2"


def test_every_efficiency_markdown_image_resolves_alone(efficiency_written, tmp_path):
    _, out = efficiency_written
    alone = tmp_path / "report.md"
    alone.write_bytes((out / "report.md").read_bytes())
    text = alone.read_text(encoding="utf-8")
    assert len(text) <= MARKDOWN_LIMIT
    assert len(assert_renders_alone(text)) == 3


def test_the_efficiency_report_tables(efficiency_written):
    analysis, out = efficiency_written
    markdown = (out / "report.md").read_text(encoding="utf-8")
    # Where each training stopped: the cap flagged, the others by patience.
    assert (
        len(
            re.findall(
                r"\| cnn-n375-r\d +\| [\d.]+ +\| 3 +\| 2 +\| cap +\| YES \(!\) +\|", markdown
            )
        )
        == 3
    )
    assert re.search(r"\| mlp-n750-r0 +\| [\d.]+ +\| 3 +\| 2 +\| patience +\| +\|", markdown)
    assert "6 trainings reached the cap of 3 epochs while still improving" in markdown
    # The gap per size with McNemar per repeat, and the curve parameters with their errors.
    for g in analysis.gaps:
        p = g.tests[0].p_value
        cell = "<0.001" if p < 0.001 else f"{p:.3f}"
        row = rf"\| cnn - mlp +\| {g.n_train:,} +\|.*\| {g.verdict} +\| r0: "
        assert re.search(rf"{row}.*, {re.escape(cell)}[;| ]", markdown)
    for h in analysis.holdouts:
        assert re.search(
            rf"\| {h.variant} +\| a \* \(n/1000\)\^-b( \+ c)? +\| 375 to 6,000 +\| 12,000 ",
            markdown,
        )
    assert "| cnn - mlp at 12,000 " in markdown  # the gap against shift


def test_a_study_report_renders_again_from_its_record_alone(efficiency_written, tmp_path):
    from cnnvsmlp.efficiency.analysis import EfficiencyAnalysis
    from cnnvsmlp.report.__main__ import main

    analysis, out = efficiency_written
    (tmp_path / "comparison.json").write_bytes((out / "comparison.json").read_bytes())
    assert main([str(tmp_path)]) == 0
    assert (tmp_path / "comparison.json").read_bytes() == (out / "comparison.json").read_bytes()
    assert EfficiencyAnalysis.read(tmp_path / "comparison.json").gaps == analysis.gaps
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert markdown.split("\n\n")[1] == (out / "report.md").read_text().split("\n\n")[1]
    assert "**Note:** Rendered again" in markdown
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(
        p.name for p in (out / "plots").iterdir()
    )


def test_the_shift_verdict_names_the_widest_gap_and_its_shift(efficiency_written):
    from cnnvsmlp.report.efficiency import shift_table, verdicts

    analysis, _ = efficiency_written
    top = max(g.n_train for g in analysis.shift_gaps)
    peaked = {1: 0.07, 2: 0.12, 3: 0.09, 4: 0.05}  # the shape of the real study's
    gaps = [
        g.model_copy(update={"estimate": peaked[g.shift], "low": -1.0, "high": 1.0})
        if g.n_train == top
        else g
        for g in analysis.shift_gaps
    ]
    text = dict(verdicts(analysis.model_copy(update={"shift_gaps": gaps})))["Shift:"]
    assert "widest at 2 pixels: +12.00 [-100.00, +100.00]" in text
    row = next(
        r
        for r in shift_table(analysis.model_copy(update={"shift_gaps": gaps})).rows
        if r[0] == f"cnn - mlp at {top:,}"
    )
    base = next(g for g in analysis.gaps if g.n_train == top)
    assert row[-1] == "+12.00 (2 px)"
    assert row[-2] == f"{100 * (0.05 - base.estimate):+.2f}"


def test_the_headline_states_the_primary_contrast_in_every_case(written):
    comparison, _ = written
    across = [p for p in comparison.pairs if "mlp" in (p.a, p.b)]
    cases = {
        "different": "beats mlp by ",
        "equivalent": "are equivalent within +-1 point: ",
        "inconclusive": "against mlp is inconclusive: ",
    }
    for verdict_word, words in cases.items():
        pairs = [
            p.model_copy(update={"verdict": verdict_word}) if p in across else p
            for p in comparison.pairs
        ]
        head = headline(comparison.model_copy(update={"pairs": pairs}))
        primary = head.split("; among the CNNs")[0]
        assert primary.startswith("After 5 epochs, ")
        assert primary.count(words) == len(across), head
        assert primary.count("95% CI [") == len(across)  # the size and its interval, every time
    # A family is declared, not read off the name: a CNN named like an MLP stays a CNN.
    from cnnvsmlp.report.verdict import family

    assert family("mlp") == "mlp" and family("cnn-3conv") == "cnn"
