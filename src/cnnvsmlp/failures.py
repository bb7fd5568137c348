"""Failures a retry cannot fix: recorded in place of a run's result, so the other runs count.

The task writes a RunFailure where its output would go and succeeds; the comparison lists the
run as failed and marks itself partial. Every other error is raised again, for a retry.
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

    True for a :class:`~cnnvsmlp.errors.UserError` not marked ``transient``, a record or
    archive that does not parse (a retry reads the same bytes), and running out of
    accelerator memory.
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

    Returns the record, or None when a retry may help: the caller raises ``err`` again then.
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
