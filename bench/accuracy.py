"""Accuracy of the served models: MNIST test split, canvas-like drawings, and the writers benchmark.

    python -m bench.accuracy [--models instance/models] [--per-variant 1000] [--seed 0]
                             [--clean 20] [--messy 2]

``--models`` (or INKLING_INSTANCE_PATH) points it at any models folder, a candidate's included.
Everything goes through the serving path: the drawings through training.preprocess, the
networks through their ONNX artifacts. Prints the tables and the floors, PASS or FAIL; exits
1 if any floor fails.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


from bench import writers as writers_bench
from bench.harness import print_floors
from training import MODEL_NAMES
from training.devset import VARIANTS, generate
from training.mnist import load_mnist
from training.predictor import Predictor
from training.preprocess import preprocess
from training.scoring import score
from training.versions import default_models_root

FLOORS = {
    "mnist": {"cnn": 0.995, "fnn": 0.985},
    "canvas": {"cnn": 0.993, "fnn": 0.983},
    "canvas_variant": {"cnn": 0.97},
    "writers_clean": {"cnn": 0.99, "fnn": 0.975},
    "writers_messy": {"cnn": 0.98, "fnn": 0.95},
    "worst_writer": {"cnn": 0.95},
}


def canvas_accuracy(predictor, mnist, args) -> tuple[dict, dict]:
    """Accuracy on canvas-like drawings re-rendered from MNIST test digits: overall and by variant."""
    started = time.perf_counter()
    drawings = generate(mnist.x_test, mnist.y_test, per_variant=args.per_variant, seed=args.seed)
    generated = time.perf_counter() - started
    pixels = np.stack([preprocess(d.data_url).pixels for d in drawings])
    labels = np.array([d.label for d in drawings])
    variants = np.array([d.variant for d in drawings])
    canvas = {name: score(model, pixels, labels) for name, model in predictor.models.items()}
    print(f"\nCanvas-like drawings from MNIST test digits: {len(drawings):,} "
          f"({args.per_variant} per variant, seed {args.seed}; generated in {generated:.0f} s)")
    print(f"  {'variant':<14}" + "".join(f"{name:>9}" for name in MODEL_NAMES))
    by_variant = {name: canvas[name].by(variants) for name in MODEL_NAMES}
    for variant in VARIANTS:
        print(f"  {variant:<14}" + "".join(f"{by_variant[name][variant]:>9.2%}" for name in MODEL_NAMES))
    overall = {name: canvas[name].accuracy() for name in MODEL_NAMES}
    print(f"  {'all':<14}" + "".join(f"{overall[name]:>9.2%}" for name in MODEL_NAMES))
    return overall, by_variant


def floor_checks(mnist_accuracy: dict, overall: dict, by_variant: dict, data, writer_scores: dict) -> list:
    """Each floor as (label, measured, floor)."""
    clean = data.clean
    checks = [(f"MNIST {name} >= {floor:.1%}", mnist_accuracy[name], floor)
              for name, floor in FLOORS["mnist"].items()]
    checks += [(f"canvas-like {name} >= {floor:.1%}", overall[name], floor)
               for name, floor in FLOORS["canvas"].items()]
    for name, floor in FLOORS["canvas_variant"].items():
        worst = min(VARIANTS, key=by_variant[name].get)
        checks.append((f"every canvas-like variant {name} >= {floor:.1%} (worst: {worst})",
                       by_variant[name][worst], floor))
    checks += [(f"writers clean {name} >= {floor:.1%}", writer_scores[name].accuracy(clean), floor)
               for name, floor in FLOORS["writers_clean"].items()]
    checks += [(f"writers messy {name} >= {floor:.1%}", writer_scores[name].accuracy(~clean), floor)
               for name, floor in FLOORS["writers_messy"].items()]
    for name, floor in FLOORS["worst_writer"].items():
        by_writer = writer_scores[name].select(clean).by(data.writers[clean])
        worst = min(by_writer, key=by_writer.get)
        checks.append((f"every writer clean {name} >= {floor:.1%} (worst: {worst})", by_writer[worst], floor))
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    writers_bench.add_arguments(parser)
    parser.add_argument("--per-variant", type=int, default=1000)
    args = parser.parse_args()
    root = args.models or default_models_root()
    predictor = Predictor.from_directory(root)
    mnist = load_mnist()
    versions = ", ".join(f"{name} v{model.version}" for name, model in predictor.models.items())
    print(f"models: {versions} ({root})")

    mnist_accuracy = {name: score(model, mnist.x_test, mnist.y_test).accuracy()
                      for name, model in predictor.models.items()}
    print(f"\nMNIST test split ({len(mnist.x_test):,} digits)")
    for name in MODEL_NAMES:
        print(f"  {name}: {mnist_accuracy[name]:.2%}")

    overall, by_variant = canvas_accuracy(predictor, mnist, args)

    print()
    data = writers_bench.load(args)
    writer_scores = writers_bench.writer_scores(predictor, data)
    writers_bench.print_table(data, writer_scores)

    print("\nFloors")
    checks = floor_checks(mnist_accuracy, overall, by_variant, data, writer_scores)
    return print_floors("Floors", [(f"{label}: {measured:.2%}", measured >= floor) for label, measured, floor in checks])


if __name__ == "__main__":
    raise SystemExit(main())
