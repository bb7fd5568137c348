"""Evaluate one trained model on the held-out test split."""

from kfp import dsl

from cnnvsmlp_components.image import UNPLACED


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
    from cnnvsmlp.failures import read_failure, record_failure
    from cnnvsmlp.records import TrainResult

    failure, scored = read_failure(model.path), None
    if failure is not None:  # training failed for good: its record takes the result's place
        failure.write(result.path)
    else:
        trained = TrainResult.read(Path(model.path) / "train.json")
        backend.use(trained.train.backend)  # the model's own, set before Keras loads
        from cnnvsmlp.evaluate import keep_evaluation, reuse_evaluation

        store = model.metadata.get("store") or None  # where train_model kept the training
        scored = reuse_evaluation(model.path, dataset.path, store, Path(result.path))
        if scored is not None:
            print(f"evaluate: {scored.run.run_id}: evaluation reused from {store}", file=sys.stderr)
    if failure is None and scored is None:
        from cnnvsmlp.evaluate import evaluate

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
    if failure is not None:
        info = {"variant": failure.run.variant, "repeat": failure.run.repeat, "failed": True}
        metrics.metadata.update(info)
        result.metadata.update({**info, "error": failure.error})
        return
    for name, value in (
        *((n, getattr(scored, n)) for n in ("accuracy", "loss", "params", "model_size_bytes")),
        ("inference_images_per_s", scored.inference_images_per_s),
        ("train_images_per_s", scored.training.train_images_per_s),
    ):
        metrics.log_metric(name, float(value))
    metrics.metadata.update({"variant": scored.run.variant, "repeat": scored.run.repeat})
    classification.log_confusion_matrix(scored.classes, scored.confusion)
    result.metadata.update(
        {"variant": scored.run.variant, "repeat": scored.run.repeat, "accuracy": scored.accuracy}
    )
