"""A local run's folder, its status record, and the lines the screen shows about it."""

from __future__ import annotations

import contextlib
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

from cnnvsmlp.config import ExperimentConfig, RunSpec, read_config
from cnnvsmlp.errors import UserError
from cnnvsmlp.outputs import HOST, last_touched, local_folder, owner_alive, write_atomically

# What a runs folder holds: run folders (<UTC date>-<time>-<experiment>[-n]), latest, hidden ones.
OF_RUNS = re.compile(r"\d{8}-\d{6}-|\.|latest\Z")


class LocalRunError(UserError):
    """The local pipeline run failed or produced no comparison."""


def new_run_dir(runs_dir: Path, config: ExperimentConfig) -> Path:
    """Create ``runs_dir/<UTC timestamp>-<experiment>``, unique even within a second."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    runs_dir = local_folder(runs_dir, "runs")  # a dangling link is named as one
    if runs_dir.exists() and not runs_dir.is_dir():
        raise LocalRunError(f"{runs_dir}: is a file, not a folder for runs")
    foreign = sorted(p.name for p in runs_dir.glob("*") if not OF_RUNS.match(p.name))
    if foreign:
        raise LocalRunError(
            f"{runs_dir}: holds {foreign[0]}, which is not a run; choose an empty folder "
            "or one of runs for --runs-dir"
        )
    for n in range(1000):
        path = runs_dir / (f"{stamp}-{config.name}" + (f"-{n}" if n else ""))
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
        except OSError as err:
            raise LocalRunError(
                f"{runs_dir}: cannot create a run folder ({err.strerror})"
            ) from None
    raise LocalRunError(f"{runs_dir}: cannot create a new run folder")


STATUS_FILE = "status.json"
LOCK_FILE = ".lock"  # held by the one process writing the run folder (outputs.one_writer)
PROGRESS_FILE = "progress.jsonl"
# Seconds a run spends outside the trainings' epochs: every task's start (about
# 10 s each for TensorFlow's import), the data, the evaluations and the report.
FIXED_S, PER_TRAINING_S = 60.0, 25.0
# The epochs an early-stopped training is expected to take, for the estimate only.
EARLY_STOP_EPOCHS = 15


class LocalRunInterrupted(UserError):
    """SIGINT or SIGTERM stopped a local run; its folder is marked and can be resumed."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


def write_status(run_dir: Path, status: str, **fields) -> None:
    """Record the run's status in ``<run>/status.json``; the last attempt's ending goes with it."""
    path = run_dir / STATUS_FILE
    record = {k: v for k, v in read_status(run_dir).items() if k not in ("signal", "error")}
    now = datetime.now(UTC).isoformat(timespec="seconds")
    record.update(fields, status=status, updated=now)
    write_atomically(path, lambda p: p.write_text(json.dumps(record, indent=2) + "\n"))


def read_status(run_dir: Path) -> dict:
    """The run's status record; a run still marked running whose process is gone was stopped."""
    try:
        record = json.loads((run_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict):
        return {}
    if record.get("status") == "running":
        # Progress events are the heartbeat of a run on another host.
        marks = [last_touched(run_dir / f) for f in (STATUS_FILE, f"pipeline/{PROGRESS_FILE}")]
        touched = max((t for t in marks if t), default=None)
        if not owner_alive(record.get("pid"), record.get("host"), touched):
            record["status"] = "interrupted"
    return record


def point_latest(run_dir: Path) -> None:
    """Make ``<runs_dir>/latest`` a relative link to ``run_dir``, replaced in one rename."""
    link = run_dir.parent / "latest"
    if link.exists() and not link.is_symlink():
        return  # a folder or file of the user's named latest: leave it
    partial = run_dir.parent / f".latest-{os.getpid()}"
    partial.unlink(missing_ok=True)
    partial.symlink_to(run_dir.name)
    partial.replace(link)


def epoch_seconds(config: ExperimentConfig, runs: list[RunSpec] | None = None) -> dict[str, float]:
    """Each training's expected seconds per epoch, from its variant's measured step cost."""
    from cnnvsmlp.models import get_variant

    images = config.training_images() or 0
    # step_ms is at batch 32; an image costs about the same at any batch size.
    return {
        r.run_id: min(r.n_train or images, images) / 32 * get_variant(r.variant).step_ms / 1000
        for r in (config.scheduled_runs() if runs is None else runs)
    }


def expected_epochs(config: ExperimentConfig) -> float:
    """The epochs a training is expected to run: all of them, or with early stopping fewer."""
    epochs = config.train.epochs
    return float(epochs if config.train.early_stopping is None else min(epochs, EARLY_STOP_EPOCHS))


def header(
    name: str, config: ExperimentConfig, run_dir: Path, resumed: bool, runs: list[RunSpec]
) -> list[str]:
    """What will run (``runs``), where, and about how long it takes."""
    from cnnvsmlp.report.blocks import plural

    epoch_s = epoch_seconds(config, runs).values()
    seconds = FIXED_S + sum(PER_TRAINING_S + expected_epochs(config) * s for s in epoch_s)
    minutes = round(seconds / 60)
    about = f"{minutes} min" if minutes >= 1 else f"{max(1, round(seconds))} s"
    data = "" if config.dataset == config.name else f" on {config.dataset}"
    limit = f" (limit {config.limit:,} images)" if config.limit else ""
    sizes = sorted({r.n_train for r in runs if r.n_train})
    grid = [plural(len(config.variants), "variant")]
    if sizes:
        grid.append(plural(len(sizes), "size") + f" ({sizes[0]:,} to {sizes[-1]:,} images)")
    grid.append(plural(config.repeats, "repeat"))
    epochs = (
        f"{plural(config.train.epochs, 'epoch')} each"
        if config.train.early_stopping is None
        else f"each to convergence (early stopping, at most {config.train.epochs} epochs)"
    )
    return [
        f"{'resuming' if resumed else 'run'}: {name} / {config.name}{data}{limit}: "
        f"{' x '.join(grid)} = {plural(len(runs), 'training')}, {epochs}, "
        f"batch {config.train.batch_size}",
        f"run: folder {run_dir}; logs in {run_dir / 'logs'}",
        f"run: about {about} (the variants' step costs on 2 cores)",
    ]


def closing(comparison, run_dir: Path, minutes: float) -> list[str]:
    """The lines after the trainings: the table and verdicts (or a summary), the report, the run."""
    from cnnvsmlp.report.render import terminal_table

    table = comparison if isinstance(comparison, str) else terminal_table(comparison)
    return [
        "",
        *table.splitlines(),
        "",
        f"run: finished in {minutes:.1f} min; report in {run_dir / 'report'}/report.md",
        f"run: every artifact in {run_dir} (logs in {run_dir / 'logs'})",
    ]


def resume_dir(runs_dir: Path, run_id: str) -> tuple[Path, ExperimentConfig, str]:
    """The folder, recorded config and pipeline of the run to go on with."""
    run_dir = runs_dir / run_id
    if "/" in run_id or run_id.startswith(".") or not (run_dir / "config.json").is_file():
        raise LocalRunError(
            f"--resume {run_id}: no run folder {run_dir} with a config.json; "
            f"'cnnvsmlp runs --runs-dir {runs_dir}' lists the runs"
        )
    record = read_status(run_dir)
    if record.get("status") == "complete":
        raise LocalRunError(f"--resume {run_id}: the run is complete; its report is in {run_dir}")
    if record.get("status") == "running":
        where = f" on {record['host']}" if record.get("host") not in (None, HOST) else ""
        raise LocalRunError(
            f"--resume {run_id}: the run is still running (pid {record['pid']}{where}); "
            "stop it first, or wait for it to end"
        )
    return run_dir, read_config(run_dir / "config.json"), record.get("pipeline", "")


def busy(run_dir: Path, pid: int | None) -> None:
    """Refuse a run folder that another process is writing."""
    raise LocalRunError(
        f"run {run_dir.name}: another process (pid {pid}) is writing its folder {run_dir}; "
        "wait for it to end, or stop it first"
    )


def list_runs(runs_dir: str | Path) -> list[dict]:
    """Every run folder in ``runs_dir``, newest first: status, date, config, best accuracy."""
    rows = []
    for run_dir in sorted(Path(runs_dir).glob("*"), reverse=True):
        if run_dir.name.startswith(".") or run_dir.is_symlink() or not run_dir.is_dir():
            continue
        try:
            config = json.loads((run_dir / "config.json").read_text())
        except (OSError, ValueError):
            config = {"dataset": "(config.json missing or damaged)"}
        config = config if isinstance(config, dict) else {}
        record = read_status(run_dir)
        best = ""
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            comparison = json.loads((run_dir / "report" / "comparison.json").read_text())
            top = max(comparison["variants"], key=lambda v: v["test_accuracy"]["estimate"])
            best = f"{top['variant']} {top['test_accuracy']['estimate']:.4f}"
        rows.append(
            {
                "run": run_dir.name,
                "status": record.get("status", "unknown"),
                "date": record.get("updated", "")[:16].replace("T", " "),
                "dataset": config.get("dataset", ""),
                "variants": ",".join(config.get("variants", [])),
                "repeats": config.get("repeats", ""),
                "epochs": config.get("train", {}).get("epochs", ""),
                "best": best,
            }
        )
    return rows
