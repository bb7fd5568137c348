"""The image a component names until its task is placed.

``pipelines/placement.py`` gives every task its real image (CPU or GPU, at the
source's content tag) when a pipeline is built, so importing a component
reads no file and runs no command.
"""

UNPLACED = "cnnvsmlp-cpu:unplaced"
