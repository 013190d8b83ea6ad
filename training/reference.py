"""The promotion gate's fixed reference set: diverse writing that no run trains on.

Canvas-like drawings of MNIST test digits (training.devset) and the writers benchmark's
``reference`` group (never ``exam``: that group stays unseen by every decision). Built once
per deployment where the fonts are installed and kept in the object store under a key that
names its generator's version; the gate reads it from there, so a deployment without fonts
(Heroku) gets it by upload, and a change to the code that draws or preprocesses it makes a
new one instead of judging on stale pixels.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

from training import devset, preprocess, writer_set, writers
from training.devset import generate

# Where a deployment keeps it in its object store: one object per generator version.
REFERENCE_PREFIX = "reference/"
CANVAS_PER_VARIANT = 100  # x 11 variants
REFERENCE_GROUP = "reference"
SEED = 0
# Raise when build() itself changes what it makes; the modules it calls are hashed instead.
FORMAT = 1


def generator_version() -> str:
    """What the set's pixels depend on: the drawing and preprocessing code and the counts.

    Computable without the fonts, so a deployment that cannot build the set can still tell
    whether the stored one is current.
    """
    digest = hashlib.sha256(f"{FORMAT}:{SEED}:{CANVAS_PER_VARIANT}:{REFERENCE_GROUP}".encode())
    for module in (devset, writers, writer_set, preprocess):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def reference_key(version: str) -> str:
    return f"{REFERENCE_PREFIX}reference-set-{version}.npz"


def build(*, x_test: np.ndarray, y_test: np.ndarray) -> dict[str, np.ndarray]:
    """Pixels (N, 28, 28) uint8, labels, each drawing's source ("canvas" or a writer's name) and
    the generator's version. Raises writers.FontsMissing where the fonts are not installed."""
    chosen = writers.writers(group=REFERENCE_GROUP)  # first: without the fonts, fail before drawing
    canvas = generate(x_test, y_test, per_variant=CANVAS_PER_VARIANT, seed=SEED)
    pixels = [preprocess.preprocess(drawing.data_url).pixels for drawing in canvas]
    labels = [drawing.label for drawing in canvas]
    sources = ["canvas"] * len(canvas)
    written = writer_set.build(chosen, seed=SEED)
    return {"x": np.concatenate([np.stack(pixels), written.pixels]).astype(np.uint8),
            "y": np.concatenate([np.array(labels, np.uint8), written.labels]).astype(np.uint8),
            "source": np.concatenate([np.array(sources), written.writers]).astype(str),
            "version": np.array(generator_version())}


def cached(*, x_test: np.ndarray, y_test: np.ndarray, cache_dir: Path | None = None) -> bytes:
    """The current version's set as stored bytes, from ``instance/data`` when built there before."""
    cache = (cache_dir or writer_set.default_cache_dir()) / f"reference-{generator_version()}.npz"
    if cache.is_file():
        return cache.read_bytes()
    data = to_bytes(build(x_test=x_test, y_test=y_test))
    cache.parent.mkdir(parents=True, exist_ok=True)
    # Written beside and renamed, so a killed build never leaves a half-written cache.
    partial = cache.with_name(cache.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, cache)
    return data


def to_bytes(reference: dict[str, np.ndarray]) -> bytes:
    out = io.BytesIO()
    np.savez_compressed(out, **reference)
    return out.getvalue()


def from_bytes(data: bytes) -> dict:
    """A stored reference set, checked: ``x``, ``y`` and its generator's ``version`` ("" if it
    predates versions). A file that is not one raises ValueError."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            reference = {name: stored[name] for name in ("x", "y")}
            version = str(stored["version"]) if "version" in stored.files else ""
    except Exception as exc:  # zipfile, pickle and key errors alike: it is not a reference set
        raise ValueError(f"not a reference set: {exc.__class__.__name__}") from None
    x, y = reference["x"], reference["y"]
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (len(x),) or len(x) == 0:
        raise ValueError("not a reference set: x must be (N, 28, 28) uint8 and y (N,) labels")
    if y.min() < 0 or y.max() > 9:
        raise ValueError("not a reference set: labels must be digits 0 to 9")
    return {"x": x, "y": y.astype(np.uint8), "version": version}
