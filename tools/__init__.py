"""Tooling for people working on the project; not installed, not copied into the images.

The benchmarks, the GPU check, the batch-norm study, the image builds and the
infrastructure lint.
"""
