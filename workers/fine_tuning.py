"""A training run, executed: load the confirmed drawings, fine-tune each network, gate, publish, report.

Runs in Celery workers only. Keras comes in through training/ inside the functions that
train, so a worker's main process stays small and forks its pool without TensorFlow loaded.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from training import MODEL_NAMES
from webapp.extensions import db
from webapp.models import DIGITS_ID, Drawing, ModelVersion, TrainingRun, utcnow
from webapp.curation import take_batch
from webapp.runs import LIVE, finish, follow_up, next_version, record_version
from webapp.storage import StorageError, get_store
from workers.reference_set import load_reference

log = logging.getLogger(__name__)


class TransientError(RuntimeError):
    """Worth retrying: the store or the database hiccuped."""


@dataclass(frozen=True)
class TrainingData:
    """What one network's fine-tuning sees: the new batch, older drawings to replay, and what
    judges it: the holdout and the deployment's reference set."""

    new: object  # training.finetune.Samples (imported lazily: it brings Keras)
    replay: object
    holdout: object
    reference: object
    data_until: datetime | None


def execute_run(run_id: str) -> dict:
    """Fine-tune both networks for run ``run_id``; safe to call again after a crash."""
    run = db.session.get(TrainingRun, run_id)
    if run is None:
        log.warning("training run %s does not exist; nothing to do", run_id)
        return {}
    if run.status not in LIVE:
        return run.result or {}
    if not _begin_attempt(run):
        return {}
    try:
        result = _train_all(run)
    except (StorageError, OperationalError) as exc:
        db.session.rollback()
        run = db.session.get(TrainingRun, run_id)
        run.status, run.progress = "queued", {"phase": "waiting to retry", "error": str(exc)[:200]}
        db.session.commit()
        raise TransientError(str(exc)) from exc
    except Exception as exc:
        log.exception("training run %s failed", run_id)
        db.session.rollback()
        finish(db.session.get(TrainingRun, run_id), status="failed", error=f"{exc.__class__.__name__}: {exc}")
        return {}
    decisions = [entry.get("decision") for entry in result.values()]
    status = "rejected" if decisions and all(d == "rejected" for d in decisions) else "succeeded"
    finish(run, status=status, result=result)
    follow_up(run)
    return result


def _begin_attempt(run: TrainingRun) -> bool:
    """Count this delivery and mark the run running; False (and the run failed) after too many."""
    if run.attempts >= current_app.config["MAX_RUN_ATTEMPTS"]:
        finish(run, status="failed", error=f"the worker was lost {run.attempts} times during this run "
                                           "(out of memory?); the active versions are unchanged")
        return False
    run.attempts += 1
    if run.started_at is None:
        # The batch is chosen once, with the start, in one commit: a redelivered run trains
        # on the same drawings and is judged on the same holdout.
        run.started_at = utcnow()
        first = run.label_set_id != DIGITS_ID and not _has_active(run.label_set_id)
        take_batch(until=run.started_at, label_set_id=run.label_set_id, capped=not first)
    run.status, run.heartbeat_at = "running", utcnow()
    published = db.session.scalar(select(func.count()).select_from(ModelVersion)
                                  .where(ModelVersion.training_run_id == run.id)) or 0
    # A redelivered run resumes after the networks it already published; so does its bar.
    run.progress = {"phase": "loading", "percent": round(100 * published / len(MODEL_NAMES), 1),
                    "attempt": run.attempts}
    db.session.commit()
    return True


def _progress(run: TrainingRun, update_: dict, *, index: int) -> None:
    # Two networks share the bar: the first fills 0-50 %, the second 50-100 %.
    percent = update_.get("percent", 0.0)
    run.progress = {**update_, "percent": round(50 * index + percent / 2, 1)}
    run.heartbeat_at = utcnow()
    db.session.commit()


def _train_all(run: TrainingRun) -> dict:
    from training.finetune import Samples
    from training.mnist import load_mnist

    # MNIST replay, the MNIST check and the reference set are digits' alone.
    digits = run.label_set_id == DIGITS_ID
    mnist = load_mnist() if digits else None
    if digits:
        run.progress, run.heartbeat_at = {**(run.progress or {}), "phase": "loading the reference set"}, utcnow()
        db.session.commit()
    reference = load_reference(mnist) if digits else Samples.empty()
    result = dict(run.result or {})
    for index, name in enumerate(MODEL_NAMES):
        result[name] = _run_network(run, name, index=index, mnist=mnist, reference=reference,
                                    earlier=result.get(name))
        run.result = result
        db.session.commit()
    return result


def _run_network(run: TrainingRun, name: str, *, index: int, mnist, reference, earlier: dict | None) -> dict:
    """One network's part of the run: its result entry (promoted, rejected or skipped)."""
    done = db.session.scalar(select(ModelVersion).where(ModelVersion.training_run_id == run.id,
                                                        ModelVersion.name == name))
    if done is not None:  # an earlier delivery of this run got this far
        return earlier or {"decision": "promoted" if done.status == "active" else "rejected",
                           "version": done.version, "reason": done.status_reason}
    parent = db.session.scalar(select(ModelVersion).where(ModelVersion.name == name,
                                                          ModelVersion.label_set_id == run.label_set_id,
                                                          ModelVersion.status == "active"))
    if parent is None and run.label_set_id != DIGITS_ID:
        # A set with no active version (none yet, or its first ones were not better than chance)
        # starts again from nothing.
        from workers.first_run import train_first_version

        return train_first_version(run, name, data=_first_run_data(run), publish=_publish,
                                   progress=lambda update_: _progress(run, update_, index=index))
    if parent is None:
        return {"decision": "skipped", "reason": f"no active {name} version to start from"}
    data = _training_data(run, parent, reference=reference)
    if data is None:
        return {"decision": "skipped", "reason": f"no drawings confirmed since the last run to add to what "
                                                f"v{parent.version} was trained on"}
    return _fine_tune_and_publish(run, name, parent=parent, data=data, mnist=mnist, index=index)


def _samples(query, *, contributors: bool = False):
    """The drawings ``query`` selects; with ``contributors``, who made each (the gate caps a
    holdout's evidence per contributor; training needs no one's id)."""
    from training.finetune import Samples

    columns = (Drawing.pixels, Drawing.label) + ((Drawing.client_id,) if contributors else ())
    rows = db.session.execute(query.with_only_columns(*columns)).all()
    if not rows:
        return Samples.empty()
    pixels = np.frombuffer(b"".join(row[0] for row in rows), np.uint8).reshape(-1, 28, 28)
    who = np.array([row[2] for row in rows], dtype=object) if contributors else None
    return Samples(pixels.copy(), np.array([row[1] for row in rows], np.uint8), who)


def _training_data(run: TrainingRun, parent: ModelVersion, *, reference) -> TrainingData | None:
    """The batches taken since ``parent`` trained, the older ones to replay, and the holdout as
    it stood when the run started (the same drawings for both networks); None without a drawing
    this run took: batches earlier runs tried and did not promote wait for more data."""
    from training.finetune import Samples

    # Status alone would do (flagged drawings are never confirmed); the flag is belt and braces.
    confirmed = select(Drawing).where(Drawing.status == "confirmed", ~Drawing.not_digit,
                                      Drawing.label_set_id == run.label_set_id)
    training = confirmed.where(~Drawing.holdout, Drawing.batched_at <= run.started_at)
    taken_now = db.session.scalar(training.where(Drawing.batched_at == run.started_at)
                                  .with_only_columns(func.count()))
    if not taken_now:
        return None
    new_query = training.where(Drawing.batched_at > parent.data_until) if parent.data_until else training
    new = _samples(new_query)
    if len(new) == 0:
        return None
    replay = (_samples(training.where(Drawing.batched_at <= parent.data_until)) if parent.data_until
              else Samples.empty())
    # Earliest confirmed first: the gate counts each contributor's first drawings up to the share.
    holdout = _samples(confirmed.where(Drawing.holdout, Drawing.first_confirmed_at <= run.started_at)
                       .order_by(Drawing.first_confirmed_at, Drawing.id), contributors=True)
    return TrainingData(new=new, replay=replay, holdout=holdout, reference=reference, data_until=run.started_at)


def _has_active(label_set_id: int) -> bool:
    return db.session.scalar(select(ModelVersion.id).where(ModelVersion.label_set_id == label_set_id,
                                                           ModelVersion.status == "active").limit(1)) is not None


def _first_run_data(run: TrainingRun) -> TrainingData:
    """A set's first run trains on every confirmed training drawing up to its start, and is judged
    on the holdout as it stood then."""
    from training.finetune import Samples

    confirmed = select(Drawing).where(Drawing.status == "confirmed", ~Drawing.not_digit,
                                      Drawing.label_set_id == run.label_set_id)
    new = _samples(confirmed.where(~Drawing.holdout, Drawing.batched_at <= run.started_at))
    holdout = _samples(confirmed.where(Drawing.holdout, Drawing.first_confirmed_at <= run.started_at))
    return TrainingData(new=new, replay=Samples.empty(), holdout=holdout, reference=Samples.empty(),
                        data_until=run.started_at)


def _fine_tune_and_publish(run: TrainingRun, name: str, *, parent: ModelVersion, data: TrainingData, mnist,
                           index: int) -> dict:
    import keras

    from training.finetune import fine_tune, fine_tune_config, judge
    from training.versions import KERAS_FILE

    config = current_app.config
    tune = fine_tune_config(name, epochs=config["FINETUNE_EPOCHS"], mnist_minimum=config["FINETUNE_MNIST_MINIMUM"])
    with tempfile.TemporaryDirectory(prefix="inkling-run-") as tmp:
        parent_keras = Path(tmp) / f"parent-{KERAS_FILE}"
        parent_keras.write_bytes(get_store().get(f"{parent.object_prefix}{KERAS_FILE}"))
        _progress(run, {"phase": "training", "model": name, "epoch": 0, "epochs": tune.epochs,
                        "percent": 0.0}, index=index)
        candidate = fine_tune(parent_keras, name=name, new=data.new, replay=data.replay, mnist=mnist,
                              seed=config["FINETUNE_SEED"], config=tune,
                              progress=lambda update_: _progress(run, update_, index=index))
        _progress(run, {"phase": "evaluating candidate", "model": name, "percent": 100.0}, index=index)
        before, after, decision = judge(keras.models.load_model(parent_keras), candidate, mnist=mnist,
                                        holdout=data.holdout, reference=data.reference,
                                        mnist_tolerance=config["MNIST_TOLERANCE"],
                                        mnist_first=first_mnist_accuracy(parent) if mnist is not None else None,
                                        max_share=config["CONTRIBUTOR_SHARE"],
                                        num_classes=int(candidate.output_shape[-1]))
        promote, reason = decision.promote, decision.reason[:2000]
        _keep_first_judgment(parent, before)
        row = _publish(candidate, run=run, name=name, parent=parent, data=data,
                       metrics=after | {"gate": decision.checks}, promote=promote, reason=reason, mnist=mnist,
                       folder=Path(tmp) / "out")
    before.pop("holdout_confusion", None)
    after.pop("holdout_confusion", None)
    return {"decision": "promoted" if promote else "rejected", "reason": reason, "version": row.version,
            "parent": parent.version, "before": before, "after": after, "checks": decision.checks,
            "new_samples": len(data.new)}


def first_mnist_accuracy(version: ModelVersion) -> float | None:
    """The MNIST test accuracy of the version ``version``'s chain of parents starts from (a base
    version), as it was measured when that version was made; None if it has none."""
    chain = {row.version: row for row in db.session.scalars(
        select(ModelVersion).where(ModelVersion.label_set_id == version.label_set_id,
                                   ModelVersion.name == version.name))}
    seen = {version.version}
    while version.parent_version is not None and version.parent_version in chain \
            and version.parent_version not in seen:
        version = chain[version.parent_version]
        seen.add(version.version)
    accuracy = (version.metrics or {}).get("mnist_test_accuracy")
    return None if accuracy is None else float(accuracy)


def _keep_first_judgment(parent: ModelVersion, before: dict) -> None:
    """A version never judged as a candidate (an imported base version) keeps its figures on the
    holdout from the first run that judged it as the parent, so its confusion matrix shows."""
    if "holdout_confusion" in before and not (parent.metrics or {}).get("holdout_confusion"):
        parent.metrics = {**(parent.metrics or {}),
                          **{key: before[key] for key in ("holdout_accuracy", "holdout_size", "holdout_confusion")}}


def _publish(candidate, *, run: TrainingRun, name: str, parent: ModelVersion | None, data: TrainingData,
             metrics: dict, promote: bool, reason: str, mnist, folder: Path, kind: str = "fine-tune") -> ModelVersion:
    """Export the candidate as a version, then record it: active if it passed the gate."""
    from training.export import save_version
    from training.preprocess import to_model_input

    version = next_version(name, run.label_set_id)
    parent_version = parent.version if parent is not None else None
    sample = mnist.x_test[:256] if mnist is not None else np.concatenate([data.new.x, data.holdout.x])[:256]
    stored = save_version(candidate, root=folder, name=name, version=version, parent=parent_version,
                          metrics=metrics,
                          training={"kind": kind, "run": run.id, "new_samples": len(data.new),
                                    "replay_samples": len(data.replay),
                                    "seed": current_app.config["FINETUNE_SEED"]},
                          check_sample=to_model_input(sample))
    return record_version(stored, version=version, status="active" if promote else "rejected", reason=reason,
                          parent_version=parent_version, run=run, samples=len(data.new) + len(data.replay),
                          data_until=data.data_until, label_set_id=run.label_set_id)
