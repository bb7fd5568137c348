"""Train one model variant."""

from kfp import dsl

from cnnvsmlp_components.image import UNPLACED


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
    from pathlib import Path

    from cnnvsmlp import backend
    from cnnvsmlp.config import RunSpec, read_config
    from cnnvsmlp.efficiency.subsets import training_data

    experiment = read_config(config.path)
    backend.use(experiment.train.backend)  # before anything imports Keras
    from cnnvsmlp.failures import FAILURE_FILE, record_failure
    from cnnvsmlp.progress import forward
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
            err, run, experiment.dataset, "train", Path(model.path) / FAILURE_FILE
        )
        if failure is None:
            raise
        print(f"train: {run.run_id} failed for good: {failure.message}", file=sys.stderr)
        model.metadata.update({"variant": run.variant, "repeat": run.repeat, "failed": True})
        return
    model.metadata.update(
        {
            "variant": run.variant,
            "repeat": run.repeat,
            "seed": run.seed,
            "params": result.params,
            "val_accuracy": result.history[-1].val_accuracy,
            "train_time_s": result.train_time_s,
            "device": result.hardware.name,
            "reused_from": result.reused_from or "",
            "store": store or "",  # where evaluate_model keeps and finds its evaluations
        }
    )
