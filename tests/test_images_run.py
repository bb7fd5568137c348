"""The compare pipeline's dry run inside the built images, with kfp's DockerRunner.

The checks of the subprocess dry run (tests/test_pipeline.py) are collected here
again against a run in the containers, plus what only an image can get wrong:
the user, the interpreter's packages, tools that must not ship, and writes
outside the mounted paths. Selected by ``make test-images`` (marker ``images``);
without a Docker engine or the built images every test here skips and says why.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from cnnvsmlp.config import load_config
from cnnvsmlp_pipelines.images import image_ref
from cnnvsmlp_pipelines.local_runner import run_local
from test_pipeline import (  # noqa: F401  collected again with the fixture below
    test_dry_run_keeps_every_artifact,
    test_dry_run_writes_a_comparison_of_every_variant,
    test_training_state_is_mirrored_per_job_and_run,
)
from tools.images import engine_problem

pytestmark = pytest.mark.images


@pytest.fixture(scope="module")
def built():
    problem = engine_problem()
    if problem:
        pytest.skip(f"no Docker engine reachable ({problem}); run make test-images where one runs")
    refs = {kind: image_ref(kind) for kind in ("cpu", "gpu")}
    for ref in refs.values():
        if subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode:
            pytest.skip(f"{ref} is not built; make test-images builds it")
    return refs


def _in(ref, *command):
    done = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", command[0], ref, *command[1:]],
        capture_output=True,
        text=True,
    )
    return done.returncode, done.stdout.strip()


@pytest.fixture(scope="module")
def dry_run(built, tmp_path_factory, fashion_dir):
    resume = tmp_path_factory.mktemp("resume")
    config = load_config(
        "fashion-mnist",
        ["epochs=1", "limit=3000", "source=idx", f"idx_dir={fashion_dir}", f"resume_uri={resume}"],
    )
    runs = tmp_path_factory.mktemp("runs")
    return config, run_local("compare", config, runs_dir=runs, quiet=True, runner="docker")


def test_every_task_ran_as_the_images_non_root_user(dry_run):
    _, run_dir = dry_run
    written = [p for p in (run_dir / "pipeline").rglob("*") if p.is_file()]
    assert written
    owners = {p.stat().st_uid for p in written}
    assert owners == {10001}, owners


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_image_user_is_not_root_and_python_has_kfp_and_the_project(built, kind):
    assert _in(built[kind], "id", "-u") == (0, "10001")
    code, out = _in(
        built[kind],
        "python",
        "-c",
        "import kfp, cnnvsmlp, cnnvsmlp_components, tensorflow; print(kfp.__version__)",
    )
    assert (code, out) == (0, "2.17.0")
    # what no component imports is not shipped (it is not in the content tag either)
    code, _ = _in(built[kind], "python", "-c", "import cnnvsmlp_pipelines")
    assert code != 0


def test_cpu_image_has_no_compiler_and_no_dev_tools(built):
    for tool in ("gcc", "cc", "pytest", "ruff", "hadolint"):
        code, _ = _in(built["cpu"], "sh", "-c", f"command -v {tool}")
        assert code != 0, tool
    code, out = _in(built["cpu"], "python", "-c", "import pytest")
    assert code != 0


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_no_build_secret_in_the_image(built, kind):
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if not bundle.is_file():
        pytest.skip(f"{bundle}: no CA bundle on this machine to look for")
    size, digest = bundle.stat().st_size, hashlib.sha256(bundle.read_bytes()).hexdigest()
    code, out = _in(
        built[kind],
        "sh",
        "-c",
        f"find / -xdev -type f -size {size}c -exec sha256sum {{}} + 2>/dev/null; "
        "ls -A /run/secrets 2>/dev/null; env | grep -i '^PIP_\\(CERT\\|INDEX\\)' || true",
    )
    assert digest not in out
    assert "pip_cert" not in out and "pip_index_url" not in out


def test_nothing_outside_the_mounted_paths_was_written(dry_run, tmp_path):
    # The tasks run on a read-only root file system: a write anywhere but the
    # mounts fails the task, so a finished run proves none happened. Check that
    # the guard holds in the image.
    _, run_dir = dry_run
    probe = subprocess.run(
        ["docker", "run", "--rm", "--read-only", image_ref("cpu")]
        + ["python", "-c", "open('/home/runner/x', 'w')"],
        capture_output=True,
        text=True,
    )
    assert probe.returncode != 0 and "Read-only file system" in probe.stderr
    assert (run_dir / "report" / "comparison.json").is_file()
    assert os.access(run_dir, os.W_OK) and Path(run_dir).is_dir()
