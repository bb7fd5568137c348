"""Shifted test images: every test image translated by a few pixels, zero fill.

For a shift of ``k`` pixels each image moves ``k`` pixels in one of the eight
directions (up, down, left, right and the four diagonals: ``dy`` and ``dx``
each in ``{-k, 0, k}``, not both 0), drawn per image from a fixed seed, so
every model is scored on the very same shifted images. What moves out of
the image's frame is lost; what moves in is 0 (the background).
"""

from __future__ import annotations

import numpy as np

SHIFTS = (1, 2, 3, 4)
SHIFT_SEED = 0
DIRECTIONS = np.array(
    [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)], dtype=np.int64
)


def translate(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Move every image of a batch ``dy`` pixels down and ``dx`` pixels right, zero fill.

    Args:
        images: a batch-first array ``(N, H, W, ...)``.
        dy: rows down (negative: up).
        dx: columns right (negative: left).

    Returns:
        A new array of the same shape and dtype: ``out[:, y + dy, x + dx] = images[:, y, x]``.

    Raises:
        ValueError: a shift as large as the image.
    """
    height, width = images.shape[1:3]
    if abs(dy) >= height or abs(dx) >= width:
        raise ValueError(f"shift ({dy}, {dx}) moves a {height} x {width} image out of its frame")
    out = np.zeros_like(images)
    out[:, max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = images[
        :, max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
    ]
    return out


def directions(n: int, shift: int, seed: int = SHIFT_SEED) -> np.ndarray:
    """The ``(dy, dx)`` of each of ``n`` images for a shift of ``shift`` pixels.

    Args:
        n: images.
        shift: pixels along each axis that moves.
        seed: the seed of the directions.

    Returns:
        An ``(n, 2)`` integer array; every row has ``max(|dy|, |dx|) == shift``.
    """
    rng = np.random.default_rng([seed, shift])
    return DIRECTIONS[rng.integers(0, len(DIRECTIONS), size=n)] * shift


def shift_images(images: np.ndarray, shift: int, seed: int = SHIFT_SEED) -> np.ndarray:
    """The images, each moved ``shift`` pixels in its own direction from :func:`directions`.

    Args:
        images: a batch-first array ``(N, H, W, ...)``.
        shift: pixels along each axis that moves.
        seed: the seed of the directions.

    Returns:
        The shifted images, in the same order.
    """
    offsets = directions(len(images), shift, seed)
    out = np.zeros_like(images)
    for dy, dx in np.unique(offsets, axis=0):
        chosen = np.flatnonzero((offsets[:, 0] == dy) & (offsets[:, 1] == dx))
        out[chosen] = translate(images[chosen], int(dy), int(dx))
    return out
