"""Pipelines, registered by name in :func:`pipelines`: a new one is a module with its ``SPEC``."""

from __future__ import annotations

from pathlib import Path

from cnnvsmlp.config import ExperimentConfig
from cnnvsmlp.errors import UserError
from cnnvsmlp_pipelines.spec import PipelineSpec


def pipelines() -> dict[str, PipelineSpec]:
    """The registered pipelines by name; imported on first use, so the CLI starts without kfp."""
    from cnnvsmlp_pipelines import compare, data_efficiency

    return {spec.name: spec for spec in (compare.SPEC, data_efficiency.SPEC)}


def get_pipeline(name: str) -> PipelineSpec:
    """The spec of a registered pipeline; UserError for an unknown name."""
    registry = pipelines()
    if name not in registry:
        raise UserError(f"unknown pipeline {name!r}; registered: {', '.join(sorted(registry))}")
    return registry[name]


def pipeline_arguments(name: str, config: ExperimentConfig) -> dict:
    """The run parameters of a pipeline for an experiment config."""
    return get_pipeline(name).arguments(config)


def compile_pipeline(name: str, out_dir: str | Path = "build") -> Path:
    """Compile a registered pipeline to ``<out_dir>/<name>.yaml`` (KFP IR)."""
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
