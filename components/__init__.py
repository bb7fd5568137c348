"""Kubeflow components: thin wrappers that turn artifacts into calls of the cnnvsmlp library."""

from cnnvsmlp_components.compare import (
    check_efficiency,
    check_runs,
    compare_efficiency,
    compare_runs,
)
from cnnvsmlp_components.data import prepare_data
from cnnvsmlp_components.evaluate import evaluate_model
from cnnvsmlp_components.plan import plan_efficiency_runs, plan_runs
from cnnvsmlp_components.train import train_model

__all__ = [
    "check_efficiency",
    "check_runs",
    "compare_efficiency",
    "compare_runs",
    "evaluate_model",
    "plan_efficiency_runs",
    "plan_runs",
    "prepare_data",
    "train_model",
]
