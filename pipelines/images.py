"""The container images' names: content-derived tags, and whether the registry has them.

A tag is ``src-`` and the first 12 hex digits of a SHA-256 over the tracked
files that go into the images: the image locks, the library and the
components (what the components import, and all the images ship), the
Dockerfiles and the build definition. A change to any of them names a new
image, the same content always names the same one, and an edit of anything
else (``pipelines/``, ``tools/``, the docs, an untracked file) does not.
Building and pushing them is ``tools/images.py`` (``make images``).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from functools import cache
from pathlib import Path

import yaml

from cnnvsmlp.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
IMAGES_FILE = ROOT / "images" / "images.yaml"
BAKE_FILE = ROOT / "images" / "docker-bake.json"
# What the images are built from: the Dockerfiles copy the locks, the library
# and the components (.dockerignore lets nothing else into the context).
SHIPPED = (
    "requirements-cpu.lock",
    "requirements-gpu.lock",
    "src/cnnvsmlp",
    "components",
    "images/cpu.Dockerfile",
    "images/gpu.Dockerfile",
    "images/docker-bake.json",
    ".dockerignore",
)


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
    """``images/images.yaml``: the registry."""
    return yaml.safe_load(IMAGES_FILE.read_text())


def bake_targets(variables: dict[str, str] | None = None) -> dict[str, dict]:
    """The targets of ``images/docker-bake.json``, its ``${VAR}`` references resolved.

    Args:
        variables: values for the bake file's variables (``REGISTRY``, ``TAG``,
            ``BASE_IMAGE``); a variable not given takes its default.

    Returns:
        Each target (``cpu``, ``gpu``) with its ``dockerfile``, ``context``,
        ``platforms``, ``args`` and ``tags``.
    """
    bake = json.loads(BAKE_FILE.read_text())
    values = {name: spec.get("default", "") for name, spec in bake["variable"].items()}
    values.update(variables or {})

    def resolve(value):
        if isinstance(value, str):
            return re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], value)
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value

    return {name: resolve(target) for name, target in bake["target"].items()}


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
    targets = bake_targets({"REGISTRY": images_config()["registry"], "TAG": source_tag()})
    if kind not in targets:
        raise KeyError(f"unknown image {kind!r}; known: {', '.join(targets)}")
    return targets[kind]["tags"][0]


def images_exist(refs: list[str]) -> list[str]:
    """The references among ``refs`` that the registry does not have.

    Asks the registry for each manifest (``docker manifest inspect``), so it
    needs the Docker client and the registry's credentials, not a local engine.

    Args:
        refs: full image references, e.g. ``image_ref("cpu")``.

    Returns:
        The missing references, in the order given; empty when all exist.
    """
    return [ref for ref in refs if run_docker("manifest", "inspect", ref).returncode != 0]


def run_docker(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run the Docker client, its output captured."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, **kwargs)
