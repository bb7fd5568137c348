"""Names of the container images, with tags derived from their content.

A tag is ``src-`` and the first 12 hex digits of a SHA-256 over every file
that goes into the images (dependencies, library, components, pipelines,
Dockerfiles), so a change to any of them names a new image and the same
source always names the same one.
"""

from __future__ import annotations

import hashlib
import subprocess
from functools import cache
from pathlib import Path

import yaml

from cnnvsmlp.settings import ROOT

IMAGES_FILE = ROOT / "images" / "images.yaml"
HASHED = (
    "pyproject.toml",
    "requirements.lock",
    "requirements-cpu.lock",
    "requirements-gpu.lock",
    "README.md",
    "src",
    "components",
    "pipelines",
    "images",
)
SKIP_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache"}


def source_files(root: Path = ROOT) -> list[Path]:
    """The files whose content makes up the image tag, sorted."""
    files: list[Path] = []
    for name in HASHED:
        path = root / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += [
                p
                for p in path.rglob("*")
                if p.is_file()
                and not SKIP_PARTS.intersection(p.relative_to(root).parts)
                and ".egg-info" not in str(p)
                and p.suffix != ".pyc"
            ]
    return sorted(files)


@cache
def source_tag(root: Path = ROOT) -> str:
    """The content-derived tag of the images built from ``root``."""
    digest = hashlib.sha256()
    for path in source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "src-" + digest.hexdigest()[:12]


@cache
def images_config() -> dict:
    """``images/images.yaml``: the registry and the Dockerfile of each image."""
    return yaml.safe_load(IMAGES_FILE.read_text())


def image_ref(kind: str) -> str:
    """Full reference of an image (``cpu`` or ``gpu``) at the current source's tag."""
    config = images_config()
    if kind not in config["images"]:
        raise KeyError(f"unknown image {kind!r}; known: {', '.join(config['images'])}")
    return f"{config['registry']}/cnnvsmlp-{kind}:{source_tag()}"


def _docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True)


def build_and_push(push: bool = True) -> int:
    """Build both images from the repository root, tag them with the source tag, and push.

    Returns:
        0 on success; 1 when no Docker engine is reachable or a build or push fails
        (the reason is printed).
    """
    try:
        info = _docker("info", "--format", "{{.ServerVersion}}")
    except FileNotFoundError:
        info = None
    if info is None or info.returncode != 0:
        reason = "docker is not installed" if info is None else info.stderr.strip().splitlines()[-1]
        print(
            f"images: no Docker engine reachable ({reason}). Run 'make images' where Docker "
            "runs, or build remotely: gcloud builds submit --config images/cloudbuild.yaml ."
        )
        return 1
    for kind, spec in images_config()["images"].items():
        ref = image_ref(kind)
        print(f"images: building {ref} from {spec['dockerfile']}", flush=True)
        built = subprocess.run(["docker", "build", "-f", spec["dockerfile"], "-t", ref, str(ROOT)])
        if built.returncode != 0:
            print(f"images: build of {ref} failed")
            return 1
        if push:
            if subprocess.run(["docker", "push", ref]).returncode != 0:
                print(f"images: push of {ref} failed (is the registry's auth configured?)")
                return 1
            print(f"images: pushed {ref}")
    return 0
