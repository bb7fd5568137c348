"""The shifted test images move every pixel exactly, the same way for every model."""

from __future__ import annotations

import numpy as np
import pytest

from cnnvsmlp.evaluate import SHIFTS, directions, shift_images, translate


def _image() -> np.ndarray:
    return (np.arange(28 * 28, dtype=np.float32).reshape(1, 28, 28, 1) + 1) / 1000


@pytest.mark.parametrize("dy, dx", [(1, 0), (0, -2), (3, 3), (-4, 1), (-2, -3), (4, -4)])
def test_translate_moves_every_pixel_exactly(dy, dx):
    image = _image()
    out = translate(image, dy, dx)
    for y in range(28):
        for x in range(28):
            src_y, src_x = y - dy, x - dx
            inside = 0 <= src_y < 28 and 0 <= src_x < 28
            expected = image[0, src_y, src_x, 0] if inside else 0.0
            assert out[0, y, x, 0] == expected
    # The same as a slice: what stays in the frame is the source moved by (dy, dx).
    ys, xs = slice(max(dy, 0), 28 + min(dy, 0)), slice(max(dx, 0), 28 + min(dx, 0))
    src = image[0, max(-dy, 0) : 28 + min(-dy, 0), max(-dx, 0) : 28 + min(-dx, 0)]
    np.testing.assert_array_equal(out[0, ys, xs], src)
    assert np.count_nonzero(out) == (28 - abs(dy)) * (28 - abs(dx))
    assert out.dtype == image.dtype and out.shape == image.shape


def test_translate_refuses_a_shift_out_of_the_frame():
    with pytest.raises(ValueError, match=r"shift \(28, 0\) moves a 28 x 28 image out"):
        translate(_image(), 28, 0)


def test_directions_are_fixed_by_the_seed_and_as_far_as_the_shift():
    for shift in SHIFTS:
        offsets = directions(10_000, shift)
        assert (np.abs(offsets).max(axis=1) == shift).all()
        assert set(np.unique(offsets)) <= {-shift, 0, shift}
        # every one of the eight directions occurs
        assert len(np.unique(offsets, axis=0)) == 8
        np.testing.assert_array_equal(offsets, directions(10_000, shift))
    assert not np.array_equal(directions(100, 1, seed=0), directions(100, 1, seed=1))


def test_shift_images_moves_each_image_in_its_own_direction():
    rng = np.random.default_rng(3)
    images = rng.integers(1, 255, size=(50, 28, 28, 1)).astype(np.uint8)
    out = shift_images(images, 2)
    for image, moved, (dy, dx) in zip(images, out, directions(50, 2), strict=True):
        np.testing.assert_array_equal(moved, translate(image[None], int(dy), int(dx))[0])
    # the same images for every caller, and the input is left alone
    np.testing.assert_array_equal(out, shift_images(images, 2))
    assert np.count_nonzero(images == 0) == 0


def test_evaluation_scores_the_model_on_every_shift():
    import keras

    from cnnvsmlp.evaluate import evaluate_shifted

    rng = np.random.default_rng(0)
    images = rng.random((64, 28, 28, 1), dtype=np.float32)
    labels = rng.integers(0, 10, size=64)
    model = keras.Sequential(
        [keras.Input(shape=(28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    scored = evaluate_shifted(model, images, labels, shifts=(1, 3))
    assert [(s.shift, s.seed) for s in scored] == [(1, 0), (3, 0)]
    for s in scored:
        expected = model.predict(shift_images(images, s.shift), verbose=0).argmax(axis=1)
        assert s.predictions == expected.tolist()
        assert s.accuracy == np.mean(expected == labels)
    assert scored[0].predictions != scored[1].predictions
