"""Image names and registry checks: content-derived tags, never latest, clear answers."""

from __future__ import annotations

import re
import subprocess

import pytest

from cnnvsmlp_pipelines import images
from tools import images as builds


def _git(root, *args):
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def _repo(root):
    (root / "src" / "cnnvsmlp").mkdir(parents=True)
    (root / "pipelines").mkdir()
    (root / "pipelines" / "cluster.py").write_text("HOST = 1\n")
    (root / "images").mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (root / "README.md").write_text("# x\n")
    (root / "src" / "cnnvsmlp" / "a.py").write_text("A = 1\n")
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
    (root / "src" / "cnnvsmlp" / "untracked.py").write_text("B = 2\n")
    assert tag(root) == first
    # pipelines/ runs on the submitting machine, in no image: its edits rename nothing
    (root / "pipelines" / "cluster.py").write_text("HOST = 2\n")
    _git(root, "add", "pipelines")
    assert tag(root) == first
    (root / "images" / "cpu.Dockerfile").write_text("ARG BASE_IMAGE=python:3.12\n")
    dockerfile_changed = tag(root)
    assert dockerfile_changed != first
    (root / "src" / "cnnvsmlp" / "a.py").write_text("A = 2\n")
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
    assert "docker-bake.json" in names  # the build definition
    assert not {"README.md", "requirements.lock", "cloudbuild.yaml"} & names


def test_the_tag_hashes_exactly_what_the_components_import():
    """Every module the components reach is hashed, and nothing of pipelines/ or pyproject."""
    import ast

    root = images.ROOT
    shipped = {p.relative_to(root).as_posix() for p in images.shipped_files()}
    assert not [n for n in shipped if n.startswith("pipelines/") or n == "pyproject.toml"]
    modules = {"cnnvsmlp_components." + p.stem for p in (root / "components").glob("*.py")}
    seen: set[str] = set()
    while modules - seen:
        name = (modules - seen).pop()
        seen.add(name)
        package, _, rest = name.partition(".")
        folder = {"cnnvsmlp": root / "src" / "cnnvsmlp", "cnnvsmlp_components": root / "components"}
        base = folder[package] / rest.replace(".", "/") if rest else folder[package]
        path = (
            base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        )
        assert path.relative_to(root).as_posix() in shipped, name
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for imported in names:
                top = imported.split(".")[0]
                assert top != "cnnvsmlp_pipelines", f"{path} imports {imported}"
                if top in folder:
                    parts = imported.split(".")
                    while parts and not _module_exists(folder, parts):
                        parts.pop()
                    if parts:
                        modules.add(".".join(parts))


def _module_exists(folder, parts) -> bool:
    base = folder[parts[0]].joinpath(*parts[1:])
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def test_the_compiled_pipeline_names_the_content_tag_of_the_images(tmp_path):
    import yaml

    from cnnvsmlp_pipelines import compile_pipeline

    package = compile_pipeline("compare", tmp_path)
    ir = next(yaml.safe_load_all(package.read_text()))
    refs = {e["container"]["image"] for e in ir["deploymentSpec"]["executors"].values()}
    assert refs == {images.image_ref("cpu"), images.image_ref("gpu")}
    assert all(r.endswith(":" + images.source_tag()) for r in refs)


def test_one_build_definition_for_make_images_and_cloud_build():
    cloudbuild = (images.ROOT / "images" / "cloudbuild.yaml").read_text()
    assert "bake" in cloudbuild and "images/docker-bake.json" in cloudbuild
    assert "Dockerfile" not in cloudbuild.split("steps:")[1]  # no second copy of the builds
    targets = images.bake_targets({"REGISTRY": "r", "TAG": "t"})
    assert {k: v["tags"] for k, v in targets.items()} == {
        "cpu": ["r/cnnvsmlp-cpu:t"],
        "gpu": ["r/cnnvsmlp-gpu:t"],
    }
    without_buildx = builds.build_commands(("cpu", "gpu"), "b:1", "docker", False, [])
    for kind, cmd in zip(("cpu", "gpu"), without_buildx, strict=True):
        assert cmd[cmd.index("-f") + 1] == targets[kind]["dockerfile"]
        assert cmd[cmd.index("--platform") + 1] == "linux/amd64"
        assert cmd[cmd.index("-t") + 1] == images.image_ref(kind)
        assert "BASE_IMAGE=b:1" in cmd
    (bake,) = builds.build_commands(("cpu", "gpu"), "b:1", "docker", True, [("pip_cert", "/c")])
    assert bake[1:6] == ["buildx", "bake", "-f", str(images.BAKE_FILE), "--load"]
    assert "--set=*.secret=id=pip_cert,src=/c" in bake and bake[-2:] == ["cpu", "gpu"]


def test_a_build_on_arm64_says_the_locks_are_x86_64(tmp_path, monkeypatch, capsys):
    fake = tmp_path / "docker"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$*" in *Architecture*) echo aarch64;; *ServerVersion*) echo 28.0.0;; esac\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert builds.build_and_push() == 1
    out = capsys.readouterr().out
    assert out.startswith("images: the Docker engine here is aarch64, but requirements-cpu.lock")
    assert "pin x86_64 wheels" in out and "images/cloudbuild.yaml" in out


def test_the_standin_base_is_a_script_under_images():
    script = builds.STANDIN_SCRIPT
    assert script.is_file() and script.stat().st_mode & 0o111
    text = script.read_text()
    assert "debootstrap" in text and "docker import" in text
    source = (images.ROOT / "tools" / "images.py").read_text()
    assert "--variant=minbase" not in source and "chroot" not in source  # one place only


def test_refs_name_registry_and_tag():
    cpu, gpu = images.image_ref("cpu"), images.image_ref("gpu")
    registry = images.images_config()["registry"]
    assert cpu == f"{registry}/cnnvsmlp-cpu:{images.source_tag()}"
    assert gpu.endswith(f"/cnnvsmlp-gpu:{images.source_tag()}")
    assert not cpu.endswith(":latest")


def test_dockerfiles_take_a_pinned_base():
    for spec in images.bake_targets().values():
        base = builds.default_base(images.ROOT / spec["dockerfile"])
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base)


def test_build_without_docker_engine_says_so(monkeypatch, capsys):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert builds.build_and_push(push_images=True) == 1
    out = capsys.readouterr().out
    assert out.startswith("images: no Docker engine reachable")


def test_the_image_check_names_what_the_registry_lacks(tmp_path, monkeypatch):
    from cnnvsmlp_pipelines.cluster_access import ClusterError, check_images

    fake = tmp_path / "docker"
    fake.write_text(
        "#!/bin/sh\n"
        '[ "$1 $2" = "manifest inspect" ] && case "$3" in *:there) exit 0;; esac\n'
        "exit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    refs = ["r/cnnvsmlp-cpu:there", "r/cnnvsmlp-gpu:gone", "r/other:there"]
    with pytest.raises(ClusterError) as err:
        check_images(refs)
    assert str(err.value).startswith("r/cnnvsmlp-gpu:gone: not in the registry")


def test_installed_copy_without_a_checkout_still_names_an_image(monkeypatch, tmp_path):
    monkeypatch.setattr(images, "IMAGES_FILE", tmp_path / "absent.yaml")
    assert images.image_ref("gpu") == "cnnvsmlp-gpu:not-from-a-checkout"


def test_the_installed_package_ships_every_module_the_checkout_has(tmp_path):
    """``pip install .`` installs a wheel: a subpackage left out of it fails only there."""
    import shutil
    import sys
    import zipfile

    from cnnvsmlp_pipelines.settings import ROOT

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
