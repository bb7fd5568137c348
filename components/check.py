"""Fail the pipeline run when some training runs failed, after the comparison is kept."""

from kfp import dsl

from cnnvsmlp_components.image import UNPLACED


@dsl.component(base_image=UNPLACED, install_kfp_package=False)
def check_runs(comparison: dsl.Input[dsl.Artifact]):
    """Exit non-zero when the comparison is ``partial`` or ``failed``.

    ``compare_runs`` succeeds with a partial comparison so that its
    artifacts are stored (a failed task's outputs are not); this last step
    then fails, so the run shows as failed and a scheduler notices.

    Args:
        comparison: the comparison folder ``compare_runs`` wrote.

    Raises:
        RunsFailed: some runs failed for good; the message lists them.
    """
    from pathlib import Path

    from cnnvsmlp.report.status import check_complete

    check_complete(Path(comparison.path) / "comparison.json")
