"""Offline data on a developer machine: Debian's ``dataset-fashion-mnist``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from cnnvsmlp.data.spec import DATASETS, DataError

PACKAGE = "dataset-fashion-mnist"


def ensure_fashion_mnist(quiet: bool = False, require: bool = False) -> Path | None:
    """Fashion-MNIST's offline folder, installing Debian's package as root; None when absent."""
    spec = DATASETS["fashion-mnist"]
    folder = Path(spec.default_idx_dir)
    if all((folder / f).is_file() for f in spec.files.values()):
        if not quiet:
            print(f"data: Fashion-MNIST found in {folder}")
        return folder
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"data: installing Debian's {PACKAGE} into {folder}", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        done = subprocess.run(["apt-get", "install", "-y", "-qq", PACKAGE], env=env)
        if done.returncode == 0 and (folder / spec.files["train_images"]).is_file():
            return folder
    message = (
        f"fashion-mnist: no files in {folder}. Install them with "
        f"'sudo apt-get install {PACKAGE}' (Debian/Ubuntu), or put the four gzip IDX files "
        "in a folder and run with idx_dir=<folder>"
    )
    if require:
        raise DataError(message)
    print(f"data: warning: {message}; runs will try a TFDS download", file=sys.stderr)
    return None
