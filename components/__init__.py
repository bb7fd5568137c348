"""Kubeflow components: thin wrappers that turn artifacts into calls of the cnnvsmlp library.

The settled config goes on as an artifact (kfp 2.17's local runner gives a task in a ParallelFor
a wrong upstream parameter); compare steps succeed with failed runs listed, check steps fail runs.
"""

from kfp import dsl

# The image a component names until ``pipelines/placement.py`` places its task.
UNPLACED = "cnnvsmlp-cpu:unplaced"


@dsl.component(base_image=UNPLACED, install_kfp_package=False)
def prepare_data(config_json: str, dataset: dsl.Output[dsl.Dataset]):
    """Write the config's data set, normalised, as docs/dataset-format.md describes."""
    from cnnvsmlp.config import parse_config_json
    from cnnvsmlp.data import prepare
    from cnnvsmlp.models import check_user_variants

    config = parse_config_json(config_json)
    meta = prepare(config.dataset, config.source, config.split, dataset.path, config.limit)
    # A user's function that builds no model for this data fails here, before any training.
    check_user_variants(config.variants, meta["image_shape"], len(meta["classes"]))
    dataset.metadata.update(dataset=meta["dataset"], source=meta["source"], **meta["counts"])


@dsl.component(base_image=UNPLACED, install_kfp_package=False)
def plan_runs(config_json: str, repeats: int, config: dsl.Output[dsl.Artifact]) -> list[str]:
    """Settle the config (``repeats`` unless 0) and list its runs, the slowest variant's first."""
    from pathlib import Path

    from cnnvsmlp.config import parse_config_json, with_overrides

    settled = parse_config_json(config_json)
    settled = with_overrides(settled, [f"repeats={repeats}"]) if repeats else settled
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
) -> list[str]:
    """Settle the study's config and sizes (cut to the training split); list its runs."""
    import json
    from pathlib import Path

    from cnnvsmlp.config import parse_config_json, with_overrides
    from cnnvsmlp.data.store import read_metadata
    from cnnvsmlp.efficiency.curves import effective_sizes, parse_efficiency_json, plan_runs, settle

    settled = parse_config_json(config_json)
    settled = with_overrides(settled, [f"repeats={repeats}"]) if repeats else settled
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


@dsl.component(base_image=UNPLACED, install_kfp_package=False)
def train_model(
    config: dsl.Input[dsl.Artifact],
    run_json: str,
    job_id: str,
    dataset: dsl.Input[dsl.Dataset],
    model: dsl.Output[dsl.Model],
):
    """Train one variant with one seed; a retry resumes, a failure no retry fixes is recorded."""
    import sys

    from cnnvsmlp import backend
    from cnnvsmlp.config import RunSpec, read_config
    from cnnvsmlp.efficiency.subsets import training_data

    experiment = read_config(config.path)
    backend.use(experiment.train.backend)  # before anything imports Keras
    from cnnvsmlp.progress import forward
    from cnnvsmlp.records import FAILURE_FILE, record_failure
    from cnnvsmlp.resume import reuse_training

    forward()
    run = RunSpec.model_validate_json(run_json)
    store = experiment.resume_path(job_id)
    try:
        with training_data(dataset.path, run) as data_dir:  # the run's subset, if it has one
            result = reuse_training(data_dir, run, experiment.train, model.path, store)
            if result is None:
                from cnnvsmlp.train import train

                result = train(data_dir, run, experiment.train, model.path, store=store)
    except Exception as err:
        failure = record_failure(
            err, run, experiment.dataset, "train", f"{model.path}/{FAILURE_FILE}"
        )
        if failure is None:
            raise
        print(f"train: {run.run_id} failed for good: {failure.message}", file=sys.stderr)
        model.metadata.update({"variant": run.variant, "repeat": run.repeat, "failed": True})
        return
    model.metadata.update(
        variant=run.variant,
        repeat=run.repeat,
        seed=run.seed,
        params=result.params,
        val_accuracy=result.history[-1].val_accuracy,
        train_time_s=result.train_time_s,
        device=result.hardware.name,
        reused_from=result.reused_from or "",
        store=store or "",  # where evaluate_model keeps and finds its evaluations
    )


@dsl.component(base_image=UNPLACED, install_kfp_package=False)
def evaluate_model(
    dataset: dsl.Input[dsl.Dataset],
    model: dsl.Input[dsl.Model],
    metrics: dsl.Output[dsl.Metrics],
    classification: dsl.Output[dsl.ClassificationMetrics],
    result: dsl.Output[dsl.Artifact],
):
    """Score a model on the test split: ``result`` gets its ``EvalResult`` or ``RunFailure``."""
    import sys
    from pathlib import Path

    from cnnvsmlp import backend
    from cnnvsmlp.errors import UserError
    from cnnvsmlp.records import TrainResult, read_failure, record_failure

    failure, scored = read_failure(model.path), None
    if failure is not None:  # training failed for good: its record takes the result's place
        failure.write(result.path)
    else:
        trained = TrainResult.read(Path(model.path) / "train.json")
        backend.use(trained.train.backend)  # the model's own, set before Keras loads
        from cnnvsmlp.evaluate import evaluate, keep_evaluation, reuse_evaluation

        store = model.metadata.get("store") or None  # where train_model kept the training
        scored = reuse_evaluation(model.path, dataset.path, store, Path(result.path))
        if scored is not None:
            print(f"evaluate: {scored.run.run_id}: evaluation reused from {store}", file=sys.stderr)
    if failure is None and scored is None:
        try:
            scored = evaluate(model.path, dataset.path, result.path)
        except Exception as err:
            failure = record_failure(err, trained.run, trained.dataset, "evaluate", result.path)
            if failure is None:
                raise
            print(f"evaluate: {trained.run.run_id} failed: {failure.message}", file=sys.stderr)
        else:
            try:  # a store that cannot keep it costs only a later run the evaluation
                keep_evaluation(model.path, dataset.path, store, scored)
            except (OSError, UserError) as err:
                print(f"evaluate: {scored.run.run_id} not kept in {store}: {err}", file=sys.stderr)
    info = {key: getattr((failure or scored).run, key) for key in ("variant", "repeat")}
    if failure is not None:
        metrics.metadata.update(info, failed=True)
        result.metadata.update(info, failed=True, error=failure.error)
        return
    for name in ("accuracy", "loss", "params", "model_size_bytes", "inference_images_per_s"):
        metrics.log_metric(name, float(getattr(scored, name)))
    metrics.log_metric("train_images_per_s", float(scored.training.train_images_per_s))
    metrics.metadata.update(info)
    classification.log_confusion_matrix(scored.classes, scored.confusion)
    result.metadata.update(info, accuracy=scored.accuracy)


@dsl.component(base_image=UNPLACED, install_kfp_package=False)
def compare_runs(
    config: dsl.Input[dsl.Artifact],
    dataset: dsl.Input[dsl.Dataset],
    results: dsl.Input[list[dsl.Artifact]],
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
    from cnnvsmlp.provenance import for_task
    from cnnvsmlp.records import read_result
    from cnnvsmlp.report import write_comparison

    experiment = read_config(config.path)
    provenance = for_task(provenance_json, job_id, read_metadata(dataset.path))
    _, test_labels = load_split(dataset.path, "test")
    runs = [read_result(r.path) for r in results]
    out = Path(comparison.path)
    written = write_comparison(runs, experiment, test_labels, out, provenance)
    shutil.copyfile(out / "report.md", report.path)
    shutil.copyfile(out / "report.html", report_html.path)
    comparison.metadata.update(
        experiment=experiment.name,
        run_id=provenance.run_id,
        runs=len(runs),
        status=written.status,
        failed_runs=len(written.failures),
    )


@dsl.component(base_image=UNPLACED, install_kfp_package=False)
def compare_efficiency(
    config: dsl.Input[dsl.Artifact],
    efficiency: dsl.Input[dsl.Artifact],
    dataset: dsl.Input[dsl.Dataset],
    results: dsl.Input[list[dsl.Artifact]],
    report: dsl.Output[dsl.Markdown],
    comparison: dsl.Output[dsl.Artifact],
    provenance_json: str = "",
    job_id: str = "",
):
    """Accuracy against training-set size, the gap per size, the learning curves."""
    import shutil
    from pathlib import Path

    from cnnvsmlp.config import read_config
    from cnnvsmlp.data.store import load_split, read_metadata
    from cnnvsmlp.efficiency.analysis import analyze
    from cnnvsmlp.efficiency.curves import EfficiencyConfig
    from cnnvsmlp.provenance import for_task
    from cnnvsmlp.records import read_result
    from cnnvsmlp.report.efficiency import write_efficiency_report as write_analysis

    experiment = read_config(config.path)
    provenance = for_task(provenance_json, job_id, read_metadata(dataset.path))
    study = EfficiencyConfig.read(efficiency.path)
    _, test_labels = load_split(dataset.path, "test")
    runs = [read_result(r.path) for r in results]
    analysis = analyze(runs, experiment, study, test_labels, provenance=provenance)
    out = Path(comparison.path)
    write_analysis(analysis, out)
    shutil.copyfile(out / "report.md", report.path)
    comparison.metadata.update(
        experiment=experiment.name,
        run_id=provenance.run_id,
        status=analysis.status,
        failed_runs=len(analysis.failures),
    )


@dsl.component(base_image=UNPLACED, install_kfp_package=False)
def check_runs(comparison: dsl.Input[dsl.Artifact]):
    """Exit non-zero (``RunsFailed``) when the comparison is ``partial`` or ``failed``."""
    from cnnvsmlp.report.model import check_complete

    check_complete(f"{comparison.path}/comparison.json")


@dsl.component(base_image=UNPLACED, install_kfp_package=False)
def check_efficiency(comparison: dsl.Input[dsl.Artifact]):
    """Exit non-zero (``EfficiencyRunsFailed``) when the study is ``partial`` or ``failed``."""
    from cnnvsmlp.efficiency.analysis import check_complete

    check_complete(f"{comparison.path}/comparison.json")
