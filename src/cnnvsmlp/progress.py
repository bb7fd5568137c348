"""Training progress: events logged with ``extra={"event": {...}}``, shown by the runner.

:func:`forward` appends them to the file ``CNNVSMLP_PROGRESS`` names; :func:`display` shows them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

LOGGER = logging.getLogger("cnnvsmlp.progress")
ENV = "CNNVSMLP_PROGRESS"
Kind = Literal["start", "step", "epoch", "done", "reused", "resumed", "set_aside"]


class Event(BaseModel):
    """One progress event of one training (``step``: at most about once a second)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    kind: Kind
    run_id: str
    epoch: int | None = None
    epochs: int | None = None
    step: int | None = None
    steps: int | None = None
    loss: float | None = None
    accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    seconds: float | None = None
    from_: str | int | None = Field(default=None, alias="from")

    def line(self) -> str:
        """The event as one plain line that names its training."""
        step = f"  step {self.step}/{self.steps}" if self.kind == "step" and self.steps else ""
        at = f"epoch {self.epoch}/{self.epochs}{step}{_metrics(self)}"
        took = f" in {clock(self.seconds)}" if self.seconds is not None else ""
        text = {
            "start": f"started, {self.epochs} epoch{'' if self.epochs == 1 else 's'}",
            "epoch": at,
            "step": at,
            "done": f"done{took}{_metrics(self)}",
            "reused": f"reused from {run_folder(self.from_)}",
            "resumed": f"resumed after epoch {self.epoch} of {self.epochs}",
            "set_aside": f"set aside a saved state that failed its checks ({self.from_})",
        }
        return f"{self.run_id}  {text[self.kind]}"


EVENT_KEYS = tuple(info.alias or name for name, info in Event.model_fields.items())


def _metrics(event: Event) -> str:
    named = (("loss", event.loss), ("acc", event.accuracy), ("val_acc", event.val_accuracy))
    parts = [f"{name} {value:.3f}" for name, value in named if value is not None]
    if event.kind == "epoch" and event.seconds is not None:
        parts.append(clock(event.seconds))
    return "".join(f"  {p}" for p in parts)


def clock(seconds: float) -> str:
    """Seconds as ``m:ss``."""
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def report(kind: str, run_id: str, message: str, level: str = "info", **fields: Any) -> None:
    """Log one progress event; ``fields`` are its other keys (``from_`` for ``from``)."""
    if kind not in get_args(Kind):
        raise ValueError(f"unknown progress kind {kind!r}")
    fields = {("from" if key == "from_" else key): value for key, value in fields.items()}
    if unknown := set(fields) - set(EVENT_KEYS):
        raise ValueError(f"unknown progress keys {sorted(unknown)}")
    event = {**dict.fromkeys(EVENT_KEYS), **fields, "kind": kind, "run_id": run_id}
    number = logging.getLevelName(level.upper())
    LOGGER.log(number, "%s: %s", run_id, message, extra={"event": event})


class _JsonLine(logging.Formatter):
    """An event as one JSON line: the line the runner reads."""

    def format(self, record: logging.LogRecord) -> str:  # noqa: D102
        return json.dumps(record.event, default=str)


def forward(environ: dict | None = None) -> None:
    """Send this process's progress events to the runner (or to stderr); call once per task."""
    environ = os.environ if environ is None else environ
    for handler in list(LOGGER.handlers):
        if handler.get_name() == ENV:
            LOGGER.removeHandler(handler)
            handler.close()
    if path := environ.get(ENV):
        handler = logging.FileHandler(path, delay=True)  # appends; each line flushed whole
        handler.setFormatter(_JsonLine())
        handler.addFilter(lambda record: isinstance(getattr(record, "event", None), dict))
    else:  # a plain line on stderr (a cluster task's log)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("progress: %(message)s"))
    handler.set_name(ENV)
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False


def read_events(path: str | Path) -> Iterator[list[Event]]:
    """At each ``next``, the events of the complete lines appended since; other lines skipped."""
    offset, part = 0, b""
    while True:
        data = b""
        with contextlib.suppress(FileNotFoundError), Path(path).open("rb") as f:
            f.seek(offset)
            data = f.read()
        offset += len(data)
        *lines, part = (part + data).split(b"\n")
        events = []
        for line in lines:
            with contextlib.suppress(ValidationError):
                events.append(Event.model_validate_json(line))
        yield events


class Estimate:
    """How long the trainings still take: their expected epoch seconds, scaled as measured."""

    def __init__(self, epoch_s: dict[str, float], epochs: float, overhead_s: float = 0.0) -> None:
        self.epoch_s, self.epochs, self.overhead_s = dict(epoch_s), epochs, overhead_s
        self.done_epochs = dict.fromkeys(epoch_s, 0.0)
        self.finished: set[str] = set()
        self._measured = self._expected = 0.0

    def update(self, event: Event) -> None:
        """Take in one event."""
        run = event.run_id
        if run not in self.epoch_s:
            return
        if event.kind in ("done", "reused"):
            self.finished.add(run)
            self.done_epochs[run] = float(self.epochs)
        elif event.kind in ("epoch", "resumed") and event.epoch:
            self.done_epochs[run] = float(event.epoch)
            if event.kind == "epoch" and event.seconds:
                self._measured += event.seconds
                self._expected += self.epoch_s[run]
        elif event.kind == "step" and event.epoch and event.steps:
            self.done_epochs[run] = event.epoch - 1 + (event.step or 0) / event.steps

    def seconds_left(self) -> float:
        """Seconds until the last training ends (the tasks after it not counted)."""
        ratio = self._measured / self._expected if self._expected else 1.0
        work = sum(
            max(0.0, self.epochs - self.done_epochs[run]) * self.epoch_s[run]
            for run in self.epoch_s
            if run not in self.finished
        )
        return work * ratio + self.overhead_s * (len(self.epoch_s) - len(self.finished))


def run_folder(origin: str | int | None) -> str | int | None:
    """The run folder (``<runs>/<id>``) of a local run's output folder, relative when it can."""
    if not isinstance(origin, str) or "/pipeline/" not in origin:
        return origin
    folder = Path(origin.split("/pipeline/", 1)[0])
    try:
        return str(folder.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(folder)


class PlainDisplay:
    """Complete lines, each naming its training; no step lines, no colour."""

    def __init__(self, stream, estimate: Estimate) -> None:
        self.stream, self.estimate = stream, estimate
        self._lock = threading.Lock()

    def event(self, event: Event) -> None:
        """Show one event: a line per start, epoch, end, reuse or resume."""
        with self._lock:
            self.estimate.update(event)
            if event.kind == "step":
                return
            line = event.line()
            if event.kind in ("done", "reused"):
                done, total = len(self.estimate.finished), len(self.estimate.epoch_s)
                left = f", about {clock(self.estimate.seconds_left())} left" if done < total else ""
                line += f"  ({done}/{total} trainings done{left})"
            print(line, file=self.stream, flush=True)

    def message(self, line: str) -> None:
        """Show a line of the runner's."""
        with self._lock:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        """Nothing stays on screen to take down."""


class LiveDisplay:
    """rich's live progress: a bar per training, and the trainings done with the time left."""

    def __init__(self, stream, estimate: Estimate) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        self.estimate = estimate
        runs = list(estimate.epoch_s)
        width = max(len("trainings"), *(len(run) for run in runs))
        self.progress = Progress(
            TextColumn(f"{{task.description:<{width}}}"),
            TextColumn("{task.fields[where]:<12}"),
            BarColumn(bar_width=24),
            TaskProgressColumn(),
            TextColumn("{task.fields[eta]:<10}"),
            TextColumn("{task.fields[metrics]}"),
            console=Console(file=stream),
            transient=False,
        )
        self.overall = self.progress.add_task(
            "trainings", total=len(runs), where=f"0/{len(runs)} done", eta="", metrics=""
        )
        self.bars = {
            run: self.progress.add_task(
                run, total=estimate.epochs, where="waiting", eta="", metrics="", start=False
            )
            for run in runs
        }
        self._lock = threading.Lock()
        self.progress.start()

    def event(self, event: Event) -> None:
        """Move the training's bar and the overall count."""
        with self._lock:
            self.estimate.update(event)
            bar = self.bars.get(event.run_id)
            if bar is None:
                return
            self.progress.start_task(bar)  # its clock starts at the training's first event
            done = self.estimate.done_epochs[event.run_id]
            fields = {"completed": done}
            if event.kind in ("epoch", "step"):
                fields["where"] = f"epoch {event.epoch}/{event.epochs}"
                fields["eta"] = "ETA " + self._eta(bar, done)
                fields["metrics"] = _metrics(event.model_copy(update={"seconds": None})).strip()
            elif event.kind in ("done", "reused"):
                fields.update(where=event.kind, eta="")
                if event.kind == "reused":
                    fields["metrics"] = f"from {event.from_}"
            elif event.kind == "resumed":
                fields["where"] = f"resumed @{event.epoch}"
            self.progress.update(bar, **fields)
            finished, total = len(self.estimate.finished), len(self.bars)
            self.progress.update(
                self.overall,
                completed=finished,
                where=f"{finished}/{total} done",
                eta="" if finished == total else f"ETA {clock(self.estimate.seconds_left())}",
            )

    def _eta(self, bar, done: float) -> str:
        spent = self.progress.tasks[bar].elapsed or 0.0
        if done <= 0 or spent <= 0:
            return "-:--"
        return clock(spent / done * (self.estimate.epochs - done))

    def message(self, line: str) -> None:
        """Print a line above the bars."""
        self.progress.console.print(line, markup=False, highlight=False)

    def close(self) -> None:
        """Leave the bars as they are and stop redrawing."""
        self.progress.stop()


@contextlib.contextmanager
def follow(path: str | Path, screen, every_s: float = 0.3):
    """Show the events appended to ``path`` on ``screen`` while the block runs, and the last."""
    events = read_events(path)
    stop = threading.Event()

    def show() -> None:
        while not stop.wait(every_s):
            for event in next(events):
                screen.event(event)

    follower = threading.Thread(target=show, daemon=True)
    follower.start()
    try:
        yield
    finally:
        stop.set()
        follower.join()
        for event in next(events):  # the last, in the caller's thread
            screen.event(event)


def display(stream, estimate: Estimate, live: bool = True) -> PlainDisplay | LiveDisplay:
    """Live bars on a terminal (unless not ``live``), complete lines anywhere else."""
    live = live and stream.isatty()
    return LiveDisplay(stream, estimate) if live else PlainDisplay(stream, estimate)
