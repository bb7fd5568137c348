"""The batch-norm measurements behind the README's "Batch normalisation and reproducibility".

Not a test and not part of ``make bench``: one run takes minutes per epoch.
It trains one variant as :func:`cnnvsmlp.train.train` does (the same seeding,
model, optimizer and plain ``model.fit``, batch 32, shuffled) and writes JSON.

Per epoch, with ``--modes``, it scores the validation split three ways:

- ``val_accuracy``: Keras' own, in inference mode (the moving statistics);
- ``val_acc_train_mode``: in training mode, batches of 32 (each batch's own
  statistics; the weights, moving statistics included, are restored after);
- ``val_acc_reestimated``: in inference mode after setting each
  BatchNormalization's statistics to its input's mean and variance over
  the first 10,000 training images, layer by layer (restored after).

With ``--quick`` it trains without validation and prints a digest of every
weight, to tell bit-identical trainings apart. oneDNN is chosen by the
environment (``TF_ENABLE_ONEDNN_OPTS``, ``ONEDNN_MAX_CPU_ISA``), before the
process starts. Examples::

    cnnvsmlp prepare --out data/fashion-mnist
    TF_ENABLE_ONEDNN_OPTS=0 python -m tools.batchnorm_study --modes --out bn.json
    python -m tools.batchnorm_study --modes --momentum 0.9 --out bn-m90.json
    python -m tools.batchnorm_study --quick --n 1600 --epochs 1 --threads 1 --out q.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time

import numpy as np


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.batchnorm_study")
    parser.add_argument("--variant", default="cnn-3conv-bn")
    parser.add_argument("--data", default="data/fashion-mnist", help="prepared data set")
    parser.add_argument("--n", type=int, default=0, help="first N training images (0: all)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: default)")
    parser.add_argument("--momentum", type=float, default=None, help="BatchNorm momentum")
    parser.add_argument("--modes", action="store_true", help="score three ways per epoch")
    parser.add_argument("--quick", action="store_true", help="train, print a weight digest")
    parser.add_argument("--out", required=True)
    return parser


def main(argv: list[str] | None = None) -> dict:
    """Run one measurement, write its JSON to ``--out`` and return it."""
    args = _parser().parse_args(argv)
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    from cnnvsmlp.data.store import load_split
    from cnnvsmlp.records import Hardware

    data = [load_split(args.data, split) for split in ("train", "validation", "test")]
    if args.n:
        data[0] = (data[0][0][: args.n], data[0][1][: args.n])
    model, norms = _model(args)
    out = {
        "args": vars(args),
        "environment": {
            k: os.environ.get(k) for k in ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA")
        },
        "hardware": Hardware.detect().model_dump(),
    }
    if args.quick:
        x_train, y_train = data[0]
        history = model.fit(
            x_train, y_train, batch_size=32, epochs=args.epochs, shuffle=True, verbose=0
        )
        out.update(digest=_digest(model), loss=[float(v) for v in history.history["loss"]])
    else:
        out.update(_scored_training(args, model, norms, data))
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps({k: v for k, v in out.items() if k not in ("history", "hardware")}))
    return out


def _model(args: argparse.Namespace) -> tuple:
    """The variant, seeded as ``train()`` seeds it, compiled with Adam; its BatchNormalizations."""
    import keras

    from cnnvsmlp.backend import make_deterministic
    from cnnvsmlp.models import build_model

    make_deterministic(args.seed)
    model = build_model(args.variant, (28, 28, 1), 10)
    norms = [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]
    if args.momentum is not None:
        for layer in norms:
            layer.momentum = args.momentum
    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model, norms


def _digest(model) -> str:
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()[:16]


def _accuracy(probs, y) -> float:
    return float((np.argmax(probs, 1) == y).mean())


def _score_train_mode(model, train_mode, x, y) -> float:
    import tensorflow as tf

    saved = model.get_weights()  # training mode updates the moving statistics
    probs = [np.asarray(train_mode(tf.constant(x[i : i + 32]))) for i in range(0, len(x), 32)]
    model.set_weights(saved)
    return _accuracy(np.concatenate(probs), y)


def _score_reestimated(model, norms, x_train, x, y) -> float:
    import keras

    saved = model.get_weights()
    for layer in norms:
        below = keras.Model(model.inputs, model.layers[model.layers.index(layer) - 1].output)
        feats = below.predict(x_train[:10000], batch_size=500, verbose=0)
        axes = tuple(range(feats.ndim - 1))
        layer.moving_mean.assign(feats.mean(axis=axes).astype("float32"))
        layer.moving_variance.assign(feats.astype("float64").var(axis=axes).astype("float32"))
    result = _accuracy(model.predict(x, batch_size=500, verbose=0), y)
    model.set_weights(saved)
    return result


def _scored_training(args: argparse.Namespace, model, norms: list, data: list) -> dict:
    """Train with validation, one JSON row per epoch (the other two scores with ``--modes``)."""
    import keras
    import tensorflow as tf

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = data
    train_mode = tf.function(lambda b: model(b, training=True), reduce_retracing=True)

    def other_scores(prefix: str, x, y) -> dict:
        if not (args.modes and norms):
            return {}
        return {
            f"{prefix}_acc_train_mode": _score_train_mode(model, train_mode, x, y),
            f"{prefix}_acc_reestimated": _score_reestimated(model, norms, x_train, x, y),
        }

    rows = []

    class Scores(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            row = {"epoch": epoch + 1, "time_s": time.perf_counter() - self.start}
            row |= {k: float(v) for k, v in (logs or {}).items()}
            row["digest"] = _digest(model)
            row |= other_scores("val", x_val, y_val)
            rows.append(row)
            print(json.dumps(row), flush=True)

    model.fit(
        x_train,
        y_train,
        batch_size=32,
        epochs=args.epochs,
        validation_data=(x_val, y_val),
        shuffle=True,
        callbacks=[Scores()],
        verbose=0,
    )
    out = {"history": rows, "digest": _digest(model)}
    out["test_accuracy"] = _accuracy(model.predict(x_test, batch_size=500, verbose=0), y_test)
    return out | other_scores("test", x_test, y_test)


if __name__ == "__main__":
    main()
