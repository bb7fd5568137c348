"""Compare every run of an experiment: the fan-in."""

from typing import List  # noqa: UP035 - kfp reads typing.List annotations

from kfp import dsl

from cnnvsmlp_components.image import UNPLACED


@dsl.component(base_image=UNPLACED, install_kfp_package=False)
def compare_runs(
    config: dsl.Input[dsl.Artifact],
    dataset: dsl.Input[dsl.Dataset],
    results: dsl.Input[List[dsl.Artifact]],  # noqa: UP006
    report: dsl.Output[dsl.Markdown],
    report_html: dsl.Output[dsl.HTML],
    comparison: dsl.Output[dsl.Artifact],
    provenance_json: str = "",
    job_id: str = "",
):
    """Compare the variants over all repeats: statistics, plots and reports.

    Runs that failed for good are listed with their errors and the others
    compared: the comparison's ``status`` is then ``partial`` (or ``failed``
    when none is left), for ``check_runs`` to fail the pipeline run after
    these artifacts are kept.

    Args:
        config: the experiment config as ``plan_runs`` settled it (JSON file).
        dataset: the prepared data set (its test labels score the predictions).
        results: every run's ``EvalResult`` or ``RunFailure`` JSON, collected
            from the fan-out.
        report: the Markdown report the KFP UI renders.
        report_html: the self-contained HTML report, plots embedded.
        comparison: folder with ``comparison.json`` (docs/comparison-schema.md),
            ``report.md``, ``report.html`` and ``plots/*.png``.
        provenance_json: what started the run (``cnnvsmlp.provenance.Provenance``
            as JSON, from ``stamp``); empty when not recorded.
        job_id: the KFP job id, the run id when the provenance names none.
    """
    import shutil
    from pathlib import Path

    from cnnvsmlp.config import read_config
    from cnnvsmlp.data.store import load_split, read_metadata
    from cnnvsmlp.provenance import Provenance, with_data_source
    from cnnvsmlp.records import read_result
    from cnnvsmlp.report import write_comparison

    experiment = read_config(config.path)
    provenance = Provenance.model_validate_json(provenance_json or "{}")
    if not provenance.run_id:
        provenance = provenance.model_copy(update={"run_id": job_id})
    provenance = with_data_source(provenance, read_metadata(dataset.path))
    experiment = experiment.model_copy(update={"provenance": provenance})
    _, test_labels = load_split(dataset.path, "test")
    runs = [read_result(r.path) for r in results]
    out = Path(comparison.path)
    written = write_comparison(runs, experiment, test_labels, out)
    shutil.copyfile(out / "report.md", report.path)
    shutil.copyfile(out / "report.html", report_html.path)
    comparison.metadata.update(
        {
            "experiment": experiment.name,
            "run_id": provenance.run_id,
            "runs": len(runs),
            "status": written.status,
            "failed_runs": len(written.failures),
        }
    )
