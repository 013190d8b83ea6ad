"""Procedural digits: jittered stroke templates drawn with a round pen, as on the canvas.

MNIST was written by a few hundred American clerks and students, so some common styles are
rare or missing from it (a 1 with a flag and a base, a crossed 7, a closed 4, an 8 drawn as
two loops); a network trained on it alone reads those as something else. Each digit here has
several templates covering such styles; every control point is jittered, the whole digit
slanted, rotated and stretched, and drawn with a round pen of random width, then put through
the serving preprocessing from the ink on. NumPy and Pillow only; seeded.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from training.preprocess import normalise_ink

Stroke = list[tuple[float, float]]

# Drawn at this height in pixels, twice the preprocessing's working size: reducing by two
# gives the pen's edge the anti-aliasing a browser canvas gives it.
DRAW_HEIGHT = 160


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, points: int = 16) -> Stroke:
    """Points along an ellipse from ``start`` to ``end`` degrees (0 = right, 90 = down)."""
    angles = np.radians(np.linspace(start, end, points))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


# Unit box: x from 0 (left) to 1, y from 0 (top) to 1. A stroke is a smooth curve through its
# points; a sharp corner is two strokes meeting at a point.
TEMPLATES: dict[int, list[list[Stroke]]] = {
    0: [
        [_arc(0.5, 0.5, 0.32, 0.5, -90, 270, 24)],
        [_arc(0.5, 0.5, 0.3, 0.5, -70, 300, 24)],  # starts right of the top and overshoots
    ],
    1: [
        [[(0.5, 0.0), (0.5, 1.0)]],
        [[(0.22, 0.28), (0.5, 0.0)], [(0.5, 0.0), (0.5, 1.0)]],  # flag
        [[(0.22, 0.28), (0.5, 0.0)], [(0.5, 0.0), (0.5, 1.0)], [(0.2, 1.0), (0.8, 1.0)]],  # flag and base
        [[(0.3, 0.12), (0.5, 0.0)], [(0.5, 0.0), (0.5, 1.0)]],  # short flag
        [[(0.05, 0.4), (0.35, 0.2), (0.62, 0.0)], [(0.62, 0.0), (0.55, 1.0)]],  # long, curved lead-in
        # A long straight flag at ~30 degrees: steeper than a 7's bar, which is what tells them apart.
        [[(0.05, 0.3), (0.6, 0.0)], [(0.6, 0.0), (0.58, 1.0)]],
    ],
    2: [
        [_arc(0.5, 0.3, 0.32, 0.3, 190, 380, 12) + [(0.1, 1.0)], [(0.1, 1.0), (0.9, 1.0)]],
        [_arc(0.5, 0.28, 0.34, 0.28, 200, 370, 12) + [(0.45, 0.75), (0.2, 0.95), (0.1, 0.85),
                                                      (0.25, 0.8), (0.5, 0.95), (0.9, 1.0)]],  # looped
        [_arc(0.5, 0.3, 0.3, 0.3, 180, 330, 10) + [(0.12, 0.98)], [(0.12, 0.98), (0.9, 0.95)]],
    ],
    3: [
        [_arc(0.45, 0.25, 0.35, 0.25, 200, 450, 14)[:-1] + _arc(0.45, 0.74, 0.38, 0.26, -90, 150, 14)],
        [[(0.15, 0.0), (0.85, 0.0)], [(0.85, 0.0), (0.45, 0.4)],
         [(0.45, 0.4)] + _arc(0.45, 0.7, 0.38, 0.3, -80, 150, 14)],  # flat top
        [_arc(0.45, 0.25, 0.33, 0.25, 200, 440, 14) + [(0.35, 0.5)],
         [(0.35, 0.5)] + _arc(0.42, 0.74, 0.4, 0.26, -90, 150, 14)],  # pointed middle
    ],
    4: [
        [[(0.55, 0.0), (0.08, 0.65)], [(0.08, 0.65), (0.95, 0.65)], [(0.7, 0.25), (0.7, 1.0)]],  # open
        [[(0.7, 0.0), (0.08, 0.68)], [(0.08, 0.68), (0.95, 0.68)], [(0.7, 0.0), (0.7, 1.0)]],  # closed
        [[(0.15, 0.0), (0.1, 0.55)], [(0.1, 0.55), (0.9, 0.55)], [(0.72, 0.05), (0.72, 1.0)]],  # upright
        # One stroke down and along, the bar short, the stem from the top: a narrow, cursive 4.
        [[(0.65, 0.0), (0.35, 0.3), (0.1, 0.6), (0.45, 0.6), (0.85, 0.56)], [(0.68, 0.12), (0.6, 1.0)]],
        # Closed and narrow, the bar barely past the stem: a slanted hand's 4, unlike a 9 by its corner.
        [[(0.72, 0.0), (0.1, 0.62)], [(0.1, 0.62), (0.88, 0.6)], [(0.72, 0.0), (0.66, 1.0)]],
    ],
    5: [
        [[(0.85, 0.0), (0.25, 0.0)], [(0.25, 0.0), (0.2, 0.45)],
         [(0.2, 0.45)] + _arc(0.45, 0.68, 0.38, 0.3, -110, 150, 14)],
        [[(0.25, 0.0), (0.2, 0.45)], [(0.2, 0.45)] + _arc(0.45, 0.68, 0.36, 0.3, -110, 150, 14),
         [(0.25, 0.0), (0.85, 0.02)]],  # bar added last
    ],
    6: [
        [[(0.75, 0.0), (0.45, 0.18), (0.22, 0.5), (0.2, 0.78)] + _arc(0.48, 0.75, 0.3, 0.25, 180, 530, 18)],
        [[(0.6, 0.0), (0.35, 0.4), (0.22, 0.75)] + _arc(0.5, 0.76, 0.3, 0.24, 170, 520, 18)],  # straight stem
        [[(0.85, 0.1), (0.6, 0.0), (0.3, 0.15), (0.15, 0.5)] + _arc(0.5, 0.7, 0.35, 0.3, 180, 520, 18)],  # hooked, round
    ],
    7: [
        [[(0.08, 0.0), (0.92, 0.0)], [(0.92, 0.0), (0.4, 1.0)]],
        [[(0.08, 0.0), (0.92, 0.0)], [(0.92, 0.0), (0.4, 1.0)], [(0.35, 0.52), (0.88, 0.5)]],  # crossed
        [[(0.08, 0.15), (0.08, 0.0)], [(0.08, 0.0), (0.92, 0.0)], [(0.92, 0.0), (0.6, 0.45), (0.45, 1.0)]],
        [[(0.1, 0.03), (0.5, 0.0), (0.9, 0.02)], [(0.9, 0.02), (0.65, 0.4), (0.5, 1.0)]],  # curved stem
        [[(0.3, 0.02), (0.88, 0.0)], [(0.88, 0.0), (0.66, 1.0)]],  # short bar, steep stem (a 1 has no bar)
    ],
    8: [
        # A figure-eight in one stroke: down the S, then back up the other way.
        [[(0.8, 0.12), (0.5, 0.0), (0.22, 0.15), (0.3, 0.35), (0.7, 0.6), (0.8, 0.85), (0.5, 1.0),
          (0.2, 0.85), (0.3, 0.6), (0.7, 0.35), (0.78, 0.15), (0.5, 0.0)]],
        [_arc(0.5, 0.24, 0.26, 0.24, 0, 360, 18), _arc(0.5, 0.73, 0.32, 0.27, 0, 360, 18)],  # two loops
        [_arc(0.5, 0.26, 0.22, 0.26, 90, 450, 18), _arc(0.5, 0.74, 0.34, 0.26, -90, 270, 18)],
        [_arc(0.56, 0.19, 0.18, 0.19, 0, 360, 16), _arc(0.45, 0.67, 0.3, 0.33, -90, 270, 18)],  # small top loop
    ],
    9: [
        [_arc(0.45, 0.27, 0.3, 0.27, 0, 370, 18), [(0.75, 0.22), (0.72, 1.0)]],  # straight tail
        [_arc(0.45, 0.27, 0.3, 0.27, 10, 370, 18) + [(0.74, 0.6), (0.6, 0.92), (0.3, 1.0)]],  # curved tail
        [_arc(0.45, 0.27, 0.32, 0.27, -10, 360, 18), [(0.76, 0.15), (0.55, 1.0)]],  # slanted tail
        [_arc(0.48, 0.4, 0.34, 0.4, 0, 370, 20) + [(0.8, 0.7), (0.68, 1.0)]],  # tall loop, short tail
    ],
}


def _smooth(points: np.ndarray, per_segment: int = 6) -> np.ndarray:
    """A Catmull-Rom curve through ``points`` (K, 2)."""
    if len(points) < 3:
        return points
    padded = np.concatenate([points[:1] * 2 - points[1:2], points, points[-1:] * 2 - points[-2:-1]])
    t = np.linspace(0, 1, per_segment, endpoint=False)[None, :, None]
    p0, p1, p2, p3 = (padded[i:len(padded) - 3 + i, None, :] for i in range(4))
    curve = 0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                   + (3 * p1 - p0 - 3 * p2 + p3) * t ** 3)
    return np.concatenate([curve.reshape(-1, 2), points[-1:]])


def _draw(strokes: list[np.ndarray], pen: float) -> np.ndarray:
    """Strokes in pixels -> ink, float32 in [0, 1], with a round pen ``pen`` px wide."""
    every = np.concatenate(strokes)
    low = every.min(axis=0) - pen
    size = np.ceil(every.max(axis=0) + pen - low).astype(int) + 2
    size += size % 2
    image = Image.new("L", (int(size[0]), int(size[1])), 0)
    draw = ImageDraw.Draw(image)
    radius = pen / 2
    for stroke in strokes:
        points = stroke - low + 1
        # Pillow's own round joints cost ~100 Python calls a stroke; a disc at each vertex is
        # the same round pen, as the canvas's lineCap/lineJoin "round" draws it.
        draw.line([tuple(p) for p in points.tolist()], fill=255, width=max(1, round(pen)))
        for x, y in points.tolist():
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    return np.asarray(image.reduce(2), np.float32) / 255


def synthesise(label: int, rng: np.random.Generator, *, template: int | None = None) -> np.ndarray:
    """One procedural drawing of ``label`` as 28x28 uint8 pixels, as preprocessing returns them.

    ``template`` picks one of the digit's styles (default: one at random).
    """
    templates = TEMPLATES[label]
    template = templates[int(rng.integers(len(templates))) if template is None else template]
    width = rng.uniform(0.4, 0.85)  # of the height: from a narrow cursive hand to a round one
    # x moves right by this much per unit of height; people lean forward more than back.
    slant = float(np.clip(rng.normal(0.08, 0.15), -0.25, 0.5))
    angle = math.radians(rng.normal(0.0, 5.0))
    cos, sin = math.cos(angle), math.sin(angle)
    # A smooth random field bends the strokes the way a hand does (a function of position, so
    # strokes that meet at a corner stay joined); independent jitter per point made them wiggle.
    frequencies = rng.normal(0.0, 1.2, (2, 2, 2))
    phases = rng.uniform(0, 2 * math.pi, (2, 2))
    amplitudes = rng.uniform(0.0, 0.05, (2, 2))
    strokes = []
    for stroke in template:
        curve = _smooth(np.asarray(stroke, dtype=np.float64))
        bend = np.stack([
            sum(amplitudes[axis, k] * np.sin(2 * math.pi * curve @ frequencies[axis, k] + phases[axis, k])
                for k in range(2))
            for axis in range(2)], axis=1)
        curve = curve + bend
        x = (curve[:, 0] - 0.5) * width + slant * (0.5 - curve[:, 1])
        y = curve[:, 1] - 0.5
        strokes.append(np.stack([cos * x - sin * y, sin * x + cos * y], axis=1) * DRAW_HEIGHT)
    # Relative to the digit's height: 4 % is a fine pen, 16 % a marker on a small canvas.
    pen = DRAW_HEIGHT * rng.uniform(0.04, 0.16)
    return normalise_ink(_draw(strokes, pen))


def synthesise_batch(count: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` procedural drawings, labels balanced and shuffled: (N, 28, 28) uint8, (N,) uint8."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % 10).astype(np.uint8)
    pixels = np.stack([synthesise(int(label), rng) for label in labels]) if count else \
        np.zeros((0, 28, 28), np.uint8)
    return pixels, labels
