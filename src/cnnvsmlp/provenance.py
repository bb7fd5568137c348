"""What produced a comparison: the run, when it started, the project's commit, the machine share."""

import json
import subprocess
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pydantic import BaseModel, Field

from cnnvsmlp.outputs import Record


class Provenance(Record):
    """Where a comparison came from. Empty fields (and None) mean: not recorded."""

    run_id: str = Field(default="", description="The local run folder's name, or the KFP job id.")
    started: datetime | None = Field(default=None, description="When the run started, UTC.")
    project_version: str = Field(default="", description="The cnnvsmlp version.")
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


def for_task(provenance_json: str, job_id: str, metadata: dict) -> Provenance:
    """A comparison task's provenance: the data's source and shape, the KFP job's id if none."""
    provenance = Provenance.model_validate_json(provenance_json or "{}")
    update = {
        "run_id": provenance.run_id or job_id,
        "data_source": str(metadata.get("source", "")),
        "data_shape": metadata.get("image_shape", []),
    }
    return provenance.model_copy(update=update)


def project_version() -> str:
    """The installed cnnvsmlp's version, or an empty string when it is not installed."""
    try:
        return version("cnnvsmlp")
    except PackageNotFoundError:
        return ""


def git_state() -> tuple[str, bool | None]:
    """This checkout's commit and whether it has uncommitted changes; ``("", None)`` if no git."""
    where = Path(__file__).resolve().parents[2]

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
    run_id: str,
    runner: str = "local",
    trainings_at_once: int | None = None,
    threads_per_training: int | None = None,
) -> Provenance:
    """The :class:`Provenance` of a run that starts now; it travels beside the config."""
    commit, dirty = git_state()
    return Provenance(
        run_id=run_id,
        started=datetime.now(UTC).replace(microsecond=0),
        project_version=project_version(),
        commit=commit,
        dirty=dirty,
        runner=runner,
        trainings_at_once=trainings_at_once,
        threads_per_training=threads_per_training,
    )


def write_beside(path: str | Path, config: BaseModel, provenance: Provenance) -> None:
    """Write a run folder's config.json: ``config``'s fields and ``provenance`` beside them."""
    fields = {**config.model_dump(mode="json"), "provenance": provenance.model_dump(mode="json")}
    Path(path).write_text(json.dumps(fields, indent=2, ensure_ascii=False) + "\n")


def recorded(config_json: str | Path) -> Provenance | None:
    """The provenance a run folder's ``config.json`` keeps beside the config's fields."""
    found = json.loads(Path(config_json).read_text(encoding="utf-8")).get("provenance")
    return Provenance.model_validate(found) if found else None
