"""Procedural doodles: seeded to the byte, every class drawn, strokes as the canvas sends them."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from training.doodles import CANVAS, CLASSES, doodle_batch, draw
from training.preprocess import preprocess


def test_same_seed_same_bytes():
    first, again, other = doodle_batch(24, seed=5), doodle_batch(24, seed=5), doodle_batch(24, seed=6)
    assert [d.png for d in first] == [d.png for d in again]
    assert [d.strokes for d in first] == [d.strokes for d in again]
    assert [d.label for d in first] == [d.label for d in again]
    assert [d.png for d in first] != [d.png for d in other]


def test_batches_are_balanced_and_labelled_by_class_index():
    doodles = doodle_batch(60, seed=0)
    assert np.bincount([d.label for d in doodles], minlength=6).tolist() == [10] * 6
    assert all(CLASSES[d.label] == d.name for d in doodles)
    # A subset of the classes in another order: labels follow the order asked for.
    subset = doodle_batch(4, seed=0, classes=("zigzag", "circle"))
    assert all(("zigzag", "circle")[d.label] == d.name for d in subset)


@pytest.mark.parametrize("name", CLASSES)
def test_every_class_renders_as_the_canvas_sends_it(name):
    rng = np.random.default_rng(11)
    for _ in range(5):
        doodle = draw(name, rng)
        image = Image.open(io.BytesIO(doodle.png))
        assert image.format == "PNG" and image.size == (CANVAS, CANVAS)
        grey = np.asarray(image.convert("L"))
        # Dark ink on white paper: mostly paper, some solid ink.
        assert np.mean(grey == 255) > 0.4 and grey.min() < 40
        assert 0.01 < np.mean(grey < 128) < 0.5
        _check_strokes(doodle.strokes)
        pixels = preprocess(doodle.data_url).pixels
        assert pixels.shape == (28, 28) and 0.04 <= np.mean(pixels > 64) <= 0.5


def _check_strokes(strokes: list[dict]) -> None:
    assert strokes and all(set(stroke) == {"x", "y", "t"} for stroke in strokes)
    times = [t for stroke in strokes for t in stroke["t"]]
    assert times[0] == 0 and all(b > a for a, b in zip(times, times[1:]))
    for stroke in strokes:
        assert len(stroke["x"]) == len(stroke["y"]) == len(stroke["t"]) >= 2
        for value in stroke["x"] + stroke["y"]:
            assert math.isfinite(value) and 0 <= value <= CANVAS


def test_unknown_class_is_refused():
    with pytest.raises(ValueError, match="unknown doodle"):
        draw("hexagon", np.random.default_rng(0))
