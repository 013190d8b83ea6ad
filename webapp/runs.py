"""Training runs and model versions, the database side: request, lock, stale runs, finish, activation.

The web process enqueues a run by task name and never imports the code that executes it
(workers/); what both sides share, the run's lifecycle and the one way a version is
recorded, is here.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from webapp.curation import release_batch, waiting_count
from webapp.extensions import db
from webapp.models import ModelVersion, TrainingRun, iso, utcnow
from webapp.storage import StorageError, get_store

log = logging.getLogger(__name__)

LIVE = ("queued", "running")
RUN_LOCK = "training"
# The worker registers the task under this name (workers/tasks.py).
FINE_TUNE_TASK = "inkling.fine_tune_models"


class ArtifactInvalid(RuntimeError):
    """A version's stored files are missing or do not match their checksums."""


class QueueUnavailable(RuntimeError):
    """The broker refused the job."""


# ---- starting a run ------------------------------------------------------------------------

def maybe_trigger_automatically() -> TrainingRun | None:
    """Start a run once RETRAIN_EVERY confirmed drawings wait for one.

    While a run is live nothing is asked of it: when it ends it starts the next one itself if
    enough drawings wait (see follow_up), so none are left waiting for the next confirmation.
    """
    every = current_app.config["RETRAIN_EVERY"]
    if every <= 0 or waiting_count() < every or live_run() is not None:
        return None
    try:
        run, _ = request_run(trigger="auto")
        return run
    except QueueUnavailable as exc:  # the drawing was saved; the next confirmation retries
        log.warning("automatic retrain not started: %s", exc)
        return None


def follow_up(run: TrainingRun) -> TrainingRun | None:
    """After ``run`` ended: the next run, if one was asked for while it was live (and there is
    something new to train on) or if RETRAIN_EVERY or more confirmed drawings still wait."""
    waiting = waiting_count()
    every = current_app.config["RETRAIN_EVERY"]
    if not ((run.follow_up and waiting > 0) or (every > 0 and waiting >= every)):
        return None
    try:
        next_run, _ = request_run(trigger="follow-up")
        return next_run
    except QueueUnavailable as exc:  # the next confirmation or an admin starts it
        log.warning("follow-up run not started: %s", exc)
        return None


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
    return (utcnow() - last).total_seconds() > current_app.config["STALE_RUN_SECONDS"]


def request_run(*, trigger: str) -> tuple[TrainingRun, bool]:
    """Queue a run, or return the one already queued or running, marked to have one follow-up
    (the database's unique lock decides between concurrent requests). Raises QueueUnavailable
    if the broker is down."""
    existing = live_run()
    if existing is not None:
        return _with_follow_up(existing), False
    run = TrainingRun(status="queued", trigger=trigger, lock=RUN_LOCK, progress={"phase": "queued"})
    db.session.add(run)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        existing = live_run()
        return (_with_follow_up(existing) if existing is not None else None), False
    try:
        result = current_app.extensions["celery"].send_task(FINE_TUNE_TASK, args=[run.id], retry=False)
    except Exception as exc:  # kombu raises a zoo of connection errors
        finish(run, status="failed", error=f"the task queue is unavailable: {exc.__class__.__name__}")
        raise QueueUnavailable(str(exc)) from exc
    run.task_id = result.id
    db.session.commit()
    return run, True


def _with_follow_up(run: TrainingRun) -> TrainingRun:
    if not run.follow_up:
        run.follow_up = True
        db.session.commit()
    return run


def finish(run: TrainingRun, *, status: str, error: str | None = None, result: dict | None = None) -> None:
    """End ``run``; a failed run gives back the drawings it took, in the same commit."""
    run.status, run.lock, run.finished_at = status, None, utcnow()
    if status == "failed" and run.started_at is not None:
        release_batch(taken_at=run.started_at)
    if error is not None:
        run.error = error
    if result is not None:
        run.result = result
    run.progress = {**(run.progress or {}), "phase": "done", "percent": 100.0}
    db.session.commit()


def run_json(run: TrainingRun) -> dict:
    return {"id": run.id, "status": run.status, "trigger": run.trigger, "progress": run.progress or {},
            "result": run.result or {}, "error": run.error, "created": iso(run.created_at),
            "started": iso(run.started_at), "finished": iso(run.finished_at),
            "follow_up": run.follow_up}


# ---- versions: recording, activation and rollback ------------------------------------------

def next_version(name: str) -> int:
    return (db.session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.name == name)) or 0) + 1


def version_prefix(name: str, version: int, tag: str | None = None) -> str:
    """Where a version's files go in the store: ``models/<name>/v<N>-<tag>/``.

    The tag (a run id's start, or a fresh one for an import) means that two writers racing
    for one version number can never overwrite files the other's row points at. Rows keep
    the prefix they were stored under, so versions stored under an older layout still load.
    """
    return f"models/{name}/v{version}-{tag or uuid.uuid4().hex[:8]}/"


def record_version(stored, *, version: int, status: str, reason: str, parent_version: int | None = None,
                   run: TrainingRun | None = None, samples: int = 0,
                   data_until: datetime | None = None) -> ModelVersion:
    """Upload a published version's files, then its row, in that order, and commit.

    ``stored`` is a published ``training.versions`` version; ``version`` is its number in the
    registry (an imported base model's may differ from the folder's). With ``status="active"`` the network's active version is retired in the
    same transaction, so the active one changes only once all files exist.
    """
    from training.versions import ONNX_FILE
    from webapp.registry import upload_version_files

    manifest = {**stored.manifest, "version": version}
    prefix = version_prefix(stored.name, version, run.id[:8] if run is not None else None)
    upload_version_files(get_store(), stored, prefix)
    row = ModelVersion(name=stored.name, version=version, status="candidate", parent_version=parent_version,
                       object_prefix=prefix, onnx_sha256=manifest["files"][ONNX_FILE]["sha256"],
                       metrics=manifest.get("metrics", {}), manifest=manifest, samples_used=samples,
                       training_run_id=run.id if run is not None else None, status_reason=reason,
                       data_until=data_until)
    db.session.add(row)
    db.session.flush()
    if status == "active":
        db.session.execute(update(ModelVersion).where(ModelVersion.name == stored.name,
                                                      ModelVersion.status == "active",
                                                      ModelVersion.id != row.id).values(status="retired"))
        row.activated_at = utcnow()
    row.status = status
    db.session.commit()
    return row


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
