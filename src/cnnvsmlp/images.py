"""Names of the container images, with tags derived from their content.

A tag is ``src-`` and the first 12 hex digits of a SHA-256 over every file
that goes into the images (dependencies, library, components, pipelines,
Dockerfiles), so a change to any of them names a new image and the same
source always names the same one.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import yaml

from cnnvsmlp.settings import ROOT

IMAGES_FILE = ROOT / "images" / "images.yaml"
HASHED = ("pyproject.toml", "requirements.lock", "src", "components", "pipelines", "images")
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
