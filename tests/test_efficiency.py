"""The data-efficiency study: subsets, stopping rule, learning curves, plan and analysis."""

from __future__ import annotations

import gzip
import json
import math
import re

import numpy as np
import pytest

from cnnvsmlp.config import RunSpec, StoppingRule, TrainConfig, load_config
from cnnvsmlp.data.store import labels_digest, load_split
from cnnvsmlp.efficiency.analysis import analyze, check_complete
from cnnvsmlp.efficiency.curves import (
    EfficiencyConfig,
    effective_sizes,
    fit,
    holdout,
    multipliers,
    parse_efficiency_json,
    plan_runs,
    size_for,
)
from cnnvsmlp.efficiency.subsets import stratified_order, training_data
from cnnvsmlp.errors import UserError
from cnnvsmlp.records import (
    Epoch,
    EvalResult,
    Hardware,
    RunFailure,
    ShiftResult,
    TrainResult,
    read_result,
)
from cnnvsmlp.report.efficiency import write_efficiency_report as write_analysis
from cnnvsmlp.training_files import decide

DEFAULT_SIZES = (375, 750, 1500, 3000, 6000, 12000, 24000, 48000)  # Fashion-MNIST's halvings


@pytest.fixture(scope="module")
def fashion_train_labels(fashion_dir) -> np.ndarray:
    """The labels of the 48,000 training images of the fashion-mnist presets (the first 80%)."""
    raw = gzip.decompress((fashion_dir / "train-labels-idx1-ubyte.gz").read_bytes())
    return np.frombuffer(raw[8:], dtype=np.uint8)[:48_000]


# Subsets


def subset_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of the ``n``-image subset a seed draws, as training_data keeps them."""
    return np.sort(stratified_order(labels, seed)[:n])


def test_subsets_are_nested_and_stratified(fashion_train_labels):
    labels = fashion_train_labels
    share = np.bincount(labels) / len(labels)
    order = stratified_order(labels, seed=0)
    assert np.array_equal(np.sort(order), np.arange(len(labels)))  # a permutation
    # Every prefix holds each class in its share of the split, within one image.
    counts = np.cumsum(np.eye(10, dtype=int)[labels[order]], axis=0)
    n = np.arange(1, len(labels) + 1)[:, None]
    assert np.abs(counts - n * share).max() < 1.0
    previous = set()
    for size in DEFAULT_SIZES:
        chosen = subset_indices(labels, size, seed=0)
        assert len(chosen) == size == len(set(chosen)) and np.all(np.diff(chosen) > 0)
        assert previous <= set(chosen)  # the larger subset contains the smaller
        previous = set(chosen)
        assert np.abs(np.bincount(labels[chosen], minlength=10) - size * share).max() < 1.0
    assert np.array_equal(subset_indices(labels, 48_000, seed=0), np.arange(48_000))


def test_subsets_depend_on_the_seed_only(fashion_train_labels):
    a = subset_indices(fashion_train_labels, 750, seed=1)
    assert np.array_equal(a, subset_indices(fashion_train_labels, 750, seed=1))
    other = subset_indices(fashion_train_labels, 750, seed=2)
    assert len(set(a) & set(other)) < 100  # about 750 * 750 / 48,000 = 12 in common


def test_subsets_of_an_uneven_split_keep_its_proportions():
    labels = np.repeat(np.arange(3), [700, 200, 100])
    np.random.default_rng(0).shuffle(labels)
    for size in (10, 55, 333, 999):
        counts = np.bincount(labels[subset_indices(labels, size, seed=4)], minlength=3)
        assert np.abs(counts - size * np.array([0.7, 0.2, 0.1])).max() < 1.0


def test_training_data_holds_the_runs_subset_and_whole_splits(small_fashion):
    x_all, y_all = load_split(small_fashion, "train")
    run = RunSpec(variant="mlp", repeat=1, seed=1, n_train=300)
    with training_data(small_fashion, run) as folder:
        assert folder != small_fashion
        x, y = load_split(folder, "train")
        keep = subset_indices(y_all, 300, seed=1)
        np.testing.assert_array_equal(x, x_all[keep])
        np.testing.assert_array_equal(y, y_all[keep])
        for split in ("validation", "test"):
            np.testing.assert_array_equal(
                load_split(folder, split)[1], load_split(small_fashion, split)[1]
            )
    assert not folder.exists()  # removed on exit
    for whole in (None, len(y_all)):
        with training_data(small_fashion, run.model_copy(update={"n_train": whole})) as folder:
            assert folder == small_fashion
    with pytest.raises(UserError, match="mlp-n5000-r1: n_train 5000 is more than the 960"):
        with training_data(small_fashion, run.model_copy(update={"n_train": 5000})):
            pass


def test_run_id_names_the_size():
    assert RunSpec(variant="cnn", repeat=2, seed=2, n_train=750).run_id == "cnn-n750-r2"
    assert RunSpec(variant="cnn", repeat=2, seed=2).run_id == "cnn-r2"


# The stopping rule

RULE = StoppingRule(patience=3, min_delta=0.01)


def test_stops_after_patience_epochs_without_improvement():
    losses = [1.0, 0.8, 0.7, 0.705, 0.695, 0.71, 0.5]
    decision = decide(losses, RULE, max_epochs=100)
    # 0.695 is not 0.01 below 0.7: epochs 4, 5, 6 do not improve; the best is epoch 3
    assert (decision.stop, decision.epochs, decision.best_epoch) == (True, 6, 3)
    assert decision.reason == "patience" and not decision.capped_improving


def test_keeps_going_while_it_improves():
    decision = decide([1.0, 0.9, 0.95, 0.96], RULE, max_epochs=100)
    assert (decision.stop, decision.epochs, decision.best_epoch, decision.reason) == (
        False,
        4,
        2,
        None,
    )
    assert decide([], RULE, max_epochs=10) == decide([], RULE, max_epochs=10)
    assert decide([], RULE, max_epochs=10).best_epoch == 0


def test_the_cap_flags_a_training_still_improving():
    decision = decide([1.0, 0.9, 0.8, 0.7], RULE, max_epochs=4)
    assert (decision.stop, decision.epochs, decision.best_epoch) == (True, 4, 4)
    assert decision.capped_improving
    # patience ending on the cap's epoch is convergence, not the cap
    done = decide([1.0, 0.99, 0.995, 0.999, 0.998], StoppingRule(patience=3, min_delta=0.0), 5)
    assert done.reason == "patience" and done.best_epoch == 2


def test_a_non_finite_loss_never_improves():
    decision = decide([float("nan"), 1.0, float("inf"), 2.0, 3.0], RULE, max_epochs=50)
    assert (decision.stop, decision.epochs, decision.best_epoch) == (True, 5, 2)


# Learning curves

SIZES = np.array(DEFAULT_SIZES)
MLP_TRUE = (0.10, 0.45, 0.09)  # a, b, c of error = a (n / 1000) ** -b + c
CNN_TRUE = (0.07, 0.50, 0.07)


def _errors(true, noise, repeats=3, seed=0):
    a, b, c = true
    rng = np.random.default_rng(seed)
    clean = a * (SIZES / 1000.0) ** -b + c
    return clean[:, None] + rng.normal(0, noise, size=(len(SIZES), repeats))


def test_each_family_recovers_its_own_parameters():
    floor = fit("power+floor", np.repeat(SIZES, 3), _errors(MLP_TRUE, noise=0.0005).ravel())
    np.testing.assert_allclose([floor.params[k] for k in "abc"], MLP_TRUE, rtol=0.1)
    assert floor.sizes == list(SIZES) and floor.rmse < 0.001
    a, b = 0.2, 0.3
    power = fit("power", SIZES, a * (SIZES / 1000) ** -b)
    np.testing.assert_allclose([power.params["a"], power.params["b"]], [a, b], rtol=1e-6)
    with pytest.raises(ValueError, match="needs 3 sizes or more"):
        fit("power+floor", [100, 100, 200], [0.3, 0.3, 0.2])
    with pytest.raises(ValueError, match="unknown curve family"):
        fit("sigmoid", SIZES, SIZES * 0 + 0.1)


def test_the_held_out_size_tells_a_right_family_from_a_wrong_one():
    """On curves with a floor, the floor family predicts the largest size; the pure power law,
    which has none, overshoots: its held-out miss is what the report shows."""
    errors = _errors(MLP_TRUE, noise=0.0005)
    right = holdout("mlp", "power+floor", SIZES, errors)
    wrong = holdout("mlp", "power", SIZES, errors)
    assert right.fitted_on == list(SIZES[:-1]) and right.size == SIZES[-1]
    assert right.observed == pytest.approx(errors[-1].mean())
    assert abs(right.miss) < 0.002
    assert wrong.miss < -0.005  # no floor: predicts too low an error at 48,000
    assert right.miss == pytest.approx(right.predicted - right.observed)


def test_the_multiplier_is_read_off_the_sampled_sizes_only():
    sizes = [1000, 2000, 4000, 8000]
    base = [0.80, 0.84, 0.86, 0.88]
    # 0.85 lies halfway between 2,000 and 4,000 in accuracy: on a log axis, 2000 * 2 ** 0.5.
    assert size_for(sizes, base, 0.85) == pytest.approx(2000 * 2**0.5)
    assert size_for(sizes, base, 0.84) == pytest.approx(2000)
    assert size_for(sizes, base, 0.90) == math.inf  # beyond the largest size: not given
    assert size_for(sizes, base, 0.70) == 0  # below the smallest: under sizes[0] / n
    # A dip is noise: the running maximum never falls.
    assert size_for(sizes, [0.80, 0.86, 0.85, 0.88], 0.86) == pytest.approx(2000)


def test_the_bootstrap_keeps_whole_repeats_and_says_beyond():
    sizes = [1000, 2000, 4000, 8000]
    base = np.array([[0.80, 0.81], [0.84, 0.85], [0.86, 0.87], [0.88, 0.89]])
    other = np.array([[0.85, 0.86], [0.87, 0.88], [0.89, 0.90], [0.92, 0.93]])
    found = multipliers(sizes, base, other, samples=200)
    first = found[0]
    # The other variant at 1,000 (85.5%) is the baseline's mean at 2,000 x 2 ** 0.5 / ...
    needed = size_for(sizes, base.mean(1), other[0].mean())
    assert first.estimate == pytest.approx(needed / 1000)
    assert first.low <= first.estimate <= first.high and first.beyond_fraction == 0
    last = found[-1]
    assert last.estimate is None and last.high is None and last.beyond_fraction == 1.0
    assert last.where == "beyond" and first.where == "inside" and first.repeats == 2
    # A variant worse than the baseline's smallest size: below the data, not beyond it.
    (worse,) = multipliers([1000, 2000], base[:2], np.full((2, 2), 0.7), samples=20)[:1]
    assert worse.where == "below" and worse.estimate is None and worse.low is None
    # Whole repeats: with identical repeats every bootstrap sample is the estimate.
    same = multipliers(sizes, base[:, :1].repeat(3, 1), other[:, :1].repeat(3, 1), samples=50)
    assert same[0].low == same[0].high == pytest.approx(same[0].estimate)


# The plan


def test_plan_covers_variant_size_repeat_longest_first():
    config = load_config("fashion-mnist-data-efficiency")
    runs = plan_runs(config, EfficiencyConfig(), available=48_000, classes=10)
    assert len(runs) == 2 * 8 * 3
    assert {(r.variant, r.n_train, r.repeat, r.seed) for r in runs} == {
        (v, n, r, r) for v in ("mlp", "cnn") for n in DEFAULT_SIZES for r in range(3)
    }
    assert (runs[0].variant, runs[0].n_train) == ("mlp", 48_000)
    assert (runs[-1].variant, runs[-1].n_train) == ("cnn", 375)
    assert len({r.run_id for r in runs}) == len(runs)


def test_a_limit_ends_the_sizes_at_the_whole_split():
    assert effective_sizes([375, 750, 1500, 3000], 2400) == [375, 750, 1500, 2400]
    assert effective_sizes([375, 750], 2400) == [375, 750]
    assert effective_sizes([375, 2400], 2400) == [375, 2400]
    # No sizes: halvings of the split, none under 3 images a class.
    assert effective_sizes(None, 48_000, 10) == list(DEFAULT_SIZES)
    assert effective_sizes(None, 50_000, 10) == [391, 781, 1562, 3125, 6250, 12500, 25000, 50000]
    assert effective_sizes(None, 1000, 100) == [500, 1000]
    config = load_config("fashion-mnist-data-efficiency", ["repeats=1"])
    with pytest.raises(UserError, match="5 images cannot hold one of each of the 10 classes"):
        plan_runs(config, EfficiencyConfig(sizes=[5, 100]), available=1000, classes=10)


def test_efficiency_settings_are_checked():
    with pytest.raises(UserError, match="efficiency_json: sizes: sizes must increase"):
        parse_efficiency_json('{"sizes": [750, 375]}')
    with pytest.raises(UserError, match="efficiency_json: stopping.patience"):
        parse_efficiency_json('{"stopping": {"patience": 0}}')
    with pytest.raises(UserError, match="efficiency_json: epochs: Extra inputs"):
        parse_efficiency_json('{"epochs": 3}')
    assert parse_efficiency_json("{}") == EfficiencyConfig()


# The analysis

HARDWARE = Hardware(device="cpu", name="test", cpu_count=2, tensorflow="2")


def _result(labels, variant, n, repeat, accuracy, rng, val_losses=(1.0, 0.8, 0.9)):
    wrong = rng.random(len(labels)) > accuracy
    predictions = np.where(wrong, (labels + 1) % 10, labels)
    run = RunSpec(variant=variant, repeat=repeat, seed=repeat, n_train=n)
    history = [
        Epoch(epoch=i + 1, loss=v, accuracy=0.5, val_loss=v, val_accuracy=0.5, time_s=1.0)
        for i, v in enumerate(val_losses)
    ]
    training = TrainResult(
        run=run,
        dataset="fashion-mnist",
        train=TrainConfig(epochs=3, batch_size=32, optimizer="adam"),
        history=history,
        params=1,
        n_train=n,
        n_validation=100,
        train_time_s=1.0,
        train_images_per_s=1.0,
        hardware=HARDWARE,
    )
    return EvalResult(
        run=run,
        dataset="fashion-mnist",
        classes=[str(c) for c in range(10)],
        accuracy=float(np.mean(predictions == labels)),
        loss=0.5,
        n_test=len(labels),
        per_class=[],
        confusion=[],
        predictions=predictions.tolist(),
        labels_sha256=labels_digest(labels),
        params=1,
        model_size_bytes=1,
        inference_images_per_s=1.0,
        training=training,
        hardware=HARDWARE,
        shifted=[ShiftResult(shift=1, seed=0, accuracy=accuracy / 2, predictions=[])],
    )


STUDY_SIZES = [375, 750, 1500, 3000, 6000]
STUDY_ACCURACY = {
    "mlp": lambda n: 1 - (0.10 * (n / 1000) ** -0.45 + 0.09),
    "cnn": lambda n: 1 - (0.07 * (n / 1000) ** -0.5 + 0.07),
}


@pytest.fixture(scope="module")
def study():
    """A complete study's records: mlp and cnn at five sizes, three repeats each."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=4000)
    config = load_config("fashion-mnist-data-efficiency", ["epochs=3"])
    results = [
        _result(
            labels,
            v,
            n,
            r,
            STUDY_ACCURACY[v](n),
            rng,
            val_losses=(1.0, 0.9, 0.8) if n == 375 else (1.0, 0.8, 0.9),
        )
        for v in ("mlp", "cnn")
        for n in STUDY_SIZES
        for r in range(3)
    ]
    settings = EfficiencyConfig(sizes=STUDY_SIZES, stopping=StoppingRule(patience=1))
    analysis = analyze(results, config, settings, labels, bootstrap_samples=50)
    return labels, config, settings, results, analysis


def test_analysis_of_a_study_has_every_point_and_run(study):
    analysis = study[-1]
    assert (
        analysis.status == "complete"
        and analysis.sizes == STUDY_SIZES
        and analysis.baseline == "mlp"
    )
    assert [(p.variant, p.n_train) for p in analysis.points] == [
        (v, n) for v in ("mlp", "cnn") for n in STUDY_SIZES
    ]
    point = analysis.points[0]
    assert [r.capped_improving for r in point.runs] == [True] * 3  # 375: improving at the cap
    assert not analysis.points[1].runs[0].capped_improving
    assert analysis.points[1].runs[0].best_epoch == 2
    assert point.runs[0].shifted_accuracy == {1: pytest.approx(STUDY_ACCURACY["mlp"](375) / 2)}


def test_analysis_of_a_study_pairs_the_repeats_at_each_size(study):
    *_, results, analysis = study
    gaps = analysis.gaps
    assert [g.n_train for g in gaps] == STUDY_SIZES and all(g.a == "cnn" for g in gaps)
    for g, n in zip(gaps, STUDY_SIZES, strict=True):
        per_repeat = [
            results[STUDY_SIZES.index(n) * 3 + 15 + k].accuracy
            - results[STUDY_SIZES.index(n) * 3 + k].accuracy
            for k in range(3)
        ]
        assert [t.difference for t in g.tests] == pytest.approx(per_repeat)
        assert g.estimate == pytest.approx(np.mean(per_repeat))
        assert all(t.p_holm >= t.p_value for t in g.tests)
        assert g.family == len(STUDY_SIZES) and g.method == "seeds-and-images"


def test_analysis_of_a_study_fits_curves_and_writes_its_report(study, tmp_path):
    analysis = study[-1]
    assert {(c.family) for c in analysis.curves} == {"power", "power+floor"}
    assert {(h.variant, h.family) for h in analysis.holdouts} == {
        (v, f) for v in ("mlp", "cnn") for f in ("power", "power+floor")
    }
    (found,) = analysis.multipliers
    assert [m.n_train for m in found.multipliers] == STUDY_SIZES
    assert found.multipliers[0].estimate is None or found.multipliers[0].estimate > 1
    write_analysis(analysis, tmp_path)
    assert re.search(r"\| cnn - mlp +\| 375 +\|", (tmp_path / "report.md").read_text())
    check_complete(tmp_path / "comparison.json")


def test_analysis_of_a_study_with_a_failed_run_is_partial(study, tmp_path):
    labels, config, settings, results, _ = study
    failed = RunFailure(
        run=results[0].run, dataset="fashion-mnist", stage="train", error="E", message="boom"
    )
    partial = analyze([failed, *results[1:]], config, settings, labels, 20)
    assert partial.status == "partial" and partial.failures == [failed]
    # mlp-n375-r0 failed: the bootstrap pairs repeats 1 and 2, at every size
    assert len(partial.multipliers[0].multipliers) == len(STUDY_SIZES)
    assert [len(p.runs) for p in partial.points][:2] == [2, 3]
    write_analysis(partial, tmp_path / "partial")
    with pytest.raises(UserError, match=r"partial .* mlp-n375-r0 \(E: boom\)"):
        check_complete(tmp_path / "partial" / "comparison.json")


def test_an_evaluation_record_written_before_the_shift_still_loads(tmp_path):
    labels = np.arange(20) % 10
    record = _result(labels, "cnn", 100, 0, 1.0, np.random.default_rng(0)).model_dump(mode="json")
    assert record.pop("shifted")[0]["shift"] == 1
    (tmp_path / "old.json").write_text(json.dumps(record))
    old = read_result(tmp_path / "old.json")
    assert isinstance(old, EvalResult) and old.shifted == [] and old.accuracy == 1.0


def test_a_failed_iteration_of_the_study_names_its_run(tmp_path):
    from cnnvsmlp_pipelines import loop_runs
    from cnnvsmlp_pipelines.kfp_local import describe_failure

    config = load_config("fashion-mnist-data-efficiency")
    root = tmp_path / "pipeline"
    assert loop_runs(config, root) is None
    data = root / "data-efficiency-20261201" / "prepare-data" / "dataset"
    data.mkdir(parents=True)
    meta = {
        "counts": {"train": 1000, "validation": 250, "test": 250},
        "classes": list("abcdefghij"),
    }
    (data / "metadata.json").write_text(json.dumps(meta))
    runs = loop_runs(config, root)
    assert [r.n_train for r in runs if r.variant == "cnn" and r.repeat == 0] == [
        1000,
        500,
        250,
        125,
        62,
        31,
    ]  # the halvings of its 1,000 training images, 3 or more a class
    iteration = [r.run_id for r in runs].index("cnn-n125-r1")
    message = (
        "Pipeline 'data-efficiency' finished with status FAILURE. Inner task failed: "
        f"'train-model' inside 'for-loop-1-iteration-{iteration}'."
    )
    assert describe_failure(message, config, runs=runs).startswith(
        "task 'train-model' of cnn-n125-r1 (variant cnn, repeat 1, seed 1) failed"
    )


def test_the_study_trains_every_run_by_its_stopping_rule():
    from cnnvsmlp.efficiency.curves import settle

    config = load_config("fashion-mnist-data-efficiency")
    assert config.train.early_stopping is None
    settled = settle(config, EfficiencyConfig(stopping=StoppingRule(patience=7)))
    assert settled.train.early_stopping == StoppingRule(patience=7, min_delta=0.001)
    assert settled.train.epochs == config.train.epochs == 100


def test_a_study_record_of_schema_1_is_restated_from_its_counts(tmp_path):
    """The committed study kept counts, not images: gaps bounded, multipliers inside the data."""
    import json
    import shutil
    from pathlib import Path

    from cnnvsmlp.efficiency.analysis import read_analysis

    record = tmp_path / "comparison.json"
    shutil.copyfile(Path(__file__).parent / "data" / "efficiency-1.json", record)
    old = json.loads(record.read_text())
    analysis = read_analysis(record, bootstrap_samples=200)
    assert analysis.schema_version == "efficiency/2"
    for gap, before in zip(analysis.gaps, old["gaps"], strict=True):
        assert gap.method == "seeds-and-images-bound" and gap.family == len(old["sizes"])
        assert gap.estimate == pytest.approx(before["difference"]["estimate"])
        assert gap.per_seed == pytest.approx([t["difference"] for t in before["tests"]])
        assert (gap.verdict == "different") == (gap.low > 0 or gap.high < 0)
    largest = max(old["sizes"])
    for m in analysis.multipliers[0].multipliers:
        if m.estimate is not None:
            assert m.estimate * m.n_train <= largest  # read off the sizes trained, never beyond
    assert analysis.shift_gaps and all(g.shift >= 1 for g in analysis.shift_gaps)
    assert {h.family for h in analysis.holdouts} == {"power", "power+floor"}
    assert json.loads(record.read_text()) == old  # reading restates, it never rewrites
