"""Continual learning on the writers benchmark, through a deployment: the broad and narrow scenarios.

Run from bench.continual (``--scenarios broad narrow``). Each seed gets a fresh deployment
(bench.deployment): the base versions active, the reference set stored, drawings posted to
the API by one visitor per writer, confirmed by AUTO_CONFIRM, trained on by the runs the
product starts (RETRAIN_EVERY, follow-ups, then the admin for what still waits) with the
workers' code. What counts is the active version afterwards: a rejected run leaves it as it was.

- broad: 500 drawings of every teach writer, interleaved. Must lift the teach writers'
  drawings that were never contributed, carry over to the exam writers, and keep MNIST.
- narrow: 150 drawings of one writer (Kristi). Must not cost the exam writers.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np

from training import MODEL_NAMES, NUM_CLASSES
from training.finetune import Samples
from training.mnist import Mnist
from training.train import accuracy

import keras  # after training.finetune, which quietens TensorFlow's logging
from webapp.config import from_environment

SETTINGS = from_environment()
MNIST_TOLERANCE = SETTINGS["MNIST_TOLERANCE"]

TEACH_HOLDOUT_OFFSET = 1000  # teach writers' held-out drawings: another seed, so never contributed
BROAD_DRAWINGS = 500
NARROW_DRAWINGS = 150
NARROW_WRITER = "kristi"
BROAD_TEACH_RISE = 0.010  # mean over seeds, each network
BROAD_EXAM_FALL = 0.001  # mean over seeds may fall at most this much
BROAD_EXAM_UP_SHARE = 0.6  # up on at least 3 of 5 seeds
NARROW_EXAM_FALL = 0.003  # on every seed


def contributions(chosen: list, count: int, *, seed: int) -> list:
    """``count`` drawings of the ``chosen`` writers, as many of each, shuffled together."""
    from training import writers

    rng = np.random.default_rng(seed)
    per_writer = math.ceil(count / len(chosen))
    # Enough of each digit for the share; messy variants as often as the development set has them.
    clean = max(2, math.ceil(per_writer / NUM_CLASSES))
    pools = [writers.writer_drawings(writer, seed=seed, clean_per_digit=clean, messy_per_digit=1)
             for writer in chosen]
    picked = [(writer, pool[i]) for writer, pool in zip(chosen, pools)
              for i in np.sort(rng.choice(len(pool), size=min(per_writer, len(pool)), replace=False))]
    order = rng.permutation(len(picked))[:count]
    return [picked[i] for i in order]


def writer_sets(seed: int) -> dict[str, Samples]:
    """What the scenarios are measured on: teach writers' drawings never contributed, and the exam writers'."""
    from training import writer_set, writers

    teach = writer_set.load(writers.writers(group="teach"), seed=seed + TEACH_HOLDOUT_OFFSET)
    exam = writer_set.load(writers.writers(group="exam"), seed=seed)
    return {"teach": Samples(teach.pixels, teach.labels), "exam": Samples(exam.pixels, exam.labels)}


def measure(model, sets: dict[str, Samples], mnist: Mnist) -> dict[str, float]:
    return {"mnist": accuracy(model, mnist.x_test, mnist.y_test),
            **{key: accuracy(model, samples.x, samples.y) for key, samples in sets.items()}}


def run_writers_scenario(kind: str, seed: int, *, models_root: Path, reference: bytes, mnist: Mnist,
                         sets: dict[str, Samples], before: dict) -> dict:
    """Contribute, confirm, run (follow-ups included) and measure the active versions afterwards."""
    from bench.deployment import Deployment
    from training import writers

    if kind == "broad":
        chosen, count = writers.writers(group="teach"), BROAD_DRAWINGS
    else:
        chosen, count = [w for w in writers.writers(group="teach") if w.family == NARROW_WRITER][:1], NARROW_DRAWINGS
    drawings = contributions(chosen, count, seed=seed)
    with tempfile.TemporaryDirectory(prefix=f"inkling-{kind}-") as folder:
        deployment = Deployment(Path(folder), models_root=models_root, reference=reference,
                                FINETUNE_SEED=seed)
        visitors = {writer.name: deployment.contributor() for writer in chosen}
        started, results = time.perf_counter(), []
        for writer, drawing in drawings:
            results += deployment.contribute(visitors[writer.name], drawing.data_url, drawing.label)
        results += deployment.train_the_rest()
        seconds = time.perf_counter() - started
        active = deployment.active_models()
    after = {name: {"version": version, **measure(model, sets, mnist)} for name, (version, model) in active.items()}
    print(f"\n== {kind}, seed {seed}: {len(drawings)} drawings of {', '.join(w.name for w in chosen)} "
          f"({len(chosen)} contributor{'s' if len(chosen) > 1 else ''}); {len(results)} run(s), {seconds:.0f} s in all")
    for number, result in enumerate(results, 1):
        for name in MODEL_NAMES:
            entry = result.get(name, {})
            print(f"  run {number} {name}: {entry.get('decision', '-'):<9} on {entry.get('new_samples', 0):>4} new  "
                  f"{entry.get('reason', '')}")
    print(f"  {'':<6}{'':>9}{'teach held-out':>24}{'exam':>24}{'MNIST test':>24}")
    for name in MODEL_NAMES:
        cells = "".join(f"{before[name][key]:>10.2%} -> {after[name][key]:>7.2%}  " for key in ("teach", "exam", "mnist"))
        print(f"  {name:<6}{'v' + str(after[name]['version']):>9}  {cells}")
    return {"before": before, "after": after, "runs": results}


def writers_floors(kind: str, runs: dict[int, dict]) -> list[tuple[str, bool]]:
    """The floors of the broad and narrow scenarios over their seeds."""
    checks = []
    for name in MODEL_NAMES:
        change = {key: [(run["after"][name][key] - run["before"][name][key]) for run in runs.values()]
                  for key in ("teach", "exam", "mnist")}
        listed = {key: " ".join(f"{value * 100:+.2f}" for value in values) for key, values in change.items()}
        if kind == "broad":
            teach, exam = np.mean(change["teach"]), np.mean(change["exam"])
            ups, needed = sum(value > 0 for value in change["exam"]), math.ceil(BROAD_EXAM_UP_SHARE * len(runs))
            checks.append((f"broad {name}: teach held-out up >= {BROAD_TEACH_RISE * 100:.1f} points, mean "
                           f"({listed['teach']}; mean {teach * 100:+.2f})", teach >= BROAD_TEACH_RISE - 1e-9))
            checks.append((f"broad {name}: exam not down > {BROAD_EXAM_FALL * 100:.1f} points, mean "
                           f"({listed['exam']}; mean {exam * 100:+.2f})", exam >= -BROAD_EXAM_FALL - 1e-9))
            checks.append((f"broad {name}: exam up on >= {needed} of {len(runs)} seeds (up on {ups})", ups >= needed))
            checks.append((f"broad {name}: MNIST test down <= {MNIST_TOLERANCE * 100:.1f} points on every seed "
                           f"({listed['mnist']})", min(change["mnist"]) >= -MNIST_TOLERANCE - 1e-9))
        else:
            checks.append((f"narrow {name}: exam never > {NARROW_EXAM_FALL * 100:.1f} points worse on any seed "
                           f"({listed['exam']})", min(change["exam"]) >= -NARROW_EXAM_FALL - 1e-9))
    return checks


def writers_scenarios(kinds: list[str], args, *, mnist: Mnist, parents: dict, root: Path) -> list[tuple[str, bool]]:
    from training.reference import cached

    started = time.perf_counter()
    # The reference set a deployment builds with `flask reference build` (built once here and
    # kept in instance/data): the gate judges on it.
    reference = cached(x_test=mnist.x_test, y_test=mnist.y_test)
    print(f"\nWriters benchmark through a deployment: drawings posted to the API (AUTO_CONFIRM), runs started "
          f"every RETRAIN_EVERY ({SETTINGS['RETRAIN_EVERY']}) and by the admin for the rest, executed by the "
          f"workers' execute_run, judged with the reference set (ready in {time.perf_counter() - started:.0f} s)")
    print(f"  measured on: teach writers' held-out drawings (seed + {TEACH_HOLDOUT_OFFSET}, never contributed), "
          "exam writers (never contributed nor gated), MNIST test")
    runs: dict[str, dict[int, dict]] = {kind: {} for kind in kinds}
    for seed in args.seeds:
        sets = writer_sets(seed)
        base = {name: measure(keras.models.load_model(stored.keras_path), sets, mnist)
                for name, stored in parents.items()}
        for kind in kinds:
            runs[kind][seed] = run_writers_scenario(kind, seed, models_root=root, reference=reference, mnist=mnist,
                                                    sets=sets, before=base)
    return [check for kind in kinds for check in writers_floors(kind, runs[kind])]
