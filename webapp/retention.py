"""Removing drawings for good: unrated predictions past PREDICTION_RETENTION, and a visitor's own on request.

Rows go first, in one commit per batch with their readings, rating and audit event; objects
after. A failure halfway then leaves only objects without a row, which nothing serves and
`flask storage reconcile` removes; never a row pointing at a missing image.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, exists, select
from sqlalchemy.exc import SQLAlchemyError

from webapp.audit import record
from webapp.extensions import db
from webapp.models import Drawing, Prediction, Rating, utcnow
from webapp.errors import ServiceError
from webapp.storage import StorageError, get_store

log = logging.getLogger(__name__)

RETENTION_ACTOR = "retention"


@dataclass
class PruneResult:
    rows: int = 0
    objects: int = 0
    # Objects whose rows are gone but which the store would not delete: reconcile's to remove.
    orphans: int = 0
    stopped: str | None = None


def expired_condition(cutoff: datetime):
    """Unrated, unflagged predictions made before ``cutoff``: nobody contributed, rated or flagged them.

    A rated prediction becomes a `feedback` drawing, so the source alone says "unrated"; the
    rating check is for one whose rating commits while the prune runs.
    """
    return (Drawing.source == "prediction") & ~Drawing.not_digit & (Drawing.created_at < cutoff) & \
        ~exists().where(Rating.drawing_id == Drawing.id)


def _delete_rows(ids: list[str], condition) -> tuple[int, list[str]]:
    """Delete the drawings among ``ids`` that still meet ``condition``, with their readings and rating.

    Not committed. The condition is checked again by the DELETE itself, so a prediction rated
    since it was selected is kept. Returns how many were deleted, and their objects' keys (images and strokes).
    """
    deleted = db.session.execute(delete(Drawing).where(Drawing.id.in_(ids), condition)
                                 .returning(Drawing.id, Drawing.object_key, Drawing.strokes_key)).all()
    gone = [row.id for row in deleted]
    if gone:  # the foreign keys cascade too; this does not count on a database that ignores them
        db.session.execute(delete(Prediction).where(Prediction.drawing_id.in_(gone)))
        db.session.execute(delete(Rating).where(Rating.drawing_id.in_(gone)))
    return len(gone), [key for row in deleted for key in (row.object_key, row.strokes_key) if key is not None]


def _delete_objects(keys: list[str], result: PruneResult) -> bool:
    """Delete the objects of rows already gone (one request per 1,000 on S3); False if the store refuses."""
    if not keys:
        return True
    try:
        get_store().delete_many(keys)
    except StorageError as exc:
        # Some of them may be gone already: reconcile removes whichever are left.
        result.orphans += len(keys)
        result.stopped = f"object store: {exc}"
        log.error("up to %d objects left for `flask storage reconcile`: %s", len(keys), exc)
        return False
    result.objects += len(keys)
    return True


def prune_expired(*, now: datetime | None = None, retention: timedelta | None = None,
                  batch_size: int | None = None, limit: int | None = None) -> PruneResult:
    """Delete unrated, unflagged predictions older than PREDICTION_RETENTION, a batch at a time.

    Each batch is one short transaction (the web keeps writing meanwhile) and then its objects.
    Stops at the first batch the object store refuses: the next prune carries on.
    """
    config = current_app.config
    cutoff = (now or utcnow()) - (retention or config["PREDICTION_RETENTION"])
    batch_size = batch_size or config["PRUNE_BATCH_SIZE"]
    condition = expired_condition(cutoff)
    result = PruneResult()
    while limit is None or result.rows < limit:
        size = batch_size if limit is None else min(batch_size, limit - result.rows)
        ids = list(db.session.scalars(select(Drawing.id).where(condition)
                                      .order_by(Drawing.created_at).limit(size)))
        if not ids:
            break
        try:
            count, keys = _delete_rows(ids, condition)
            if count:
                record("drawing.delete", actor=RETENTION_ACTOR,
                       detail={"count": count, "reason": "retention", "before": cutoff.isoformat()})
            db.session.commit()
        except SQLAlchemyError as exc:
            db.session.rollback()
            result.stopped = f"database: {exc.__class__.__name__}"
            log.error("prune stopped, nothing of this batch deleted: %s", exc)
            break
        result.rows += count
        if not _delete_objects(keys, result):
            break
    return result


def delete_own_drawing(*, drawing_id: str, client_id: str | None) -> None:
    """Delete one of the visitor's own drawings: rows (and an audit event) first, then the image.

    Anyone else's id, or an unknown one, is a 404: ids are not to be confirmed.
    """
    row = db.session.get(Drawing, drawing_id) if len(drawing_id) <= 36 else None
    if row is None or not (client_id and row.client_id and hmac.compare_digest(row.client_id, client_id)):
        raise ServiceError(404, "not_found", "no drawing of yours with that id")
    # Only the count and when: the log is for accountability, not a copy of what was deleted.
    try:
        count, keys = _delete_rows([row.id], Drawing.client_id == client_id)
        record("drawing.delete", target=row.id, detail={"count": count, "at": utcnow().isoformat()})
        db.session.commit()
    except SQLAlchemyError as exc:
        db.session.rollback()
        raise ServiceError(503, "database_unavailable", "the database is unavailable; try again shortly") from exc
    _delete_objects(keys, PruneResult())
