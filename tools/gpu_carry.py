"""``make gpu-check``: gather what the GPU check's lent machine lacks (wheels, Fashion-MNIST)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What the lent machine's image lacks of the training and evaluation path
# (its package list is in the device notes); versions come from requirements.lock.
WHEELS = (
    "keras",
    "namex",
    "optree",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "typing-extensions",
    "google-cloud-storage",
    "google-cloud-core",
    "google-api-core",
    "google-auth",
    "google-resumable-media",
    "google-crc32c",
    "googleapis-common-protos",
    "proto-plus",
    "pyasn1",
    "pyasn1-modules",
    "cryptography",
    "cffi",
    "pycparser",
)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
CARRY_LIMIT = 64 * 2**20


def locked_versions(lock: Path) -> dict[str, str]:
    """The ``name==version`` pins of a lock file, by lower-case name."""
    pins = {}
    for line in lock.read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, _, rest = line.partition("==")
            pins[name.strip().lower()] = rest.split()[0].rstrip("\\").strip()
    return pins


def gather(carry: Path, fashion_dir: Path) -> int:
    """Download the wheels and copy the Fashion-MNIST files the lent machine needs; its bytes."""
    from cnnvsmlp.data.spec import DATASETS

    files = DATASETS["fashion-mnist"].files.values()
    pins = locked_versions(ROOT / "requirements.lock")
    missing = [name for name in WHEELS if name not in pins]
    if missing:
        raise SystemExit(f"gpu-check: requirements.lock pins no {', '.join(missing)}; make lock")
    absent = [name for name in files if not (fashion_dir / name).is_file()]
    if absent:
        raise SystemExit(
            f"gpu-check: {fashion_dir} lacks {', '.join(absent)}; run make setup or pass --fashion"
        )
    wheels = carry / "wheels"
    if wheels.exists():
        shutil.rmtree(wheels)
    wheels.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", "3.12", "--implementation", "cp", "-d", str(wheels)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    subprocess.run([*cmd, *(f"{name}=={pins[name]}" for name in WHEELS)], check=True)
    data = carry / "fashion-mnist"
    data.mkdir(parents=True, exist_ok=True)
    for name in files:
        shutil.copyfile(fashion_dir / name, data / name)
    size = sum(p.stat().st_size for p in carry.rglob("*") if p.is_file())
    tree = _tree_bytes()
    print(
        f"gpu-check: {carry.relative_to(ROOT)} holds {len(list(wheels.iterdir()))} wheels and "
        f"Fashion-MNIST, {size / 2**20:.1f} MiB; with the working tree "
        f"{(size + tree) / 2**20:.1f} MiB of the {CARRY_LIMIT // 2**20} MiB that may travel"
    )
    if size + tree > CARRY_LIMIT:
        raise SystemExit("gpu-check: more than may travel to the lent machine; carry less")
    print("gpu-check: on the lent machine, run (see docs/gpu.md):")
    print(f"  {device_command(carry)}")
    return size


def device_command(carry: Path) -> str:
    """The shell command that runs the check on the lent machine from the carry folder."""
    rel = carry.relative_to(ROOT)
    return (
        f"PYTHONUNBUFFERED=1 PYTHONPATH=src python3 tools/gpu_check.py run --device gpu "
        f"--carry {rel} --out $OUT 2>&1 | tee $OUT/gpu-check.log"
    )


def _tree_bytes() -> int:
    """Bytes of the files git tracks here: what travels besides the carry folder."""
    try:
        names = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        return 0
    return sum(
        (ROOT / n.decode()).stat().st_size for n in names if n and (ROOT / n.decode()).is_file()
    )
