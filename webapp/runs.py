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

from webapp.curation import confirmed_training_counts, release_batch, waiting_count
from webapp.extensions import db
from webapp.models import DIGITS_ID, ModelVersion, TrainingRun, iso, utcnow
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

def maybe_trigger_automatically(label_set_id: int = DIGITS_ID) -> TrainingRun | None:
    """Start a run once RETRAIN_EVERY confirmed drawings of the set wait for one (for a set with
    no model yet: once every class has MIN_PER_CLASS, see first_run_ready).

    While a run is live nothing is asked of it: when it ends it starts the next one itself if
    enough drawings wait (see follow_up), so none are left waiting for the next confirmation.
    """
    every = current_app.config["RETRAIN_EVERY"]
    if every <= 0 or live_run(label_set_id) is not None or not _enough_waiting(label_set_id, every):
        return None
    try:
        run, _ = request_run(trigger="auto", label_set_id=label_set_id)
        return run
    except QueueUnavailable as exc:  # the drawing was saved; the next confirmation retries
        log.warning("automatic retrain not started: %s", exc)
        return None


def _enough_waiting(label_set_id: int, every: int) -> bool:
    if label_set_id != DIGITS_ID and not has_versions(label_set_id):
        return first_run_ready(label_set_id)
    return waiting_count(label_set_id) >= every


def has_versions(label_set_id: int) -> bool:
    return db.session.scalar(select(ModelVersion.id).where(ModelVersion.label_set_id == label_set_id).limit(1)) is not None


def first_run_ready(label_set_id: int) -> bool:
    """Whether every class of a new set has MIN_PER_CLASS confirmed training drawings."""
    from webapp.label_sets import by_id

    counts = confirmed_training_counts(label_set_id)
    minimum = current_app.config["MIN_PER_CLASS"]
    return all(counts.get(label, 0) >= minimum for label in range(len(by_id(label_set_id).classes)))


def follow_up(run: TrainingRun) -> TrainingRun | None:
    """After ``run`` ended: the next run, if one was asked for while it was live (and there is
    something new to train on) or if RETRAIN_EVERY or more confirmed drawings still wait."""
    label_set_id = run.label_set_id
    waiting = waiting_count(label_set_id)
    every = current_app.config["RETRAIN_EVERY"]
    if not ((run.follow_up and waiting > 0) or (every > 0 and _enough_waiting(label_set_id, every))):
        return None
    try:
        next_run, _ = request_run(trigger="follow-up", label_set_id=label_set_id)
        return next_run
    except QueueUnavailable as exc:  # the next confirmation or an admin starts it
        log.warning("follow-up run not started: %s", exc)
        return None


def live_run(label_set_id: int = DIGITS_ID) -> TrainingRun | None:
    """The set's queued or running run, if any; one whose worker went silent is failed, not waited on."""
    run = db.session.scalar(select(TrainingRun).where(TrainingRun.status.in_(LIVE),
                                                      TrainingRun.label_set_id == label_set_id)
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


def run_lock(label_set_id: int) -> str:
    """The value of a live run's unique ``lock``: one live run per label set."""
    return RUN_LOCK if label_set_id == DIGITS_ID else f"{RUN_LOCK}:{label_set_id}"


def request_run(*, trigger: str, label_set_id: int = DIGITS_ID) -> tuple[TrainingRun, bool]:
    """Queue a run for a label set, or return the one already queued or running, marked to have
    one follow-up (the database's unique lock decides between concurrent requests). Raises
    QueueUnavailable if the broker is down."""
    existing = live_run(label_set_id)
    if existing is not None:
        return _with_follow_up(existing), False
    run = TrainingRun(status="queued", trigger=trigger, lock=run_lock(label_set_id), progress={"phase": "queued"},
                      label_set_id=label_set_id)
    db.session.add(run)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        existing = live_run(label_set_id)
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
    from webapp.label_sets import by_id

    return {"id": run.id, "label_set": by_id(run.label_set_id).slug, "status": run.status, "trigger": run.trigger,
            "progress": run.progress or {},
            "result": run.result or {}, "error": run.error, "created": iso(run.created_at),
            "started": iso(run.started_at), "finished": iso(run.finished_at),
            "follow_up": run.follow_up}


# ---- versions: recording, activation and rollback ------------------------------------------

def next_version(name: str, label_set_id: int = DIGITS_ID) -> int:
    return (db.session.scalar(select(func.max(ModelVersion.version)).where(
        ModelVersion.name == name, ModelVersion.label_set_id == label_set_id)) or 0) + 1


def version_prefix(name: str, version: int, tag: str | None = None, label_set: str | None = None) -> str:
    """Where a version's files go in the store: ``models/<name>/v<N>-<tag>/`` for digits,
    ``models/sets/<slug>/<name>/v<N>-<tag>/`` for another label set.

    The tag (a run id's start, or a fresh one for an import) means that two writers racing
    for one version number can never overwrite files the other's row points at. Rows keep
    the prefix they were stored under, so versions stored under an older layout still load.
    """
    folder = f"models/{name}" if label_set in (None, "digits") else f"models/sets/{label_set}/{name}"
    return f"{folder}/v{version}-{tag or uuid.uuid4().hex[:8]}/"


def record_version(stored, *, version: int, status: str, reason: str, parent_version: int | None = None,
                   run: TrainingRun | None = None, samples: int = 0,
                   data_until: datetime | None = None, label_set_id: int = DIGITS_ID) -> ModelVersion:
    """Upload a published version's files, then its row, in that order, and commit.

    ``stored`` is a published ``training.versions`` version; ``version`` is its number in the
    registry (an imported base model's may differ from the folder's). With ``status="active"`` the network's active version is retired in the
    same transaction, so the active one changes only once all files exist.
    """
    from training.versions import ONNX_FILE
    from webapp.registry import upload_version_files

    manifest = {**stored.manifest, "version": version}
    from webapp.label_sets import by_id

    prefix = version_prefix(stored.name, version, run.id[:8] if run is not None else None,
                            label_set=by_id(label_set_id).slug)
    upload_version_files(get_store(), stored, prefix)
    row = ModelVersion(name=stored.name, version=version, status="candidate", parent_version=parent_version,
                       object_prefix=prefix, onnx_sha256=manifest["files"][ONNX_FILE]["sha256"],
                       metrics=manifest.get("metrics", {}), manifest=manifest, samples_used=samples,
                       training_run_id=run.id if run is not None else None, status_reason=reason,
                       data_until=data_until, label_set_id=label_set_id)
    db.session.add(row)
    db.session.flush()
    if status == "active":
        db.session.execute(update(ModelVersion).where(ModelVersion.name == stored.name,
                                                      ModelVersion.label_set_id == label_set_id,
                                                      ModelVersion.status == "active",
                                                      ModelVersion.id != row.id).values(status="retired"))
        row.activated_at = utcnow()
    row.status = status
    db.session.commit()
    return row


def activate(name: str, version: int, *, reason: str, label_set_id: int = DIGITS_ID) -> ModelVersion:
    """Make one version the active one of its set, in one transaction (the old one is retired)."""
    row = db.session.scalar(select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version,
                                                       ModelVersion.label_set_id == label_set_id))
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
    db.session.execute(update(ModelVersion).where(ModelVersion.name == name, ModelVersion.status == "active",
                                                  ModelVersion.label_set_id == label_set_id)
                       .values(status="retired"))
    row.status, row.activated_at, row.status_reason = "active", utcnow(), reason
    db.session.commit()
    return row
