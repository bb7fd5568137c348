"""The data-efficiency study's settings and its runs: variant x training-set size x repeat.

Default sizes: eight halvings of the training split (375 to 48,000 on Fashion-MNIST), each
of at least 3 images a class; a repeat's seed draws the subsets both variants train on.
"""

from __future__ import annotations

from pydantic import Field, ValidationError, field_validator

from cnnvsmlp.config import ConfigError, ExperimentConfig, Int, RunSpec, StoppingRule
from cnnvsmlp.errors import UserError
from cnnvsmlp.jsonmodel import Record

DEFAULT_SIZES = (375, 750, 1500, 3000, 6000, 12000, 24000, 48000)  # Fashion-MNIST's halvings
HALVINGS = 8


class EfficiencyConfig(Record):
    """The training-set sizes of the study and the rule that ends every training."""

    sizes: list[Int] | None = Field(default=None, min_length=1)
    """Training images per run, increasing (at or above the split: all of it); null: halvings."""
    stopping: StoppingRule = StoppingRule()
    """The rule every training of the study stops by (its train.early_stopping)."""

    @field_validator("sizes")
    @classmethod
    def _increasing(cls, sizes: list[int] | None) -> list[int] | None:
        if any(s < 1 for s in sizes or ()):
            raise ValueError(f"sizes must be at least 1, got {min(sizes)}")
        if sizes and any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)):
            raise ValueError(f"sizes must increase, got {sizes}")
        return sizes


def parse_efficiency_json(text: str) -> EfficiencyConfig:
    """Validate the pipeline's ``efficiency_json``; a ConfigError names the field at fault."""
    try:
        return EfficiencyConfig.model_validate_json(text)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"efficiency_json: {where + ': ' if where else ''}{msg}") from None


def settle(config: ExperimentConfig, efficiency: EfficiencyConfig) -> ExperimentConfig:
    """The experiment as the study trains it: ``train.early_stopping`` by the study's rule."""
    recipe = config.train.model_copy(update={"early_stopping": efficiency.stopping})
    return config.model_copy(update={"train": recipe})


def effective_sizes(sizes: list[int] | None, available: int, classes: int = 1) -> list[int]:
    """The sizes below ``available``, then the whole split once; None: the halvings."""
    if sizes is None:
        halvings = {round(available / 2**k) for k in range(HALVINGS)}
        return sorted(n for n in halvings if n >= 3 * classes) or [available]
    kept = [s for s in sizes if s < available]
    return kept + [available] if len(kept) < len(sizes) else kept


def plan_runs(
    config: ExperimentConfig, efficiency: EfficiencyConfig, available: int, classes: int
) -> list[RunSpec]:
    """Every (variant, size, repeat) run, by step time times size, the longest first."""
    from cnnvsmlp.models import get_variant

    sizes = effective_sizes(efficiency.sizes, available, classes)
    if sizes[0] < classes:
        raise UserError(
            f"efficiency.sizes: {sizes[0]} images cannot hold one of each of the {classes} "
            f"classes; use sizes of at least {classes}"
        )
    runs = [
        RunSpec(variant=v, repeat=r, seed=config.seed + r, n_train=n)
        for v in config.variants
        for n in sizes
        for r in range(config.repeats)
    ]
    return sorted(runs, key=lambda run: -get_variant(run.variant).step_ms * run.n_train)
