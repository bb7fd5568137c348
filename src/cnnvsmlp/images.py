"""The container images: content-derived tags, local builds, pushes and registry checks.

A tag is ``src-`` and the first 12 hex digits of a SHA-256 over the tracked
files that go into the images (the image locks, pyproject, library, components,
pipelines, Dockerfiles), so a change to any of them names a new image, the same
content always names the same one, and a docs edit or an untracked file does not.

``make images`` builds both images into the local engine under the names the
compiled IR uses; ``make push`` pushes them. Where the Dockerfiles' base image
cannot be pulled, a stand-in base with the same interpreter (Debian bookworm's
Python 3.11, ``pip`` on PATH) is built from Debian packages and passed as
``BASE_IMAGE``; the Dockerfiles are the same either way.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import yaml

from cnnvsmlp.errors import UserError
from cnnvsmlp.settings import ROOT

IMAGES_FILE = ROOT / "images" / "images.yaml"
SHIPPED = (
    "pyproject.toml",
    "requirements-cpu.lock",
    "requirements-gpu.lock",
    "src",
    "components",
    "pipelines",
    "images/cpu.Dockerfile",
    "images/gpu.Dockerfile",
)
STANDIN_BASE = "cnnvsmlp-base:bookworm-py311"
DEBIAN_PACKAGES = "python3,python3-venv,ca-certificates"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class ImageError(UserError):
    """An image could not be built, pushed or found."""


def shipped_files(root: Path = ROOT) -> list[Path]:
    """The tracked files whose content makes up the image tag, sorted.

    Args:
        root: a git work tree of the project.

    Returns:
        Paths under ``root``: git-tracked files under :data:`SHIPPED`, without caches.

    Raises:
        ImageError: ``root`` is not a git work tree.
    """
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--", *SHIPPED],
        capture_output=True,
        text=True,
    )
    if "safe.directory" in listed.stderr:  # git refuses a checkout another user owns
        raise ImageError(
            f"{root}: owned by another user, so git refuses to read it; trust it with "
            f"'git config --global --add safe.directory {root}'"
        )
    if listed.returncode != 0:
        raise ImageError(f"{root}: not a git work tree; image tags hash tracked files only")
    names = [n for n in listed.stdout.split("\0") if n and "__pycache__" not in n]
    return sorted(root / n for n in names if (root / n).is_file())


@cache
def source_tag(root: Path = ROOT) -> str:
    """The content-derived tag of the images built from ``root``."""
    digest = hashlib.sha256()
    for path in shipped_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "src-" + digest.hexdigest()[:12]


@cache
def images_config() -> dict:
    """``images/images.yaml``: the registry and the Dockerfile of each image."""
    return yaml.safe_load(IMAGES_FILE.read_text())


OUTSIDE_CHECKOUT_TAG = "not-from-a-checkout"


def image_ref(kind: str) -> str:
    """Full reference of an image (``cpu`` or ``gpu``) at the current source's tag.

    An installed copy of the project (inside an image) has no ``images/`` folder
    and no git work tree to hash; its components still import, naming
    ``cnnvsmlp-<kind>:not-from-a-checkout``, a tag no build uses. Compile from a
    checkout.
    """
    if not IMAGES_FILE.is_file():
        return f"cnnvsmlp-{kind}:{OUTSIDE_CHECKOUT_TAG}"
    config = images_config()
    if kind not in config["images"]:
        raise KeyError(f"unknown image {kind!r}; known: {', '.join(config['images'])}")
    return f"{config['registry']}/cnnvsmlp-{kind}:{source_tag()}"


def default_base(dockerfile: Path) -> str:
    """The ``BASE_IMAGE`` default a Dockerfile declares."""
    found = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile.read_text(), re.MULTILINE)
    if not found:
        raise ImageError(f"{dockerfile}: no 'ARG BASE_IMAGE=<image>' line")
    return found.group(1)


def _docker(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, **kwargs)


def engine_problem() -> str | None:
    """Why no Docker engine is reachable, or None when one is."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    info = _docker("info", "--format", "{{.ServerVersion}}")
    if info.returncode != 0:
        lines = (info.stderr or info.stdout).strip().splitlines()
        return lines[-1] if lines else f"docker info exited {info.returncode}"
    return None


def _local(ref: str) -> bool:
    return _docker("image", "inspect", ref).returncode == 0


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
    """Build a base image from Debian bookworm packages: Python 3.11 with ``pip`` on PATH.

    ``debootstrap`` lays out a minimal bookworm with ``python3``; a venv at
    ``/usr/local/python`` gives ``python`` and ``pip`` on PATH as the official
    Python image does, and ``docker import`` turns the tree into an image.

    Returns:
        The stand-in's reference.

    Raises:
        ImageError: debootstrap is missing or fails.
    """
    if _local(ref):
        return ref
    if shutil.which("debootstrap") is None:
        raise ImageError("images: debootstrap is not installed (apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix="cnnvsmlp-base-") as tmp:
        tree = Path(tmp) / "rootfs"
        steps = [
            ["debootstrap", "--variant=minbase", f"--include={DEBIAN_PACKAGES}", "bookworm"]
            + [str(tree), debian_mirror()],
            ["chroot", str(tree), "python3", "-m", "venv", "/usr/local/python"],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
                raise ImageError(f"images: {step[0]} failed: {' '.join(tail)}")
        shutil.rmtree(tree / "var/cache/apt/archives", ignore_errors=True)
        shutil.rmtree(tree / "var/lib/apt/lists", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(tree), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", "--change", "ENV PATH=/usr/local/python/bin:" + _PATH]
            + ["--change", 'CMD ["python3"]', "-", ref],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
        )
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise ImageError(f"images: docker import of {ref} failed: {imported.stderr.strip()}")
    return ref


_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def resolve_base(default: str) -> str:
    """The base to build on: ``default`` when local or pullable, else the Debian stand-in."""
    if _local(default) or _docker("pull", default).returncode == 0:
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


def buildkit_client() -> str:
    """A Docker client that builds with BuildKit (needed for build secrets).

    Clients from 23 on build with BuildKit only through the buildx plugin;
    earlier ones (Debian's ``docker.io``) carry it built in. Returns the first
    ``docker`` on PATH that can.

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
            return str(client)
        version = subprocess.run(
            [client, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True
        ).stdout.strip()
        if version and int(version.split(".")[0]) < 23:
            return str(client)
    raise ImageError(
        "images: no docker client here builds with BuildKit (install the buildx plugin)"
    )


def build(kind: str, base: str) -> str:
    """Build one image into the local engine under its content tag.

    The package index and its CA bundle reach ``pip`` as BuildKit secrets, so
    neither is written to a layer of the image.

    Args:
        kind: ``cpu`` or ``gpu``.
        base: the ``BASE_IMAGE`` build argument.

    Returns:
        The built image's reference.

    Raises:
        ImageError: the build failed.
    """
    ref = image_ref(kind)
    dockerfile = images_config()["images"][kind]["dockerfile"]
    cmd = [buildkit_client(), "build", "--network=host", "-f", dockerfile, "-t", ref]
    cmd += ["--build-arg", f"BASE_IMAGE={base}"]
    cert = os.environ.get("PIP_CERT") or (str(CA_BUNDLE) if CA_BUNDLE.is_file() else None)
    if cert:
        cmd += ["--secret", f"id=pip_cert,src={cert}"]
    with tempfile.TemporaryDirectory(prefix="cnnvsmlp-secret-") as tmp:
        index = _pip_index()
        if index:
            (Path(tmp) / "index").write_text(index)
            cmd += ["--secret", f"id=pip_index_url,src={Path(tmp) / 'index'}"]
        print(f"images: building {ref} from {dockerfile}", flush=True)
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        if subprocess.run([*cmd, str(ROOT)], env=env).returncode != 0:
            raise ImageError(f"images: build of {ref} failed")
    return ref


def build_all(kinds: tuple[str, ...] = ("cpu", "gpu")) -> list[str]:
    """Build the images (the base resolved once) and return their references.

    Raises:
        ImageError: no engine, or a build failed.
    """
    problem = engine_problem()
    if problem:
        raise ImageError(
            f"images: no Docker engine reachable ({problem}). Run 'make images' where Docker "
            "runs, or build remotely: gcloud builds submit --config images/cloudbuild.yaml ."
        )
    bases = {default_base(ROOT / images_config()["images"][k]["dockerfile"]) for k in kinds}
    if len(bases) != 1:
        raise ImageError(f"images: the Dockerfiles name different bases: {sorted(bases)}")
    base = resolve_base(bases.pop())
    return [build(kind, base) for kind in kinds]


def push(refs: list[str]) -> None:
    """Push built images to their registry.

    Raises:
        ImageError: a push failed.
    """
    for ref in refs:
        if subprocess.run(["docker", "push", ref]).returncode != 0:
            raise ImageError(f"images: push of {ref} failed (is the registry's auth configured?)")
        print(f"images: pushed {ref}")


def images_exist(refs: list[str]) -> list[str]:
    """The references among ``refs`` that the registry does not have.

    Asks the registry for each manifest (``docker manifest inspect``), so it
    needs the Docker client and the registry's credentials, not a local engine.

    Args:
        refs: full image references, e.g. ``image_ref("cpu")``.

    Returns:
        The missing references, in the order given; empty when all exist.
    """
    return [ref for ref in refs if _docker("manifest", "inspect", ref).returncode != 0]


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
        size = _docker("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip()
        print(f"images: {ref} ({int(size or 0) / 1e9:.2f} GB)")
    return 0
