"""Training a network from scratch on a new label set's first few hundred confirmed drawings.

A new set has no parent to fine-tune and no MNIST to lean on: both networks start from random
weights with the set's own number of outputs, and learn from its drawings alone. So few
drawings would be learnt by heart in a few epochs; augmentation (each epoch shows every
drawing rotated, stretched, bent and re-inked anew) and many short epochs are what let the
networks generalise from them. Plain library: arrays in, a Keras model out.
"""

from __future__ import annotations

import os
from dataclasses import replace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from training import IMAGE_SIZE, MODEL_NAMES  # noqa: E402
from training.augment import Augmentation  # noqa: E402
from training.networks import build  # noqa: E402
from training.train import TrainConfig, fit, recalibrate_batch_norm, set_seed  # noqa: E402

# Doodles are drawn at any angle and proportion more than digits are, and a few hundred drawings
# show few of each: wider rotation and stretch than for MNIST, and elastic bending for both nets.
SCRATCH_AUGMENTATION = Augmentation(rotation_degrees=15.0, scale=0.12, aspect=0.12, shear=0.15,
                                    shift_pixels=1.5, elastic_pixels=1.5)

# Small batches: a few hundred drawings make only a handful of full-size batches an epoch, and
# the networks need steps more than smooth gradients. The FNN's steps cost most of its time,
# and batches of 64 halve them for a fraction of a point (README, Benchmarks).
SCRATCH_CONFIGS = {
    "fnn": TrainConfig(epochs=40, batch_size=64, learning_rate=1e-3, jit_compile=False,
                       augmentation=SCRATCH_AUGMENTATION),
    "cnn": TrainConfig(epochs=40, batch_size=32, learning_rate=2e-3, jit_compile=False,
                       augmentation=SCRATCH_AUGMENTATION),
}
# Each epoch covers at least this many drawings, so a run's length does not shrink with the set.
MIN_EPOCH_DRAWINGS = 360


def train_from_scratch(name: str, x: np.ndarray, y: np.ndarray, *, num_classes: int, seed: int = 0) -> keras.Model:
    """Network ``name`` ("fnn" or "cnn") trained from random weights on preprocessed drawings.

    ``x`` is (N, 28, 28) uint8 as stored, ``y`` (N,) integer labels in [0, num_classes), every
    class present. Returns the trained Keras model, with ``num_classes`` outputs.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown network {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    x, y = _checked(x, y, num_classes)
    config = SCRATCH_CONFIGS[name]
    repeats = -(-MIN_EPOCH_DRAWINGS // len(x))
    shown_x, shown_y = np.repeat(x, repeats, axis=0), np.repeat(y, repeats)
    set_seed(seed)
    model = build(name, num_classes=num_classes)
    fit(model, shown_x, shown_y, config=replace(config, batch_size=min(config.batch_size, len(shown_x))),
        seed=seed, verbose=0)
    # Training leaves batch norm with the statistics of augmented batches; serving sees drawings.
    recalibrate_batch_norm(model, x, spatial_only=True)
    return model


def _checked(x: np.ndarray, y: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 3 or x.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or x.dtype != np.uint8:
        raise ValueError(f"x must be (N, 28, 28) uint8 pixels, got {x.shape} {x.dtype}")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be (N,) integer labels, one per drawing; got {y.shape} {y.dtype}")
    if len(x) == 0 or y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}) and there must be drawings")
    missing = sorted(set(range(num_classes)) - set(np.unique(y).tolist()))
    if missing:
        raise ValueError(f"no drawings of class(es) {missing}: every class needs some to train from scratch")
    return x, y.astype(np.int64)
