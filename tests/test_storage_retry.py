"""A retried training on a new pod, against its own fake-gcs-server (a module of its own)."""

import numpy as np
import pytest

from cnnvsmlp import storage
from test_storage import bucket, gcs_server  # noqa: F401  (fixtures: this module's own server)


@pytest.fixture(scope="module")
def mirrored_training(gcs_server, small_fashion, tmp_path_factory):  # noqa: F811
    """Three epochs of mlp (Dropout) in one go, mirrored to a bucket after every epoch."""
    from cnnvsmlp.config import RunSpec, TrainConfig
    from cnnvsmlp.train import train

    storage.client().create_bucket("uninterrupted")
    run = RunSpec(variant="mlp", repeat=0, seed=11)
    # Every epoch's checkpoint kept, so a test can put any point of the training in a bucket.
    config = TrainConfig(epochs=3, batch_size=32, optimizer="adam", keep_checkpoints=True)
    out = tmp_path_factory.mktemp("uninterrupted")
    result = train(small_fashion, run, config, out, verbose=0, resume_uri="gs://uninterrupted/r")
    return run, config, out, result


KILL_POINTS = {
    # where a task on a node that went away stopped: what had reached the bucket
    "before-the-first-epoch-ended": ([], 0),
    "mid-epoch-3": (
        [
            "checkpoints/epoch-01.keras",
            "state/epoch-01.json",
            "checkpoints/epoch-02.keras",
            "state/epoch-02.json",
        ],
        2,
    ),
    "right-after-epoch-3s-checkpoint": (
        [
            "checkpoints/epoch-01.keras",
            "state/epoch-01.json",
            "checkpoints/epoch-02.keras",
            "state/epoch-02.json",
            "checkpoints/epoch-03.keras",
        ],
        2,
    ),
    "after-the-last-epoch-before-train-json": (
        [
            "checkpoints/epoch-01.keras",
            "state/epoch-01.json",
            "checkpoints/epoch-02.keras",
            "state/epoch-02.json",
            "checkpoints/epoch-03.keras",
            "state/epoch-03.json",
        ],
        3,
    ),
}


# One kill point in make test, the others in the slow tier.
@pytest.mark.parametrize(
    "point",
    [p if p == "mid-epoch-3" else pytest.param(p, marks=pytest.mark.slow) for p in KILL_POINTS],
)
def test_a_retry_on_a_new_pod_ends_with_the_uninterrupted_weights(
    point,
    bucket,  # noqa: F811
    mirrored_training,
    small_fashion,
    tmp_path,
):
    import keras

    from cnnvsmlp.train import train

    run, config, full_out, full = mirrored_training
    names, done = KILL_POINTS[point]
    for name in names:
        storage.upload(full_out / name, f"gs://{bucket}/r/{name}")
    retry = train(
        small_fashion, run, config, tmp_path / "retry", verbose=0, resume_uri=f"gs://{bucket}/r"
    )
    assert retry.resumed_from_epoch == done
    assert [e.epoch for e in retry.history] == [1, 2, 3]
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    assert [[getattr(e, k) for k in keys] for e in retry.history] == [
        [getattr(e, k) for k in keys] for e in full.history
    ]
    ours = keras.saving.load_model(tmp_path / "retry" / "model.keras").weights
    theirs = keras.saving.load_model(full_out / "model.keras").weights
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
