"""Fine-tuning a published version on new user drawings, without forgetting MNIST, and judging it.

Plain library: the caller (a Celery task, a benchmark, a test) supplies arrays of stored
28x28 uint8 pixels and labels; nothing here knows about databases or object stores.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from training.contributors import counted  # noqa: E402
from training.gate import Decision, confusion, decide  # noqa: E402
from training.mnist import Mnist  # noqa: E402
from training.preprocess import to_model_input  # noqa: E402
from training.train import CONFIGS, TrainConfig, accuracy, fit, recalibrate_batch_norm, set_seed  # noqa: E402

Progress = Callable[[dict], None]


@dataclass(frozen=True, kw_only=True)
class FineTuneConfig:
    # How long and with how much MNIST: the deployment's settings (FINETUNE_EPOCHS and
    # FINETUNE_MNIST_MINIMUM in webapp/config.py), so no default here.
    epochs: int
    # SGD with momentum, not the Adam of base training: see training.train.compile_model.
    optimizer: str = "sgd"
    learning_rate: float = 3e-3
    # Each epoch sees every new drawing this many times (they are few and what matters most) ...
    new_repeats: int = 6
    # ... up to this many older confirmed drawings, replayed so earlier fixes are kept ...
    replay_limit: int = 2000
    # ... and MNIST, this many times the user drawings (at least mnist_minimum), so that
    # nothing MNIST taught is forgotten.
    mnist_ratio: float = 3.0
    mnist_minimum: int
    # After training, the convolutional layers' batch-norm statistics are re-estimated on the
    # confirmed drawings (new and replayed, up to calibration_limit of them): people's drawings,
    # unaugmented, are what the network will serve. Below calibration_minimum drawings a few
    # users' habits would weigh too much, and the statistics from training are kept.
    calibration_minimum: int = 200
    calibration_limit: int = 1000
    # Base training's augmentation (rotation, shear, stroke width, elastic for the FNN): on the
    # whole mix ("all"), on the new drawings alone ("new": they are few, each seen many times,
    # while replayed images stay as they are, which keeps what the parent read on them), or "none".
    augment: str = "all"
    # Learning without forgetting: each replayed image (MNIST, older drawings) is trained toward
    # this blend of its label and the parent's own answer, so the network keeps reading what it
    # read well (the reference set's writers among them) while the new drawings pull it on.
    # 0 trains on the labels alone.
    distillation: float = 0.0
    # Boundary replay: each new drawing also brings the MNIST training images nearest to it in
    # pixel space that carry another digit (up to this many), replayed like MNIST. They sit
    # where the new drawings pull the classes' borders, which a random MNIST sample rarely
    # covers, so what the parent read there stays read (a teach writer's 2 moved a reference
    # writer's flagged 1 without them). 0: none.
    boundary_neighbours: int = 0

    def __post_init__(self):
        # Checked here so that a bad setting fails before a model is loaded or a mix is drawn.
        if self.augment not in ("all", "new", "none"):
            raise ValueError(f"augment must be 'all', 'new' or 'none', got {self.augment!r}")


# What differs per network, chosen with make bench-continual (README, "Continual learning").
# The CNN keeps MNIST with as many MNIST images as drawings. The FNN's answers on other
# writers move more: with its MNIST replay augmented it broke far more reference-set
# drawings than it fixed (README), so it augments only the new drawings, replays six times
# as much MNIST and learns it toward its parent's answers, and replays the MNIST images of
# other digits nearest each new drawing (without them no FNN candidate passed the gate).
NETWORK_SETTINGS = {
    "fnn": {"augment": "new", "distillation": 0.9, "mnist_ratio": 6.0, "boundary_neighbours": 30},
    "cnn": {"mnist_ratio": 1.0},
}


def fine_tune_config(name: str, *, epochs: int, mnist_minimum: int) -> FineTuneConfig:
    """What a training run uses for network ``name``."""
    return FineTuneConfig(epochs=epochs, mnist_minimum=mnist_minimum, **NETWORK_SETTINGS[name])


@dataclass(frozen=True)
class Samples:
    """Preprocessed drawings as stored: (N, 28, 28) uint8 pixels and (N,) labels, and who drew
    each where it matters (a holdout: the gate asks how much of it one contributor made)."""

    x: np.ndarray
    y: np.ndarray
    contributors: np.ndarray | None = None

    @classmethod
    def empty(cls) -> "Samples":
        return cls(np.zeros((0, 28, 28), np.uint8), np.zeros((0,), np.uint8))

    def __len__(self) -> int:
        return len(self.y)


def training_mix(*, new: Samples, replay: Samples, mnist: Mnist | None, config: FineTuneConfig,
                 rng: np.random.Generator) -> Samples:
    """New drawings (repeated), a slice of older ones, and MNIST (digits only; None for another
    label set): what one run trains on."""
    parts_x = [np.repeat(new.x, config.new_repeats, axis=0)]
    parts_y = [np.repeat(new.y, config.new_repeats)]
    if len(replay):
        take = rng.choice(len(replay), size=min(len(replay), config.replay_limit), replace=False)
        parts_x.append(replay.x[take])
        parts_y.append(replay.y[take])
    if mnist is None:
        return Samples(np.concatenate(parts_x), np.concatenate(parts_y).astype(np.uint8))
    users = sum(len(y) for y in parts_y)
    count = min(len(mnist.x_train), max(config.mnist_minimum, int(users * config.mnist_ratio)))
    take = rng.choice(len(mnist.x_train), size=count, replace=False)
    if config.boundary_neighbours:
        take = np.concatenate([take, nearest_other_digits(new, mnist.x_train, mnist.y_train,
                                                          k=config.boundary_neighbours)])
    parts_x.append(mnist.x_train[take])
    parts_y.append(mnist.y_train[take])
    return Samples(np.concatenate(parts_x), np.concatenate(parts_y).astype(np.uint8))


def nearest_other_digits(new: Samples, pool_x: np.ndarray, pool_y: np.ndarray, *, k: int,
                         chunk: int = 5000) -> np.ndarray:
    """Indices into the pool of the ``k`` images nearest (Euclidean, in pixels) to each new
    drawing among those labelled otherwise, each index once, in order. The pool is read a
    chunk at a time, so the distances never take more than len(new) x chunk floats."""
    if len(new) == 0 or k <= 0:
        return np.zeros((0,), np.int64)
    queries = new.x.reshape(len(new), -1).astype(np.float32) / 255  # in [0, 1]: float32 keeps the sums exact enough
    query_norms = (queries ** 2).sum(axis=1)[:, None]
    found_distances, found_indices = [], []
    for start in range(0, len(pool_x), chunk):
        block = pool_x[start:start + chunk].reshape(-1, queries.shape[1]).astype(np.float32) / 255
        distances = query_norms - 2 * queries @ block.T + (block ** 2).sum(axis=1)[None, :]
        distances[new.y[:, None] == pool_y[None, start:start + chunk]] = np.inf
        keep = min(k, distances.shape[1])
        nearest = np.argpartition(distances, keep - 1, axis=1)[:, :keep]
        found_distances.append(np.take_along_axis(distances, nearest, axis=1))
        found_indices.append(nearest + start)
    distances, indices = np.concatenate(found_distances, axis=1), np.concatenate(found_indices, axis=1)
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    finite = np.isfinite(np.take_along_axis(distances, order, axis=1))  # a pool with too few other digits
    return np.unique(np.take_along_axis(indices, order, axis=1)[finite])


class _ProgressCallback(keras.callbacks.Callback):
    def __init__(self, progress: Progress, epochs: int, name: str):
        super().__init__()
        self.progress, self.epochs, self.name = progress, epochs, name

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.progress({"phase": "training", "model": self.name, "epoch": epoch + 1, "epochs": self.epochs,
                       "percent": round(100 * (epoch + 1) / self.epochs, 1),
                       "loss": float(logs.get("loss", 0.0)), "accuracy": float(logs.get("accuracy", 0.0))})


def fine_tune(keras_path: Path, *, name: str, new: Samples, replay: Samples, mnist: Mnist | None, seed: int = 0,
              config: FineTuneConfig, progress: Progress | None = None) -> keras.Model:
    """Continue training the network saved at ``keras_path`` on the mix; returns the candidate."""
    if len(new) == 0:
        raise ValueError("no new samples to fine-tune on")
    set_seed(seed)
    model = keras.models.load_model(keras_path)
    mix = training_mix(new=new, replay=replay, mnist=mnist, config=config, rng=np.random.default_rng(seed))
    base: TrainConfig = CONFIGS[name]
    train_config = replace(base, epochs=config.epochs, learning_rate=config.learning_rate,
                           optimizer=config.optimizer, batch_size=min(base.batch_size, 128))
    if config.augment == "none":
        train_config = replace(train_config, augmentation=None)
    learned = len(new) * config.new_repeats  # the mix starts with the new drawings
    targets = mix.y
    if config.distillation > 0:
        targets = distillation_targets(model, mix, learned=learned, weight=config.distillation)
    callbacks = [_ProgressCallback(progress, config.epochs, name)] if progress else []
    augmented = np.arange(len(mix)) < learned if config.augment == "new" else None
    fit(model, mix.x, targets, config=train_config, seed=seed, callbacks=callbacks, verbose=0, augmented=augmented)
    drawings = calibration_drawings(new=new, replay=replay, config=config, rng=np.random.default_rng(seed))
    if len(drawings):
        recalibrate_batch_norm(model, drawings, spatial_only=True)
    return model


def distillation_targets(parent: keras.Model, mix: Samples, *, learned: int, weight: float) -> np.ndarray:
    """Soft targets (N, classes) for ``mix``: its first ``learned`` rows (the new drawings) are
    their labels; every later row is ``weight`` of ``parent``'s answer and the rest its label."""
    classes = int(parent.output_shape[-1])
    targets = np.eye(classes, dtype=np.float32)[mix.y.astype(np.int64)]
    if learned < len(mix):
        answers = parent.predict(to_model_input(mix.x[learned:]), batch_size=1000, verbose=0)
        targets[learned:] = (1.0 - weight) * targets[learned:] + weight * answers.astype(np.float32)
    return targets


def calibration_drawings(*, new: Samples, replay: Samples, config: FineTuneConfig,
                         rng: np.random.Generator) -> np.ndarray:
    """The confirmed drawings batch-norm statistics are re-estimated on; empty if too few."""
    drawings = np.concatenate([new.x, replay.x])
    if len(drawings) < config.calibration_minimum:
        return drawings[:0]
    if len(drawings) > config.calibration_limit:
        drawings = drawings[np.sort(rng.choice(len(drawings), config.calibration_limit, replace=False))]
    return drawings


def evaluate(model: keras.Model, *, mnist: Mnist, holdout: Samples) -> dict:
    """The gate's two measures: MNIST test accuracy and accuracy on the frozen user holdout."""
    return {
        "mnist_test_accuracy": accuracy(model, mnist.x_test, mnist.y_test),
        "holdout_accuracy": accuracy(model, holdout.x, holdout.y) if len(holdout) else None,
        "holdout_size": int(len(holdout)),
    }


def predicted(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The digit the network reads in each stored 28x28 drawing."""
    if len(x) == 0:
        return np.zeros((0,), np.int64)
    return np.argmax(model.predict(to_model_input(x), batch_size=1000, verbose=0), axis=1)


def judge(parent: keras.Model, candidate: keras.Model, *, mnist: Mnist | None, holdout: Samples,
          reference: Samples, mnist_tolerance: float, mnist_first: float | None = None,
          max_share: float = 1.0, num_classes: int = 10) -> tuple[dict, dict, Decision]:
    """Both networks answer the same drawings; the paired gate (training.gate) decides.

    Returns the parent's and the candidate's metrics (accuracies, set sizes, the candidate's
    confusion matrix on the holdout) and the decision, whose checks hold the counts. Without
    ``mnist`` (a label set other than digits) there is no MNIST check; ``mnist_first`` is the
    MNIST accuracy of the version the parent's chain of fine-tunes started from, if known. A
    holdout with ``contributors`` shows improvement only on the drawings no contributor makes
    more than ``max_share`` of (training.contributors.counted; training.gate.decide).
    """
    sets = {"holdout": (holdout.x, holdout.y), "reference": (reference.x, reference.y)}
    if mnist is not None:
        sets = {"mnist": (mnist.x_test, mnist.y_test), **sets}
    answers = {name: (y, predicted(parent, x), predicted(candidate, x)) for name, (x, y) in sets.items()}
    capped = {} if holdout.contributors is None else {"holdout": counted(holdout.contributors, share=max_share)}
    decision = decide(answers, mnist_tolerance=mnist_tolerance, mnist_first=mnist_first, counted=capped,
                      max_share=max_share)

    def metrics(which: int) -> dict:
        found = {"mnist_test_accuracy": float(np.mean(answers["mnist"][which] == mnist.y_test))} if mnist else {}
        for name in ("holdout", "reference"):
            labels = answers[name][0]
            found[f"{name}_accuracy"] = float(np.mean(answers[name][which] == labels)) if len(labels) else None
            found[f"{name}_size"] = int(len(labels))
        if len(holdout):
            found["holdout_confusion"] = confusion(holdout.y, answers["holdout"][which], num_classes)
        return found

    return metrics(1), metrics(2), decision
