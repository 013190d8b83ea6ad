"""A label set's first version of a network: trained from scratch on its confirmed drawings, judged against chance."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from flask import current_app

from webapp.label_sets import by_id
from webapp.models import TrainingRun


def train_first_version(run: TrainingRun, name: str, *, data, progress: Callable[[dict], None],
                        publish: Callable[..., object]) -> dict:
    """Train network ``name`` for the run's label set from nothing; publish it, active only if it
    reads the set's holdout significantly better than chance (there is no parent to compare with).

    ``data`` is the run's workers.fine_tuning.TrainingData; ``progress`` and ``publish`` are that
    module's, passed in so that the two modules do not import each other."""
    from training.finetune import predicted
    from training.gate import above_chance, confusion
    from training.scratch import train_from_scratch

    if len(data.new) == 0:
        return {"decision": "skipped", "reason": "no confirmed training drawings in this label set yet"}
    config = current_app.config
    num_classes = len(by_id(run.label_set_id).classes)
    progress({"phase": "training from scratch", "model": name, "percent": 0.0})
    candidate = train_from_scratch(name, data.new.x, data.new.y.astype(np.int64), num_classes=num_classes,
                                   seed=config["FINETUNE_SEED"])
    progress({"phase": "evaluating candidate", "model": name, "percent": 100.0})
    answers = predicted(candidate, data.holdout.x)
    decision = above_chance(data.holdout.y.astype(np.int64), answers, num_classes=num_classes,
                            significance=config["CHANCE_SIGNIFICANCE"])
    holdout_accuracy = float(np.mean(answers == data.holdout.y)) if len(data.holdout) else None
    after = {"holdout_accuracy": holdout_accuracy, "holdout_size": int(len(data.holdout)),
             "train_size": int(len(data.new)), "chance": 1.0 / num_classes}
    metrics = after | {"gate": decision.checks}
    if len(data.holdout):
        metrics["holdout_confusion"] = confusion(data.holdout.y, answers, num_classes)
    with tempfile.TemporaryDirectory(prefix="inkling-first-") as tmp:
        row = publish(candidate, run=run, name=name, parent=None, data=data, metrics=metrics,
                       promote=decision.promote, reason=decision.reason[:2000], mnist=None,
                       folder=Path(tmp) / "out", kind="from-scratch")
    return {"decision": "promoted" if decision.promote else "rejected", "reason": decision.reason[:2000],
            "version": row.version, "parent": None, "before": {}, "after": after, "checks": decision.checks,
            "new_samples": len(data.new)}
