"""A training or evaluation done before is reused by key, without loading TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from cnnvsmlp.config import RunSpec, load_config
from cnnvsmlp.records import EvalResult, Hardware, environment_id, memo_file

RUN = RunSpec(variant="cnn", repeat=0, seed=4)

# Run in a fresh interpreter: the reuse path's imports, without the test's own.
REUSE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from cnnvsmlp.config import RunSpec, TrainConfig
    from cnnvsmlp.evaluate import reuse_evaluation
    from cnnvsmlp.resume import reuse_training

    data, store, out, run, config = sys.argv[1:6]
    run, config = RunSpec.model_validate_json(run), TrainConfig.model_validate_json(config)
    trained = reuse_training(data, run, config, out, store)
    scored = trained and reuse_evaluation(out, data, store, Path(out) / "result.json")
    print(json.dumps({
        "trained": trained.model_dump(mode="json") if trained else None,
        "scored": scored is not None,
        "loaded": sorted(m for m in ("tensorflow", "keras", "jax") if m in sys.modules),
    }))
    """
)


def reuse_in_new_process(data, store, out, run, config) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", REUSE, str(data), store, str(out)]
        + [run.model_dump_json(), config.model_dump_json()],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def kept(small_fashion, tmp_path_factory):
    """One epoch of cnn trained and evaluated with a store, both kept there."""
    from cnnvsmlp.evaluate import evaluate, keep_evaluation
    from cnnvsmlp.train import train

    root = tmp_path_factory.mktemp("kept")
    store = str(root / "resume" / "shared")
    config = load_config("fashion-mnist", ["epochs=1"]).train
    out = root / "first"
    trained = train(small_fashion, RUN, config, out, store=store)
    scored = evaluate(out, small_fashion, root / "first.json")
    keep_evaluation(out, small_fashion, store, scored)
    return root, store, config, trained, scored


def test_a_finished_training_and_its_evaluation_are_reused_without_tensorflow(small_fashion, kept):
    root, store, config, trained, scored = kept
    found = reuse_in_new_process(small_fashion, store, root / "second", RUN, config)
    assert found["loaded"] == []
    assert found["trained"]["reused_from"] == str((root / "first").resolve())
    assert found["trained"]["training_key"] == trained.training_key
    assert found["scored"]
    again = EvalResult.read(root / "second" / "result.json")
    # The same numbers to the last digit; the training named is this run's.
    assert again.model_dump(exclude={"training"}) == scored.model_dump(exclude={"training"})
    assert again.training.reused_from == str((root / "first").resolve())


def test_another_seed_or_store_finds_nothing_to_reuse(small_fashion, kept, tmp_path):
    root, store, config, _, _ = kept
    other = RUN.model_copy(update={"seed": 5})
    assert (
        reuse_in_new_process(small_fashion, store, tmp_path / "a", other, config)["trained"] is None
    )
    elsewhere = str(tmp_path / "resume" / "shared")
    assert (
        reuse_in_new_process(small_fashion, elsewhere, tmp_path / "b", RUN, config)["trained"]
        is None
    )


def test_an_evaluation_of_other_model_bytes_is_not_reused(small_fashion, kept, tmp_path):
    from cnnvsmlp.evaluate import reuse_evaluation

    root, store, _, _, _ = kept
    model = tmp_path / "model"
    model.mkdir()
    for name in ("train.json", "model.keras"):
        (model / name).write_bytes((root / "first" / name).read_bytes())
    assert reuse_evaluation(model, small_fashion, store, tmp_path / "r.json") is not None
    with (model / "model.keras").open("ab") as f:
        f.write(b"\0")
    assert reuse_evaluation(model, small_fashion, store, tmp_path / "r2.json") is None
    assert not (tmp_path / "r2.json").exists()


def test_the_machine_is_remembered_per_environment(tmp_path, monkeypatch):
    assert Hardware.remembered(tmp_path) is None
    detected = Hardware.detect(memo=tmp_path)
    assert memo_file(tmp_path).is_file()
    assert Hardware.remembered(tmp_path) == detected
    before = environment_id()
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")
    assert environment_id() != before
    assert Hardware.remembered(tmp_path) is None
    memo_file(tmp_path).write_text("{not json")
    assert Hardware.remembered(tmp_path) is None
