"""Image names and registry checks: content-derived tags, never latest, clear answers."""

from __future__ import annotations

import re
import subprocess

from cnnvsmlp import images


def _git(root, *args):
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def _repo(root):
    (root / "src").mkdir(parents=True)
    (root / "images").mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (root / "README.md").write_text("# x\n")
    (root / "src" / "a.py").write_text("A = 1\n")
    (root / "images" / "cpu.Dockerfile").write_text("ARG BASE_IMAGE=python:3.11\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    return root


def test_tag_is_derived_from_the_shipped_tracked_content(tmp_path):
    root = _repo(tmp_path / "repo")
    tag = images.source_tag.__wrapped__
    first = tag(root)
    assert re.fullmatch(r"src-[0-9a-f]{12}", first)
    assert tag(root) == first
    (root / "README.md").write_text("# x\n\nA docs edit does not name a new image.\n")
    (root / "src" / "untracked.py").write_text("B = 2\n")
    assert tag(root) == first
    (root / "images" / "cpu.Dockerfile").write_text("ARG BASE_IMAGE=python:3.12\n")
    dockerfile_changed = tag(root)
    assert dockerfile_changed != first
    (root / "src" / "a.py").write_text("A = 2\n")
    assert tag(root) not in (first, dockerfile_changed)


def test_tag_outside_a_git_work_tree_is_an_error(tmp_path):
    try:
        images.shipped_files(tmp_path)
    except images.ImageError as err:
        assert str(err) == f"{tmp_path}: not a git work tree; image tags hash tracked files only"
    else:
        raise AssertionError("no error")


def test_shipped_files_leave_out_docs_and_the_dev_lock():
    names = {p.name for p in images.shipped_files()}
    assert {"requirements-cpu.lock", "requirements-gpu.lock", "cpu.Dockerfile"} <= names
    assert not {"README.md", "requirements.lock", "cloudbuild.yaml"} & names


def test_refs_name_registry_and_tag():
    cpu, gpu = images.image_ref("cpu"), images.image_ref("gpu")
    registry = images.images_config()["registry"]
    assert cpu == f"{registry}/cnnvsmlp-cpu:{images.source_tag()}"
    assert gpu.endswith(f"/cnnvsmlp-gpu:{images.source_tag()}")
    assert not cpu.endswith(":latest")


def test_dockerfiles_take_a_pinned_base():
    for spec in images.images_config()["images"].values():
        base = images.default_base(images.ROOT / spec["dockerfile"])
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base)


def test_build_without_docker_engine_says_so(monkeypatch, capsys):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert images.build_and_push(push_images=True) == 1
    out = capsys.readouterr().out
    assert out.startswith("images: no Docker engine reachable")


def test_images_exist_lists_what_the_registry_lacks(tmp_path, monkeypatch):
    fake = tmp_path / "docker"
    fake.write_text(
        "#!/bin/sh\n"
        '[ "$1 $2" = "manifest inspect" ] && case "$3" in *:there) exit 0;; esac\n'
        "exit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    refs = ["r/cnnvsmlp-cpu:there", "r/cnnvsmlp-gpu:gone", "r/other:there"]
    assert images.images_exist(refs) == ["r/cnnvsmlp-gpu:gone"]


def test_installed_copy_without_a_checkout_still_names_an_image(monkeypatch, tmp_path):
    monkeypatch.setattr(images, "IMAGES_FILE", tmp_path / "absent.yaml")
    assert images.image_ref("gpu") == "cnnvsmlp-gpu:not-from-a-checkout"


def test_the_installed_package_ships_every_module_the_checkout_has(tmp_path):
    """The images install a wheel of the project: a subpackage left out of it fails only there."""
    import shutil
    import sys
    import zipfile

    from cnnvsmlp.settings import ROOT

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    (src / "README.md").write_text("x\n")
    folders = {
        "src/cnnvsmlp": "cnnvsmlp",
        "components": "cnnvsmlp_components",
        "pipelines": "cnnvsmlp_pipelines",
    }
    for folder in folders:
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(src),
            "-w",
            str(tmp_path / "wheel"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"{package}/{path.relative_to(ROOT / folder).as_posix()}"
        for folder, package in folders.items()
        for pattern in ("*.py", "*.yaml", "*.j2")
        for path in (ROOT / folder).rglob(pattern)
        if "__pycache__" not in path.parts
    }
    assert sorted(expected - shipped) == []
    # Every importable name the wheel installs carries the project's prefix.
    assert {name.split("/")[0] for name in shipped if ".dist-info/" not in name} <= {
        "cnnvsmlp",
        "cnnvsmlp_components",
        "cnnvsmlp_pipelines",
    }
