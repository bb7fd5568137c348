"""Kubeflow components: thin wrappers that turn artifacts into calls of the cnnvsmlp library.

Each task runs in the image its pipeline places it in (``pipelines/placement.py``:
the image carries the library and the pinned dependencies), and runs unchanged
on a laptop through kfp's local runner.
"""

from cnnvsmlp_components.check import check_runs
from cnnvsmlp_components.compare import compare_runs
from cnnvsmlp_components.compare_efficiency import check_efficiency, compare_efficiency
from cnnvsmlp_components.data import prepare_data
from cnnvsmlp_components.evaluate import evaluate_model
from cnnvsmlp_components.plan import plan_runs
from cnnvsmlp_components.plan_efficiency import plan_efficiency_runs
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
