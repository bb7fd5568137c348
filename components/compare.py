"""The fan-in: compare every run of an experiment or a study, then check the comparison.

The compare step succeeds with failed runs listed, so its artifacts are stored; the check fails.
"""

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
    """Compare the variants over all repeats: ``comparison`` holds the record, reports, plots."""
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


@dsl.component(base_image=UNPLACED, install_kfp_package=False)
def compare_efficiency(
    config: dsl.Input[dsl.Artifact],
    efficiency: dsl.Input[dsl.Artifact],
    dataset: dsl.Input[dsl.Dataset],
    results: dsl.Input[List[dsl.Artifact]],  # noqa: UP006
    report: dsl.Output[dsl.Markdown],
    comparison: dsl.Output[dsl.Artifact],
):
    """Accuracy against training-set size, the gap per size, the learning curves."""
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
def check_runs(comparison: dsl.Input[dsl.Artifact]):
    """Exit non-zero (``RunsFailed``) when the comparison is ``partial`` or ``failed``."""
    from pathlib import Path

    from cnnvsmlp.report.status import check_complete

    check_complete(Path(comparison.path) / "comparison.json")


@dsl.component(base_image=UNPLACED, install_kfp_package=False)
def check_efficiency(comparison: dsl.Input[dsl.Artifact]):
    """Exit non-zero (``EfficiencyRunsFailed``) when the study is ``partial`` or ``failed``."""
    from pathlib import Path

    from cnnvsmlp.efficiency.analysis import check_complete

    check_complete(Path(comparison.path) / "comparison.json")
