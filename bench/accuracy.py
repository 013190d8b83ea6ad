"""Accuracy of the served models: MNIST test split, and canvas-like drawings by variant.

    python -m bench.accuracy [--models instance/models] [--per-variant 1000] [--seed 0]

Everything goes through the serving path: the drawings through training.preprocess, the
networks through their ONNX artifacts. Prints a table and the floors from issue #2.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


from bench.harness import print_floors
from training import MODEL_NAMES
from training.devset import VARIANTS, generate
from training.mnist import load_mnist
from training.predictor import Predictor
from training.preprocess import preprocess, to_model_input
from training.versions import default_models_root

FLOORS = {  # issue #2
    "mnist": {"cnn": 0.995, "fnn": 0.985},
    "canvas": {"cnn": 0.99, "fnn": 0.97},
    "canvas_variant": {"cnn": 0.97},
}


def batch_accuracy(predictor: Predictor, pixels: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    batch = to_model_input(pixels)
    return {name: float(np.mean(model.probabilities(batch).argmax(axis=1) == labels))
            for name, model in predictor.models.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--per-variant", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = args.models or default_models_root()
    predictor = Predictor.from_directory(root)
    mnist = load_mnist()
    versions = ", ".join(f"{name} v{model.version}" for name, model in predictor.models.items())
    print(f"models: {versions} ({root})")

    mnist_accuracy = batch_accuracy(predictor, mnist.x_test, mnist.y_test)
    print(f"\nMNIST test split ({len(mnist.x_test):,} digits)")
    for name in MODEL_NAMES:
        print(f"  {name}: {mnist_accuracy[name]:.2%}")

    started = time.perf_counter()
    drawings = generate(mnist.x_test, mnist.y_test, per_variant=args.per_variant, seed=args.seed)
    generated = time.perf_counter() - started
    pixels = np.stack([preprocess(d.data_url).pixels for d in drawings])
    labels = np.array([d.label for d in drawings])
    variants = np.array([d.variant for d in drawings])
    print(f"\nCanvas-like drawings from MNIST test digits: {len(drawings):,} "
          f"({args.per_variant} per variant, seed {args.seed}; generated in {generated:.0f} s)")
    print(f"  {'variant':<14}" + "".join(f"{name:>9}" for name in MODEL_NAMES))
    by_variant = {}
    for variant in VARIANTS:
        chosen = variants == variant
        by_variant[variant] = batch_accuracy(predictor, pixels[chosen], labels[chosen])
        print(f"  {variant:<14}" + "".join(f"{by_variant[variant][name]:>9.2%}" for name in MODEL_NAMES))
    overall = batch_accuracy(predictor, pixels, labels)
    print(f"  {'all':<14}" + "".join(f"{overall[name]:>9.2%}" for name in MODEL_NAMES))

    checks = [(f"MNIST {name} >= {floor:.1%}", mnist_accuracy[name] >= floor)
              for name, floor in FLOORS["mnist"].items()]
    checks += [(f"canvas {name} >= {floor:.1%}", overall[name] >= floor)
               for name, floor in FLOORS["canvas"].items()]
    worst = min(VARIANTS, key=lambda v: by_variant[v]["cnn"])
    floor = FLOORS["canvas_variant"]["cnn"]
    checks.append((f"every variant cnn >= {floor:.0%} (worst: {worst} {by_variant[worst]['cnn']:.2%})",
                   by_variant[worst]["cnn"] >= floor))
    return print_floors("Floors (issue #2)", checks)


if __name__ == "__main__":
    raise SystemExit(main())
