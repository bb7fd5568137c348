"""Presets, overrides and the messages of invalid configs."""

from __future__ import annotations

import pytest

from cnnvsmlp.config import ConfigError, load_config, preset_names


def test_presets_follow_the_seeds():
    assert preset_names() == ["emnist-letters", "fashion-mnist", "fashion-mnist-data-efficiency"]
    fashion = load_config("fashion-mnist")
    assert fashion.variants == ["mlp", "cnn", "cnn-3conv", "cnn-3conv-bn"]
    assert (fashion.train.batch_size, fashion.train.epochs, fashion.train.optimizer) == (
        32,
        5,
        "adam",
    )
    assert fashion.split.validation_fraction == 0.2 and fashion.split.shuffle_seed is None
    emnist = load_config("emnist-letters")
    assert emnist.variants == ["mlp", "cnn-deep"]
    assert (emnist.train.batch_size, emnist.train.epochs, emnist.train.optimizer) == (
        128,
        15,
        "sgd",
    )
    assert emnist.references["cnn-deep"].accuracy == 0.9339
    assert emnist.references["mlp"].split == "validation"


def test_overrides_and_runs():
    config = load_config(
        "fashion-mnist",
        [
            "epochs=1",
            "repeats=2",
            "variants=cnn,mlp",
            "limit=3000",
            "source=idx",
            "train.batch_size=64",
        ],
    )
    assert config.train.epochs == 1 and config.train.batch_size == 64
    assert config.limit == 3000 and config.source.kind == "idx"
    assert [(r.variant, r.repeat, r.seed) for r in config.runs()] == [
        ("cnn", 0, 0),
        ("cnn", 1, 1),
        ("mlp", 0, 0),
        ("mlp", 1, 1),
    ]


def test_runs_start_slowest_variant_first():
    config = load_config("fashion-mnist", ["repeats=2"])
    scheduled = config.scheduled_runs()
    assert sorted(r.run_id for r in scheduled) == sorted(r.run_id for r in config.runs())
    assert [r.variant for r in scheduled][::2] == ["mlp", "cnn-3conv-bn", "cnn-3conv", "cnn"]
    assert [r.repeat for r in scheduled] == [0, 1] * 4  # repeats keep their order


def test_yaml_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(load_config("fashion-mnist").model_dump_json())  # JSON is YAML
    assert load_config(str(path)).name == "fashion-mnist"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["epochs=0"], "train.epochs: Input should be greater than or equal to 1"),
        (["variants=cnn,resnet"], "variants: unknown variant 'resnet'; allowed: cnn, cnn-3conv,"),
        (["optimizer=lbfgs"], "train.optimizer: got 'lbfgs'; input should be 'sgd', 'adam',"),
        (["source=web"], "source.kind: got 'web'; input should be 'auto', 'tfds' or 'idx'"),
        (
            ["dataset=mnist"],
            "dataset: unknown data set 'mnist'; use one of emnist-letters, fashion-mnist, "
            "tfds:<TFDS name> or folder:",
        ),
        (["colour=red"], "colour: unknown field"),
        (["epochs"], "override 'epochs': expected key=value"),
        (["seed=4294967296"], "seed: Input should be less than 4294967296"),
        (["seed=4294967295", "repeats=2"], "seed: 4294967295 + 2 repeats passes 2**32 - 1"),
        (["learning_rate=.inf"], "train.learning_rate: Input should be a finite number"),
        (["learning_rate=.nan"], "train.learning_rate: Input should be a finite number"),
        (["epochs=true"], "train.epochs: expected a number, got true"),
        (["resume_uri=gs://"], "resume_uri: 'gs://' names no bucket"),
        (
            ["limit=10", "split.validation_fraction=0.05"],
            "split.validation_fraction: 0.05 of 10 images leaves no validation images",
        ),
        (["epochs=*a"], "YAML aliases"),
        (
            ["train.steps_per_execution=0"],
            "train.steps_per_execution: Input should be greater than",
        ),
    ],
)
def test_invalid_config_names_field_and_allowed_values(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config("fashion-mnist", overrides)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_preset_or_file():
    with pytest.raises(ConfigError, match="nope: not a preset"):
        load_config("nope")
    with pytest.raises(ConfigError, match="missing.yaml: no such config file"):
        load_config("missing.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"name: \xff\xfe\n", "not UTF-8 text (byte 6)"),
        (b"name: a\nname: b\n", "line 2: key 'name' appears twice"),
        (b"a: &a [x, x, x]\nb: [*a, *a, *a]\n", "line 2: YAML aliases (*name) are not allowed"),
        (b"[1, 2]\n", "expected a mapping at the top level"),
    ],
)
def test_config_files_refused_at_load_time(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(text)
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert str(err.value) == f"{path}: {message}"


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 20)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="YAML aliases"):
        load_config(str(path))


def test_a_run_folders_provenance_travels_beside_the_config_never_in_it(tmp_path):
    from cnnvsmlp.config import read_config
    from cnnvsmlp.provenance import Provenance, recorded, write_beside

    config = load_config("fashion-mnist", ["epochs=1"])
    write_beside(tmp_path / "config.json", config, Provenance(run_id="r1", runner="local"))
    assert read_config(tmp_path / "config.json") == config  # an old folder's record reads too
    assert recorded(tmp_path / "config.json").run_id == "r1"
    with pytest.raises(ConfigError, match="provenance: unknown field"):
        load_config("fashion-mnist", ["provenance.run_id=r2"])
    (tmp_path / "own.yaml").write_text(
        "name: mine\ndataset: fashion-mnist\nprovenance: {run_id: r3}\n"
    )
    with pytest.raises(ConfigError, match="provenance: unknown field"):
        load_config(str(tmp_path / "own.yaml"))


def test_a_comparison_task_names_its_kfp_job_only_when_no_run_id_was_stamped():
    from cnnvsmlp.provenance import Provenance, for_task

    metadata = {"source": "idx:/data", "image_shape": [28, 28, 1]}
    cluster = for_task(Provenance(runner="cluster").model_dump_json(), "job-9", metadata)
    assert (cluster.run_id, cluster.runner, cluster.data_source) == (
        "job-9",
        "cluster",
        "idx:/data",
    )
    local = for_task(Provenance(run_id="r1").model_dump_json(), "job-9", metadata)
    assert local.run_id == "r1" and local.data_shape == [28, 28, 1]
    assert for_task("", "job-9", metadata).run_id == "job-9"
