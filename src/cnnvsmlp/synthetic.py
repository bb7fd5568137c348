"""A stand-in for EMNIST Letters where NIST's files cannot be downloaded.

Renders the letters A-Z (upper and lower case share a label, as in EMNIST)
in the fonts matplotlib ships, with random size, shift, rotation, stroke and
noise, and writes them in NIST's exact layout: gzip IDX files, images stored
transposed, labels 1..26. Any reader of the real files reads these; the
numbers a model reaches on them say nothing about handwriting.
"""

from __future__ import annotations

import gzip
import string
import struct
from pathlib import Path

import numpy as np
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from cnnvsmlp.data.spec import DATASETS

FONTS = ("DejaVu Sans", "DejaVu Serif", "DejaVu Sans Mono")


def _idx(array: np.ndarray) -> bytes:
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def render_letters(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Render ``n`` upright 28x28 letter images and their 0-based labels."""
    rng = np.random.default_rng(seed)
    fonts = [font_manager.findfont(name) for name in FONTS]
    labels = rng.integers(0, 26, size=n)
    images = np.empty((n, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        letter = string.ascii_uppercase[label]
        if rng.random() < 0.5:
            letter = letter.lower()
        font = ImageFont.truetype(fonts[rng.integers(len(fonts))], int(rng.integers(30, 44)))
        canvas = Image.new("L", (56, 56), 0)
        draw = ImageDraw.Draw(canvas)
        draw.text(
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
    """Write synthetic EMNIST Letters files exactly as NIST lays them out.

    Returns:
        The folder, usable as ``idx_dir`` of the ``emnist-letters`` preset.
    """
    spec = DATASETS["emnist-letters"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split, n, split_seed in (("train", n_train, seed), ("test", n_test, seed + 1)):
        images, labels = render_letters(n, split_seed)
        (out / spec.files[f"{split}_images"]).write_bytes(
            gzip.compress(_idx(images.transpose(0, 2, 1)))
        )
        (out / spec.files[f"{split}_labels"]).write_bytes(gzip.compress(_idx(labels + 1)))
    return out
