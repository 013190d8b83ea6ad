"""A label set's first networks, trained from nothing on its confirmed drawings (no MNIST).

Plain library: arrays in, a Keras model out; the caller judges and publishes it.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from training.networks import build  # noqa: E402
from training.train import CONFIGS, fit, set_seed  # noqa: E402

BATCH_SIZE = 32
# A first run has a few hundred drawings: enough passes to converge, bounded in time.
TARGET_STEPS, MIN_EPOCHS, MAX_EPOCHS = 600, 5, 60


def train_from_scratch(name: str, x: np.ndarray, y: np.ndarray, *, num_classes: int, seed: int = 0) -> keras.Model:
    """Network ``name`` with ``num_classes`` outputs, trained with Adam on (N, 28, 28) uint8 ``x`` and labels ``y``."""
    from dataclasses import replace

    if len(x) == 0:
        raise ValueError("no drawings to train on")
    set_seed(seed)
    model = build(name, num_classes=num_classes)
    steps = max(1, len(x) // BATCH_SIZE)
    epochs = int(np.clip(TARGET_STEPS // steps, MIN_EPOCHS, MAX_EPOCHS))
    config = replace(CONFIGS[name], epochs=epochs, batch_size=BATCH_SIZE, optimizer="adam", synthetic=0)
    fit(model, x, y.astype(np.int64), config=config, seed=seed, verbose=0)
    return model
