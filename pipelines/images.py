"""The container images' names and content-derived tags; ``tools/images.py`` builds them."""

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
# What the images are built from (.dockerignore lets nothing else into the context).
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
    """The git-tracked files under :data:`SHIPPED` in ``root``, sorted: what the tag hashes."""
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--", *SHIPPED], capture_output=True, text=True
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
    """``src-`` and 12 hex digits of a SHA-256 over :func:`shipped_files`: they alone change it."""
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
    """The targets of ``images/docker-bake.json``, ``${VAR}`` resolved (defaults if not given)."""
    text = BAKE_FILE.read_text()
    values = {name: spec.get("default", "") for name, spec in json.loads(text)["variable"].items()}
    values.update(variables or {})
    resolved = re.sub(r"\$\{(\w+)\}", lambda m: json.dumps(values[m.group(1)])[1:-1], text)
    return json.loads(resolved)["target"]


def image_ref(kind: str) -> str:
    """Full reference of an image (``cpu`` or ``gpu``); without a checkout, a tag no build uses."""
    if not IMAGES_FILE.is_file():
        return f"cnnvsmlp-{kind}:not-from-a-checkout"
    targets = bake_targets({"REGISTRY": images_config()["registry"], "TAG": source_tag()})
    return targets[kind]["tags"][0]


def run_docker(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run the Docker client, its output captured."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, **kwargs)
