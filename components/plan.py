"""Expand an experiment into its training runs."""

from typing import List  # noqa: UP035 - kfp reads typing.List annotations

from kfp import dsl

from cnnvsmlp.images import image_ref


@dsl.component(base_image=image_ref("cpu"), install_kfp_package=False)
def plan_runs(config_json: str, repeats: int) -> List[str]:  # noqa: UP006
    """List every (variant, repeat) run of the experiment.

    Args:
        config_json: the experiment config (``ExperimentConfig`` as JSON).
        repeats: runs per variant, seeds ``seed`` to ``seed + repeats - 1``,
            in place of the config's ``repeats``; 0 keeps the config's.

    Returns:
        One ``RunSpec`` as JSON per run: the items of the pipeline's fan-out.
    """
    from cnnvsmlp.config import parse_config_json, with_overrides

    config = parse_config_json(config_json)
    if repeats:
        config = with_overrides(config, [f"repeats={repeats}"])
    return [run.model_dump_json() for run in config.runs()]
