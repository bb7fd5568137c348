"""Experiment configs and run specs, validated where they are read: YAML, overrides or JSON."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cnnvsmlp.config_file import ConfigError, apply_overrides, one_line, read_yaml
from cnnvsmlp.config_file import preset_names as preset_names  # the presets, named here too
from cnnvsmlp.data.spec import USER_PREFIXES, check_name, get_spec
from cnnvsmlp.models import VARIANTS, get_variant, install_sources, is_user_variant, module_source
from cnnvsmlp.outputs import URI, Record

# The preset a command, a make verb or the pipeline uses when none is named.
DEFAULT_PRESET = "fashion-mnist"
Optimizer = Literal["sgd", "adam", "rmsprop", "adadelta"]


def _not_bool(value: object) -> object:
    """Refuse true in a number field, which pydantic would read as 1."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]
SEED_LIMIT = 2**32  # NumPy's and TensorFlow's seeds are 32-bit
SEED_SOURCES = ("init", "order", "dropout")
SeedSource = Literal["init", "order", "dropout"]


def _location(value: object) -> object:
    """Refuse a URI of a scheme other than gs://, which would be read as a local folder."""
    if not isinstance(value, str):
        return value
    scheme = URI.match(value)
    if scheme and not value.startswith("gs://"):
        raise ValueError(
            f"{value!r}: the {scheme[1]}: scheme is not supported; "
            "use a gs://<bucket>/<path> URI or a local folder"
        )
    if value.startswith("gs://") and not value[5:].split("/", 1)[0]:
        raise ValueError(f"{value!r} names no bucket; expected gs://<bucket>/<path>")
    return value


Location = Annotated[str, BeforeValidator(_location)]


class _Config(Record):
    model_config = ConfigDict(frozen=True, allow_inf_nan=False)


def _dataset_name(value: object) -> object:
    if isinstance(value, str) and value.startswith("folder:"):
        _location(value.removeprefix("folder:"))
    return check_name(value) if isinstance(value, str) else value


# A built-in data set's name, tfds:<TFDS name> or folder:<path>.
DatasetName = Annotated[str, BeforeValidator(_dataset_name)]


class DataSource(_Config):
    """Where a data set is read from: auto (each source, see data.search_order), tfds or idx."""

    kind: Literal["auto", "tfds", "idx"] = "auto"
    tfds_data_dir: Location | None = None
    """TFDS data_dir (path or gs:// URL) of downloads/ or prepared records; null: the default."""
    idx_dir: Location | None = None
    """Directory of the original gzip IDX files: path or gs:// prefix."""
    download: bool = True
    """Let TFDS download the original files when no source has them."""


class Split(_Config):
    """How the official training split is cut; no shuffle_seed: the last fraction, as Keras'."""

    validation_fraction: Float = Field(gt=0.0, lt=1.0)
    shuffle_seed: Int | None = Field(default=None, ge=0, lt=SEED_LIMIT)


class StoppingRule(_Config):
    """Early stopping on validation loss, keeping the best epoch (training_files.decide)."""

    patience: Int = Field(default=5, ge=1, le=1000)
    """Epochs without improvement before stopping."""
    min_delta: Float = Field(default=0.001, ge=0.0)
    """An epoch improves when its validation loss is lower than the best by more."""


class TrainConfig(_Config):
    """Hyperparameters of one training run, and how fast it executes."""

    epochs: Int = Field(ge=1, le=1000)
    batch_size: Int = Field(ge=1, le=65536)
    optimizer: Optimizer
    learning_rate: Float | None = Field(default=None, gt=0.0)
    """Null uses the Keras default of the optimizer."""
    steps_per_execution: Int = Field(default=64, ge=1, le=10000)
    """Training steps TensorFlow runs per call from Python (Keras' compile option)."""
    validation_batch_size: Int | None = Field(default=1024, ge=1, le=65536)
    """Batch size of the validation pass; null: the training batch size."""
    early_stopping: StoppingRule | None = None
    """Stop early, keeping the best epoch, epochs being the cap; null: train every epoch."""
    keep_checkpoints: bool = False
    """Keep every epoch's checkpoint after training, not only the inference model."""
    backend: Literal["tensorflow", "jax"] = "tensorflow"
    """The Keras backend that trains and evaluates."""


class Reference(_Config):
    """A number a seed write-up reported for one variant."""

    accuracy: float = Field(ge=0.0, le=1.0)
    loss: float | None = None
    split: Literal["validation", "test"]
    note: str = ""
    dataset: DatasetName | None = None
    """The data set the number was measured on; by default the config file's."""


NAME_LENGTH = 100  # an experiment's name is in its run folders' names (255 bytes at most)


class ExperimentConfig(_Config):
    """One comparison: a data set, the variants to train on it, and how."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=NAME_LENGTH)
    description: str = ""
    dataset: DatasetName
    source: DataSource = DataSource()
    split: Split
    variants: list[str] = Field(min_length=1)
    train: TrainConfig
    repeats: Int = Field(default=1, ge=1, le=100)
    seed: Int = Field(default=0, ge=0, lt=SEED_LIMIT)
    """Run r of a variant trains with seed + r."""
    vary_seeds: list[SeedSource] = Field(default=list(SEED_SOURCES), min_length=1)
    """What a repeat's seed changes (weights, image order, dropout); the others keep repeat 0's."""
    equivalence_margin: float = Field(default=1.0, gt=0, le=100)
    """Points of test accuracy within which two variants are equivalent (cnnvsmlp.pairwise)."""
    limit: Int | None = Field(default=None, ge=10)
    """Use at most this many images of each official split."""
    references: dict[str, Reference] = Field(default_factory=dict)
    resume_uri: Location | None = None
    """gs:// prefix or folder where a training mirrors each epoch's state to resume from."""
    reuse_trainings: bool = False
    """Share resume_uri's trainings across runs: one with the same training key is reused."""
    resume_scope: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    """The folder under resume_uri that keeps trainings apart; null: the pipeline job's id."""
    model_sources: dict[str, str] = Field(default_factory=dict)
    """The source of each user module a module:function variant names, read when made."""

    @field_validator("variants", mode="before")
    @classmethod
    def _known_variants(cls, variants: object) -> object:
        if not isinstance(variants, list) or not all(isinstance(v, str) for v in variants):
            return variants
        allowed = ", ".join(sorted(VARIANTS))
        if not variants:
            raise ValueError(f"names no variant; list one or more of {allowed}")
        unknown = [v for v in variants if v not in VARIANTS and not is_user_variant(v)]
        if unknown:
            close = difflib.get_close_matches(unknown[0], VARIANTS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ValueError(
                f"unknown variant {unknown[0]!r}; allowed: {allowed} or module:function{hint}"
            )
        if len(set(variants)) != len(variants):
            raise ValueError("each variant may appear once")
        return variants

    @model_validator(mode="before")
    @classmethod
    def _read_model_sources(cls, data: object, info: ValidationInfo) -> object:
        """Read a user variant's module once, here; its source then travels in the config."""
        if isinstance(data, dict) and info.context:  # a record's provenance: beside, not in it
            data = {key: value for key, value in data.items() if key != "provenance"}
        if not isinstance(data, dict) or not isinstance(data.get("variants"), list):
            return data
        sources = dict(data.get("model_sources") or {})
        for name in data["variants"]:
            if isinstance(name, str) and is_user_variant(name):
                module = name.partition(":")[0]
                if module not in sources:
                    sources[module] = module_source(module, name)
        return {**data, "model_sources": sources} if sources else data

    @model_validator(mode="before")
    @classmethod
    def _no_seed_references_on_user_data(cls, data: object) -> object:
        """Drop a preset's references, measured on a built-in data set, on a user's one."""
        refs = (data.get("references") or {}) if isinstance(data, dict) else None
        if not isinstance(refs, dict) or not str(data.get("dataset", "")).startswith(USER_PREFIXES):
            return data
        kept = {
            name: ref
            for name, ref in refs.items()
            if not isinstance(ref, dict) or ref.get("dataset") in (None, data["dataset"])
        }
        return {**data, "references": kept}

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        install_sources(self.model_sources)
        for name in self.variants:
            get_variant(name)
        if self.reuse_trainings and self.resume_scope:
            raise ValueError(
                "resume_scope: set it or reuse_trainings, not both "
                "(reuse_trainings shares one scope across runs)"
            )
        for name, ref in self.references.items():
            if name not in self.variants and name not in VARIANTS:
                raise ValueError(f"references: unknown variant {name!r}")
            if ref.dataset not in (None, self.dataset):
                raise ValueError(
                    f"references.{name}: a number measured on {ref.dataset}, but dataset is "
                    f"{self.dataset}; use --config {self.dataset} for its references, or "
                    "add references={} to compare without any"
                )
        if self.seed + self.repeats > SEED_LIMIT:
            raise ValueError(
                f"seed: {self.seed} + {self.repeats} repeats passes 2**32 - 1, the largest seed"
            )
        # A user's data set is not read here: prepare_data refuses a split it leaves empty.
        n = None if self.dataset.startswith(USER_PREFIXES) else self._source_images()
        # validation_fraction < 1 always leaves training images; limit >= 10 leaves test ones.
        if n is not None and int(n * self.split.validation_fraction) == 0:
            raise ValueError(
                f"split.validation_fraction: {self.split.validation_fraction} of {n} images "
                "leaves no validation images"
            )
        return self

    def _source_images(self) -> int | None:
        """The images train and validation are cut from: official or limit; None: not known yet."""
        counts = (get_spec(self.dataset).official_counts.get("train"), self.limit)
        return min((n for n in counts if n is not None), default=None)

    def training_images(self) -> int | None:
        """The training split's size as ``prepare`` will cut it; None: known once read."""
        n = self._source_images()
        return None if n is None else n - int(n * self.split.validation_fraction)

    def resume_path(self, job_id: str) -> str | None:
        """Where one pipeline job keeps its trainings: ``shared``, resume_scope or the job id."""
        if not self.resume_uri:
            return None
        scope = "shared" if self.reuse_trainings else (self.resume_scope or job_id)
        return f"{self.resume_uri.rstrip('/')}/{scope}"

    def runs(self) -> list[RunSpec]:
        """Every (variant, repeat) training run of this experiment, in a stable order."""
        fixed = [f"{source}_seed" for source in SEED_SOURCES if source not in self.vary_seeds]
        return [  # a repeat r > 0 keeps repeat 0's seed for the sources it does not vary
            RunSpec(variant=v, repeat=r, seed=self.seed + r, **{k: self.seed for k in fixed if r})
            for v in self.variants
            for r in range(self.repeats)
        ]

    def scheduled_runs(self) -> list[RunSpec]:
        """The runs, the slowest variant's first: a runner with fewer slots finishes soonest."""
        return sorted(self.runs(), key=lambda run: -get_variant(run.variant).step_ms)


class RunSpec(_Config):
    """One training run: a variant, the seed of one repeat, and optionally a training subset."""

    variant: str
    repeat: Int = Field(ge=0)
    seed: Int = Field(ge=0, lt=SEED_LIMIT)
    init_seed: Int | None = Field(default=None, ge=0, lt=SEED_LIMIT)
    """Seed of the initial weights; null: seed."""
    order_seed: Int | None = Field(default=None, ge=0, lt=SEED_LIMIT)
    """Seed of the epochs' image order; null: seed."""
    dropout_seed: Int | None = Field(default=None, ge=0, lt=SEED_LIMIT)
    """Seed of dropout's masks; null: seed."""
    n_train: Int | None = Field(default=None, ge=1)
    """Train on this many images of the training split (cnnvsmlp.efficiency); null: all of them."""

    def seed_of(self, source: SeedSource) -> int:
        """The seed of one source of randomness: its own when set, else the run's."""
        own = getattr(self, f"{source}_seed")
        return self.seed if own is None else own

    @property
    def run_id(self) -> str:
        """Name of the run, used in artifact and file names."""
        size = f"-n{self.n_train}" if self.n_train is not None else ""
        return f"{self.variant}{size}-r{self.repeat}"


def load_config(config: str, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load a preset or YAML path, apply overrides and validate; ConfigError names the field."""
    where, data = read_yaml(config)
    # A number from a write-up belongs to its file's data set: an override of dataset then
    # meets references of another one, and is refused.
    references = data.get("references")
    for ref in references.values() if isinstance(references, dict) else ():
        if isinstance(ref, dict):
            ref.setdefault("dataset", data.get("dataset"))
    return parse_config_json(apply_overrides(data, overrides or []), where)


def parse_config_json(data: dict | str, where: str = "config") -> ExperimentConfig:
    """Validate a config: a dict, or JSON passed between components; ConfigError names the field."""
    try:
        if isinstance(data, str):
            return ExperimentConfig.model_validate_json(data, context={"record": True})
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(one_line(err, where, ExperimentConfig)) from None


def read_config(path: str | Path) -> ExperimentConfig:
    """Validate a config that one component wrote to a file for the next."""
    return parse_config_json(Path(path).read_text(encoding="utf-8"))


def with_overrides(config: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """A validated config with ``key=value`` overrides applied, as :func:`load_config` does."""
    return parse_config_json(
        apply_overrides(config.model_dump(mode="json"), overrides), "parameters"
    )
