"""Pipelines, registered by name: every module here with ``NAME`` and ``pipeline`` is one.

Runners (local, compile, submit, schedule) look pipelines up by name, so a new
pipeline is a new module beside ``compare.py``; nothing else changes.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

from cnnvsmlp.config import ExperimentConfig
from cnnvsmlp.errors import UserError

_NOT_PIPELINES = {"bench", "cli", "cluster", "local_runner", "placement"}


def pipeline_names() -> list[str]:
    """Names of the registered pipelines."""
    return sorted(_registry())


def _registry() -> dict[str, ModuleType]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in _NOT_PIPELINES:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "pipeline"):
            found[module.NAME] = module
    return found


def get_pipeline(name: str) -> ModuleType:
    """The module of a registered pipeline: ``pipeline``, ``arguments(config)``.

    Raises:
        UserError: no pipeline has that name.
    """
    registry = _registry()
    if name not in registry:
        raise UserError(f"unknown pipeline {name!r}; registered: {', '.join(sorted(registry))}")
    return registry[name]


def by_comparison_task(task: str) -> ModuleType:
    """The module of the registered pipeline whose comparison task is ``task``.

    Raises:
        UserError: no pipeline has that comparison task.
    """
    for module in _registry().values():
        if getattr(module, "COMPARISON_TASK", None) == task:
            return module
    raise UserError(f"no registered pipeline has the comparison task {task!r}")


def pipeline_arguments(name: str, config: ExperimentConfig) -> dict:
    """The run parameters of a pipeline for an experiment config."""
    return get_pipeline(name).arguments(config)


def compile_pipeline(name: str, out_dir: str | Path = "build") -> Path:
    """Compile a registered pipeline to ``<out_dir>/<name>.yaml`` (KFP IR).

    Raises:
        UserError: unknown pipeline, or ``out_dir`` cannot hold the file.
    """
    from kfp import compiler

    from cnnvsmlp.outputs import write_atomically

    pipeline = get_pipeline(name).pipeline  # an unknown name fails before anything is written
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file, not a folder for compiled pipelines")
    try:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}.yaml"
        write_atomically(path, lambda p: compiler.Compiler().compile(pipeline, str(p)))
    except OSError as err:
        raise UserError(f"{out}: cannot write the compiled pipeline ({err.strerror})") from None
    return path
