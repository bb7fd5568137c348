"""Typed records for everything that crosses a boundary: experiment configs, run specs.

An experiment config is a YAML preset (``presets/<name>.yaml``) validated by
pydantic, optionally changed by ``key=value`` overrides. Components receive it
as JSON and validate it again, so a bad value fails before any work is done.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cnnvsmlp.errors import UserError

DATASETS = ("emnist-letters", "fashion-mnist")
DatasetName = Literal["emnist-letters", "fashion-mnist"]
Optimizer = Literal["sgd", "adam", "rmsprop", "adadelta"]
SourceKind = Literal["auto", "tfds", "idx"]


class ConfigError(UserError, ValueError):
    """A config file, preset name or override is invalid."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSource(_Record):
    """Where a data set is read from.

    ``auto`` tries, in order: the IDX files in ``idx_dir`` (when set; a named
    folder without them is an error, not a reason to try the next source),
    TFDS's download cache (``<tfds_data_dir>/downloads``), TFDS's prepared
    records in the same data_dir (when one is named), the offline default
    directory of the data set (Debian's package for Fashion-MNIST), prepared
    records in the default ``~/tensorflow_datasets``, and last a TFDS download when
    ``download`` is true. ``tfds`` tries only the three TFDS sources, ``idx``
    only ``idx_dir`` or else the offline default.
    """

    kind: SourceKind = "auto"
    tfds_data_dir: str | None = Field(
        default=None,
        description=(
            "TFDS data_dir, local path or gs:// URL, holding TFDS's download cache "
            "(downloads/) or its prepared records (<name>/<version>/); null: ~/tensorflow_datasets."
        ),
    )
    idx_dir: str | None = Field(
        default=None, description="Directory of the original gzip IDX files: path or gs:// prefix."
    )
    download: bool = Field(
        default=True, description="Let TFDS download the original files when no source has them."
    )


class Split(_Record):
    """How the official training split is cut into train and validation.

    ``shuffle_seed`` null takes the last ``validation_fraction`` of the
    images in file order, as Keras' ``validation_split`` does; an integer
    shuffles with that seed first.
    """

    validation_fraction: float = Field(gt=0.0, lt=1.0)
    shuffle_seed: int | None = None


class TrainConfig(_Record):
    """Hyperparameters of one training run."""

    epochs: int = Field(ge=1, le=1000)
    batch_size: int = Field(ge=1, le=65536)
    optimizer: Optimizer
    learning_rate: float | None = Field(
        default=None, gt=0.0, description="Null uses the Keras default of the optimizer."
    )


class Reference(_Record):
    """A number a seed write-up reported for one variant."""

    accuracy: float = Field(ge=0.0, le=1.0)
    loss: float | None = None
    split: Literal["validation", "test"]
    note: str = ""


class ExperimentConfig(_Record):
    """One comparison: a data set, the variants to train on it, and how."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    dataset: DatasetName
    source: DataSource = DataSource()
    split: Split
    variants: list[str] = Field(min_length=1)
    train: TrainConfig
    repeats: int = Field(default=1, ge=1, le=100)
    seed: int = Field(default=0, ge=0, description="Run r of a variant trains with seed + r.")
    limit: int | None = Field(
        default=None, ge=10, description="Use at most this many images of each official split."
    )
    references: dict[str, Reference] = Field(default_factory=dict)
    resume_uri: str | None = Field(
        default=None,
        description=(
            "gs:// prefix (or folder) where training mirrors its state after every epoch, "
            "so a retried training task resumes from its last finished epoch."
        ),
    )

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, variants: list[str]) -> list[str]:
        from cnnvsmlp.models import VARIANTS

        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            raise ValueError(
                f"unknown variant {unknown[0]!r}; allowed: {', '.join(sorted(VARIANTS))}"
            )
        if len(set(variants)) != len(variants):
            raise ValueError("each variant may appear once")
        return variants

    @model_validator(mode="after")
    def _references_name_variants(self) -> ExperimentConfig:
        from cnnvsmlp.models import VARIANTS

        for name in self.references:
            if name not in VARIANTS:
                raise ValueError(f"references: unknown variant {name!r}")
        return self

    def resume_path(self, job_id: str, run: RunSpec) -> str | None:
        """Where one run of one pipeline job mirrors its training state, if anywhere."""
        if not self.resume_uri:
            return None
        return f"{self.resume_uri.rstrip('/')}/{job_id}/{run.run_id}"

    def runs(self) -> list[RunSpec]:
        """Every (variant, repeat) training run of this experiment, in a stable order."""
        return [
            RunSpec(variant=v, repeat=r, seed=self.seed + r)
            for v in self.variants
            for r in range(self.repeats)
        ]


class RunSpec(_Record):
    """One training run: a variant and the seed of one repeat."""

    variant: str
    repeat: int = Field(ge=0)
    seed: int = Field(ge=0)

    @property
    def run_id(self) -> str:
        """Name of the run, used in artifact and file names."""
        return f"{self.variant}-r{self.repeat}"


# Short override keys for the fields people change most.
ALIASES = {
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "optimizer": "train.optimizer",
    "learning_rate": "train.learning_rate",
    "source": "source.kind",
    "idx_dir": "source.idx_dir",
    "tfds_data_dir": "source.tfds_data_dir",
}


def preset_names() -> list[str]:
    """Names of the bundled presets."""
    folder = resources.files("cnnvsmlp") / "presets"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def _read_yaml(config: str) -> tuple[str, dict]:
    path = Path(config)
    if config.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise ConfigError(f"{config}: no such config file")
        text, where = path.read_text(), str(path)
    elif config in preset_names():
        text = (resources.files("cnnvsmlp") / "presets" / f"{config}.yaml").read_text()
        where = f"preset {config}"
    else:
        raise ConfigError(f"{config}: not a preset ({', '.join(preset_names())}) nor a YAML file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML ({err.__class__.__name__})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    return where, data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Return ``data`` with ``key=value`` overrides applied.

    Keys are dotted paths (``train.epochs``) or an alias (``epochs``). Values
    are YAML scalars; a comma-separated value for ``variants`` is a list.

    Raises:
        ConfigError: an override is not ``key=value`` or names no field.
    """
    data = json.loads(json.dumps(data))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value")
        path = ALIASES.get(key, key).split(".")
        value = yaml.safe_load(raw) if raw else None
        if path == ["variants"] and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[path[-1]] = value
    return data


def _describe(err: ValidationError, where: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "literal_error":
        msg = f"got {first['input']!r}; {msg.lower()}"
    elif first["type"] == "extra_forbidden":
        msg = "unknown field"
    return f"{where}: {loc}: {msg}"


def load_config(config: str, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load a preset name or YAML path, apply overrides and validate.

    Raises:
        ConfigError: with a one-line message naming the field and what is allowed.
    """
    where, data = _read_yaml(config)
    data = apply_overrides(data, overrides or [])
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, where)) from None


def parse_config_json(text: str) -> ExperimentConfig:
    """Validate a config passed between components as JSON."""
    try:
        return ExperimentConfig.model_validate_json(text)
    except ValidationError as err:
        raise ConfigError(_describe(err, "config")) from None


def with_overrides(config: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """A validated config with ``key=value`` overrides applied, as :func:`load_config` does.

    Raises:
        ConfigError: an override is malformed or its value invalid, naming the field.
    """
    data = apply_overrides(config.model_dump(mode="json"), overrides)
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, "parameters")) from None
