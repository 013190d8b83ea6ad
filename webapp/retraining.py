"""Continual learning, the database side: which drawings are confirmed, when a run starts,
and what a run does (load samples by id, call training/, publish and gate the versions).

TensorFlow is imported only inside :func:`execute_run`, which runs in Celery workers.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from flask import current_app
from sqlalchemy import case, func, select, update
from sqlalchemy.orm import aliased
from sqlalchemy.exc import IntegrityError, OperationalError

from training import MODEL_NAMES
from webapp.extensions import db
from webapp.models import Drawing, ModelVersion, Prediction, TrainingRun, utcnow
from webapp.storage import StorageError, get_store

log = logging.getLogger(__name__)

LIVE = ("queued", "running")
RUN_LOCK = "training"


class TransientError(RuntimeError):
    """Worth retrying: the store or the database hiccuped."""


class ArtifactInvalid(RuntimeError):
    """A version's stored files are missing or do not match their checksums."""


class QueueUnavailable(RuntimeError):
    """The broker refused the job."""


# ---- confirmation policy -------------------------------------------------------------------

def confirmation_for(drawing: Drawing, *, cnn_label: int | None, cnn_confidence: float | None) -> str | None:
    """Why a newly labelled drawing is confirmed at once under the configured policy, or None.

    AUTO_CONFIRM: every labelled drawing (small private deployments). CONFIRM_POLICY=agreement:
    the label agrees with the CNN's confident reading. CONFIRM_POLICY=review (the default):
    only an admin confirms.
    """
    config = current_app.config
    if drawing.not_digit:
        return None
    if not (config["AUTO_CONFIRM"] or config["CONFIRM_POLICY"] == "agreement"):
        return None
    if drawing.client_id and _guard_client(drawing, cnn_label=cnn_label, cnn_confidence=cnn_confidence):
        return None
    if config["AUTO_CONFIRM"]:
        return AUTO_CONFIRMED
    if (cnn_label is not None and cnn_label == drawing.label
            and (cnn_confidence or 0) >= config["AGREEMENT_CONFIDENCE"]):
        return f"{AGREEMENT_CONFIRMED} at {cnn_confidence:.0%} confidence"
    return None


AUTO_CONFIRMED = "auto-confirmed (AUTO_CONFIRM)"
AGREEMENT_CONFIRMED = "label agrees with the CNN"
QUARANTINED = "quarantined: this client's labels often contradict the CNN"


def _confirmed_by_policy():
    """Drawings the policy confirmed (not an admin): what a quarantine may take back."""
    return Drawing.status_reason.startswith(AUTO_CONFIRMED) | Drawing.status_reason.startswith(AGREEMENT_CONFIRMED)


def _guard_client(drawing: Drawing, *, cnn_label: int | None, cnn_confidence: float | None) -> bool:
    """True when this client's drawings must wait for an admin: quarantined, or over the daily cap.

    A flood of wrong labels from one client is what this stops: once the CNN, when confident,
    contradicts enough of a client's labels, nothing of theirs is confirmed by the policy, and
    what the policy already confirmed (and no run has used yet) goes back to review.
    """
    config = current_app.config
    confident = config["AGREEMENT_CONFIDENCE"]
    cnn = aliased(Prediction)
    labelled, contradicted = db.session.execute(
        select(func.count(), func.coalesce(func.sum(case((cnn.label != Drawing.label, 1), else_=0)), 0))
        .select_from(Drawing).join(cnn, (cnn.drawing_id == Drawing.id) & (cnn.model_name == "cnn"))
        .where(Drawing.client_id == drawing.client_id, Drawing.id != drawing.id, Drawing.label.is_not(None),
               cnn.confidence >= confident)).one()
    labelled, contradicted = int(labelled), int(contradicted)
    if cnn_label is not None and (cnn_confidence or 0) >= confident:
        labelled += 1
        contradicted += int(cnn_label != drawing.label)
    if labelled >= config["QUARANTINE_MIN_LABELS"] and contradicted > config["QUARANTINE_DISAGREEMENT"] * labelled:
        last_run = db.session.scalar(select(func.max(TrainingRun.started_at)))
        recall = (update(Drawing).where(
            Drawing.client_id == drawing.client_id, Drawing.status == "confirmed",
            _confirmed_by_policy())
            .values(status="pending", confirmed_at=None, holdout=False, status_reason=QUARANTINED))
        if last_run is not None:
            recall = recall.where(Drawing.confirmed_at > last_run)
        db.session.execute(recall)
        drawing.status_reason = QUARANTINED
        return True
    since = utcnow() - timedelta(days=1)
    confirmed_today = db.session.scalar(
        select(func.count()).select_from(Drawing).where(
            Drawing.client_id == drawing.client_id, Drawing.confirmed_at >= since,
            _confirmed_by_policy()))
    return (confirmed_today or 0) >= config["AUTO_CONFIRM_DAILY_CAP"]


def confirm(drawing: Drawing, *, reason: str) -> None:
    """Mark a labelled drawing confirmed, setting aside about HOLDOUT_FRACTION of each label.

    The holdout flag is decided once, at confirmation, and never changes, so the holdout
    stays frozen: versions are always judged on drawings no version trained on.
    """
    fraction = current_app.config["HOLDOUT_FRACTION"]
    counts = db.session.execute(
        select(func.count(), func.coalesce(func.sum(Drawing.holdout.cast(db.Integer)), 0))
        .where(Drawing.status == "confirmed", Drawing.label == drawing.label, Drawing.id != drawing.id)).one()
    confirmed, held = int(counts[0]), int(counts[1])
    drawing.holdout = held < fraction * (confirmed + 1)
    drawing.status, drawing.confirmed_at, drawing.status_reason = "confirmed", utcnow(), reason


def reject(drawing: Drawing, *, reason: str) -> None:
    drawing.status, drawing.confirmed_at, drawing.holdout, drawing.status_reason = "rejected", None, False, reason


def new_confirmed_since_last_run() -> int:
    last = db.session.scalar(select(func.max(TrainingRun.created_at)))
    query = select(func.count()).select_from(Drawing).where(Drawing.status == "confirmed", ~Drawing.holdout)
    if last is not None:
        query = query.where(Drawing.confirmed_at > last)
    return db.session.scalar(query) or 0


def maybe_trigger_automatically() -> TrainingRun | None:
    """Start a run once RETRAIN_EVERY new confirmed drawings have arrived since the last one."""
    every = current_app.config["RETRAIN_EVERY"]
    if every <= 0 or new_confirmed_since_last_run() < every:
        return None
    try:
        run, _ = request_run(trigger="auto")
        return run
    except QueueUnavailable as exc:  # the drawing was saved; the next confirmation retries
        log.warning("automatic retrain not started: %s", exc)
        return None


# ---- starting a run ------------------------------------------------------------------------

def live_run() -> TrainingRun | None:
    """The queued or running run, if any; one whose worker went silent is failed, not waited on."""
    run = db.session.scalar(select(TrainingRun).where(TrainingRun.status.in_(LIVE))
                            .order_by(TrainingRun.created_at.desc()).limit(1))
    if run is not None and _is_stale(run):
        finish(run, status="failed", error="the worker stopped reporting progress (killed or lost); "
                                           "the active versions are unchanged")
        return None
    return run


def _is_stale(run: TrainingRun) -> bool:
    last = run.heartbeat_at or run.created_at
    if last is None:
        return False
    if last.tzinfo is None:  # SQLite returns naive datetimes; they are UTC
        last = last.replace(tzinfo=utcnow().tzinfo)
    return (utcnow() - last).total_seconds() > current_app.config["STALE_RUN_SECONDS"]


def request_run(*, trigger: str) -> tuple[TrainingRun, bool]:
    """Queue a run, or return the one already queued or running (the database's unique lock
    decides between concurrent requests). Raises QueueUnavailable if the broker is down."""
    existing = live_run()
    if existing is not None:
        return existing, False
    run = TrainingRun(status="queued", trigger=trigger, lock=RUN_LOCK, progress={"phase": "queued"})
    db.session.add(run)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return live_run(), False
    from workers.tasks import fine_tune_models

    try:
        result = fine_tune_models.apply_async(args=[run.id], retry=False)
    except Exception as exc:  # kombu raises a zoo of connection errors
        finish(run, status="failed", error=f"the task queue is unavailable: {exc.__class__.__name__}")
        raise QueueUnavailable(str(exc)) from exc
    run.task_id = result.id
    db.session.commit()
    return run, True


def finish(run: TrainingRun, *, status: str, error: str | None = None, result: dict | None = None) -> None:
    run.status, run.lock, run.finished_at = status, None, utcnow()
    if error is not None:
        run.error = error
    if result is not None:
        run.result = result
    run.progress = {**(run.progress or {}), "phase": "done", "percent": 100.0}
    db.session.commit()


def run_json(run: TrainingRun) -> dict:
    from webapp.api import iso

    return {"id": run.id, "status": run.status, "trigger": run.trigger, "progress": run.progress or {},
            "result": run.result or {}, "error": run.error, "created": iso(run.created_at),
            "started": iso(run.started_at), "finished": iso(run.finished_at)}


# ---- activation and rollback --------------------------------------------------------------

def activate(name: str, version: int, *, reason: str) -> ModelVersion:
    """Make one version the active one, in one transaction (the old one is retired)."""
    row = db.session.scalar(select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version))
    if row is None:
        raise LookupError(f"{name} v{version} does not exist")
    if row.status == "active":
        return row
    # Web processes refuse a corrupt or missing artifact and keep the old version, but one that
    # restarts would have nothing to serve: so the database never names such a version active.
    from webapp.registry import ModelsUnavailable, read_onnx

    try:
        read_onnx(get_store(), row)
    except StorageError as exc:
        raise ArtifactInvalid(f"{name} v{version}: its ONNX file cannot be read ({exc})") from exc
    except ModelsUnavailable:
        raise ArtifactInvalid(f"{name} v{version}: its ONNX file fails its checksum; it stays {row.status}") from None
    db.session.execute(update(ModelVersion).where(ModelVersion.name == name, ModelVersion.status == "active")
                       .values(status="retired"))
    row.status, row.activated_at, row.status_reason = "active", utcnow(), reason
    db.session.commit()
    return row


# ---- what a run does ----------------------------------------------------------------------

def _samples(query):
    from training.finetune import Samples

    rows = db.session.execute(query.with_only_columns(Drawing.pixels, Drawing.label)).all()
    if not rows:
        return Samples.empty()
    pixels = np.frombuffer(b"".join(row[0] for row in rows), np.uint8).reshape(-1, 28, 28)
    return Samples(pixels.copy(), np.array([row[1] for row in rows], np.uint8))


def execute_run(run_id: str) -> dict:
    """Fine-tune both networks for run ``run_id``; safe to call again after a crash."""
    run = db.session.get(TrainingRun, run_id)
    if run is None:
        log.warning("training run %s does not exist; nothing to do", run_id)
        return {}
    if run.status not in LIVE:
        return run.result or {}
    if run.attempts >= current_app.config["MAX_RUN_ATTEMPTS"]:
        finish(run, status="failed", error=f"the worker was lost {run.attempts} times during this run "
                                           "(out of memory?); the active versions are unchanged")
        return {}
    run.attempts += 1
    run.status, run.started_at, run.heartbeat_at = "running", run.started_at or utcnow(), utcnow()
    published = db.session.scalar(select(func.count()).select_from(ModelVersion)
                                  .where(ModelVersion.training_run_id == run.id)) or 0
    # A redelivered run resumes after the networks it already published; so does its bar.
    run.progress = {"phase": "loading", "percent": round(100 * published / len(MODEL_NAMES), 1),
                    "attempt": run.attempts}
    db.session.commit()
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
    return result


def _progress(run: TrainingRun, update_: dict, *, index: int) -> None:
    # Two networks share the bar: the first fills 0-50 %, the second 50-100 %.
    percent = update_.get("percent", 0.0)
    run.progress = {**update_, "percent": round(50 * index + percent / 2, 1)}
    run.heartbeat_at = utcnow()
    db.session.commit()


def _train_all(run: TrainingRun) -> dict:
    import keras

    from training.export import save_version
    from training.finetune import FINE_TUNE_CONFIGS, Samples, evaluate, fine_tune, gate
    from training.mnist import load_mnist
    from training.preprocess import to_model_input
    from training.versions import KERAS_FILE

    config = current_app.config
    store = get_store()
    mnist = load_mnist()
    # Status alone would do (flagged drawings are never confirmed); the flag is belt and braces.
    confirmed = select(Drawing).where(Drawing.status == "confirmed", ~Drawing.not_digit)
    started_at = run.started_at
    result = dict(run.result or {})
    for index, name in enumerate(MODEL_NAMES):
        done = db.session.scalar(select(ModelVersion).where(ModelVersion.training_run_id == run.id,
                                                            ModelVersion.name == name))
        if done is not None:  # an earlier delivery of this run got this far
            result[name] = result.get(name) or {"decision": "promoted" if done.status == "active" else "rejected",
                                                "version": done.version, "reason": done.status_reason}
            continue
        parent = db.session.scalar(select(ModelVersion).where(ModelVersion.name == name,
                                                              ModelVersion.status == "active"))
        if parent is None:
            result[name] = {"decision": "skipped", "reason": f"no active {name} version to start from"}
            continue
        training = confirmed.where(~Drawing.holdout, Drawing.confirmed_at <= started_at)
        new_query = training.where(Drawing.confirmed_at > parent.data_until) if parent.data_until else training
        new = _samples(new_query)
        if len(new) == 0:
            result[name] = {"decision": "skipped", "reason": "no newly confirmed drawings since "
                                                             f"v{parent.version}"}
            continue
        replay = (_samples(training.where(Drawing.confirmed_at <= parent.data_until)) if parent.data_until
                  else Samples.empty())
        # Judge on the holdout as it stood before the new batch: a poisoned batch sets some of
        # its own drawings aside too, and must not get to grade itself.
        holdout_query = confirmed.where(Drawing.holdout)
        if parent.data_until:
            holdout_query = holdout_query.where(Drawing.confirmed_at <= parent.data_until)
        holdout = _samples(holdout_query)
        data_until = db.session.scalar(new_query.with_only_columns(func.max(Drawing.confirmed_at)))
        tune = replace(FINE_TUNE_CONFIGS[name], epochs=config["FINETUNE_EPOCHS"],
                       mnist_minimum=config["FINETUNE_MNIST_MINIMUM"])
        with tempfile.TemporaryDirectory(prefix="inkling-run-") as tmp:
            parent_keras = Path(tmp) / f"parent-{KERAS_FILE}"
            parent_keras.write_bytes(store.get(f"{parent.object_prefix}{KERAS_FILE}"))
            _progress(run, {"phase": "evaluating parent", "model": name, "percent": 0.0}, index=index)
            parent_metrics = evaluate(keras.models.load_model(parent_keras), mnist=mnist, holdout=holdout)
            _progress(run, {"phase": "training", "model": name, "epoch": 0, "epochs": tune.epochs,
                            "percent": 0.0}, index=index)
            candidate = fine_tune(parent_keras, name=name, new=new, replay=replay, mnist=mnist,
                                  seed=config["FINETUNE_SEED"], config=tune,
                                  progress=lambda update_: _progress(run, update_, index=index))
            _progress(run, {"phase": "evaluating candidate", "model": name, "percent": 100.0}, index=index)
            metrics = evaluate(candidate, mnist=mnist, holdout=holdout)
            promote, reason = gate(parent_metrics, metrics, mnist_tolerance=config["MNIST_TOLERANCE"])
            version = (db.session.scalar(select(func.max(ModelVersion.version))
                                         .where(ModelVersion.name == name)) or 0) + 1
            stored = save_version(candidate, root=Path(tmp) / "out", name=name, version=version,
                                  parent=parent.version, metrics=metrics,
                                  training={"kind": "fine-tune", "run": run.id, "new_samples": len(new),
                                            "replay_samples": len(replay), "seed": config["FINETUNE_SEED"]},
                                  check_sample=to_model_input(mnist.x_test[:256]))
            row = _publish(stored, parent=parent, run=run, promote=promote, reason=reason,
                           samples=len(new) + len(replay), data_until=data_until)
        result[name] = {"decision": "promoted" if promote else "rejected", "reason": reason,
                        "version": row.version, "parent": parent.version,
                        "before": parent_metrics, "after": metrics, "new_samples": len(new)}
        run.result = result
        db.session.commit()
    return result


def _publish(stored, *, parent: ModelVersion, run: TrainingRun, promote: bool, reason: str, samples: int,
             data_until: datetime | None) -> ModelVersion:
    """Upload the files, then the row; the active version changes only once all files exist."""
    from training.versions import ONNX_FILE
    from webapp.registry import upload_version_files

    # The run id in the prefix: should two deliveries of one run ever race, neither can
    # overwrite files the other's row points at.
    prefix = f"models/{stored.name}/v{stored.version}-{run.id[:8]}/"
    upload_version_files(get_store(), stored, prefix)
    row = ModelVersion(name=stored.name, version=stored.version, status="candidate",
                       parent_version=parent.version, object_prefix=prefix,
                       onnx_sha256=stored.manifest["files"][ONNX_FILE]["sha256"], metrics=stored.manifest["metrics"],
                       manifest=stored.manifest, samples_used=samples, training_run_id=run.id,
                       status_reason=reason, data_until=data_until)
    db.session.add(row)
    db.session.flush()
    if promote:
        db.session.execute(update(ModelVersion).where(ModelVersion.name == stored.name,
                                                      ModelVersion.status == "active").values(status="retired"))
        row.status, row.activated_at = "active", utcnow()
    else:
        row.status = "rejected"
    db.session.commit()
    return row
