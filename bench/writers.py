"""Accuracy on the "writers" benchmark: handwriting fonts drawn like the canvas, per writer.

    python bench/writers.py [--models instance/models] [--seed 0] [--clean 20] [--messy 2]

Each writer's drawings go through training.preprocess as uploads do, and the networks
through their ONNX artifacts. The first run generates and caches the drawings under
instance/data/ (a few minutes on 2 cores); later runs only read them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# bench/http.py is named after the stdlib's http package; keep this folder off the import path.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training import MODEL_NAMES, writer_set, writers  # noqa: E402
from training.predictor import Predictor  # noqa: E402
from training.scoring import Scores, score  # noqa: E402
from training.versions import default_models_root  # noqa: E402


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=Path, default=None, help="a models folder (default instance/models)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clean", type=int, default=writer_set.CLEAN_PER_DIGIT,
                        help="clean drawings per writer and digit")
    parser.add_argument("--messy", type=int, default=writer_set.MESSY_PER_DIGIT,
                        help="drawings per writer, digit and messy variant")


def load(args: argparse.Namespace) -> writer_set.WriterSet:
    started = time.perf_counter()
    data = writer_set.load(seed=args.seed, clean_per_digit=args.clean, messy_per_digit=args.messy)
    print(f"writers: {len(set(data.writers))} writers, {len(data.labels):,} drawings "
          f"({args.clean} clean and {args.messy} of each messy variant per digit, seed {args.seed}; "
          f"ready in {time.perf_counter() - started:.0f} s)")
    for name, reason in writers.skipped().items():
        print(f"  left out: {name}: {reason}")
    return data


def writer_scores(predictor: Predictor, data: writer_set.WriterSet) -> dict[str, Scores]:
    return {name: score(model, data.pixels, data.labels) for name, model in predictor.models.items()}


def print_table(data: writer_set.WriterSet, scores: dict[str, Scores]) -> None:
    """Per writer (clean, messy) x network, then per variant, the worst writer and confusions."""
    clean = data.clean
    header = "".join(f"{name + ' clean':>11}{name + ' messy':>11}" for name in MODEL_NAMES)
    print(f"\n  {'writer':<24}{'group':<10}{header}")
    group_of = dict(zip(data.writers.tolist(), data.groups.tolist()))
    for writer in sorted(group_of):
        mine = data.writers == writer
        row = "".join(f"{scores[n].accuracy(mine & clean):>11.1%}{scores[n].accuracy(mine & ~clean):>11.1%}"
                      for n in MODEL_NAMES)
        print(f"  {writer:<24}{group_of[writer]:<10}{row}")
    for group in writers.GROUPS:
        mine = data.groups == group
        row = "".join(f"{scores[n].accuracy(mine & clean):>11.1%}{scores[n].accuracy(mine & ~clean):>11.1%}"
                      for n in MODEL_NAMES)
        print(f"  {'group ' + group:<34}{row}")
    row = "".join(f"{scores[n].accuracy(clean):>11.1%}{scores[n].accuracy(~clean):>11.1%}" for n in MODEL_NAMES)
    print(f"  {'all writers':<34}{row}")

    print(f"\n  {'variant':<14}" + "".join(f"{name:>9}" for name in MODEL_NAMES))
    variants = list(writers.CLEAN_STYLES) + list(writers.MESSY_VARIANTS)
    for variant in variants:
        chosen = data.variants == variant
        print(f"  {variant:<14}" + "".join(f"{scores[n].accuracy(chosen):>9.1%}" for n in MODEL_NAMES))

    for name in MODEL_NAMES:
        by_writer = scores[name].select(clean).by(data.writers[clean])
        worst = min(by_writer, key=by_writer.get)
        true, read, count = scores[name].worst_confusion()
        print(f"  {name}: worst writer (clean) {worst} {by_writer[worst]:.1%}; "
              f"commonest mistake {true} read as {read} ({count} times)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args()
    root = args.models or default_models_root()
    predictor = Predictor.from_directory(root)
    versions = ", ".join(f"{name} v{model.version}" for name, model in predictor.models.items())
    print(f"models: {versions} ({root})")
    data = load(args)
    print_table(data, writer_scores(predictor, data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
