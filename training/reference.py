"""The promotion gate's fixed reference set: diverse writing that no run trains on.

Canvas-like drawings of MNIST test digits (training.devset) and the writers benchmark's
``reference`` group (never ``exam``: that group stays unseen by every decision). Built once
per deployment where the fonts are installed and kept in the object store; the gate reads it
from there, so a deployment without fonts (Heroku) gets it by upload.
"""

from __future__ import annotations

import io

import numpy as np

from training import writer_set, writers
from training.devset import generate
from training.preprocess import preprocess

# Where a deployment keeps it in its object store.
REFERENCE_KEY = "reference/reference-set.npz"
CANVAS_PER_VARIANT = 100  # x 11 variants
REFERENCE_GROUP = "reference"


def build(*, x_test: np.ndarray, y_test: np.ndarray, seed: int = 0,
          canvas_per_variant: int = CANVAS_PER_VARIANT) -> dict[str, np.ndarray]:
    """Pixels (N, 28, 28) uint8, labels, and each drawing's source ("canvas" or a writer's name)."""
    canvas = generate(x_test, y_test, per_variant=canvas_per_variant, seed=seed)
    pixels = [preprocess(drawing.data_url).pixels for drawing in canvas]
    labels = [drawing.label for drawing in canvas]
    sources = ["canvas"] * len(canvas)
    written = writer_set.build(writers.writers(group=REFERENCE_GROUP), seed=seed)
    return {"x": np.concatenate([np.stack(pixels), written.pixels]).astype(np.uint8),
            "y": np.concatenate([np.array(labels, np.uint8), written.labels]).astype(np.uint8),
            "source": np.concatenate([np.array(sources), written.writers]).astype(str)}


def to_bytes(reference: dict[str, np.ndarray]) -> bytes:
    out = io.BytesIO()
    np.savez_compressed(out, **reference)
    return out.getvalue()


def from_bytes(data: bytes) -> dict[str, np.ndarray]:
    """A stored reference set, checked: a file that is not one raises ValueError."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            reference = {name: stored[name] for name in ("x", "y")}
    except Exception as exc:  # zipfile, pickle and key errors alike: it is not a reference set
        raise ValueError(f"not a reference set: {exc.__class__.__name__}") from None
    x, y = reference["x"], reference["y"]
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (len(x),) or len(x) == 0:
        raise ValueError("not a reference set: x must be (N, 28, 28) uint8 and y (N,) labels")
    if y.min() < 0 or y.max() > 9:
        raise ValueError("not a reference set: labels must be digits 0 to 9")
    return {"x": x, "y": y.astype(np.uint8)}
