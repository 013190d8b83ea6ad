"""The canvas-like development set: reproducible, varied, and readable by the preprocessing."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from training.devset import CANVASES, VARIANTS, generate
from training.preprocess import preprocess


def _image(data_url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


def test_generation_is_seeded(mnist):
    first = generate(mnist.x_test, mnist.y_test, per_variant=3, seed=5)
    second = generate(mnist.x_test, mnist.y_test, per_variant=3, seed=5)
    other = generate(mnist.x_test, mnist.y_test, per_variant=3, seed=6)
    assert [d.data_url for d in first] == [d.data_url for d in second]
    assert [d.data_url for d in first] != [d.data_url for d in other]


def test_every_variant_is_present_and_labelled_from_the_test_split(mnist):
    drawings = generate(mnist.x_test, mnist.y_test, per_variant=4, seed=0)
    assert sorted({d.variant for d in drawings}) == sorted(VARIANTS)
    for drawing in drawings:
        assert drawing.label == mnist.y_test[drawing.mnist_index]
        assert drawing.data_url.startswith(("data:image/png;base64,", "data:image/jpeg;base64,"))


def test_variants_look_like_what_they_claim(mnist):
    drawings = {d.variant: d for d in generate(mnist.x_test, mnist.y_test, per_variant=1, seed=0)}
    assert _image(drawings["wide"].data_url).size == CANVASES["wide"]
    assert _image(drawings["jpeg"].data_url).format == "JPEG"
    transparent = np.asarray(_image(drawings["transparent"].data_url).convert("RGBA"))
    assert transparent[..., 3].min() == 0 and (transparent[..., 3] == 0).mean() > 0.5
    inverted = np.asarray(_image(drawings["inverted"].data_url).convert("L"))
    assert np.median(inverted) == 0
    tiny = np.asarray(_image(drawings["tiny"].data_url).convert("L"))
    rows = np.flatnonzero(tiny.min(axis=1) < 128)
    assert rows[-1] - rows[0] < 30


def test_every_drawing_preprocesses(mnist):
    for drawing in generate(mnist.x_test, mnist.y_test, per_variant=10, seed=2):
        assert preprocess(drawing.data_url).pixels.max() >= 200, drawing.variant
