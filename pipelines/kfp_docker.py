"""Tasks in containers: the DockerRunner for the project's images, and their lifecycle."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path

from cnnvsmlp import progress
from cnnvsmlp.config import ExperimentConfig
from cnnvsmlp_pipelines.runs import PROGRESS_FILE, LocalRunError

# The label of every container a run starts (DockerRunner): its value is the run's job id.
CONTAINER_LABEL = "io.github.cnnvsmlp.run"
# How long a task gets to end after SIGTERM before it is killed.
STOP_GRACE_S = 5.0


def docker_answers() -> None:
    """Refuse ``--runner docker`` before any folder is made when no Docker daemon answers."""
    import docker

    try:
        with contextlib.closing(docker.from_env()) as client:
            client.ping()
    except docker.errors.DockerException as err:
        reason = str(err).splitlines()[0][:200] if str(err) else err.__class__.__name__
        raise LocalRunError(
            f"--runner docker: no Docker daemon answers ({reason}); start Docker, "
            "or run the tasks here with --runner subprocess"
        ) from None


def docker_runner(config: ExperimentConfig, pipeline_root: Path):
    """The DockerRunner for the images ``make images`` built, and the config it runs.

    Tasks see only the pipeline root and a local ``resume_uri`` (writable), and the IDX folder
    read-only at the same path, on a read-only root with a private ``/tmp``.
    """
    import docker.types
    from kfp import local

    from cnnvsmlp.data.spec import get_spec

    idx_dir = config.source.idx_dir or get_spec(config.dataset).default_idx_dir
    if not idx_dir or not Path(idx_dir).is_dir():
        raise LocalRunError(
            f"runner docker: no local IDX folder for {config.dataset} "
            f"({idx_dir or 'none configured'}); set idx_dir=<folder with the IDX files>"
        )
    idx_dir = str(Path(idx_dir).resolve())
    source = config.source.model_copy(update={"kind": "idx", "idx_dir": idx_dir})
    mounts = [docker.types.Mount(idx_dir, idx_dir, type="bind", read_only=True)]
    writable = [pipeline_root]
    if config.resume_uri and "://" not in config.resume_uri:
        resume = Path(config.resume_uri).resolve()
        writable.append(resume)
        mounts.append(docker.types.Mount(str(resume), str(resume), type="bind"))
        config = config.model_copy(update={"resume_uri": str(resume)})
    for folder in writable:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o777)
    runner = local.DockerRunner(
        read_only=True,
        tmpfs={"/tmp": "rw,size=1g"},
        mounts=mounts,
        environment={progress.ENV: str(pipeline_root.resolve() / PROGRESS_FILE)},
    )
    return runner, config.model_copy(update={"source": source})


class ContainerTasks:
    """The container side of ``LocalSession``: its ``_run`` and ``_guard``."""

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
            container = client.containers.run(
                image=image,
                command=command,
                detach=True,
                stdout=True,
                stderr=True,
                volumes=volumes,
                labels=labels,
                **run_args,
            )
            return container

        def follow(container, log, label: str) -> int:
            with contextlib.suppress(docker.errors.NotFound):
                for chunk in container.logs(stream=True, follow=True):
                    text = chunk.decode(errors="replace")
                    log.write(text)
                    if self.verbose:
                        for line in text.splitlines(keepends=True):
                            self.stream.write(f"{label} | {line}")
            try:
                return container.wait()["StatusCode"]
            except docker.errors.NotFound:  # removed by stop()
                return -signal.SIGTERM

        def cleanup(container) -> None:
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)

        return self._run(command, start, follow, cleanup)

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
        threads = [threading.Thread(target=_stop, args=(c,), daemon=True) for c in started]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=STOP_GRACE_S + 30)
        client.close()


def _stop(container) -> None:
    import docker.errors

    with contextlib.suppress(docker.errors.DockerException):
        container.stop(timeout=int(STOP_GRACE_S))
    with contextlib.suppress(docker.errors.DockerException):
        container.remove(force=True)
