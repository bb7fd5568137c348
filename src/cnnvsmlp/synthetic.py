"""An EMNIST Letters stand-in in NIST's layout: letters in fonts, distorted; no handwriting."""

from __future__ import annotations

import gzip
import hashlib
import json
import string
import struct
from pathlib import Path

import numpy as np
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from cnnvsmlp.data.idx import SYNTHETIC_WRITER, WRITTEN_BY, read_file, read_idx, written_record
from cnnvsmlp.data.spec import DATASETS, DatasetSpec
from cnnvsmlp.errors import UserError
from cnnvsmlp.outputs import PARTIAL_PREFIX, build_dir, local_folder

FONTS = ("DejaVu Sans", "DejaVu Serif", "DejaVu Sans Mono")


def render_letters(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Render ``n`` upright 28x28 letter images and their 0-based labels."""
    rng = np.random.default_rng(seed)
    fonts = [font_manager.findfont(name) for name in FONTS]
    labels = rng.integers(0, 26, size=n)
    images = np.empty((n, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        letter = string.ascii_uppercase[label]
        letter = letter.lower() if rng.random() < 0.5 else letter
        font = ImageFont.truetype(fonts[rng.integers(len(fonts))], int(rng.integers(30, 44)))
        canvas = Image.new("L", (56, 56), 0)
        ImageDraw.Draw(canvas).text(
            (28 + rng.normal(0, 3), 28 + rng.normal(0, 3)),
            letter,
            fill=255,
            font=font,
            anchor="mm",
            stroke_width=int(rng.integers(0, 3)),
            stroke_fill=255,
        )
        canvas = canvas.rotate(rng.normal(0, 12), resample=Image.BILINEAR)
        canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
        small = np.asarray(canvas.resize((28, 28), Image.BILINEAR), dtype=np.float32)
        small += rng.normal(0, 12, size=small.shape)
        images[i] = np.clip(small, 0, 255).astype(np.uint8)
    return images, labels.astype(np.uint8)


def write_nist_layout(out_dir: str | Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Write synthetic EMNIST Letters files as NIST lays them out in a new folder, or its own."""
    spec = DATASETS["emnist-letters"]
    what = "synthetic EMNIST Letters"
    folder = local_folder(out_dir, what)
    _refuse_foreign(folder, spec, what)

    def build(into: Path) -> None:
        digests = {}
        for split, n, split_seed in (("train", n_train, seed), ("test", n_test, seed + 1)):
            images, labels = render_letters(n, split_seed)
            for kind, array in (("images", images.transpose(0, 2, 1)), ("labels", labels + 1)):
                name = spec.files[f"{split}_{kind}"]
                header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
                payload = header + array.tobytes()  # NIST's IDX: transposed, letters 1..26
                (into / name).write_bytes(gzip.compress(payload))
                digests[name] = hashlib.sha256(payload).hexdigest()
        record = {"writer": SYNTHETIC_WRITER, "seed": seed, "idx_sha256": digests}
        (into / WRITTEN_BY).write_text(json.dumps(record, indent=1) + "\n")

    build_dir(folder, {*spec.files.values(), WRITTEN_BY}, what, build)
    return folder


def _refuse_foreign(folder: Path, spec: DatasetSpec, what: str) -> None:
    """Refuse a folder holding any file that an earlier write of this function did not write."""
    if not folder.is_dir():
        return  # new, or a file: build_dir says so
    try:
        names = sorted(p.name for p in folder.iterdir() if not p.name.startswith(PARTIAL_PREFIX))
    except OSError as err:
        raise UserError(f"{folder}: cannot use it for the {what} ({err.strerror})") from None
    recorded = written_record(folder)[1]
    if names and recorded is None:
        raise UserError(
            f"{folder}: holds {names[0]!r} but no {WRITTEN_BY}: not files synth-emnist wrote "
            "(real EMNIST files have the same names); choose a new or empty folder"
        )
    for name in sorted(set(names) - {WRITTEN_BY}):
        if name not in recorded or _idx_digest(folder / name, spec) != recorded[name]:
            raise UserError(
                f"{folder}: holds {name!r}, which synth-emnist did not write there; "
                "choose a new or empty folder"
            )


def _idx_digest(path: Path, spec: DatasetSpec) -> str | None:
    ndim = 3 if "-images-" in path.name else 1
    try:
        return read_idx(read_file(path, spec.name), ndim, path.name, spec.name)[0]
    except UserError:
        return None
