"""Compare every run of a data-efficiency study: the fan-in, and the check after it."""

from typing import List  # noqa: UP035 - kfp reads typing.List annotations

from kfp import dsl

from cnnvsmlp_components.image import UNPLACED


@dsl.component(base_image=UNPLACED, install_kfp_package=False)
def compare_efficiency(
    config: dsl.Input[dsl.Artifact],
    efficiency: dsl.Input[dsl.Artifact],
    dataset: dsl.Input[dsl.Dataset],
    results: dsl.Input[List[dsl.Artifact]],  # noqa: UP006
    report: dsl.Output[dsl.Markdown],
    comparison: dsl.Output[dsl.Artifact],
):
    """Accuracy against training-set size, the gap per size, the learning curves.

    Runs that failed for good are listed and the others compared; the
    analysis's ``status`` is then ``partial`` (or ``failed``), for
    ``check_efficiency`` to fail the pipeline run after these artifacts are kept.

    Args:
        config: the experiment config as the plan settled it (JSON file).
        efficiency: the sizes and stopping rule as the plan settled them (JSON file).
        dataset: the prepared data set (its test labels score the predictions).
        results: every run's ``EvalResult`` or ``RunFailure`` JSON.
        report: the Markdown report the KFP UI renders.
        comparison: folder with ``comparison.json`` (``EfficiencyAnalysis``), ``report.md``
            (its plots embedded), ``report.html`` and ``plots/*.png``
            (:mod:`cnnvsmlp.report.efficiency`).
    """
    import shutil
    from pathlib import Path

    from cnnvsmlp.config import read_config
    from cnnvsmlp.data.store import load_split, read_metadata
    from cnnvsmlp.efficiency.analysis import analyze
    from cnnvsmlp.efficiency.plan import EfficiencyConfig
    from cnnvsmlp.provenance import with_data_source
    from cnnvsmlp.records import read_result
    from cnnvsmlp.report.efficiency import write_efficiency_report as write_analysis

    experiment = read_config(config.path)
    provenance = with_data_source(experiment.provenance, read_metadata(dataset.path))
    experiment = experiment.model_copy(update={"provenance": provenance})
    study = EfficiencyConfig.read(efficiency.path)
    _, test_labels = load_split(dataset.path, "test")
    analysis = analyze([read_result(r.path) for r in results], experiment, study, test_labels)
    out = Path(comparison.path)
    write_analysis(analysis, out)
    shutil.copyfile(out / "report.md", report.path)
    comparison.metadata.update(
        {
            "experiment": experiment.name,
            "status": analysis.status,
            "failed_runs": len(analysis.failures),
        }
    )


@dsl.component(base_image=UNPLACED, install_kfp_package=False)
def check_efficiency(comparison: dsl.Input[dsl.Artifact]):
    """Exit non-zero when the data-efficiency comparison is ``partial`` or ``failed``.

    Args:
        comparison: the folder ``compare_efficiency`` wrote.

    Raises:
        EfficiencyRunsFailed: some runs failed for good; the message lists them.
    """
    from pathlib import Path

    from cnnvsmlp.efficiency.analysis import check_complete

    check_complete(Path(comparison.path) / "comparison.json")
