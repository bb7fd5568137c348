"""The data-efficiency study's settings and its runs: variant x training-set size x repeat.

The default sizes follow the training split: eight halvings up to the whole
split (375 to 48,000 on Fashion-MNIST), evenly spread on a log axis, from a
few images a class (where the convolution's prior should matter most) to the
full split that ``compare`` trains on; a size under 3 images a class is
left out. The variants, the repeats (default 3 in the data-efficiency preset),
the recipe and the cap on epochs (``train.epochs``) come from the experiment
config; a repeat's seed draws its subsets, so both variants of a repeat train
on the same images. The study's stopping rule (patience 5 epochs, min_delta
0.001 on validation loss, by default) becomes every training's
``train.early_stopping`` (:func:`settle`).
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

    sizes: list[Int] | None = Field(
        default=None,
        min_length=1,
        description="Training images per run, increasing; a size at or above the training "
        "split's trains on all of it. null: eight halvings of the training split.",
    )
    stopping: StoppingRule = Field(
        default=StoppingRule(),
        description="The rule every training of the study stops by (its train.early_stopping).",
    )

    @field_validator("sizes")
    @classmethod
    def _increasing(cls, sizes: list[int] | None) -> list[int] | None:
        if sizes is None:
            return None
        if any(s < 1 for s in sizes):
            raise ValueError(f"sizes must be at least 1, got {min(sizes)}")
        if any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)):
            raise ValueError(f"sizes must increase, got {sizes}")
        return sizes


def parse_efficiency_json(text: str) -> EfficiencyConfig:
    """Validate the study's settings passed as JSON (the pipeline's ``efficiency_json``).

    Raises:
        ConfigError: one line naming the field and what is wrong.
    """
    try:
        return EfficiencyConfig.model_validate_json(text)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"efficiency_json: {where + ': ' if where else ''}{msg}") from None


def settle(config: ExperimentConfig, efficiency: EfficiencyConfig) -> ExperimentConfig:
    """The experiment as the study trains it: early stopping on, by the study's rule.

    Args:
        config: the experiment; its ``train.epochs`` is the cap on epochs.
        efficiency: the study, whose ``stopping`` replaces ``train.early_stopping``.

    Returns:
        The config every training and the comparison of the study read.
    """
    recipe = config.train.model_copy(update={"early_stopping": efficiency.stopping})
    return config.model_copy(update={"train": recipe})


def effective_sizes(sizes: list[int] | None, available: int, classes: int = 1) -> list[int]:
    """The sizes a training split of ``available`` images allows.

    Sizes below ``available`` are kept; any at or above it become one run on
    the whole split, so a ``limit`` on the data shortens the list and still
    ends at the full split. No sizes: eight halvings of the split, those of
    at least 3 images a class.

    Args:
        sizes: the configured sizes, increasing; None for the halvings.
        available: images in the training split.
        classes: classes of the data set.

    Returns:
        Increasing sizes, the last at most ``available``.
    """
    if sizes is None:
        halvings = {round(available / 2**k) for k in range(HALVINGS)}
        return sorted(n for n in halvings if n >= 3 * classes) or [available]
    kept = [s for s in sizes if s < available]
    return kept + [available] if len(kept) < len(sizes) else kept


def plan_runs(
    config: ExperimentConfig, efficiency: EfficiencyConfig, available: int, classes: int
) -> list[RunSpec]:
    """Every (variant, size, repeat) run, the longest first.

    Args:
        config: the experiment: variants, repeats, seed.
        efficiency: the sizes.
        available: images in the prepared training split.
        classes: classes of the data set; every subset needs one image of each.

    Returns:
        One run per variant, size and repeat, with ``n_train`` set, ordered by
        the variant's step time times the size, longest first (so a runner with
        fewer slots than runs ends with the short ones).

    Raises:
        UserError: a size is too small to hold every class.
    """
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
