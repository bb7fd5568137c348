"""Shifted test images: each moved ``k`` pixels in one of eight directions, zero fill.

The direction is drawn per image from a fixed seed: every model sees the very same images.
"""

from __future__ import annotations

import numpy as np

SHIFTS = (1, 2, 3, 4)
SHIFT_SEED = 0
DIRECTIONS = np.array(
    [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)], dtype=np.int64
)


def translate(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """A batch ``(N, H, W, ...)`` moved ``dy`` pixels down and ``dx`` right, zero filled."""
    height, width = images.shape[1:3]
    if abs(dy) >= height or abs(dx) >= width:
        raise ValueError(f"shift ({dy}, {dx}) moves a {height} x {width} image out of its frame")
    out = np.zeros_like(images)
    out[:, max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = images[
        :, max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
    ]
    return out


def directions(n: int, shift: int, seed: int = SHIFT_SEED) -> np.ndarray:
    """The ``(dy, dx)`` of each of ``n`` images, ``max(|dy|, |dx|) == shift``, drawn by ``seed``."""
    rng = np.random.default_rng([seed, shift])
    return DIRECTIONS[rng.integers(0, len(DIRECTIONS), size=n)] * shift


def shift_images(images: np.ndarray, shift: int, seed: int = SHIFT_SEED) -> np.ndarray:
    """The images, in their order, each moved ``shift`` pixels in its own :func:`directions`."""
    offsets = directions(len(images), shift, seed)
    out = np.zeros_like(images)
    for dy, dx in np.unique(offsets, axis=0):
        chosen = np.flatnonzero((offsets[:, 0] == dy) & (offsets[:, 1] == dx))
        out[chosen] = translate(images[chosen], int(dy), int(dx))
    return out
