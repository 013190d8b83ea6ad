"""Procedural doodles: six simple shapes drawn as jittered strokes, as the canvas records them.

A new label set starts with no model and no data; these stand in for its first contributors
(circle, triangle, square, star, spiral, zigzag). Each drawing is what the canvas sends: its
strokes (per stroke ``x``, ``y`` in canvas pixels and ``t`` in ms since the drawing's first
point) and the PNG of the 280x280 pad, black ink on white with a round pen. Every shape has a
few ways people draw it (one stroke or several, either direction, a corner overshot), and
every drawing its own size, place, rotation, pen, speed and wobble. NumPy and Pillow only;
seeded, so the same seed gives the same bytes.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "triangle", "square", "star", "spiral", "zigzag")
CANVAS = 280  # the pad's size in canvas pixels, as the strokes give their points
SUPERSAMPLE = 2  # drawn at twice the size and reduced: the anti-aliased edge a browser gives a stroke
PEN_RANGE = (8.0, 28.0)  # canvas pixels; the pad's default pen is 1/14 of its width (20 px)
PEN_TO_SIZE = 0.15  # the widest pen for a doodle's size
MARGIN = 6.0  # canvas pixels kept clear of the edge, so no point falls off the pad

Path = np.ndarray  # (K, 2) float points in a unit box centred on (0, 0)


@dataclass(frozen=True)
class Doodle:
    """One drawing: its class, its strokes as the canvas records them, and the canvas's PNG."""

    label: int
    name: str
    strokes: list[dict]
    png: bytes

    @property
    def data_url(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def _polyline(corners: list[tuple[float, float]]) -> Path:
    return np.asarray(corners, dtype=np.float64)


def _circle(rng: np.random.Generator) -> list[Path]:
    start = rng.uniform(0, 2 * math.pi)
    sweep = rng.uniform(1.9, 2.15) * math.pi * rng.choice([-1, 1])  # a little short or over, either way
    angles = start + np.linspace(0, sweep, 48)
    aspect = rng.uniform(0.8, 1.2)
    return [np.stack([0.5 * aspect * np.cos(angles), 0.5 / aspect * np.sin(angles)], axis=1)]


def _triangle(rng: np.random.Generator) -> list[Path]:
    apex = (rng.uniform(-0.15, 0.15), -0.5)
    corners = [apex, (0.5, 0.4), (-0.5, 0.4)]
    return _closed(corners, rng)


def _square(rng: np.random.Generator) -> list[Path]:
    half = 0.5
    aspect = rng.uniform(0.85, 1.15)
    corners = [(-half * aspect, -half / aspect), (half * aspect, -half / aspect),
               (half * aspect, half / aspect), (-half * aspect, half / aspect)]
    return _closed(corners, rng)


def _closed(corners: list[tuple[float, float]], rng: np.random.Generator) -> list[Path]:
    """A polygon from any corner, either way round: one stroke, or one stroke a side."""
    corners = np.asarray(corners) + rng.normal(0, 0.04, (len(corners), 2))
    if rng.random() < 0.5:
        corners = corners[::-1]
    corners = np.roll(corners, int(rng.integers(len(corners))), axis=0)
    ring = np.concatenate([corners, corners[:1]])
    if rng.random() < 0.65:
        return [ring]
    # Side by side, each side's ends a little past or short of the corners.
    return [_polyline([a + (a - b) * rng.uniform(-0.05, 0.08), b + (b - a) * rng.uniform(-0.05, 0.08)])
            for a, b in zip(ring[:-1], ring[1:])]


def _star(rng: np.random.Generator) -> list[Path]:
    start = -math.pi / 2 + rng.normal(0, 0.1)
    if rng.random() < 0.6:
        # The five-pointed star in one stroke: every second point of a pentagon.
        angles = start + np.arange(6) * 4 * math.pi / 5
        radii = np.full(6, 0.5)
    else:
        # Its outline: ten corners, the inner ones at about 40 % of the radius.
        angles = start + np.arange(11) * math.pi / 5
        radii = np.where(np.arange(11) % 2 == 0, 0.5, 0.5 * rng.uniform(0.32, 0.5))
    points = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    points[:-1] += rng.normal(0, 0.025, (len(points) - 1, 2))
    points[-1] = points[0] + rng.normal(0, 0.02, 2)
    return [points[::-1] if rng.random() < 0.5 else points]


def _spiral(rng: np.random.Generator) -> list[Path]:
    turns = rng.uniform(2.0, 3.5)
    theta = np.linspace(0, turns * 2 * math.pi, int(40 * turns))
    radius = 0.5 * (0.06 + 0.94 * theta / theta[-1])
    theta = theta * rng.choice([-1, 1]) + rng.uniform(0, 2 * math.pi)
    points = np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1)
    return [points if rng.random() < 0.8 else points[::-1]]  # most start at the centre


def _zigzag(rng: np.random.Generator) -> list[Path]:
    segments = int(rng.integers(3, 8))
    xs = np.linspace(-0.5, 0.5, segments + 1) + rng.normal(0, 0.02, segments + 1)
    height = rng.uniform(0.25, 0.6)
    ys = np.where(np.arange(segments + 1) % 2 == 0, -height / 2, height / 2) + rng.normal(0, 0.03, segments + 1)
    if rng.random() < 0.5:
        ys = -ys
    points = np.stack([xs, ys], axis=1)
    return [points[::-1] if rng.random() < 0.3 else points]


SHAPES = {"circle": _circle, "triangle": _triangle, "square": _square, "star": _star, "spiral": _spiral,
          "zigzag": _zigzag}


def _resample(path: Path, spacing: float) -> Path:
    """Points about ``spacing`` apart along ``path``, corners kept, as pointer events sample a stroke."""
    out = [path[:1]]
    for a, b in zip(path[:-1], path[1:]):
        steps = max(1, int(math.ceil(np.linalg.norm(b - a) / spacing)))
        out.append(a + (b - a) * (np.arange(1, steps + 1) / steps)[:, None])
    return np.concatenate(out)


def _wobble(rng: np.random.Generator):
    """A smooth random displacement field (a function of position, so strokes that meet stay met)."""
    frequencies = rng.normal(0.0, 1.0, (2, 2, 2))
    phases = rng.uniform(0, 2 * math.pi, (2, 2))
    amplitudes = rng.uniform(0.0, 0.03, (2, 2))

    def bend(points: np.ndarray) -> np.ndarray:
        return points + np.stack([
            sum(amplitudes[axis, k] * np.sin(2 * math.pi * points @ frequencies[axis, k] + phases[axis, k])
                for k in range(2))
            for axis in range(2)], axis=1)

    return bend


def _place(paths: list[Path], rng: np.random.Generator, pen: float) -> list[np.ndarray]:
    """Unit-box paths -> canvas pixels: bent, rotated, scaled and put somewhere on the pad."""
    bend = _wobble(rng)
    angle = math.radians(rng.normal(0, 12))
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    paths = [bend(path) @ rotation.T for path in paths]
    every = np.concatenate(paths)
    low, high = every.min(axis=0), every.max(axis=0)
    room = CANVAS - 2 * MARGIN - pen
    scale = rng.uniform(0.35, 0.9) * room / float((high - low).max())
    size = (high - low) * scale
    offset = MARGIN + pen / 2 + rng.uniform(0, 1, 2) * (room - size) - low * scale
    return [path * scale + offset for path in paths]


def _timed(strokes: list[np.ndarray], rng: np.random.Generator) -> list[dict]:
    """Strokes as the canvas sends them: x, y rounded to 0.1 px, t in whole ms since the first point."""
    speed = rng.uniform(0.3, 1.5)  # px per ms: a slow careful hand to a quick flick
    clock, out = 0, []
    for index, stroke in enumerate(strokes):
        if index:
            clock += int(rng.integers(120, 600))  # pen up, move, pen down
        steps = np.linalg.norm(np.diff(stroke, axis=0), axis=1) / speed
        # Pointer events come at least a millisecond apart, so time never stands still.
        times = clock + np.concatenate([[0], np.cumsum(np.maximum(1, np.rint(steps)))]).astype(int)
        clock = int(times[-1])
        xy = np.clip(np.round(stroke, 1), 0, CANVAS)
        out.append({"x": xy[:, 0].tolist(), "y": xy[:, 1].tolist(), "t": times.tolist()})
    return out


def render_png(strokes: list[dict], pen: float) -> bytes:
    """The pad's PNG for ``strokes``: black round-pen ink on white, 280x280, anti-aliased."""
    size = CANVAS * SUPERSAMPLE
    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    width = pen * SUPERSAMPLE
    radius = width / 2
    for stroke in strokes:
        points = [(x * SUPERSAMPLE, y * SUPERSAMPLE) for x, y in zip(stroke["x"], stroke["y"])]
        draw.line(points, fill=0, width=max(1, round(width)))
        # A disc at every point is the canvas's round cap and join (Pillow's own joint="curve" is slow).
        for x, y in points:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=0)
    buffer = io.BytesIO()
    image.reduce(SUPERSAMPLE).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def draw(name: str, rng: np.random.Generator) -> Doodle:
    """One doodle of the class ``name`` (one of CLASSES)."""
    if name not in SHAPES:
        raise ValueError(f"unknown doodle {name!r}; expected one of {', '.join(CLASSES)}")
    pen = rng.uniform(*PEN_RANGE)
    placed = _place(SHAPES[name](rng), rng, pen)
    # A thick pen on a small doodle fills it in (a spiral becomes a blob); people draw bigger.
    extent = float(np.ptp(np.concatenate(placed), axis=0).max())
    pen = min(pen, max(PEN_RANGE[0], PEN_TO_SIZE * extent))
    spacing = rng.uniform(3.0, 9.0)  # canvas px between pointer events
    strokes = _timed([_resample(path, spacing) for path in placed], rng)
    return Doodle(label=CLASSES.index(name), name=name, strokes=strokes, png=render_png(strokes, pen))


def doodle_batch(count: int, *, seed: int, classes: tuple[str, ...] = CLASSES) -> list[Doodle]:
    """``count`` doodles, the classes as balanced as ``count`` allows, in a seeded random order.

    ``label`` is the class's index in ``classes``.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.arange(count) % len(classes))
    doodles = []
    for index in order.tolist():
        doodle = draw(classes[index], rng)
        doodles.append(replace(doodle, label=index))
    return doodles
