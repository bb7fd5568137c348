"""Training and evaluation on a slice of the real Fashion-MNIST: determinism, resume, metrics."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from cnnvsmlp.config import RunSpec, TrainConfig
from cnnvsmlp.data.store import labels_digest, load_split
from cnnvsmlp.evaluate import evaluate
from cnnvsmlp.train import train

ONE_EPOCH = TrainConfig(epochs=1, batch_size=32, optimizer="adam")
RUN = RunSpec(variant="cnn", repeat=0, seed=7)


@pytest.fixture(scope="module")
def trained(small_fashion, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "cnn"
    return out, train(small_fashion, RUN, ONE_EPOCH, out, verbose=0)


def test_same_seed_same_metrics(small_fashion, trained, tmp_path):
    _, first = trained
    again = train(small_fashion, RUN, ONE_EPOCH, tmp_path / "again", verbose=0)
    other = train(
        small_fashion, RUN.model_copy(update={"seed": 8}), ONE_EPOCH, tmp_path / "other", verbose=0
    )
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    assert [getattr(first.history[0], k) for k in keys] == [
        getattr(again.history[0], k) for k in keys
    ]
    assert first.history[0].loss != other.history[0].loss


def test_training_outputs(trained):
    out, result = trained
    assert result.n_train == 960 and result.n_validation == 240
    assert result.params == 804_554 and result.hardware.device == "cpu"
    assert len(result.history) == 1 and result.train_images_per_s > 0
    assert (out / "model.keras").is_file()
    # A finished training keeps its inference model only: no checkpoint, no optimizer state.
    assert not (out / "checkpoints").exists() and not (out / "state").exists()
    assert (out / "model.keras").stat().st_size < 1.1 * 4 * result.params
    assert keras.saving.load_model(out / "model.keras").compiled is False
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert json.loads((out / "train.json").read_text())["run"]["variant"] == "cnn"
    assert (out / "history.csv").read_text().splitlines()[1].startswith("1,")
    assert sorted(p.name for p in out.iterdir()) == [
        "finished.json",
        "history.csv",
        "model.keras",
        "tensorboard",
        "train.json",
    ]


def test_restarted_training_resumes(small_fashion, tmp_path):
    import shutil

    # Going on from a finished training needs its checkpoint, kept only when asked for.
    kept = ONE_EPOCH.model_copy(update={"keep_checkpoints": True})
    out, first = tmp_path / "one", train(small_fashion, RUN, kept, tmp_path / "one", verbose=0)
    assert (out / "checkpoints" / "epoch-01.keras").is_file()
    assert (out / "state" / "epoch-01.json").is_file()
    copy = tmp_path / "resume"
    shutil.copytree(out, copy)
    two = TrainConfig(epochs=2, batch_size=32, optimizer="adam", keep_checkpoints=True)
    resumed = train(small_fashion, RUN, two, copy, verbose=0)
    assert resumed.resumed_from_epoch == 1
    assert [e.epoch for e in resumed.history] == [1, 2]
    assert resumed.history[0] == first.history[0]
    assert (copy / "checkpoints" / "epoch-02.keras").is_file()


def test_evaluation_on_the_test_split(small_fashion, trained, tmp_path):
    out, _ = trained
    result = evaluate(out, small_fashion, tmp_path / "eval.json")
    _, y_test = load_split(small_fashion, "test")
    predictions = np.array(result.predictions)
    assert len(predictions) == len(y_test) == result.n_test == 1200
    assert result.accuracy == pytest.approx(np.mean(predictions == y_test))
    assert result.accuracy > 0.5  # ten classes: chance is 0.1
    confusion = np.array(result.confusion)
    assert confusion.shape == (10, 10) and confusion.sum() == 1200
    assert np.trace(confusion) == round(result.accuracy * 1200)
    assert [c.name for c in result.per_class][:2] == ["T-shirt/top", "Trouser"]
    assert sum(c.support for c in result.per_class) == 1200
    assert result.labels_sha256 == labels_digest(y_test)
    assert result.loss > 0 and result.inference_images_per_s > 0
    assert result.model_size_bytes == (out / "model.keras").stat().st_size
    model = keras.saving.load_model(out / "model.keras")
    x_test, _ = load_split(small_fashion, "test")
    assert (model.predict(x_test[:5], verbose=0).argmax(axis=1) == predictions[:5]).all()


def test_each_seed_source_moves_only_what_it_seeds(small_fashion, tmp_path):
    """A repeat that varies one source keeps the others at repeat 0's seed."""
    from cnnvsmlp.config import load_config

    config = load_config("fashion-mnist", ["repeats=2", "variants=mlp", "vary_seeds=[order]"])
    first, second = config.runs()
    assert (first.seed_of("init"), first.seed_of("order"), first.seed_of("dropout")) == (0, 0, 0)
    assert (second.seed_of("init"), second.seed_of("order"), second.seed_of("dropout")) == (0, 1, 0)
    default = load_config("fashion-mnist", ["repeats=2"]).runs()[1]
    assert default.init_seed is default.order_seed is default.dropout_seed is None

    # The MLP has dropout: with only the dropout seed changed, the first batch's loss moves.
    config = TrainConfig(epochs=1, batch_size=32, optimizer="adam")
    base = RunSpec(variant="mlp", repeat=0, seed=3)
    dropout = base.model_copy(update={"dropout_seed": 4})
    order = base.model_copy(update={"order_seed": 4})
    runs = {
        name: train(small_fashion, run, config, tmp_path / name, verbose=0)
        for name, run in (("base", base), ("dropout", dropout), ("order", order))
    }
    assert runs["base"].training_key != runs["dropout"].training_key != runs["order"].training_key
    losses = {name: r.history[0].loss for name, r in runs.items()}
    assert len(set(losses.values())) == 3


def test_the_initial_model_takes_weights_and_dropout_from_their_own_seeds():
    from cnnvsmlp.resume import rng_variables
    from cnnvsmlp.train import initial_model

    def weights_and_rng(**seeds):
        model = initial_model(RunSpec(variant="mlp", repeat=0, seed=3, **seeds), (28, 28, 1), 10)
        rng = [np.asarray(v) for v in rng_variables(model)]
        return model.get_weights(), rng

    def same(a, b):
        return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))

    base_w, base_rng = weights_and_rng()
    dropout_w, dropout_rng = weights_and_rng(dropout_seed=4)
    init_w, init_rng = weights_and_rng(init_seed=4)
    other_w, other_rng = weights_and_rng(init_seed=4, dropout_seed=4)
    assert base_rng and same(base_w, dropout_w) and not same(base_rng, dropout_rng)
    assert not same(base_w, init_w) and same(base_rng, init_rng)
    assert same(other_w, init_w) and same(other_rng, dropout_rng)
