"""Failures a retry cannot fix: recorded in place of a run's result, so the other runs count."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zipfile import BadZipFile

from pydantic import ValidationError

from cnnvsmlp.config import RunSpec
from cnnvsmlp.errors import UserError
from cnnvsmlp.records import RunFailure

FAILURE_FILE = "failure.json"  # in a training task's model folder


def is_permanent(err: BaseException) -> bool:
    """Whether ``err`` would happen again on a retry: bad input, unparsable bytes, no memory."""
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
    """Write and return a RunFailure at ``path`` when ``err`` is permanent; else None."""
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
