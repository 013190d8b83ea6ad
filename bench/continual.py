"""Continual learning: fine-tuning on confirmed canvas drawings, a poisoned batch, its cost,
and the writers benchmark through a deployment.

    python -m bench.continual [--models instance/models] [--seeds 0 1 2 3 4]
                              [--scenarios canvas broad narrow]

The canvas scenario is described below; broad and narrow in bench.continual_writers.

Starting from the base versions, each network is fine-tuned with training.finetune exactly
as a training run does (training.finetune.fine_tune_config with the deployment's settings, no replay): on new canvas-like
drawings, on the same drawings with 30 % of the labels wrong, and on 1,000 more drawings
against the clock.
The drawings are re-rendered MNIST test digits passed through training.preprocess, the path
serving uses; the held-out ones come from all the digits no training drawing was made from
(8,500 by default: at 99 % a 2,000-drawing set moves by a few drawings from noise alone).
Each seed draws its own split and drawings and must pass the floors on its own: five by
default (~12 minutes), because one run's change is within a few drawings of the noise and a
single seed once hid that the FNN fell on most. Prints a table per seed, the change per seed
with its mean, and the floors from issue #4.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from bench.continual_writers import writers_scenarios
from bench.harness import print_floors
from training import MODEL_NAMES, NUM_CLASSES
from training.devset import VARIANTS, generate
from training.finetune import Samples, evaluate, fine_tune, fine_tune_config, judge
from training.mnist import Mnist, load_mnist
from training.preprocess import preprocess
from training.train import accuracy, default_models_root
from training.versions import load

import keras  # after training.finetune, which quietens TensorFlow's logging
from webapp.config import from_environment

# What a training run of this deployment uses (webapp/config.py owns the settings).
SETTINGS = from_environment()
MNIST_TOLERANCE = SETTINGS["MNIST_TOLERANCE"]
FINE_TUNE_CONFIGS = {name: fine_tune_config(name, epochs=SETTINGS["FINETUNE_EPOCHS"],
                                            mnist_minimum=SETTINGS["FINETUNE_MNIST_MINIMUM"])
                     for name in MODEL_NAMES}

TIME_LIMIT_SECONDS = 90.0  # issue #4: one run on 1,000 new drawings, both networks, 2 CPU cores
CLEAN_ABOVE = 0.995  # issue #4: above this, holdout accuracy need only not fall
SCENARIOS = ("canvas", "broad", "narrow")


def canvas_samples(mnist: Mnist, digits: np.ndarray, count: int, *, seed: int) -> tuple[Samples, np.ndarray]:
    """``count`` canvas-like drawings (all variants) of the MNIST test digits ``digits``, preprocessed.

    Returns the stored pixels and labels, and the MNIST test index each drawing was made from.
    """
    per_variant = math.ceil(count / len(VARIANTS))
    drawings = generate(mnist.x_test[digits], mnist.y_test[digits], per_variant=per_variant, seed=seed)
    keep = np.sort(np.random.default_rng(seed).choice(len(drawings), size=count, replace=False))
    drawings = [drawings[i] for i in keep]
    pixels = np.stack([preprocess(d.data_url).pixels for d in drawings])
    labels = np.array([d.label for d in drawings], np.uint8)
    return Samples(pixels, labels), digits[[d.mnist_index for d in drawings]]


def poison(samples: Samples, fraction: float, *, seed: int) -> tuple[Samples, int]:
    """The same drawings with a seeded ``fraction`` of the labels moved to the next digit."""
    wrong = np.random.default_rng(seed).choice(len(samples), size=round(fraction * len(samples)), replace=False)
    labels = samples.y.copy()
    labels[wrong] = (labels[wrong] + 1) % NUM_CLASSES
    return Samples(samples.x, labels), len(wrong)


def hurts(parent: dict, candidate: dict) -> bool:
    """Worse on MNIST by more than the tolerance, or worse on the holdout at all (issue #4)."""
    return (parent["mnist_test_accuracy"] - candidate["mnist_test_accuracy"] > MNIST_TOLERANCE
            or candidate["holdout_accuracy"] < parent["holdout_accuracy"])


def points(before: float, after: float) -> str:
    return f"{(after - before) * 100:+.2f}"


def run_seed(seed: int, *, args, mnist: Mnist, parents: dict, timed_run: bool, reference: Samples) -> dict:
    """Everything for one seed: its drawings, the fine-tunes and their evaluation (and the clock)."""
    drawings = seed_drawings(seed, args=args, mnist=mnist)
    new, holdout, timed, poisoned, wrong = (drawings[key] for key in ("new", "holdout", "timed", "poisoned", "wrong"))
    unseen = np.setdiff1d(np.arange(len(mnist.x_test)), drawings["new_digits"])
    results: dict[str, dict] = {}
    for name, stored in parents.items():
        model = keras.models.load_model(stored.keras_path)
        row = {"parent": evaluate(model, mnist=mnist, holdout=holdout)}
        row["parent"]["unseen"] = accuracy(model, mnist.x_test[unseen], mnist.y_test[unseen])
        for kind, samples in (("clean", new), ("poisoned", poisoned)):
            candidate = fine_tune(stored.keras_path, name=name, new=samples, replay=Samples.empty(), mnist=mnist,
                                  seed=seed, config=FINE_TUNE_CONFIGS[name])
            row[kind] = evaluate(candidate, mnist=mnist, holdout=holdout)
            row[kind]["unseen"] = accuracy(candidate, mnist.x_test[unseen], mnist.y_test[unseen])
            decision = judge(model, candidate, mnist=mnist, holdout=holdout, reference=reference,
                             mnist_tolerance=MNIST_TOLERANCE)[2]
            row[kind]["promote"], row[kind]["reason"] = decision.promote, decision.reason
        results[name] = row
        print(f"  {name}: fine-tuned on the new drawings and on the poisoned ones", flush=True)

    seconds = timed_runs(seed, parents=parents, timed=timed, holdout=holdout, reference=reference, mnist=mnist,
                         results=results) if timed_run else {}

    rows = [("base", "parent"), (f"fine-tuned on {len(new):,}", "clean"),
            (f"poisoned {len(poisoned):,} ({wrong / len(new):.0%} wrong)", "poisoned")]
    if timed_run:
        rows.append((f"fine-tuned on {len(timed):,} (timed)", "timed"))
    print(f"\n  Accuracy: MNIST test ({len(mnist.x_test):,}), MNIST w/o the new drawings' digits ({len(unseen):,}), "
          f"held-out canvas ({len(holdout):,})")
    print_accuracy_table(results, rows)
    print_gate(results)
    return {"results": results, "seconds": seconds, "holdout": len(holdout), "new": len(new),
            "timed": len(timed)}


def timed_runs(seed: int, *, parents: dict, timed: Samples, holdout: Samples, reference: Samples, mnist: Mnist,
               results: dict) -> dict[str, float]:
    """Each network's part of one run on ``timed``: model loading, training and the gate's
    judging on MNIST, the holdout and the reference set, as a run does them (the drawings are ready)."""
    seconds = {}
    for name, stored in parents.items():
        started = time.perf_counter()
        candidate = fine_tune(stored.keras_path, name=name, new=timed, replay=Samples.empty(), mnist=mnist,
                              seed=seed, config=FINE_TUNE_CONFIGS[name])
        judge(keras.models.load_model(stored.keras_path), candidate, mnist=mnist, holdout=holdout,
              reference=reference, mnist_tolerance=MNIST_TOLERANCE)
        seconds[name] = time.perf_counter() - started
        results[name]["timed"] = evaluate(candidate, mnist=mnist, holdout=holdout)
    return seconds


def seed_drawings(seed: int, *, args, mnist: Mnist) -> dict:
    """One seed's drawings: new, held out, timed, and the new ones poisoned."""
    # Disjoint sets of MNIST test digits: each drawing is made from a digit of its own set only.
    order = np.random.default_rng(seed).permutation(len(mnist.x_test))
    sizes = [args.new, args.holdout, args.timed]
    pools = np.split(order[:sum(sizes)], np.cumsum(sizes)[:-1])
    started = time.perf_counter()
    new, new_digits = canvas_samples(mnist, pools[0], args.new, seed=seed)
    holdout, holdout_digits = canvas_samples(mnist, pools[1], args.holdout, seed=seed + 1)
    timed, timed_digits = canvas_samples(mnist, pools[2], args.timed, seed=seed + 2)
    poisoned, wrong = poison(new, args.poisoned_fraction, seed=seed)
    generated = time.perf_counter() - started
    training_digits = set(new_digits.tolist()) | set(timed_digits.tolist())
    assert not training_digits & set(holdout_digits.tolist()), "a held-out drawing shares a digit with training"
    print(f"\n== seed {seed}: canvas-like drawings (all {len(VARIANTS)} variants, preprocessed as served; "
          f"generated in {generated:.0f} s)")
    print(f"  new confirmed   {len(new):>5,}  from {len(set(new_digits.tolist())):>5,} MNIST test digits")
    print(f"  poisoned        {len(poisoned):>5,}  the same drawings, {wrong} labels ({wrong / len(new):.0%}) "
          "set to label+1 mod 10")
    print(f"  held out        {len(holdout):>5,}  from {len(set(holdout_digits.tolist())):>5,} other MNIST test digits "
          "(no digit shared with any training drawing)")
    print(f"  timed run       {len(timed):>5,}  from {len(set(timed_digits.tolist())):>5,} further MNIST test digits")
    return {"new": new, "new_digits": new_digits, "holdout": holdout, "timed": timed, "poisoned": poisoned,
            "wrong": wrong}


def print_accuracy_table(results: dict, rows: list[tuple[str, str]]) -> None:
    header = "".join(f"{name + ' MNIST':>12}{'MNIST w/o':>11}{'canvas':>9}" for name in MODEL_NAMES)
    print(f"  {'':<30}{header}")
    for label, kind in rows:
        line = f"  {label:<30}"
        change = f"  {'  change (points)':<30}"
        for name in MODEL_NAMES:
            parent, after = results[name]["parent"], results[name][kind]
            # The timed run trained on other digits, so 'MNIST w/o' does not apply to it.
            unseen_text = f"{after['unseen']:.2%}" if "unseen" in after else "-"
            unseen_change = points(parent["unseen"], after["unseen"]) if "unseen" in after else "-"
            line += f"{after['mnist_test_accuracy']:>12.2%}{unseen_text:>11}{after['holdout_accuracy']:>9.2%}"
            change += (f"{points(parent['mnist_test_accuracy'], after['mnist_test_accuracy']):>12}"
                       f"{unseen_change:>11}{points(parent['holdout_accuracy'], after['holdout_accuracy']):>9}")
        print(line)
        if kind != "parent":
            print(change)


def print_gate(results: dict) -> None:
    print("\n  Gate (training.gate: promote only on significantly more fixed than broken, MNIST falling <= "
          f"{MNIST_TOLERANCE * 100:.1f} points, no set or digit significantly worse)")
    for kind in ("clean", "poisoned"):
        for name in MODEL_NAMES:
            after = results[name][kind]
            print(f"    {kind:<9}{name}: {'PROMOTE' if after['promote'] else 'REJECT '}  {after['reason']}")


def floors(seed: int, run: dict) -> list[tuple[str, bool]]:
    """Issue #4's accuracy and gate floors for one seed's run."""
    results, size, new = run["results"], run["holdout"], run["new"]
    checks = []
    for name in MODEL_NAMES:
        parent, after = results[name]["parent"], results[name]["clean"]
        before_canvas, after_canvas = parent["holdout_accuracy"], after["holdout_accuracy"]
        rises = after_canvas > before_canvas or (before_canvas > CLEAN_ABOVE and after_canvas >= before_canvas)
        fixed = round((after_canvas - before_canvas) * size)
        checks.append((f"seed {seed} {name}: held-out canvas rises after {new:,} drawings "
                       f"({before_canvas:.2%} -> {after_canvas:.2%}, {fixed:+d} of {size:,} right)", rises))
        drop = parent["mnist_test_accuracy"] - after["mnist_test_accuracy"]
        checks.append((f"seed {seed} {name}: MNIST test falls <= {MNIST_TOLERANCE * 100:.1f} points "
                       f"({parent['mnist_test_accuracy']:.2%} -> {after['mnist_test_accuracy']:.2%}, "
                       f"{-drop * 100:+.2f})", drop <= MNIST_TOLERANCE + 1e-9))
    for name in MODEL_NAMES:
        after = results[name]["poisoned"]
        harmful = hurts(results[name]["parent"], after)
        outcome = ("rejected" if not after["promote"] else "promoted") + (", and it hurts" if harmful else
                                                                         ", and it hurts neither metric")
        checks.append((f"seed {seed} {name}: a harmful poisoned batch is not promoted ({outcome})",
                       not (after["promote"] and harmful)))
    return checks


def print_changes(runs: dict, args) -> None:
    """Each network's change in accuracy per seed, and its mean."""
    print(f"\nChange after fine-tuning on {args.new:,} drawings, per seed and mean (points; held-out canvas "
          f"{args.holdout:,} drawings per seed)")
    for name in MODEL_NAMES:
        for metric, label in (("mnist_test_accuracy", "MNIST test"), ("holdout_accuracy", "canvas")):
            changes = [(run["results"][name]["clean"][metric] - run["results"][name]["parent"][metric]) * 100
                       for run in runs.values()]
            per_seed = "  ".join(f"{change:+.2f}" for change in changes)
            rose = sum(change > 0 for change in changes)
            print(f"  {name} {label:<11} {per_seed}   mean {np.mean(changes):+.3f}, "
                  f"up on {rose} of {len(changes)} seeds")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS),
                        help="canvas: canvas-like drawings, a poisoned batch and the timed run; broad and "
                             "narrow: the writers benchmark through a deployment")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                        help="one run per seed, each with its own split and drawings (the first is timed)")
    parser.add_argument("--new", type=int, default=500, help="confirmed drawings to fine-tune on")
    parser.add_argument("--holdout", type=int, default=None,
                        help="held-out drawings to judge on (default: every MNIST test digit left over)")
    parser.add_argument("--timed", type=int, default=1000, help="new drawings in the timed run")
    parser.add_argument("--poisoned-fraction", type=float, default=0.3)
    args = parser.parse_args()
    root = args.models or default_models_root()
    mnist = load_mnist()
    if args.holdout is None:
        args.holdout = len(mnist.x_test) - args.new - args.timed
    if args.new + args.holdout + args.timed > len(mnist.x_test):
        parser.error(f"--new, --holdout and --timed need {args.new + args.holdout + args.timed:,} MNIST test "
                     f"digits; there are {len(mnist.x_test):,}")
    parents = {name: load(root, name) for name in MODEL_NAMES}
    print("models: " + ", ".join(f"{name} v{stored.version}" for name, stored in parents.items()) + f" ({root})")
    print(f"fine-tuning (as training runs do), seeds {args.seeds}, scenarios {args.scenarios}:")
    for name in MODEL_NAMES:
        print(f"  {name}: {FINE_TUNE_CONFIGS[name]}")
    checks = []
    if "canvas" in args.scenarios:
        checks += canvas_scenario(args, mnist=mnist, parents=parents)
    writer_kinds = [kind for kind in ("broad", "narrow") if kind in args.scenarios]
    if writer_kinds:
        checks += writers_scenarios(writer_kinds, args, mnist=mnist, parents=parents, root=root)
    return print_floors("Floors (issue #4 and Step 10; seeds printed one by one)", checks)


def canvas_scenario(args, *, mnist: Mnist, parents: dict) -> list[tuple[str, bool]]:
    print("Note: every drawing is a re-rendered MNIST *test* digit, so the MNIST test metric includes\n"
          "the digits the training drawings were made from; the column 'MNIST w/o' leaves out the\n"
          f"{args.new:,} behind the new drawings.")

    from training.reference import cached, from_bytes

    # The gate as a deployment runs it: with the reference set (`flask reference build`).
    stored = from_bytes(cached(x_test=mnist.x_test, y_test=mnist.y_test))
    reference = Samples(stored["x"], stored["y"])
    print(f"Judged on MNIST test, the held-out canvas drawings and the reference set ({len(reference):,} drawings)")
    runs = {seed: run_seed(seed, args=args, mnist=mnist, parents=parents, timed_run=index == 0, reference=reference)
            for index, seed in enumerate(args.seeds)}

    if len(runs) > 1:
        print_changes(runs, args)

    first = runs[args.seeds[0]]
    seconds = first["seconds"]
    total = sum(seconds.values())
    print(f"\nTime to fine-tune and judge on {first['timed']:,} new drawings (seed {args.seeds[0]}, model loading "
          "included, 2 CPU cores shared with whatever else runs)")
    for name in MODEL_NAMES:
        print(f"  {name:<6}{seconds[name]:6.1f} s  ({FINE_TUNE_CONFIGS[name].epochs} epochs)")
    print(f"  {'total':<6}{total:6.1f} s  (the floor is on the total: one run fine-tunes both networks)")

    checks = [check for seed, run in runs.items() for check in floors(seed, run)]
    checks.append((f"one run on {first['timed']:,} new drawings, both networks <= {TIME_LIMIT_SECONDS:.0f} s "
                   f"({total:.1f} s)", total <= TIME_LIMIT_SECONDS))
    return checks


if __name__ == "__main__":
    raise SystemExit(main())
