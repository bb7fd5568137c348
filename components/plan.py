"""Expand an experiment, or a data-efficiency study, into its training runs.

The settled config goes on as an artifact: kfp 2.17's local runner hands a task inside
``dsl.ParallelFor`` the wrong value of an upstream parameter output.
"""

from typing import List  # noqa: UP035 - kfp reads typing.List annotations

from kfp import dsl

from cnnvsmlp_components.image import UNPLACED


@dsl.component(base_image=UNPLACED, install_kfp_package=False)
def plan_runs(
    config_json: str,
    repeats: int,
    config: dsl.Output[dsl.Artifact],
) -> List[str]:  # noqa: UP006
    """Settle the config (``repeats`` unless 0) and list its runs, the slowest variant's first."""
    from pathlib import Path

    from cnnvsmlp.config import parse_config_json, with_overrides

    settled = parse_config_json(config_json)
    if repeats:
        settled = with_overrides(settled, [f"repeats={repeats}"])
    Path(config.path).write_text(settled.model_dump_json(), encoding="utf-8")
    config.metadata.update({"experiment": settled.name, "repeats": settled.repeats})
    return [run.model_dump_json() for run in settled.scheduled_runs()]


@dsl.component(base_image=UNPLACED, install_kfp_package=False)
def plan_efficiency_runs(
    config_json: str,
    efficiency_json: str,
    repeats: int,
    dataset: dsl.Input[dsl.Dataset],
    config: dsl.Output[dsl.Artifact],
    efficiency: dsl.Output[dsl.Artifact],
) -> List[str]:  # noqa: UP006
    """Settle the study's config and sizes (cut to the training split); list its runs."""
    import json
    from pathlib import Path

    from cnnvsmlp.config import parse_config_json, with_overrides
    from cnnvsmlp.data.store import read_metadata
    from cnnvsmlp.efficiency.plan import effective_sizes, parse_efficiency_json, plan_runs, settle

    settled = parse_config_json(config_json)
    if repeats:
        settled = with_overrides(settled, [f"repeats={repeats}"])
    study = parse_efficiency_json(efficiency_json)
    settled = settle(settled, study)
    meta = read_metadata(dataset.path)
    available, classes = meta["counts"]["train"], len(meta["classes"])
    runs = plan_runs(settled, study, available, classes)
    study = study.model_copy(update={"sizes": effective_sizes(study.sizes, available, classes)})
    Path(config.path).write_text(settled.model_dump_json(), encoding="utf-8")
    Path(efficiency.path).write_text(study.model_dump_json(), encoding="utf-8")
    config.metadata.update({"experiment": settled.name, "repeats": settled.repeats})
    efficiency.metadata.update({"sizes": json.dumps(study.sizes)})
    return [run.model_dump_json() for run in runs]
