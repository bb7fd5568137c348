"""Benchmarks (``make bench``): slow measurements that are not tests.

1. Reading and normalising Fashion-MNIST from the IDX files against only
   gunzipping them, in the same process (target: within 2x).
2. One epoch of every Fashion-MNIST variant with the project's ``train()``
   against the plain Keras script a user would write (``build_model``,
   ``compile(adam)``, ``fit(batch_size=32, validation_data=...)``), on the
   same data with the same seed, interleaved; the ratio plain / project
   (target: >= 1.3), with each one's test accuracy.
3. The MLP's training FLOP/s (6 x parameters x images per epoch) as a
   fraction of NumPy's float32 matmul FLOP/s measured in the same run
   (target: >= 0.35), beside NumPy's own FLOP/s for the MLP's matmuls at
   batch 32.
4. What an MLP task spends besides its steps: TensorFlow's import, loading
   the data, the validation pass (batch 32 and 1024), the epoch's snapshot.
5. The local runner on a slice of the preset under each concurrency policy
   (trainings at once x threads per task): its wall time against the sum of
   its tasks' own times.
6. One epoch of every variant with ``train()`` on each Keras backend
   (``train.backend``: tensorflow and jax), each in a fresh process, side by
   side: seconds per epoch (XLA's or TensorFlow's tracing included, as a
   one-epoch run pays it) and test accuracy, and which backend is faster
   here. ``--backends-only --limit N`` runs this table alone on a slice.

``--training-only`` runs 1 and 2 alone.

Results print as tables and are written to ``build/bench.json``. Timings on a
shared machine are noisy: compare the ratios within one run.
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

from cnnvsmlp.config import DataSource, RunSpec, load_config
from cnnvsmlp.data import prepare
from cnnvsmlp.data.idx import read_idx_dir
from cnnvsmlp.data.spec import DATASETS
from cnnvsmlp.data.store import load_split

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


def plain_fit(data_dir: Path, variant: str, seed: int, epochs: int = 1) -> dict:
    """The script a user would write: build, compile with Adam, fit with batch 32."""
    import keras

    from cnnvsmlp.models import build_model

    x, y = load_split(data_dir, "train")
    xv, yv = load_split(data_dir, "validation")
    xt, yt = load_split(data_dir, "test")
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    model = build_model(variant, (28, 28, 1), 10)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=epochs, validation_data=(xv, yv), verbose=0)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(xt, yt, batch_size=1024, verbose=0)
    return {"s": seconds, "test_accuracy": float(accuracy)}


def project_train(data_dir: Path, variant: str, seed: int, out: Path) -> dict:
    """One epoch of the project's ``train()``, everything it writes included."""
    from cnnvsmlp.evaluate import evaluate
    from cnnvsmlp.train import train

    config = load_config("fashion-mnist", ["epochs=1"])
    start = time.perf_counter()
    trained = train(data_dir, RunSpec(variant=variant, repeat=0, seed=seed), config.train, out, 0)
    seconds = time.perf_counter() - start
    scored = evaluate(out, data_dir, out / "eval.json")
    return {
        "s": seconds,
        "epoch_s": trained.history[0].time_s,
        "test_accuracy": scored.accuracy,
        "params": trained.params,
        "inference_images_per_s": scored.inference_images_per_s,
        "n_train": trained.n_train,
    }


def _one(kind: str, data_dir: Path, variant: str, out: Path) -> dict:
    """One measurement in a fresh process, so neither side inherits the other's TensorFlow state."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.bench",
            "--one",
            kind,
            str(data_dir),
            variant,
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench: {kind} {variant} failed:\n{done.stderr[-2000:]}")
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


def backend_train(data_dir: Path, variant: str, backend_name: str, out: Path) -> dict:
    """One epoch of ``train()`` on a Keras backend, set before Keras loads, then its test score."""
    from cnnvsmlp import backend

    backend.use(backend_name)
    from cnnvsmlp.evaluate import evaluate
    from cnnvsmlp.train import train

    config = load_config("fashion-mnist", ["epochs=1", f"train.backend={backend_name}"])
    trained = train(data_dir, RunSpec(variant=variant, repeat=0, seed=0), config.train, out, 0)
    scored = evaluate(out, data_dir, out / "eval.json")
    return {
        "epoch_s": trained.history[0].time_s,
        "test_accuracy": scored.accuracy,
        "backend": trained.hardware.backend,
        "n_train": trained.n_train,
    }


def bench_backends(data_dir: Path, out: Path, variants: list[str]) -> tuple[list[dict], str]:
    """Each variant's epoch on tensorflow and on jax, each in a fresh process.

    Returns:
        One row per variant, and the sentence that says which backend is faster here.
    """
    rows = []
    for variant in variants:
        result = {}
        for name in ("tensorflow", "jax"):
            cmd = [sys.executable, "-m", "tools.bench", "--on-backend", name]
            cmd += [str(data_dir), variant, str(out / f"{variant}-{name}")]
            env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
            done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"bench: {variant} on {name} failed:\n{done.stderr[-2000:]}")
            result[name] = json.loads(done.stdout.strip().splitlines()[-1])
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


def overheads(data_dir: Path, out: Path) -> dict:
    """What an MLP training task spends besides its training steps, each timed once."""
    start = time.perf_counter()
    import tensorflow as tf  # noqa: F401 - the import is what is timed

    from cnnvsmlp.models import build_model
    from cnnvsmlp.resume import Training

    import_s = time.perf_counter() - start
    start = time.perf_counter()
    xv, yv = load_split(data_dir, "validation")
    x, y = load_split(data_dir, "train")
    load_s = time.perf_counter() - start
    model = build_model("mlp", (28, 28, 1), 10)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:64], y[:64], batch_size=32, verbose=0)
    result = {"tensorflow_import_s": import_s, "load_train_and_validation_s": load_s}
    for batch in (32, 1024):
        model.evaluate(xv[:batch], yv[:batch], batch_size=batch, verbose=0)  # traced, not timed
        start = time.perf_counter()
        model.evaluate(xv, yv, batch_size=batch, verbose=0)
        result[f"validation_pass_batch_{batch}_s"] = time.perf_counter() - start
    from cnnvsmlp.records import Epoch

    row = Epoch(epoch=1, loss=0, accuracy=0, val_loss=0, val_accuracy=0, time_s=0)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    config = load_config("fashion-mnist").train
    placeholder = "0" * 64  # the key names a training; a snapshot's cost does not depend on it
    run = RunSpec(variant="mlp", repeat=0, seed=0)
    Training(out, placeholder, placeholder, run, config).save_epoch(model, [row])
    result["epoch_snapshot_s"] = time.perf_counter() - start
    result["epoch_snapshot_bytes"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return result


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


def main(argv: list[str] | None = None) -> None:
    """Run every benchmark, print the results and write ``build/bench.json``."""
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=2, help="plain/project pairs per variant (best of them)"
    )
    parser.add_argument(
        "--slice", type=int, default=12000, help="images for the runner policies (0: skip them)"
    )
    parser.add_argument(
        "--variants",
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
    parser.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--on-backend", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.on_backend:  # one backend's epoch, in its own process (see bench_backends)
        name, data_dir, variant, out = args.on_backend
        print(json.dumps(backend_train(Path(data_dir), variant, name, Path(out))))
        return
    if args.backends_only:
        main_backends(args.variants, args.limit)
        return
    if args.one:  # a single measurement, in its own process (see _one)
        kind, data_dir, variant, out = args.one
        if kind == "plain":
            result = plain_fit(Path(data_dir), variant, seed=0)
        elif kind == "overheads":
            result = overheads(Path(data_dir), Path(out))
        else:
            result = project_train(Path(data_dir), variant, 0, Path(out))
        print(json.dumps(result))
        return

    folder = Path(DATASETS["fashion-mnist"].default_idx_dir)
    reader = bench_reader(folder)
    print(
        f"reader: gunzip {reader['gunzip_s']:.3f} s, read + normalise "
        f"{reader['read_normalise_s']:.3f} s, ratio {reader['ratio']:.2f} (goal <= 2)",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "fashion-mnist"
        config = load_config("fashion-mnist")
        prepare(
            "fashion-mnist", DataSource(kind="idx", idx_dir=str(folder)), config.split, data_dir
        )
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        training = bench_training(data_dir, Path(tmp) / "runs", args.rounds, variants)
        print(tabulate(training, headers="keys", floatfmt=".4g"), flush=True)
        if args.training_only:
            _write({"reader": reader, "training": training})
            return
        extra = _one("overheads", data_dir, "mlp", Path(tmp) / "overheads")
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
        backends, faster = bench_backends(data_dir, Path(tmp) / "backends", variants)
        print(tabulate(backends, headers="keys", floatfmt=".4g"), flush=True)
        print(faster, flush=True)
        runner = []
        if args.slice:
            runner = bench_concurrency(folder, Path(tmp) / "pipeline-runs", args.slice)
            print(tabulate(runner, headers="keys", floatfmt=".3g"))
    _write(
        {
            "reader": reader,
            "training": training,
            "overheads": extra,
            "mlp_flops": flops,
            "runner": runner,
            "backends": {"rows": backends, "faster": faster},
        }
    )


def _write(results: dict) -> None:
    out = Path("build")
    out.mkdir(exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"bench: wrote {out / 'bench.json'}")


def main_backends(variants: str, limit: int | None) -> None:
    """The backend table alone, on the real Fashion-MNIST or a slice of it."""
    folder = Path(DATASETS["fashion-mnist"].default_idx_dir)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "fashion-mnist"
        split = load_config("fashion-mnist").split
        prepare(
            "fashion-mnist", DataSource(kind="idx", idx_dir=str(folder)), split, data_dir, limit
        )
        names = [v.strip() for v in variants.split(",") if v.strip()]
        rows, faster = bench_backends(data_dir, Path(tmp) / "backends", names)
    print(tabulate(rows, headers="keys", floatfmt=".4g"))
    print(faster + (f" (a slice of {limit} images of each split)" if limit else ""))


if __name__ == "__main__":
    main()
