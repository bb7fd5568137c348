"""Failures a retry cannot fix: recorded in place of a run's result, so the other runs count.

On a cluster a failed task is retried (a preempted node, a storage hiccup).
An error that will happen again on every attempt, such as bad input
(:class:`~cnnvsmlp.errors.UserError`, a training whose loss diverged and a
training state that can be neither trusted nor set aside among them), a file
the project wrote that no longer parses (the same bytes fail again), or running
out of accelerator memory, is instead written as a
:class:`~cnnvsmlp.records.RunFailure` where the run's output would go. The
task then succeeds, evaluation passes the record on, and the comparison
lists the run as failed, compares the others and marks itself partial.
Every other error is raised again, for the orchestrator to retry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zipfile import BadZipFile

from pydantic import ValidationError

from cnnvsmlp.config import RunSpec
from cnnvsmlp.errors import UserError
from cnnvsmlp.records import RunFailure

FAILURE_FILE = "failure.json"
"""The name of the failure record in a training task's model folder."""


def is_permanent(err: BaseException) -> bool:
    """Whether ``err`` would happen again on a retry of the same task.

    Args:
        err: what the run raised.

    Returns:
        True for a :class:`~cnnvsmlp.errors.UserError` not marked
        ``transient``, for a record or archive that does not parse (pydantic's
        ``ValidationError``, ``zipfile.BadZipFile``: a retry reads the same
        bytes) and for the backend running out of accelerator memory
        (TensorFlow's ``ResourceExhaustedError``, JAX's ``RESOURCE_EXHAUSTED``);
        False for everything else.
    """
    if getattr(err, "transient", False):
        return False
    if isinstance(err, UserError | ValidationError | BadZipFile):
        return True
    from cnnvsmlp.backend import is_out_of_memory

    return is_out_of_memory(err)


def record_failure(
    err: BaseException,
    run: RunSpec,
    dataset: str,
    stage: Literal["train", "evaluate"],
    path: str | Path,
) -> RunFailure | None:
    """Write a :class:`~cnnvsmlp.records.RunFailure` to ``path`` when ``err`` is permanent.

    Args:
        err: what the run raised.
        run: the run that failed.
        dataset: the data set it ran on.
        stage: ``train`` or ``evaluate``.
        path: the file to write the record to; its folder is made when missing.

    Returns:
        The record written, or None when a retry may help: the caller raises
        ``err`` again then.
    """
    if not is_permanent(err):
        return None
    message = " ".join(str(err).split()) or err.__class__.__name__
    failure = RunFailure(
        run=run, dataset=dataset, stage=stage, error=err.__class__.__name__, message=message
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    failure.write(path)
    return failure


def read_failure(model_dir: str | Path) -> RunFailure | None:
    """The failure record a training task left in its model folder, if any."""
    path = Path(model_dir) / FAILURE_FILE
    return RunFailure.read(path) if path.is_file() else None
