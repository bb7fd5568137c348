"""Build and push the container images (``make images``, ``make push``).

The build is defined once, in ``images/docker-bake.json`` (a ``docker buildx
bake`` file: targets, Dockerfiles, platform, tags): ``images/cloudbuild.yaml``
runs ``docker buildx bake`` on it, and ``make images`` does too where the
Docker client has buildx, or else runs ``docker build`` with each target's
values read from it. ``make push`` pushes. Where the Dockerfiles' base image
cannot be pulled, ``images/standin-base.sh`` builds a stand-in with the same
interpreter (Debian bookworm's Python 3.11, ``pip`` on PATH), passed as
``BASE_IMAGE``; the Dockerfiles are the same either way. The locks pin x86_64
wheels, so a build on another architecture is refused with where to build.
The images' names and tags are :mod:`cnnvsmlp_pipelines.images`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cnnvsmlp_pipelines.images import (
    BAKE_FILE,
    ROOT,
    ImageError,
    bake_targets,
    image_ref,
    images_config,
    run_docker,
    source_tag,
)

STANDIN_SCRIPT = ROOT / "images" / "standin-base.sh"
STANDIN_BASE = "cnnvsmlp-base:bookworm-py311"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# The architectures the image locks' wheels are for (x86_64-manylinux_2_28).
LOCK_ARCHITECTURES = {"x86_64", "amd64"}


def default_base(dockerfile: Path) -> str:
    """The ``BASE_IMAGE`` default a Dockerfile declares."""
    found = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile.read_text(), re.MULTILINE)
    if not found:
        raise ImageError(f"{dockerfile}: no 'ARG BASE_IMAGE=<image>' line")
    return found.group(1)


def engine_problem() -> str | None:
    """Why no Docker engine is reachable, or None when one is."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    info = run_docker("info", "--format", "{{.ServerVersion}}")
    if info.returncode != 0:
        lines = (info.stderr or info.stdout).strip().splitlines()
        return lines[-1] if lines else f"docker info exited {info.returncode}"
    return None


def _local(ref: str) -> bool:
    return run_docker("image", "inspect", ref).returncode == 0


def debian_mirror() -> str:
    """The Debian mirror apt is configured with on this machine."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text()
        found = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.MULTILINE) or re.search(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s+\w+", text, re.MULTILINE
        )
        if found:
            return found.group(1)
    raise ImageError("no Debian mirror in /etc/apt/sources.list{,.d}: cannot build a base")


def build_standin_base(ref: str = STANDIN_BASE) -> str:
    """Build the stand-in base with ``images/standin-base.sh`` (once; it is kept locally).

    Returns:
        The stand-in's reference.

    Raises:
        ImageError: debootstrap is missing or the script fails.
    """
    if _local(ref):
        return ref
    if shutil.which("debootstrap") is None:
        raise ImageError("images: debootstrap is not installed (apt-get install debootstrap)")
    done = subprocess.run(
        ["sh", str(STANDIN_SCRIPT), ref, debian_mirror()], capture_output=True, text=True
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        raise ImageError(f"images: {STANDIN_SCRIPT.name} failed: {' '.join(tail)}")
    return ref


def resolve_base(default: str) -> str:
    """The base to build on: ``default`` when local or pullable, else the Debian stand-in."""
    if _local(default) or run_docker("pull", default).returncode == 0:
        return default
    print(f"images: {default} cannot be pulled; building on {STANDIN_BASE} (Debian bookworm)")
    return build_standin_base()


def _pip_index() -> str | None:
    """The package index pip on this machine uses, when it is not PyPI's default."""
    env = os.environ.get("PIP_INDEX_URL")
    if env:
        return env
    listed = subprocess.run(
        ["python3", "-m", "pip", "config", "get", "global.index-url"],
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0:
        return None
    return listed.stdout.strip() or None


def buildkit_client() -> tuple[str, bool]:
    """A Docker client that builds with BuildKit (needed for build secrets).

    Clients from 23 on build with BuildKit only through the buildx plugin;
    earlier ones (Debian's ``docker.io``) carry it built in.

    Returns:
        The first ``docker`` on PATH that can, and whether it has buildx (and so bake).

    Raises:
        ImageError: none can.
    """
    seen = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        client = Path(folder) / "docker"
        if not os.access(client, os.X_OK) or client.resolve() in seen:
            continue
        seen.append(client.resolve())
        if subprocess.run([client, "buildx", "version"], capture_output=True).returncode == 0:
            return str(client), True
        version = subprocess.run(
            [client, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True
        ).stdout.strip()
        if version and int(version.split(".")[0]) < 23:
            return str(client), False
    raise ImageError(
        "images: no docker client here builds with BuildKit (install the buildx plugin)"
    )


def engine_architecture() -> str:
    """The Docker engine's architecture (``x86_64``, ``aarch64``, ...)."""
    return run_docker("info", "--format", "{{.Architecture}}").stdout.strip()


def check_architecture() -> None:
    """Refuse an engine whose architecture the image locks have no wheels for.

    Raises:
        ImageError: the engine is not x86_64, naming where to build instead.
    """
    arch = engine_architecture()
    if arch and arch not in LOCK_ARCHITECTURES:
        raise ImageError(
            f"images: the Docker engine here is {arch}, but requirements-cpu.lock and "
            "requirements-gpu.lock pin x86_64 wheels (TensorFlow's CUDA build has no other): "
            "build on an x86_64 machine, or on Cloud Build: gcloud builds submit --config "
            "images/cloudbuild.yaml (docs/cluster.md step 8)"
        )


def _secrets(tmp: Path) -> list[tuple[str, str]]:
    """The build secrets: the pip index's CA bundle and URL, each as (id, file)."""
    found = []
    cert = os.environ.get("PIP_CERT") or (str(CA_BUNDLE) if CA_BUNDLE.is_file() else None)
    if cert:
        found.append(("pip_cert", cert))
    index = _pip_index()
    if index:
        (tmp / "index").write_text(index)
        found.append(("pip_index_url", str(tmp / "index")))
    return found


def build_commands(
    kinds: tuple[str, ...], base: str, client: str, bake: bool, secrets: list[tuple[str, str]]
) -> list[list[str]]:
    """The commands that build ``kinds`` from ``images/docker-bake.json``.

    With buildx: one ``docker buildx bake`` of the file, loading into the
    engine. Without: one ``docker build`` per target with the values the file
    gives it (Dockerfile, platform, build args, tag), so both read one definition.
    """
    variables = {"REGISTRY": images_config()["registry"], "TAG": source_tag(), "BASE_IMAGE": base}
    if bake:
        cmd = [client, "buildx", "bake", "-f", str(BAKE_FILE), "--load"]
        cmd += [f"--set=*.secret=id={i},src={path}" for i, path in secrets]
        cmd += [f"--set=*.args.BASE_IMAGE={base}", "--set=*.network=host"]
        return [cmd + list(kinds)]  # REGISTRY and TAG reach bake from the environment
    commands = []
    for kind in kinds:
        target = bake_targets(variables)[kind]
        cmd = [client, "build", "--network=host", "-f", target["dockerfile"]]
        cmd += ["--platform", ",".join(target["platforms"])]
        for name, value in target["args"].items():
            cmd += ["--build-arg", f"{name}={value}"]
        for tag in target["tags"]:
            cmd += ["-t", tag]
        cmd += [arg for i, path in secrets for arg in ("--secret", f"id={i},src={path}")]
        commands.append([*cmd, str(ROOT / target["context"])])
    return commands


def build_all(kinds: tuple[str, ...] = ("cpu", "gpu")) -> list[str]:
    """Build the images (the base resolved once) and return their references.

    Raises:
        ImageError: no engine, an engine the locks have no wheels for, or a build failed.
    """
    problem = engine_problem()
    if problem:
        raise ImageError(
            f"images: no Docker engine reachable ({problem}). Run 'make images' where Docker "
            "runs, or build remotely: gcloud builds submit --config images/cloudbuild.yaml ."
        )
    check_architecture()
    bases = {default_base(ROOT / bake_targets()[k]["dockerfile"]) for k in kinds}
    if len(bases) != 1:
        raise ImageError(f"images: the Dockerfiles name different bases: {sorted(bases)}")
    base = resolve_base(bases.pop())
    client, bake = buildkit_client()
    refs = [image_ref(kind) for kind in kinds]
    with tempfile.TemporaryDirectory(prefix="cnnvsmlp-secret-") as tmp:
        env = {
            **os.environ,
            "DOCKER_BUILDKIT": "1",
            "REGISTRY": images_config()["registry"],
            "TAG": source_tag(),
        }
        for cmd in build_commands(kinds, base, client, bake, _secrets(Path(tmp))):
            print(f"images: building {', '.join(refs)} from {BAKE_FILE.name}", flush=True)
            if subprocess.run(cmd, env=env, cwd=ROOT).returncode != 0:
                raise ImageError(f"images: {' '.join(cmd[1:3])} failed (its output is above)")
    return refs


def push(refs: list[str]) -> None:
    """Push built images to their registry.

    Raises:
        ImageError: a push failed.
    """
    for ref in refs:
        if subprocess.run(["docker", "push", ref]).returncode != 0:
            raise ImageError(f"images: push of {ref} failed (is the registry's auth configured?)")
        print(f"images: pushed {ref}")


def build_and_push(push_images: bool = False) -> int:
    """``make images`` (and ``make push``): build both images, push when asked.

    Returns:
        0 on success; 1 when no Docker engine is reachable or a build or push
        fails (the reason is printed).
    """
    try:
        refs = build_all()
        if push_images:
            push(refs)
    except ImageError as err:
        print(err)
        return 1
    for ref in refs:
        size = run_docker("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip()
        print(f"images: {ref} ({int(size or 0) / 1e9:.2f} GB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.images [--push]``: build both images, push them with ``--push``."""
    parser = argparse.ArgumentParser(prog="python -m tools.images", description=main.__doc__)
    parser.add_argument("--push", action="store_true", help="push the built images")
    return build_and_push(push_images=parser.parse_args(argv).push)


if __name__ == "__main__":
    sys.exit(main())
