"""Train the base FNN and CNN on MNIST and publish them as model versions.

    python -m training.train                  # both networks, into instance/models
    python -m training.train --models cnn --seed 1 --out /tmp/models
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from training import MODEL_NAMES  # noqa: E402
from training.augment import CNN_AUGMENTATION, FNN_AUGMENTATION, Augmentation, training_dataset  # noqa: E402
from training.export import save_version  # noqa: E402
from training.mnist import load_mnist  # noqa: E402
from training.networks import build  # noqa: E402
from training.preprocess import to_model_input  # noqa: E402
from training.synth import synthesise_batch  # noqa: E402
from training.versions import StoredVersion, default_models_root, list_versions, next_version  # noqa: E402


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int
    learning_rate: float
    # Off: TensorFlow's op determinism (needed for seeded, repeatable runs) rules XLA out,
    # and Keras would only warn and fall back.
    jit_compile: bool
    augmentation: Augmentation | None
    # "adam" trains from scratch; "sgd" (Nesterov momentum 0.9, no warm-up) continues training
    # a converged network, see compile_model.
    optimizer: str = "adam"
    # Procedural drawings (training.synth) added to MNIST: styles MNIST's writers rarely used.
    synthetic: int = 0


CONFIGS = {
    "fnn": TrainConfig(epochs=10, batch_size=256, learning_rate=1e-3, jit_compile=False,
                       augmentation=FNN_AUGMENTATION, synthetic=20_000),
    "cnn": TrainConfig(epochs=8, batch_size=128, learning_rate=2e-3, jit_compile=False,
                       augmentation=CNN_AUGMENTATION, synthetic=20_000),
}


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def compile_model(model: keras.Model, config: TrainConfig, steps: int, *, soft_targets: bool = False) -> None:
    total = max(1, steps * config.epochs)
    if config.optimizer == "sgd":
        # Adam scales each weight's step to about the learning rate whatever its gradient, so on a
        # converged network it moves every weight a little in a noisy direction: fine-tuning then
        # swaps which drawings are right without learning from the new ones. SGD's steps follow
        # the gradient, which is large only where the new drawings disagree with the network.
        optimizer = keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(config.learning_rate, total),
                                         momentum=0.9, nesterov=True)
    elif config.optimizer == "adam":
        optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=total, warmup_target=config.learning_rate,
            warmup_steps=max(1, min(steps // 2, total // 10)),
        ))
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; expected 'adam' or 'sgd'")
    # Soft targets (one probability per class, as distillation gives) need the dense loss.
    loss = "categorical_crossentropy" if soft_targets else "sparse_categorical_crossentropy"
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"], jit_compile=config.jit_compile)


def fit(model: keras.Model, x: np.ndarray, y: np.ndarray, *, config: TrainConfig, seed: int,
        validation: tuple[np.ndarray, np.ndarray] | None = None, callbacks=(), verbose="auto",
        augmented: np.ndarray | None = None) -> keras.Model:
    """Train ``model`` in place on uint8 images ``x`` (N, 28, 28) and labels ``y``: class
    indices (N,), or soft targets (N, classes) whose rows sum to 1. ``augmented`` (N,) bool limits
    the augmentation to those images."""
    batch_size = min(config.batch_size, len(x))
    steps = max(1, len(x) // batch_size)
    compile_model(model, config, steps, soft_targets=np.ndim(y) == 2)
    dataset = training_dataset(x, y, batch_size=batch_size, seed=seed, spec=config.augmentation,
                               augmented=augmented)
    validation_data = (to_model_input(validation[0]), validation[1]) if validation is not None else None
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    # Validating only after the last epoch saves ~5% of a base run; the bar still shows loss/accuracy.
    model.fit(dataset, steps_per_epoch=steps, epochs=config.epochs, validation_data=validation_data,
              validation_freq=[config.epochs], callbacks=list(callbacks), verbose=verbose)
    return model


def recalibrate_batch_norm(model: keras.Model, x: np.ndarray, *, spatial_only: bool = True) -> list[str]:
    """Re-estimate batch-norm moving statistics on clean images ``x`` (N, 28, 28) uint8.

    Training leaves each batch-norm layer with statistics of its last few *augmented* batches
    (rotated, sheared, thickened); the network then serves unaugmented drawings. This sets them
    to the statistics of ``x`` instead, layer by layer in inference mode, each layer seeing the
    output of the already recalibrated ones. ``spatial_only`` keeps to the convolutional layers,
    whose statistics pool every position of every image (500 drawings give 32,000 to 288,000
    values a channel); a dense layer gets one value a drawing, too few to estimate its units
    from a small batch. Returns the names of the layers it changed. The model must be a chain of
    layers (both of Inkling's networks are).
    """
    layers = model.layers
    if any(layers[i].input is not layers[i - 1].output for i in range(1, len(layers))):
        raise ValueError("recalibrate_batch_norm needs a network that is a chain of layers")
    targets = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)
               and (not spatial_only or len(layer.input.shape) == 4)]
    if not targets:
        return []
    values = to_model_input(x)
    # Only as far as the last layer to recalibrate: what comes after cannot change its input.
    for layer in layers[1:layers.index(targets[-1]) + 1]:
        if layer in targets:
            axes = tuple(range(values.ndim - 1))
            layer.moving_mean.assign(values.mean(axis=axes, dtype=np.float64).astype(np.float32))
            layer.moving_variance.assign(values.var(axis=axes, dtype=np.float64).astype(np.float32))
        values = np.asarray(layer(values, training=False))
    return [layer.name for layer in targets]


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    if len(x) == 0:
        return float("nan")
    probabilities = model.predict(to_model_input(x), batch_size=1000, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=1) == y))


@functools.lru_cache(maxsize=1)
def _synthetic(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    # Both networks of a run train on the same drawings, which take ~a minute to draw.
    return synthesise_batch(count, seed=seed)


def train_base(name: str, *, root: Path, seed: int = 0, config: TrainConfig | None = None,
               mnist=None, train_limit: int | None = None, verbose="auto") -> StoredVersion:
    """Train one network from scratch on MNIST, evaluate it and publish it as a new version."""
    config = config or CONFIGS[name]
    mnist = mnist or load_mnist()
    x, y = mnist.x_train, mnist.y_train
    if train_limit:
        x, y = x[:train_limit], y[:train_limit]
    # A run on part of MNIST gets procedural drawings in the same proportion.
    synthetic = round(config.synthetic * len(x) / len(mnist.x_train))
    if synthetic:
        synthetic_x, synthetic_y = _synthetic(synthetic, seed)
        x, y = np.concatenate([x, synthetic_x]), np.concatenate([y, synthetic_y])
    set_seed(seed)
    model = build(name)
    started = time.perf_counter()
    fit(model, x, y, config=config, seed=seed, validation=(mnist.x_val, mnist.y_val), verbose=verbose)
    seconds = time.perf_counter() - started
    metrics = {
        "mnist_test_accuracy": accuracy(model, mnist.x_test, mnist.y_test),
        "mnist_val_accuracy": accuracy(model, mnist.x_val, mnist.y_val),
    }
    training = {"kind": "base", "seed": seed, "samples": int(len(x)), "synthetic": synthetic,
                "seconds": round(seconds, 1),
                "config": {**asdict(replace(config, augmentation=None)),
                           "augmentation": asdict(config.augmentation) if config.augmentation else None}}
    return save_version(model, root=root, name=name, version=next_version(root, name), parent=None,
                        metrics=metrics, training=training, check_sample=to_model_input(mnist.x_test[:256]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="models folder (default: instance/models)")
    parser.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override every model's epoch count")
    parser.add_argument("--train-limit", type=int, default=None,
                        help="train on the first N MNIST images only (and procedural drawings in proportion)")
    parser.add_argument("--mnist-path", default=None, help="a local MNIST (.npz, IDX folder, .pkl.gz, .whl)")
    parser.add_argument("--if-missing", action="store_true", help="skip models that already have a version")
    args = parser.parse_args(argv)
    root = args.out or default_models_root()
    mnist = load_mnist(source=args.mnist_path)
    for name in args.models:
        if args.if_missing and list_versions(root, name):
            print(f"{name}: version {list_versions(root, name)[-1]} exists; skipping")
            continue
        config = CONFIGS[name] if args.epochs is None else replace(CONFIGS[name], epochs=args.epochs)
        print(f"== training {name}: {config.epochs} epochs on {args.train_limit or len(mnist.x_train)} MNIST images"
              + (f" and {config.synthetic:,} procedural drawings" if config.synthetic else ""))
        stored = train_base(name, root=root, seed=args.seed, config=config, mnist=mnist,
                            train_limit=args.train_limit)
        metrics = stored.manifest["metrics"]
        print(f"{name} v{stored.version}: MNIST test accuracy {metrics['mnist_test_accuracy']:.2%} "
              f"in {stored.manifest['training']['seconds']:.0f} s -> {stored.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
