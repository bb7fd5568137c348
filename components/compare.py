"""Compare every run of an experiment: the fan-in."""

from typing import List  # noqa: UP035 - kfp reads typing.List annotations

from kfp import dsl

from cnnvsmlp.images import image_ref


@dsl.component(base_image=image_ref("cpu"), install_kfp_package=False)
def compare_runs(
    config_json: str,
    dataset: dsl.Input[dsl.Dataset],
    results: dsl.Input[List[dsl.Artifact]],  # noqa: UP006
    report: dsl.Output[dsl.Markdown],
    report_html: dsl.Output[dsl.HTML],
    comparison: dsl.Output[dsl.Artifact],
):
    """Compare the variants over all repeats: statistics, plots and reports.

    Args:
        config_json: the experiment config (``ExperimentConfig`` as JSON).
        dataset: the prepared data set (its test labels score the predictions).
        results: every run's ``EvalResult`` JSON, collected from the fan-out.
        report: the Markdown report the KFP UI renders.
        report_html: the self-contained HTML report, plots embedded.
        comparison: folder with ``comparison.json`` (docs/comparison-schema.md),
            ``report.md``, ``report.html`` and ``plots/*.png``.
    """
    import shutil
    from pathlib import Path

    from cnnvsmlp.config import parse_config_json
    from cnnvsmlp.data import load_split
    from cnnvsmlp.records import EvalResult
    from cnnvsmlp.report import write_comparison

    config = parse_config_json(config_json)
    _, test_labels = load_split(dataset.path, "test")
    runs = [EvalResult.read(r.path) for r in results]
    out = Path(comparison.path)
    write_comparison(runs, config, test_labels, out)
    shutil.copyfile(out / "report.md", report.path)
    shutil.copyfile(out / "report.html", report_html.path)
    comparison.metadata.update({"experiment": config.name, "runs": len(runs)})
