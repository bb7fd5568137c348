"""The one module that knows how kfp's local runner (kfp 2.17) prints, runs and fails."""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import types
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

from cnnvsmlp.config import ExperimentConfig, RunSpec

# The label of every container a run starts (DockerRunner): its value is the run's job id.
CONTAINER_LABEL = "io.github.cnnvsmlp.run"
# How long a task gets to end after SIGTERM before it is killed.
STOP_GRACE_S = 5.0
# The last line of a Python traceback: ``package.module.SomeError: what happened``.
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Diverged): .+")
# The watchdog, in a session of its own, reads task process groups ("-<pid>": ended) and
# container labels from its stdin; when the runner ends, however, it kills and removes them.
WATCHDOG = """
import contextlib, os, signal, sys
groups, labels = set(), set()
for line in sys.stdin:
    if line.startswith("label "):
        labels.add(line[6:].strip())
    else:
        (groups.add if int(line) > 0 else groups.discard)(abs(int(line)))
for pid in groups:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
if labels:
    import docker
    client = docker.from_env()
    for label in labels:
        for container in client.containers.list(all=True, filters={"label": label}):
            container.remove(force=True)
"""


class RunInterrupted(BaseException):
    """SIGINT or SIGTERM stopped the run: a BaseException, which kfp's handlers let by."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class TaskLog:
    """One task process: what it ran for, where its output is, how it ended."""

    task: str
    path: Path
    run: RunSpec | None = None
    returncode: int | None = None
    started: float = field(default_factory=time.monotonic)
    seconds: float | None = None
    stopped: bool = False  # ended by :meth:`LocalSession.stop`

    @property
    def label(self) -> str:
        """The task's name with the run it belongs to: ``train-model-mlp-r0``."""
        return f"{self.task}-{self.run.run_id}" if self.run else self.task

    def explain(self) -> str:
        """One line: the task and its run, the cause, and the log that holds the rest."""
        sig = killed_by(self.returncode)
        if sig == signal.SIGKILL:
            cause = (
                " was killed by SIGKILL, most likely by the out-of-memory killer: lower batch_size "
                "(BATCH=) or limit (LIMIT=), or run fewer trainings at once"
            )
        elif sig is not None:
            cause = f" was killed by {sig.name}"
        else:
            cause = f" failed with exit status {self.returncode}"
            with contextlib.suppress(OSError), self.path.open(errors="replace") as f:
                for line in deque(f, maxlen=400):
                    if EXCEPTION_LINE.match(line.strip()):
                        cause = f" failed: {line.strip()}"
        return f"{_who(self.task, self.run)}{cause}; its log: {self.path}"


def plain(message: str) -> str:
    """A message of kfp's without the colours it gives task names."""
    return re.sub(r"\x1b\[[0-9;]*m", "", message)


def describe_failure(
    message: str, config: ExperimentConfig, runs: list[RunSpec] | None = None
) -> str:
    """Name the run behind a failed loop iteration (``runs``: the loop's items)."""
    message = plain(message)
    cause = "; its log above ends with the cause"
    found = re.search(r"'([\w-]+)' inside 'for-loop-\d+-iteration-(\d+)'", message)
    runs = config.scheduled_runs() if runs is None else runs
    if found and int(found.group(2)) < len(runs):
        return f"{_who(found.group(1), runs[int(found.group(2))])} failed{cause}"
    return message + cause


def _who(task: str, run: RunSpec | None) -> str:
    """``task 'train-model' of mlp-r0 (variant mlp, repeat 0, seed 42)``."""
    if run is None:
        return f"task '{task}'"
    seeded = f"variant {run.variant}, repeat {run.repeat}, seed {run.seed}"
    return f"task '{task}' of {run.run_id} ({seeded})"


def killed_by(returncode: int | None) -> signal.Signals | None:
    """The signal that ended a task process (directly, or its command under ``sh``)."""
    code = returncode or 0
    number = -code if code < 0 else code - 128
    return signal.Signals(number) if number in set(signal.Signals) else None


class LocalSession:
    """One pipeline run on kfp's local runner: a log per task, every task stopped with it."""

    def __init__(
        self,
        logs: Path,
        job_id: str,
        environment: dict[str, str] | None = None,
        verbose: bool = False,
        stream=None,
        on_task_end=None,
    ) -> None:
        self.logs, self.job_id = Path(logs), job_id
        self.environment = dict(environment or {})
        self.verbose, self.stream = verbose, stream or sys.stdout
        self.on_task_end = on_task_end
        self.tasks: list[TaskLog] = []
        self._runs: dict[str, RunSpec] = {}  # loop iteration -> its run
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.RLock()
        self._stopping = False
        # A signal while this thread starts a task waits until stop() can end it.
        self._spawning, self._signal = False, None
        self._docker_used = False  # a task ran in a container (DockerRunner)
        self._watchdog: subprocess.Popen | None = None

    def run(self, pipeline, arguments: dict, task_runner, pipeline_root: Path) -> None:
        """Run ``pipeline(**arguments)``; RuntimeError when a task failed (see :meth:`failed`)."""
        from kfp import local
        from kfp.local import docker_task_handler, pipeline_orchestrator, subprocess_task_handler

        self.logs.mkdir(parents=True, exist_ok=True)
        local.init(runner=task_runner, pipeline_root=str(pipeline_root), raise_on_error=True)
        job_ids = types.SimpleNamespace(make_random_id=lambda: self.job_id)
        with contextlib.ExitStack() as stack:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-c", WATCHDOG],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                text=True,
                bufsize=1,
            )
            stack.callback(self._watchdog.wait)
            stack.callback(self._watchdog.stdin.close)
            if threading.current_thread() is threading.main_thread():
                for signum in (signal.SIGINT, signal.SIGTERM):
                    stack.callback(signal.signal, signum, signal.signal(signum, self._on_signal))
            out = stack.enter_context((self.logs / "run.log").open("a", buffering=1))
            tee = _Tee(out, self.stream) if self.verbose else out
            stack.enter_context(contextlib.redirect_stdout(tee))
            stack.enter_context(contextlib.redirect_stderr(tee))
            stack.enter_context(warnings.catch_warnings())
            # kfp's warnings for every task go to the log whatever the warning filters say.
            warnings.simplefilter("always")
            warnings.showwarning = lambda message, category, filename, lineno, *_: sys.stderr.write(
                warnings.formatwarning(message, category, filename, lineno)
            )
            for module, name, value in (
                # kfp swaps print per task from two threads and can leave its own: put it back
                (builtins, "print", builtins.print),
                (subprocess_task_handler, "run_local_subprocess", self._run_task),
                (docker_task_handler, "run_docker_container", self._run_container),
                (pipeline_orchestrator, "placeholder_utils", job_ids),
            ):
                stack.enter_context(mock.patch.object(module, name, value))
            pipeline(**arguments)

    def failed(self) -> TaskLog | None:
        """The first task that failed by itself (not stopped by :meth:`stop`)."""
        done = [t for t in self.tasks if t.returncode not in (0, None) and not t.stopped]
        return min(done, key=lambda t: t.started + (t.seconds or 0), default=None)

    def stop(self) -> None:
        """End every task process (SIGTERM, then SIGKILL after a grace) and start no more."""
        with self._lock:
            self._stopping = True
            procs = list(self._procs)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # and whatever it left in its group
            proc.wait()
        self._stop_containers()

    def _on_signal(self, signum, frame) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self._signal = signum
        if not self._spawning:  # else _run raises once its process is registered
            self.stop()
            raise RunInterrupted(signum)

    def _identify(self, full_command: list[str]) -> TaskLog:
        executor = {}  # the executor input kfp put on the task's command line
        with contextlib.suppress(ValueError, IndexError):
            executor = json.loads(full_command[full_command.index("--executor_input") + 1])
        output = Path(executor.get("outputs", {}).get("outputFile", "task/x"))
        task, iteration = output.parent.name, output.parent.parent.name
        run = None
        run_json = executor.get("inputs", {}).get("parameterValues", {}).get("run_json")
        with self._lock:
            if run_json:
                run = self._runs[iteration] = RunSpec.model_validate_json(run_json)
            elif iteration.startswith("for-loop-"):
                run = self._runs.get(iteration)
            entry = TaskLog(task=task, path=self.logs / "x.log", run=run)
            entry.path = self.logs / f"{entry.label}.log"
            self.tasks.append(entry)
        return entry

    def _guard(self, what: int | str) -> None:
        """Tell the watchdog of a task process group (``-pid``: it has ended), or a label."""
        with self._lock, contextlib.suppress(OSError, ValueError, AttributeError):
            self._watchdog.stdin.write(f"{what}\n")

    def _run(self, command: list[str], start, output, wait, cleanup) -> int:
        """Start a task with ``start(log)``, log its ``output`` lines, ``wait``, ``cleanup``."""
        entry = self._identify(command)
        with entry.path.open("a", buffering=1) as log:
            log.write(f"==> {entry.label}: started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            with self._lock:
                if self._stopping:
                    entry.returncode, entry.stopped = -signal.SIGTERM, True
                    return 1
                main = threading.current_thread() is threading.main_thread()
                self._spawning = main
                try:
                    handle = start(log)
                finally:
                    self._spawning = False
                if main and self._signal is not None:
                    self.stop()
                    raise RunInterrupted(self._signal)
            try:
                for line in output(handle):
                    log.write(line)
                    if self.verbose:
                        self.stream.write(f"{entry.label} | {line}")
                entry.returncode = wait(handle)
            finally:
                cleanup(handle)
                with self._lock:
                    entry.stopped = self._stopping
                entry.seconds = time.monotonic() - entry.started
        if self.on_task_end and not entry.stopped:
            self.on_task_end(entry)
        return entry.returncode

    def _run_task(self, full_command: list[str], env_vars: dict | None = None) -> int:
        """Run a task like kfp's ``run_local_subprocess``: output to its log, own group."""
        env = {**os.environ, **self.environment, **(env_vars or {})}

        def start(log) -> subprocess.Popen:
            proc = subprocess.Popen(
                full_command,
                stdout=subprocess.PIPE if self.verbose else log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                text=True,
                bufsize=1,
            )
            self._procs.add(proc)
            self._guard(proc.pid)
            return proc

        def cleanup(proc) -> None:
            with self._lock:
                self._procs.discard(proc)
            self._guard(-proc.pid)

        return self._run(
            full_command, start, lambda p: p.stdout or (), subprocess.Popen.wait, cleanup
        )

    def _run_container(self, client, image: str, command: list[str], volumes: dict, **run_args):
        """Run a task like kfp's ``run_docker_container``; removed here once its status is read."""
        import docker.errors
        from kfp.local.docker_task_handler import add_latest_tag_if_not_present

        image = add_latest_tag_if_not_present(image)  # as kfp names it
        labels = {**run_args.pop("labels", {}), CONTAINER_LABEL: self.job_id}
        run_args.pop("auto_remove", None)

        def start(log):
            self._docker_used = True
            self._guard(f"label {CONTAINER_LABEL}={self.job_id}")
            return client.containers.run(
                image=image,
                command=command,
                detach=True,
                stdout=True,
                stderr=True,
                volumes=volumes,
                labels=labels,
                **run_args,
            )

        def output(container):
            with contextlib.suppress(docker.errors.NotFound):
                for chunk in container.logs(stream=True, follow=True):
                    yield from chunk.decode(errors="replace").splitlines(keepends=True)

        def wait(container) -> int:
            try:
                return container.wait()["StatusCode"]
            except docker.errors.NotFound:  # removed by stop()
                return -signal.SIGTERM

        def cleanup(container) -> None:
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)

        return self._run(command, start, output, wait, cleanup)

    def _stop_containers(self) -> None:
        """Stop and remove every container this run started: they carry the run's label."""
        if not self._docker_used:
            return
        import docker

        try:
            client = docker.from_env()
            started = client.containers.list(
                all=True, filters={"label": f"{CONTAINER_LABEL}={self.job_id}"}
            )
        except docker.errors.DockerException:
            return

        def stop(container) -> None:
            with contextlib.suppress(docker.errors.DockerException):
                container.stop(timeout=int(STOP_GRACE_S))
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)

        threads = [threading.Thread(target=stop, args=(c,), daemon=True) for c in started]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=STOP_GRACE_S + 30)
        client.close()


@dataclass
class _Tee:
    """Writes to a log file and a stream (``VERBOSE=1``)."""

    log: object
    stream: object

    def write(self, text: str) -> int:  # noqa: D102
        self.log.write(text)
        return self.stream.write(text)

    def flush(self) -> None:  # noqa: D102
        self.log.flush()
        self.stream.flush()
