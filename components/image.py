"""The image a component names until ``pipelines/placement.py`` places its task."""

UNPLACED = "cnnvsmlp-cpu:unplaced"
