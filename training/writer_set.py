"""The writers benchmark as arrays: every writer's drawings preprocessed as uploads are, cached.

The cache (``instance/data/writers-<key>.npz``) is keyed by the seed, the counts, the fonts'
bytes and the source of the generator and of the preprocessing, so a change to any of them
makes a new one instead of serving stale pixels.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training import devset, preprocess, writers

CLEAN_PER_DIGIT = 20
MESSY_PER_DIGIT = 2


@dataclass(frozen=True)
class WriterSet:
    """Preprocessed drawings: ``pixels`` (N, 28, 28) uint8 as serving feeds the networks."""

    pixels: np.ndarray
    labels: np.ndarray
    writers: np.ndarray  # writer name of each drawing
    variants: np.ndarray  # a clean style (writers.CLEAN_STYLES) or a messy variant
    groups: np.ndarray  # teach, reference or exam

    @property
    def clean(self) -> np.ndarray:
        return np.isin(self.variants, writers.CLEAN_STYLES)

    def select(self, chosen: np.ndarray) -> "WriterSet":
        return WriterSet(self.pixels[chosen], self.labels[chosen], self.writers[chosen],
                         self.variants[chosen], self.groups[chosen])


def default_cache_dir() -> Path:
    return Path(os.environ.get("INKLING_INSTANCE_PATH", "instance")) / "data"


def build(
    chosen: list[writers.Writer] | None = None, *, seed: int = 0,
    clean_per_digit: int = CLEAN_PER_DIGIT, messy_per_digit: int = MESSY_PER_DIGIT,
) -> WriterSet:
    """Generate and preprocess the drawings of ``chosen`` writers (all of them by default)."""
    chosen = writers.writers() if chosen is None else chosen
    pixels, labels, names, variants, groups = [], [], [], [], []
    for writer in chosen:
        for drawing in writers.writer_drawings(writer, seed=seed, clean_per_digit=clean_per_digit,
                                               messy_per_digit=messy_per_digit):
            pixels.append(preprocess.preprocess(drawing.data_url).pixels)
            labels.append(drawing.label)
            names.append(drawing.writer)
            variants.append(drawing.variant)
            groups.append(writer.group)
    return WriterSet(np.stack(pixels), np.array(labels, np.uint8), np.array(names),
                     np.array(variants), np.array(groups))


def load(
    chosen: list[writers.Writer] | None = None, *, seed: int = 0, clean_per_digit: int = CLEAN_PER_DIGIT, messy_per_digit: int = MESSY_PER_DIGIT,
    cache_dir: Path | None = None,
) -> WriterSet:
    """The drawings of ``chosen`` writers (all by default), from the cache when it matches,
    else built and cached."""
    chosen = writers.writers() if chosen is None else chosen
    key = _cache_key(chosen, seed, clean_per_digit, messy_per_digit)
    cache = (cache_dir or default_cache_dir()) / f"writers-{key}.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            return WriterSet(**{name: stored[name] for name in stored.files})
    data = build(chosen, seed=seed, clean_per_digit=clean_per_digit, messy_per_digit=messy_per_digit)
    cache.parent.mkdir(parents=True, exist_ok=True)
    # Written beside and renamed, so a killed run never leaves a half-written cache.
    partial = cache.with_name(cache.name + ".partial.npz")
    np.savez_compressed(partial, **data.__dict__)
    os.replace(partial, cache)
    return data


def _cache_key(chosen: list[writers.Writer], seed: int, clean: int, messy: int) -> str:
    digest = hashlib.sha256(f"{seed}:{clean}:{messy}".encode())
    for module in (writers, devset, preprocess):
        digest.update(Path(module.__file__).read_bytes())
    for writer in chosen:
        digest.update(f"{writer.name}:{writer.group}:".encode())
        digest.update(writer.path.read_bytes())
    return digest.hexdigest()[:16]
