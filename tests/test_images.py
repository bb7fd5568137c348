"""Image names: content-derived tags, never latest, and a clear answer without Docker."""

from __future__ import annotations

import re

from cnnvsmlp import images


def _tree(root):
    (root / "src").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (root / "src" / "a.py").write_text("A = 1\n")
    (root / "notes.txt").write_text("not in the image\n")
    return root


def test_tag_is_derived_from_the_source(tmp_path):
    root = _tree(tmp_path / "repo")
    first = images.source_tag.__wrapped__(root)
    assert re.fullmatch(r"src-[0-9a-f]{12}", first)
    assert images.source_tag.__wrapped__(root) == first
    (root / "notes.txt").write_text("changed, but not part of the image\n")
    assert images.source_tag.__wrapped__(root) == first
    (root / "src" / "a.py").write_text("A = 2\n")
    assert images.source_tag.__wrapped__(root) != first


def test_refs_name_registry_and_tag():
    cpu, gpu = images.image_ref("cpu"), images.image_ref("gpu")
    registry = images.images_config()["registry"]
    assert cpu == f"{registry}/cnnvsmlp-cpu:{images.source_tag()}"
    assert gpu.endswith(f"/cnnvsmlp-gpu:{images.source_tag()}")
    assert not cpu.endswith(":latest")


def test_build_without_docker_engine_says_so(monkeypatch, capsys):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert images.build_and_push(push=True) == 1
    out = capsys.readouterr().out
    assert out.startswith("images: no Docker engine reachable")
