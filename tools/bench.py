"""Benchmarks (``make bench``): slow measurements that are not tests.

The IDX reader against gunzip; ``train()`` against a plain Keras ``fit``; the MLP's FLOP/s against
NumPy's matmul; an MLP task's overheads; the local runner's concurrency policies; tensorflow
against jax. Tables print and go to ``build/bench.json``; docs/performance.md has the goals and
results. ``--training-only`` and ``--backends-only --limit N`` run parts alone.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

from cnnvsmlp.config import DataSource, load_config
from cnnvsmlp.data import prepare
from cnnvsmlp.data.idx import read_idx_dir
from cnnvsmlp.data.spec import DATASETS

ROOT = Path(__file__).resolve().parents[1]

GOALS = {"plain_over_project": 1.3, "mlp_matmul_fraction": 0.35}


def _best_of(func, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_reader(folder: Path) -> dict:
    """Time gunzip alone against read + normalise to float32 in [0, 1]."""
    spec = DATASETS["fashion-mnist"]
    paths = [folder / name for name in spec.files.values()]

    def gunzip_only() -> None:
        for path in paths:
            gzip.decompress(path.read_bytes())

    def read_and_normalise() -> None:
        raw = read_idx_dir(spec, folder)
        for images in (raw.train_images, raw.test_images):
            (images.astype("float32") / 255.0).reshape(-1, 28, 28, 1)

    gunzip_s = _best_of(gunzip_only)
    read_s = _best_of(read_and_normalise)
    return {"gunzip_s": gunzip_s, "read_normalise_s": read_s, "ratio": read_s / gunzip_s}


def _one(
    kind: str, data_dir: Path, variant: str, out: Path, what: str = "", env: dict | None = None
) -> dict:
    """One measurement in a fresh process (``tools.bench_measure``): no shared TensorFlow state."""
    cmd = [sys.executable, "-m", "tools.bench_measure", kind, str(data_dir), variant, str(out)]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bench: {what or f'{kind} {variant}'} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_training(data_dir: Path, out: Path, rounds: int, variants: list[str]) -> list[dict]:
    """Plain ``fit`` against ``train()``, interleaved, for each variant."""
    rows = []
    for variant in variants:
        plain, project = [], []
        for r in range(rounds):
            # Alternate which goes first, so a slow spell of the machine hits both.
            first_plain = r % 2 == 0
            for kind in ("plain", "project") if first_plain else ("project", "plain"):
                result = _one(kind, data_dir, variant, out / f"{variant}-{r}")
                (plain if kind == "plain" else project).append(result)
        plain_s = min(p["s"] for p in plain)
        project_s = min(p["s"] for p in project)
        rows.append(
            {
                "variant": variant,
                "params": project[0]["params"],
                "plain_s": plain_s,
                "project_s": project_s,
                "plain_over_project": plain_s / project_s,
                "goal": GOALS["plain_over_project"],
                "plain_test_accuracy": plain[0]["test_accuracy"],
                "project_test_accuracy": project[0]["test_accuracy"],
                "project_epoch_s": min(p["epoch_s"] for p in project),
                "inference_images_per_s": project[0]["inference_images_per_s"],
                "n_train": project[0]["n_train"],
            }
        )
    return rows


def bench_backends(data_dir: Path, out: Path, variants: list[str]) -> tuple[list[dict], str]:
    """Each variant's epoch on tensorflow and on jax, each in a fresh process.

    Returns:
        One row per variant, and the sentence that says which backend is faster here.
    """
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    rows = []
    for variant in variants:
        result = {}
        for name in ("tensorflow", "jax"):
            where = out / f"{variant}-{name}"
            result[name] = _one(name, data_dir, variant, where, f"{variant} on {name}", env)
            if result[name]["backend"] != name:
                raise RuntimeError(
                    f"bench: {variant} trained on {result[name]['backend']}, not {name}"
                )
        tf_s, jax_s = result["tensorflow"]["epoch_s"], result["jax"]["epoch_s"]
        rows.append(
            {
                "variant": variant,
                "n_train": result["jax"]["n_train"],
                "tensorflow_epoch_s": tf_s,
                "jax_epoch_s": jax_s,
                "tensorflow_over_jax": tf_s / jax_s,
                "faster": "jax" if jax_s < tf_s else "tensorflow",
                "tensorflow_test_accuracy": result["tensorflow"]["test_accuracy"],
                "jax_test_accuracy": result["jax"]["test_accuracy"],
            }
        )
    by = {
        name: [r["variant"] for r in rows if r["faster"] == name] for name in ("jax", "tensorflow")
    }
    said = "; ".join(f"{name} for {', '.join(v)}" for name, v in by.items() if v)
    return rows, f"backends: faster here ({os.cpu_count()} CPUs, one epoch): {said}"


NUMPY_FLOPS = """
import json, time
import numpy as np
rng = np.random.default_rng(0)
def best(f, n):
    f()
    t = []
    for _ in range(n):
        s = time.perf_counter(); f(); t.append(time.perf_counter() - s)
    return min(t)
a = rng.standard_normal((2048, 2048), dtype=np.float32)
big = 2 * 2048**3 / best(lambda: a @ a, 10)
dims = [784, 1500, 2000, 1000, 10]
w = [rng.standard_normal((i, o), dtype=np.float32) for i, o in zip(dims, dims[1:])]
x = rng.standard_normal((32, 784), dtype=np.float32)
def step():
    acts = [x]
    for m in w:
        acts.append(acts[-1] @ m)
    g = np.ones_like(acts[-1])
    for i in reversed(range(len(w))):
        acts[i].T @ g
        g = g @ w[i].T
small = 6 * sum(m.size for m in w) * 32 / best(step, 50)
print(json.dumps({"matmul_2048_flops": big, "mlp_matmuls_batch32_flops": small}))
"""


def bench_numpy() -> dict:
    """NumPy's float32 matmul FLOP/s, in a process without the machine's OpenBLAS overrides."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    }
    done = subprocess.run(
        [sys.executable, "-c", NUMPY_FLOPS], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def mlp_fraction(training: list[dict], numpy_flops: dict) -> dict:
    """The MLP's training FLOP/s in the project's epoch against NumPy's."""
    mlp = next(r for r in training if r["variant"] == "mlp")
    flops = 6 * mlp["params"] * mlp["n_train"] / mlp["project_epoch_s"]
    return {
        "mlp_train_flops": flops,
        **numpy_flops,
        "fraction_of_matmul": flops / numpy_flops["matmul_2048_flops"],
        "fraction_of_batch32_matmuls": flops / numpy_flops["mlp_matmuls_batch32_flops"],
        "goal": GOALS["mlp_matmul_fraction"],
    }


def bench_concurrency(fashion_dir: Path, out: Path, limit: int) -> list[dict]:
    """The preset on a slice, once per concurrency policy: wall time and the tasks' own times."""
    from kfp.local import subprocess_task_handler

    from cnnvsmlp_pipelines.local_runner import Concurrency, run_local

    task_times: list[float] = []
    original = subprocess_task_handler.run_local_subprocess

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            task_times.append(time.perf_counter() - start)

    config = load_config(
        "fashion-mnist", ["epochs=1", f"limit={limit}", "source=idx", f"idx_dir={fashion_dir}"]
    )
    rows = []
    subprocess_task_handler.run_local_subprocess = timed
    try:
        for policy in (Concurrency(2, None), Concurrency(2, 1), Concurrency(1, None)):
            task_times.clear()
            start = time.perf_counter()
            run_local("compare", config, runs_dir=out, quiet=True, concurrency=policy)
            wall = time.perf_counter() - start
            rows.append(
                {
                    "trainings_at_once": policy.parallel,
                    "threads_per_task": policy.threads or os.cpu_count(),
                    "tasks": len(task_times),
                    "wall_s": wall,
                    "sum_of_tasks_s": sum(task_times),
                    "sum_over_wall": sum(task_times) / wall,
                }
            )
    finally:
        subprocess_task_handler.run_local_subprocess = original
    return rows


def _variants(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=2, help="plain/project pairs per variant (best of them)"
    )
    parser.add_argument(
        "--slice", type=int, default=12000, help="images for the runner policies (0: skip them)"
    )
    parser.add_argument(
        "--variants",
        type=_variants,
        default=",".join(load_config("fashion-mnist").variants),
        help="variants to time (default: the fashion-mnist preset's)",
    )
    parser.add_argument(
        "--backends-only", action="store_true", help="only the tensorflow-against-jax table"
    )
    parser.add_argument("--limit", type=int, help="images of each split for --backends-only")
    parser.add_argument(
        "--training-only", action="store_true", help="only the train()-against-plain-fit table"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run every benchmark, print the results and write ``build/bench.json``."""
    args = _parser().parse_args(argv)
    if args.backends_only:
        main_backends(args.variants, args.limit)
    else:
        main_all(args)


def _prepared(folder: Path, tmp: Path, limit: int | None = None) -> Path:
    """Fashion-MNIST from the IDX files in ``folder``, prepared as the preset splits it."""
    data_dir = tmp / "fashion-mnist"
    split = load_config("fashion-mnist").split
    prepare("fashion-mnist", DataSource(kind="idx", idx_dir=str(folder)), split, data_dir, limit)
    return data_dir


def main_all(args: argparse.Namespace) -> None:
    """Every table, each printed as it is done; all of them in ``build/bench.json``."""
    folder = Path(DATASETS["fashion-mnist"].default_idx_dir)
    reader = bench_reader(folder)
    print(
        f"reader: gunzip {reader['gunzip_s']:.3f} s, read + normalise "
        f"{reader['read_normalise_s']:.3f} s, ratio {reader['ratio']:.2f} (goal <= 2)",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = _prepared(folder, Path(tmp))
        training = bench_training(data_dir, Path(tmp) / "runs", args.rounds, args.variants)
        print(tabulate(training, headers="keys", floatfmt=".4g"), flush=True)
        if args.training_only:
            _write({"reader": reader, "training": training})
            return
        rest = _after_training(folder, data_dir, Path(tmp), args.variants, training, args.slice)
    _write({"reader": reader, "training": training, **rest})


def _after_training(
    folder: Path, data_dir: Path, tmp: Path, variants: list[str], training: list[dict], limit: int
) -> dict:
    """The overheads, the MLP's FLOP/s, the backends and the runner policies, printed."""
    extra = _one("overheads", data_dir, "mlp", tmp / "overheads")
    print("mlp task besides the steps: " + ", ".join(f"{k} {v:.3g}" for k, v in extra.items()))
    flops = mlp_fraction(training, bench_numpy()) if "mlp" in variants else {}
    if flops:
        print(
            f"mlp: {flops['mlp_train_flops'] / 1e9:.1f} GFLOP/s training = "
            f"{flops['fraction_of_matmul']:.2f} of numpy's 2048x2048 matmul "
            f"({flops['matmul_2048_flops'] / 1e9:.0f} GFLOP/s; goal >= {flops['goal']}), "
            f"{flops['fraction_of_batch32_matmuls']:.2f} of numpy's own batch-32 MLP matmuls "
            f"({flops['mlp_matmuls_batch32_flops'] / 1e9:.0f} GFLOP/s)",
            flush=True,
        )
    backends, faster = bench_backends(data_dir, tmp / "backends", variants)
    print(tabulate(backends, headers="keys", floatfmt=".4g"), flush=True)
    print(faster, flush=True)
    runner = []
    if limit:
        runner = bench_concurrency(folder, tmp / "pipeline-runs", limit)
        print(tabulate(runner, headers="keys", floatfmt=".3g"))
    return {
        "overheads": extra,
        "mlp_flops": flops,
        "runner": runner,
        "backends": {"rows": backends, "faster": faster},
    }


def _write(results: dict) -> None:
    out = Path("build")
    out.mkdir(exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"bench: wrote {out / 'bench.json'}")


def main_backends(variants: list[str], limit: int | None) -> None:
    """The backend table alone, on the real Fashion-MNIST or a slice of it."""
    folder = Path(DATASETS["fashion-mnist"].default_idx_dir)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = _prepared(folder, Path(tmp), limit)
        rows, faster = bench_backends(data_dir, Path(tmp) / "backends", variants)
    print(tabulate(rows, headers="keys", floatfmt=".4g"))
    print(faster + (f" (a slice of {limit} images of each split)" if limit else ""))


if __name__ == "__main__":
    main()
