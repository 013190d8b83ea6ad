"""A development set of canvas-like drawings, re-rendered from MNIST *test* digits.

Real handwriting the models never trained on, handed over the way browsers and people hand
it over: on canvases of many sizes and aspects, off-centre, tiny, thick or hairline, in
either polarity, in colour on grey paper, transparent, with stray dots, or as noisy JPEG.
Every drawing is a ``data:`` URL, as the web app receives it; generation is seeded.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from training.preprocess import FORMATS

VARIANTS = (
    "plain", "transparent", "inverted", "colour", "wide", "small_canvas",
    "tiny", "thick", "thin", "stray_dot", "jpeg",
)
# Variants' canvases (width, height); the others draw on a square one.
CANVASES = {"wide": (600, 300), "small_canvas": (128, 128), "tiny": (400, 400)}
UPSAMPLE = 4  # strokes are thickened or thinned at 4x MNIST, then drawn at canvas size


@dataclass(frozen=True)
class DevDrawing:
    data_url: str
    label: int
    variant: str
    mnist_index: int


def generate(
    x_test: np.ndarray, y_test: np.ndarray, *, per_variant: int = 500, seed: int = 0,
    variants: tuple[str, ...] = VARIANTS,
) -> list[DevDrawing]:
    """``per_variant`` drawings of each variant, each from a different MNIST test digit."""
    rng = np.random.default_rng(seed)
    drawings = []
    for variant in variants:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
        indices = rng.choice(len(x_test), size=min(per_variant, len(x_test)), replace=False)
        for index in indices:
            data_url = render(x_test[index], variant, rng)
            drawings.append(DevDrawing(data_url, int(y_test[index]), variant, int(index)))
    return drawings


def render(digit: np.ndarray, variant: str, rng: np.random.Generator) -> str:
    """One MNIST digit (28x28 uint8) drawn as ``variant``, as a data URL."""
    return draw(_mnist_strokes(digit), variant, rng)


def draw(
    strokes: np.ndarray, variant: str, rng: np.random.Generator, *, canvas: tuple[int, int] | None = None,
) -> str:
    """A digit's ink (float32 in [0, 1], about 4x MNIST's size) drawn as ``variant``, as a data URL.

    ``canvas`` (width, height) fixes the canvas; by default the variant picks it.
    """
    if canvas is None:
        canvas = CANVASES.get(variant, (int(rng.choice([200, 280, 400])),) * 2)
    width, height = canvas
    strokes = pen(strokes, variant)
    if variant == "tiny":
        digit_height = int(rng.integers(16, 29))
    else:
        digit_height = int(height * rng.uniform(0.45, 0.8))
    strokes = _scale_to_height(strokes, digit_height)
    ink = np.zeros((height, width), np.float32)
    top, left = _place(ink, strokes, rng, centred=variant in ("plain", "transparent", "thick", "thin"))
    if variant == "stray_dot":
        _add_dots(ink, (top, left, strokes.shape), rng)
    return _encode(ink, variant, rng)


def _mnist_strokes(digit: np.ndarray) -> np.ndarray:
    values = digit.astype(np.float32) / 255
    rows = np.flatnonzero(values.max(axis=1) > 0.05)
    cols = np.flatnonzero(values.max(axis=0) > 0.05)
    values = values[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    image = Image.fromarray(np.pad(values, 2))
    big = image.resize((image.width * UPSAMPLE, image.height * UPSAMPLE), Image.Resampling.BILINEAR)
    return np.asarray(big, np.float32)


def pen(strokes: np.ndarray, variant: str) -> np.ndarray:
    """The ink as the variant's pen draws it: a marker for ``thick``, a hairline for ``thin``."""
    if variant == "thick":
        # About twice MNIST's stroke: a marker, or a phone's fat finger.
        grey = Image.fromarray(np.clip(strokes * 255, 0, 255).astype(np.uint8))
        strokes = np.asarray(grey.filter(ImageFilter.MaxFilter(11)), np.float32) / 255
    elif variant == "thin":
        # Only the core of the stroke, then thinner still: a 1 px pen on a big canvas.
        core = np.where(strokes > 0.7 * strokes.max(), 255, 0).astype(np.uint8)
        thinner = np.asarray(Image.fromarray(core).filter(ImageFilter.MinFilter(3)), np.float32) / 255
        # A faint digit may not survive the extra thinning; then its core is thin enough.
        strokes = thinner if thinner.sum() * 255 > 0.3 * core.sum() else core.astype(np.float32) / 255
    # Canvas strokes are crisp with a narrow anti-aliased edge, not MNIST's soft blur.
    return np.clip((strokes - 0.3) / 0.4, 0, 1)


def _scale_to_height(strokes: np.ndarray, digit_height: int) -> np.ndarray:
    rows = np.flatnonzero(strokes.max(axis=1) > 0)
    cols = np.flatnonzero(strokes.max(axis=0) > 0)
    strokes = strokes[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    scale = digit_height / strokes.shape[0]
    size = (max(1, round(strokes.shape[1] * scale)), max(1, digit_height))
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    return np.clip(np.asarray(Image.fromarray(strokes).resize(size, resample), np.float32), 0, 1)


def _place(ink: np.ndarray, strokes: np.ndarray, rng: np.random.Generator, *, centred: bool):
    height, width = ink.shape
    h, w = strokes.shape
    h, w = min(h, height), min(w, width)
    if centred:
        top = (height - h) // 2 + int(rng.integers(-height // 12, height // 12 + 1))
        left = (width - w) // 2 + int(rng.integers(-width // 12, width // 12 + 1))
    else:
        top = int(rng.integers(0, height - h + 1))
        left = int(rng.integers(0, width - w + 1))
    top, left = int(np.clip(top, 0, height - h)), int(np.clip(left, 0, width - w))
    ink[top:top + h, left:left + w] = np.maximum(ink[top:top + h, left:left + w], strokes[:h, :w])
    return top, left


def _add_dots(ink: np.ndarray, placed, rng: np.random.Generator) -> None:
    """One to three pen dots well away from the digit, the size of a brush tap."""
    top, left, (h, w) = placed
    height, width = ink.shape
    radius = max(2.0, 0.04 * h)
    ys, xs = np.indices(ink.shape)
    for _ in range(int(rng.integers(1, 4))):
        for _attempt in range(50):
            y, x = rng.uniform(radius, height - radius), rng.uniform(radius, width - radius)
            gap = max(top - y, y - (top + h), left - x, x - (left + w))
            if gap > 0.3 * max(h, w) + radius:
                ink[:] = np.maximum(ink, np.clip(radius + 0.5 - np.hypot(ys - y, xs - x), 0, 1))
                break


def _encode(ink: np.ndarray, variant: str, rng: np.random.Generator) -> str:
    alpha = np.rint(ink * 255).astype(np.uint8)
    if variant == "transparent":
        # What an untouched canvas exports: transparent pixels, ink opaque in the brush colour.
        colour = (0, 0, 0) if rng.random() < 0.5 else tuple(int(c) for c in rng.integers(0, 256, 3))
        rgba = np.zeros(ink.shape + (4,), np.uint8)
        rgba[..., :3] = colour
        rgba[..., 3] = alpha
        return _data_url(Image.fromarray(rgba), "PNG")
    if variant == "inverted":
        paper, pen = np.array([0, 0, 0]), np.array([255, 255, 255])
    elif variant == "colour":
        paper = np.full(3, rng.integers(150, 231))
        pen = _saturated_colour(rng)
    elif variant == "jpeg":
        paper, pen = np.full(3, rng.integers(215, 256)), np.full(3, rng.integers(0, 60))
    else:
        paper, pen = np.array([255, 255, 255]), np.array([0, 0, 0])
    weight = ink[..., None]
    rgb = np.rint(paper * (1 - weight) + pen * weight).astype(np.uint8)
    image = Image.fromarray(rgb)
    if variant == "jpeg":
        return _data_url(image, "JPEG", quality=int(rng.integers(35, 76)))
    return _data_url(image, "PNG")


def _saturated_colour(rng: np.random.Generator) -> np.ndarray:
    hue = rng.random()
    image = Image.new("HSV", (1, 1), (int(hue * 255), 255, int(rng.integers(120, 256))))
    return np.array(image.convert("RGB").getpixel((0, 0)))


def _data_url(image: Image.Image, fmt: str, **options) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return f"data:{FORMATS[fmt]};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
