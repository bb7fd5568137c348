"""What produced a comparison: the run, when it started, the project's commit, the machine share."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, Field

from cnnvsmlp.jsonmodel import Record

# A config that carries a provenance (an ExperimentConfig, not imported here).
Config = TypeVar("Config", bound=BaseModel)

# The checkout this module runs from, when it runs from one.
_SOURCE = Path(__file__).resolve().parents[2]


class Provenance(Record):
    """Where a comparison came from. Empty fields (and None) mean: not recorded."""

    run_id: str = Field(default="", description="The local run folder's name, or the KFP job id.")
    started: datetime | None = Field(default=None, description="When the run started, UTC.")
    project_version: str = ""
    """The cnnvsmlp version."""
    commit: str = Field(default="", description="The project's git commit the run started from.")
    dirty: bool | None = None
    """Whether that checkout had uncommitted changes."""
    runner: str = Field(default="", description="'local' or 'cluster'.")
    trainings_at_once: int | None = None
    """Trainings that shared one machine at a time; None on a cluster."""
    threads_per_training: int | None = None
    """TensorFlow threads each training was given; None: one per core."""
    note: str = Field(default="", description="How the report was made when not by the run.")
    data_source: str = ""
    """Where the data set came from, e.g. 'idx:<folder>', 'tfds:...'."""
    data_shape: list[int] = []
    """The images' height, width and channels; [] unknown."""

    @property
    def synthetic(self) -> bool:
        """Whether the run's data is synth-emnist's stand-in, not a real data set."""
        return self.data_source.startswith("synthetic:")


# The report's second line when the data is synth-emnist's stand-in: its lead, then its text.
SYNTHETIC_LEAD = "Smoke check, not a result:"
SYNTHETIC_DATA = (
    "the data is synth-emnist's stand-in for EMNIST Letters (rendered letters, not "
    "handwriting): this run checks that the pipeline works end to end; its numbers say "
    "nothing about EMNIST and are not results."
)


def with_data_source(provenance: Provenance | None, metadata: dict) -> Provenance:
    """``provenance`` (or an empty one) naming the source and image shape in ``metadata``."""
    update = {
        "data_source": str(metadata.get("source", "")),
        "data_shape": metadata.get("image_shape", []),
    }
    return (provenance or Provenance()).model_copy(update=update)


def project_version() -> str:
    """The installed cnnvsmlp's version, or an empty string when it is not installed."""
    try:
        return version("cnnvsmlp")
    except PackageNotFoundError:
        return ""


def git_state(where: Path = _SOURCE) -> tuple[str, bool | None]:
    """The commit at ``where`` and whether it has uncommitted changes; ``("", None)`` if no git."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(where), *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "", None
    return commit, dirty


def stamp(
    config: Config,
    run_id: str,
    runner: str = "local",
    trainings_at_once: int | None = None,
    threads_per_training: int | None = None,
) -> Config:
    """A copy of ``config`` with the :class:`Provenance` of a run that starts now."""
    commit, dirty = git_state()
    provenance = Provenance(
        run_id=run_id,
        started=datetime.now(timezone.utc).replace(microsecond=0),
        project_version=project_version(),
        commit=commit,
        dirty=dirty,
        runner=runner,
        trainings_at_once=trainings_at_once,
        threads_per_training=threads_per_training,
    )
    return config.model_copy(update={"provenance": provenance})
