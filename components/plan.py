"""Expand an experiment into its training runs."""

from typing import List  # noqa: UP035 - kfp reads typing.List annotations

from kfp import dsl

from cnnvsmlp_components.image import UNPLACED


@dsl.component(base_image=UNPLACED, install_kfp_package=False)
def plan_runs(
    config_json: str,
    repeats: int,
    config: dsl.Output[dsl.Artifact],
) -> List[str]:  # noqa: UP006
    """Settle the experiment's config and list every (variant, repeat) run of it.

    Args:
        config_json: the experiment config (``ExperimentConfig`` as JSON).
        repeats: runs per variant, seeds ``seed`` to ``seed + repeats - 1``,
            in place of the config's ``repeats``; 0 keeps the config's.
        config: output file: the config every later task uses, ``repeats``
            settled, as JSON. An artifact, not a parameter: kfp 2.17's local
            runner hands a task inside ``dsl.ParallelFor`` the wrong value of
            an upstream parameter output next to the loop item.

    Returns:
        One ``RunSpec`` as JSON per run, the slowest variant's first: the items of
        the pipeline's fan-out.
    """
    from pathlib import Path

    from cnnvsmlp.config import parse_config_json, with_overrides

    settled = parse_config_json(config_json)
    if repeats:
        settled = with_overrides(settled, [f"repeats={repeats}"])
    Path(config.path).write_text(settled.model_dump_json(), encoding="utf-8")
    config.metadata.update({"experiment": settled.name, "repeats": settled.repeats})
    return [run.model_dump_json() for run in settled.scheduled_runs()]
