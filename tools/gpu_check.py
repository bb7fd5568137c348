"""The GPU check (``make gpu-check``): the seed's trainings on a lent GPU machine, on JAX.

``gather`` (here) brings what the machine lacks into ``build/gpu-carry`` and prints its command;
``run`` (there, or here on a slice: ``DEVICE=cpu``) trains and scores every run and writes
``<device>.json`` and ``<device>.md``. docs/gpu.md says what runs and what it is compared with.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
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
    """Train one variant with seed 0 and score it: its row, and the Hardware it trained on."""
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
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        # The data first: its worker processes fork before JAX starts its threads.
        emnist, fashion = prepare_data(Path(tmp), limit, fashion_dir, start)
        rows, hardware = train_all(device, emnist, fashion, epochs, Path(tmp))
    wall = time.perf_counter() - start
    result = record(device, limit, wall, rows, hardware)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{device}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{device}.md").write_text(markdown(result))
    print(f"gpu-check: {wall:.0f} s in all (budget {BUDGET_S} s); wrote {out}/{device}.json, .md")
    if wall > BUDGET_S:
        print(f"gpu-check: over the {BUDGET_S} s budget: a rerun no longer fits", file=sys.stderr)
    return result


def prepare_data(work: Path, limit: int | None, fashion_dir: Path, start: float) -> tuple:
    """The EMNIST Letters stand-in and Fashion-MNIST, each sliced to ``limit``, prepared."""
    from cnnvsmlp.config import DataSource, load_config
    from cnnvsmlp.data import prepare

    n_train = min(EMNIST_TRAIN, limit) if limit else EMNIST_TRAIN
    n_test = min(EMNIST_TEST, limit) if limit else EMNIST_TEST
    emnist = emnist_stand_in(work / "emnist", n_train, n_test, os.cpu_count() or 1)
    print(
        f"gpu-check: EMNIST Letters stand-in, {n_train} + {n_test} images in "
        f"{time.perf_counter() - start:.0f} s",
        flush=True,
    )
    fashion = work / "fashion"
    split = load_config("fashion-mnist").split
    prepare(
        "fashion-mnist", DataSource(kind="idx", idx_dir=str(fashion_dir)), split, fashion, limit
    )
    return emnist, fashion


def train_all(device: str, emnist: Path, fashion: Path, epochs: int | None, work: Path) -> tuple:
    """Every run of the check on the jax backend: the rows, and the Hardware of the last."""
    from cnnvsmlp import backend
    from cnnvsmlp.config import load_config

    backend.use("jax")
    import jax

    platform = jax.devices()[0].platform
    if (platform == "gpu") != (device == "gpu"):
        raise SystemExit(f"gpu-check: --device {device} but JAX computes on {platform}")
    letters, preset = load_config("emnist-letters"), load_config("fashion-mnist")
    plan = [(emnist, "emnist-letters (synthetic stand-in)", letters, v) for v in letters.variants]
    plan += [(fashion, "fashion-mnist", preset, v) for v in preset.variants]
    rows, hardware = [], None
    for data_dir, name, config, variant in plan:
        train_config = config.train.model_copy(
            update={"backend": "jax", **({"epochs": epochs} if epochs else {})}
        )
        row, hardware = train_and_score(
            data_dir, name, variant, train_config, work / f"{name.split()[0]}-{variant}"
        )
        rows.append(row)
    return rows, hardware


def record(device: str, limit: int | None, wall: float, rows: list[dict], hardware) -> dict:
    """What ``<device>.json`` holds: where and when it ran, the versions, the runs."""
    import jax
    import jaxlib
    import keras
    import numpy as np

    return {
        "device": device,
        "dry_run": device != "gpu",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "limit": limit,
        "wall_s": wall,
        "budget_s": BUDGET_S,
        "gpu": nvidia_smi(),
        "versions": {"python": sys.version.split()[0]}
        | {module.__name__: module.__version__ for module in (keras, jax, jaxlib, np)},
        "hardware": hardware.model_dump(mode="json"),
        "runs": rows,
        "references": references(rows),
    }


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


def _times(key: str):
    """A column: the run's images per second over a reference's, where there is one."""
    return lambda row, ref: f"{row['images_per_s'] / ref[key]:.1f}x" if ref.get(key) else ""


# The Markdown table's columns: header, and the cell of a run's row and its references.
COLUMNS = {
    "data set": lambda row, ref: row["dataset"],
    "variant": lambda row, ref: row["variant"],
    "epochs": lambda row, ref: row["epochs"],
    "batch": lambda row, ref: row["batch_size"],
    "train images": lambda row, ref: row["n_train"],
    "first epoch s": lambda row, ref: f"{row['first_epoch_s']:.2f}",
    "s/epoch": lambda row, ref: f"{row['s_per_epoch']:.2f}",
    "images/s": lambda row, ref: f"{row['images_per_s']:.0f}",
    "test accuracy": lambda row, ref: f"{row['test_accuracy']:.4f}",
    "vs K80": _times("k80_images_per_s"),
    "vs CPU jax": _times("cpu_jax_images_per_s"),
    "vs CPU tensorflow": _times("cpu_tensorflow_images_per_s"),
}


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
    refs = result["references"]
    dry = " (dry run on a slice)" if result["dry_run"] else ""
    table = [
        [cell(row, refs.get(f"{row['dataset']} {row['variant']}", {})) for cell in COLUMNS.values()]
        for row in result["runs"]
    ]
    return "\n".join(
        [
            f"# GPU check: {result['device']}{dry}",
            "",
            f"{where}; Python {v['python']}, Keras {v['keras']} on JAX {v['jax']} "
            f"(jaxlib {v['jaxlib']}), NumPy {v['numpy']}. {result['date']}, commit "
            f"{result['commit'] or 'unknown'}, {result['wall_s']:.0f} s in all.",
            "",
            "Seconds per epoch leave out the first epoch (XLA compiles in it). EMNIST Letters is "
            "the synthetic stand-in at the real split sizes: its accuracy says nothing about "
            "handwriting.",
            "",
            tabulate(table, headers=list(COLUMNS), tablefmt="github"),
            "",
            f"vs K80: images per second against seed 000's Tesla K80 ({K80['mlp']:.0f} s per epoch "
            f"for the MLP, {K80['cnn-deep']:.0f} s for the CNN, on {K80_IMAGES:,} images). vs CPU: "
            f"against one epoch on the project's CPU machine (2 cores) on the real Fashion-MNIST "
            f"({CPU_IMAGES:,} images, batch 32), on each backend; an epoch's seconds include its "
            "validation pass and snapshot on both sides.",
            "",
        ]
    )


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
        from tools.gpu_carry import gather

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
