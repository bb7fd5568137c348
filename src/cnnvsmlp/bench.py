"""Benchmarks (``make bench``): slow measurements that are not tests.

1. Reading and normalising Fashion-MNIST from the IDX files against only
   gunzipping them, in the same process (target: within 2x).
2. Training and inference throughput of every Fashion-MNIST variant for one
   epoch on the real data, with test accuracy.

Results print as a table and are written to ``build/bench.json``.
"""

from __future__ import annotations

import gzip
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

from cnnvsmlp.config import DataSource, load_config
from cnnvsmlp.data import DATASETS, load_split, prepare, read_idx_dir


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


def bench_training(data_dir: Path, out: Path) -> list[dict]:
    """One epoch of each Fashion-MNIST variant with the seed's hyperparameters."""
    from cnnvsmlp.config import RunSpec
    from cnnvsmlp.evaluate import evaluate
    from cnnvsmlp.train import train

    config = load_config("fashion-mnist", ["epochs=1"])
    rows = []
    for variant in config.variants:
        run = RunSpec(variant=variant, repeat=0, seed=0)
        trained = train(data_dir, run, config.train, out / variant, verbose=0)
        scored = evaluate(out / variant, data_dir, out / variant / "eval.json")
        rows.append(
            {
                "variant": variant,
                "params": trained.params,
                "epoch_s": trained.history[0].time_s,
                "train_images_per_s": trained.train_images_per_s,
                "inference_images_per_s": scored.inference_images_per_s,
                "test_accuracy": scored.accuracy,
            }
        )
    return rows


def main() -> None:
    """Run every benchmark and print the results."""
    folder = Path(DATASETS["fashion-mnist"].default_idx_dir)
    reader = bench_reader(folder)
    print(
        f"reader: gunzip {reader['gunzip_s']:.3f} s, read + normalise "
        f"{reader['read_normalise_s']:.3f} s, ratio {reader['ratio']:.2f} (target <= 2)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "fashion-mnist"
        config = load_config("fashion-mnist")
        prepare(
            "fashion-mnist", DataSource(kind="idx", idx_dir=str(folder)), config.split, data_dir
        )
        load_split(data_dir, "train")
        training = bench_training(data_dir, Path(tmp) / "runs")
    print(tabulate(training, headers="keys", floatfmt=".4g"))
    median = statistics.median(r["epoch_s"] for r in training)
    print(f"cpu cores: {os.cpu_count()}; median epoch {median:.1f} s")
    out = Path("build")
    out.mkdir(exist_ok=True)
    (out / "bench.json").write_text(json.dumps({"reader": reader, "training": training}, indent=2))
    print(f"bench: wrote {out / 'bench.json'}")


if __name__ == "__main__":
    main()
