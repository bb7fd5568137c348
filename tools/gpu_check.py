"""The GPU check (``make gpu-check``): the seed's trainings on a lent GPU machine, on JAX.

A lent GPU machine has JAX with CUDA, no TensorFlow and no network, so the
check trains on the jax backend and brings what the machine lacks with the
working tree (64 MiB in all):

- ``gather`` (here, ``make gpu-check``) downloads the wheels of the
  project's needs that the machine's image does not hold (Keras, pydantic,
  the Cloud Storage client, ... at the versions of ``requirements.lock``,
  for Python 3.12 on x86-64) and copies the real Fashion-MNIST files into
  ``build/gpu-carry``, and prints the command for the machine;
- ``run`` (there; ``make gpu-check DEVICE=cpu`` dry-runs it here on a
  slice) installs the carried wheels into a temporary folder, then trains
  seed 000's MLP and deep CNN at batch 128 for 15 epochs on EMNIST
  Letters-shaped data (the synthetic stand-in of :mod:`cnnvsmlp.synthetic`
  at the real split sizes, 124,800 training and 20,800 test images, made
  there) and the Fashion preset's four variants for 5 epochs on the real
  Fashion-MNIST, evaluates each, and writes ``<device>.json`` and
  ``<device>.md`` (seconds per epoch, images per second, accuracy, GPU,
  driver, versions) compared with the seed's Tesla K80 and with this
  project's CPU run (``results/gpu/cpu.json``).

Seconds per epoch leave out the first epoch, which includes XLA's compiling.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CARRY = ROOT / "build" / "gpu-carry"
RESULTS = ROOT / "results" / "gpu"
DRY_RUN = ROOT / "build" / "gpu-check"
BUDGET_S = 480  # under 8 minutes, so a rerun fits in a machine's 15
TIMEOUT_S = 540
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
FASHION_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
# Seed 000's write-up: seconds per epoch on a Tesla K80, 93,600 training images.
K80 = {"mlp": 144.0, "cnn-deep": 14.0}
K80_IMAGES = 93_600
# This project's CPU machine (2 cores, AMD EPYC), 2026-12-01: seconds of one epoch on
# the real Fashion-MNIST (48,000 images) at batch 32, by backend.
CPU = {
    "mlp": {"jax": 28.1, "tensorflow": 31.3},
    "cnn": {"jax": 17.2, "tensorflow": 10.3},
    "cnn-3conv": {"jax": 67.5, "tensorflow": 19.6},
}
CPU_IMAGES = 48_000
EMNIST_TRAIN, EMNIST_TEST = 124_800, 20_800
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
    """Download the wheels and copy the Fashion-MNIST files the lent machine needs.

    Returns:
        The bytes in the carry folder.
    """
    pins = locked_versions(ROOT / "requirements.lock")
    missing = [name for name in WHEELS if name not in pins]
    if missing:
        raise SystemExit(f"gpu-check: requirements.lock pins no {', '.join(missing)}; make lock")
    absent = [name for name in FASHION_FILES if not (fashion_dir / name).is_file()]
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
    for name in FASHION_FILES:
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


def install_carried(carry: Path) -> None:
    """Install the carried wheels into a temporary folder and put it first on the path."""
    wheels = sorted((carry / "wheels").glob("*.whl"))
    if not wheels:
        return
    site = Path(tempfile.mkdtemp(prefix="gpu-check-site-"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
        + ["--disable-pip-version-check", "--target", str(site), *map(str, wheels)],
        check=True,
    )
    sys.path.insert(0, str(site))


def _render(args: tuple[int, int]):
    from cnnvsmlp.synthetic import render_letters

    return render_letters(*args)


def emnist_stand_in(out: Path, n_train: int, n_test: int, workers: int) -> Path:
    """Render the synthetic EMNIST Letters stand-in in parallel; prepare it as the preset does."""
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    from cnnvsmlp.config import load_config
    from cnnvsmlp.data.spec import DATASETS, RawData
    from cnnvsmlp.data.store import write_dataset

    chunk = 2000
    jobs = [
        (min(chunk, n - start), seed * 1_000_003 + start)
        for seed, n in ((0, n_train), (1, n_test))
        for start in range(0, n, chunk)
    ]
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(_render, jobs))
    n_train_chunks = -(-n_train // chunk)
    train, test = parts[:n_train_chunks], parts[n_train_chunks:]
    raw = RawData(
        train_images=np.concatenate([p[0] for p in train]),
        train_labels=np.concatenate([p[1] for p in train]),
        test_images=np.concatenate([p[0] for p in test]),
        test_labels=np.concatenate([p[1] for p in test]),
        source="synthetic stand-in (cnnvsmlp.synthetic)",
    )
    config = load_config("emnist-letters")
    write_dataset(raw, DATASETS["emnist-letters"], config.split, out, None)
    return out


def nvidia_smi() -> dict:
    """The GPU's name, driver and memory as nvidia-smi reports them; empty without one."""
    try:
        line = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return {}
    name, driver, memory = (x.strip() for x in line.split(","))
    return {"name": name, "driver": driver, "memory": memory}


def train_and_score(data_dir: Path, dataset: str, variant: str, train_config, out: Path) -> tuple:
    """Train one variant with seed 0 and score it.

    Returns:
        The run's row and the :class:`~cnnvsmlp.records.Hardware` it trained on.
    """
    from cnnvsmlp.config import RunSpec
    from cnnvsmlp.evaluate import evaluate
    from cnnvsmlp.train import train

    trained = train(data_dir, RunSpec(variant=variant, repeat=0, seed=0), train_config, out, 0)
    scored = evaluate(out, data_dir, out / "eval.json")
    times = [e.time_s for e in trained.history]
    steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
    row = {
        "dataset": dataset,
        "variant": variant,
        "epochs": len(times),
        "batch_size": train_config.batch_size,
        "n_train": trained.n_train,
        "params": trained.params,
        "first_epoch_s": times[0],
        "s_per_epoch": steady,
        "images_per_s": trained.n_train / steady,
        "val_accuracy": trained.history[-1].val_accuracy,
        "test_accuracy": scored.accuracy,
        "inference_images_per_s": scored.inference_images_per_s,
    }
    print(
        f"gpu-check: {dataset} {variant}: {steady:.2f} s/epoch after a first of {times[0]:.2f} s, "
        f"{row['images_per_s']:.0f} images/s, test accuracy {scored.accuracy:.4f}",
        flush=True,
    )
    return row, trained.hardware


def run(device: str, out: Path, limit: int | None, epochs: int | None, fashion_dir: Path) -> dict:
    """Train and score every run of the check; write ``<device>.json`` and ``<device>.md``."""
    from cnnvsmlp import backend
    from cnnvsmlp.config import DataSource, load_config
    from cnnvsmlp.data import prepare

    start = time.perf_counter()
    rows, hardware = [], None
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        # The data first: its worker processes fork before JAX starts its threads.
        work = Path(tmp)
        n_train = min(EMNIST_TRAIN, limit) if limit else EMNIST_TRAIN
        n_test = min(EMNIST_TEST, limit) if limit else EMNIST_TEST
        emnist = emnist_stand_in(work / "emnist", n_train, n_test, os.cpu_count() or 1)
        print(
            f"gpu-check: EMNIST Letters stand-in, {n_train} + {n_test} images in "
            f"{time.perf_counter() - start:.0f} s",
            flush=True,
        )
        fashion = work / "fashion"
        preset = load_config("fashion-mnist")
        prepare(
            "fashion-mnist",
            DataSource(kind="idx", idx_dir=str(fashion_dir)),
            preset.split,
            fashion,
            limit=limit,
        )

        backend.use("jax")
        import jax

        platform = jax.devices()[0].platform
        if (platform == "gpu") != (device == "gpu"):
            raise SystemExit(f"gpu-check: --device {device} but JAX computes on {platform}")
        letters = load_config("emnist-letters")
        plan = [
            (emnist, "emnist-letters (synthetic stand-in)", letters, v) for v in letters.variants
        ]
        plan += [(fashion, "fashion-mnist", preset, v) for v in preset.variants]
        for data_dir, name, config, variant in plan:
            train_config = config.train.model_copy(
                update={"backend": "jax", **({"epochs": epochs} if epochs else {})}
            )
            row, hardware = train_and_score(
                data_dir, name, variant, train_config, work / f"{name.split()[0]}-{variant}"
            )
            rows.append(row)
    wall = time.perf_counter() - start
    import jaxlib
    import keras
    import numpy as np

    result = {
        "device": device,
        "dry_run": device != "gpu",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(),
        "limit": limit,
        "wall_s": wall,
        "budget_s": BUDGET_S,
        "gpu": nvidia_smi(),
        "versions": {
            "python": sys.version.split()[0],
            "keras": keras.__version__,
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "numpy": np.__version__,
        },
        "hardware": hardware.model_dump(mode="json"),
        "runs": rows,
        "references": references(rows),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{device}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{device}.md").write_text(markdown(result))
    print(f"gpu-check: {wall:.0f} s in all (budget {BUDGET_S} s); wrote {out}/{device}.json, .md")
    if wall > BUDGET_S:
        print(f"gpu-check: over the {BUDGET_S} s budget: a rerun no longer fits", file=sys.stderr)
    return result


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return ""


def references(rows: list[dict]) -> dict:
    """The K80's and the project's CPU machine's images per second for each run, where known."""
    refs = {}
    for row in rows:
        ref = {}
        if row["dataset"].startswith("emnist") and row["variant"] in K80:
            ref["k80_images_per_s"] = K80_IMAGES / K80[row["variant"]]
        if row["dataset"] == "fashion-mnist" and row["variant"] in CPU:
            for name, seconds in CPU[row["variant"]].items():
                ref[f"cpu_{name}_images_per_s"] = CPU_IMAGES / seconds
        refs[f"{row['dataset']} {row['variant']}"] = ref
    return refs


def markdown(result: dict) -> str:
    """The results as a Markdown page: what ran where, then one row per run."""
    from tabulate import tabulate

    gpu = result["gpu"]
    where = (
        f"{gpu['name']}, driver {gpu['driver']}, {gpu['memory']}"
        if gpu
        else f"CPU only: {result['hardware']['cpu']}, {result['hardware']['cpu_count']} cores"
    )
    v = result["versions"]
    lines = [
        f"# GPU check: {result['device']}{' (dry run on a slice)' if result['dry_run'] else ''}",
        "",
        f"{where}; Python {v['python']}, Keras {v['keras']} on JAX {v['jax']} "
        f"(jaxlib {v['jaxlib']}), NumPy {v['numpy']}. {result['date']}, commit "
        f"{result['commit'] or 'unknown'}, {result['wall_s']:.0f} s in all.",
        "",
        "Seconds per epoch leave out the first epoch (XLA compiles in it). EMNIST Letters is the "
        "synthetic stand-in at the real split sizes: its accuracy says nothing about handwriting.",
        "",
    ]
    table = []
    for row in result["runs"]:
        ref = result["references"].get(f"{row['dataset']} {row['variant']}", {})
        k80 = ref.get("k80_images_per_s")
        cpu_jax, cpu_tf = ref.get("cpu_jax_images_per_s"), ref.get("cpu_tensorflow_images_per_s")
        table.append(
            [
                row["dataset"],
                row["variant"],
                row["epochs"],
                row["batch_size"],
                row["n_train"],
                f"{row['first_epoch_s']:.2f}",
                f"{row['s_per_epoch']:.2f}",
                f"{row['images_per_s']:.0f}",
                f"{row['test_accuracy']:.4f}",
                f"{row['images_per_s'] / k80:.1f}x" if k80 else "",
                f"{row['images_per_s'] / cpu_jax:.1f}x" if cpu_jax else "",
                f"{row['images_per_s'] / cpu_tf:.1f}x" if cpu_tf else "",
            ]
        )
    headers = [
        "data set",
        "variant",
        "epochs",
        "batch",
        "train images",
        "first epoch s",
        "s/epoch",
        "images/s",
        "test accuracy",
        "vs K80",
        "vs CPU jax",
        "vs CPU tensorflow",
    ]
    lines.append(tabulate(table, headers=headers, tablefmt="github"))
    lines += [
        "",
        f"vs K80: images per second against seed 000's Tesla K80 ({K80['mlp']:.0f} s per epoch "
        f"for the MLP, {K80['cnn-deep']:.0f} s for the CNN, on {K80_IMAGES:,} images). vs CPU: "
        f"against one epoch on the project's CPU machine (2 cores) on the real Fashion-MNIST "
        f"({CPU_IMAGES:,} images, batch 32), on each backend; an epoch's seconds include its "
        "validation pass and snapshot on both sides.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Gather the carry folder, or run the check."""
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("gather", help="download the wheels and copy the data the machine needs")
    g.add_argument("--carry", type=Path, default=CARRY)
    g.add_argument("--fashion", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    r = sub.add_parser("run", help="train, score and write <device>.json and <device>.md")
    r.add_argument("--device", choices=("gpu", "cpu"), required=True)
    r.add_argument("--carry", type=Path, help="a folder from gather: wheels and Fashion-MNIST")
    r.add_argument(
        "--out",
        type=Path,
        help=f"default: {RESULTS.relative_to(ROOT)} on a GPU, else {DRY_RUN.relative_to(ROOT)}",
    )
    r.add_argument("--limit", type=int, help="at most this many images of each official split")
    r.add_argument("--epochs", type=int, help="epochs of every run, not the presets'")
    args = parser.parse_args(argv)
    if args.command == "gather":
        gather(args.carry.resolve(), args.fashion)
        return
    if args.device == "cpu":  # the dry run: a slice, two epochs, unless told otherwise
        args.limit = args.limit or 600
        args.epochs = args.epochs or 2
    for name, value in (("--limit", args.limit), ("--epochs", args.epochs)):
        if value is not None and value < (10 if name == "--limit" else 1):
            parser.error(f"{name} {value}: too small")
    args.out = args.out or (RESULTS if args.device == "gpu" else DRY_RUN)
    if args.carry:
        install_carried(args.carry)
    fashion = args.carry / "fashion-mnist" if args.carry else None
    if fashion is None or not fashion.is_dir():
        from cnnvsmlp.data.spec import DATASETS

        fashion = Path(DATASETS["fashion-mnist"].default_idx_dir)
    run(args.device, args.out, args.limit, args.epochs, fashion)


if __name__ == "__main__":
    main()
