"""The keys that name a training and an evaluation: equal keys compute the same numbers.

A key is a sha256 over the data set, the run, the config, the source of the code
that computes and the machine's numerics (docs/resume.md).
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

from cnnvsmlp.config import SEED_SOURCES, RunSpec, TrainConfig
from cnnvsmlp.models import user_source
from cnnvsmlp.records import Hardware

# The library modules whose source decides what a training computes.
TRAINING_CODE = (
    "train.py",
    "adam.py",
    "resume.py",
    "keys.py",
    "backend.py",
    "models.py",
    "data/store.py",
    "stopping.py",
    "efficiency/subsets.py",
)
# The library modules whose source decides what an evaluation computes.
EVALUATION_CODE = ("evaluate.py", "shift.py", "backend.py", "data/store.py")


def sha256_file(path: Path) -> str:
    """The sha256 of a file's content."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def code_digest(names: tuple[str, ...] = TRAINING_CODE) -> str:
    """The sha256 of the source of the library modules ``names``."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    return digest.hexdigest()


def _digest(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def data_identity(meta: dict) -> dict:
    """What of a data set's ``metadata.json`` counts in a key: not the folder it came from."""
    return {k: v for k, v in meta.items() if not (k == "source" and meta.get("input_sha256"))}


def training_key(
    meta: dict, run: RunSpec, config: TrainConfig, hardware: Hardware, epochs: bool = True
) -> str:
    """The sha256 naming a training: equal keys train the same weights, bit for bit.

    Not counted: the repeat's number, a "subset" as large as the training
    split, ``keep_checkpoints``, and without ``epochs`` the epoch count (what
    an epoch's state depends on: epoch 2's state is the same whether 2 or 5
    epochs were asked for).
    """
    untrained = {"keep_checkpoints"} | (set() if epochs else {"epochs"})
    if config.early_stopping is None:
        untrained.add("early_stopping")  # no early stopping counts as before it existed
    parts = {
        "data": data_identity(meta),
        "variant": run.variant,
        "seed": run.seed,
        **({"model_source": source} if (source := user_source(run.variant)) else {}),
        "train": config.model_dump(mode="json", exclude=untrained),
        "code": code_digest(),
        "keras": metadata.version("keras"),  # keras.__version__, without loading TensorFlow
        "numerics": list(hardware.numerics()),
    }
    own = {s: run.seed_of(s) for s in SEED_SOURCES if run.seed_of(s) != run.seed}
    if own:
        parts["seeds"] = own  # a source held at another seed than the run's
    whole = meta.get("counts", {}).get("train")
    if run.n_train is not None and (whole is None or run.n_train < whole):
        parts["n_train"] = run.n_train  # cnnvsmlp.efficiency's subset: n images of the seed's order
    return _digest(parts)


def evaluation_key(model: Path, meta: dict, hardware: Hardware) -> str:
    """The sha256 naming an evaluation: the model's bytes, the data, the code and the numerics."""
    return _digest(
        {
            "model": sha256_file(model),
            "data": data_identity(meta),
            "code": code_digest(EVALUATION_CODE),
            "keras": metadata.version("keras"),
            "numerics": list(hardware.numerics()),
        }
    )


def machine_memo(store: str | None) -> Path | None:
    """The folder where a local store remembers each environment's :class:`Hardware`; else None.

    With it a task computes its keys without loading TensorFlow, so a reused
    training or evaluation costs only the reading of its files.
    """
    if not store or "://" in store:
        return None
    return Path(store).parent  # the resume_uri: one memo for every scope in it
