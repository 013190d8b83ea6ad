"""What the API and pages do, as typed keyword-only functions: save, predict, rate."""

from __future__ import annotations

import logging
import time

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from training.preprocess import Preprocessed
from training.versions import sha256_bytes
from webapp.extensions import db
from webapp.models import Drawing, Prediction, Rating, new_id
from webapp.registry import get_registry
from webapp.storage import StorageError, get_store

log = logging.getLogger(__name__)

STORAGE_RETRY_SECONDS = 5.0
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


class ServiceError(Exception):
    """A failure with an HTTP status and a machine-readable code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _new_drawing(*, drawing: Preprocessed, source: str, label: int | None, client_id: str | None) -> Drawing:
    drawing_id = new_id()
    upload = drawing.upload
    return Drawing(
        id=drawing_id, source=source, label=label, status="pending",
        object_key=f"drawings/{drawing_id[:2]}/{drawing_id}.{EXTENSIONS[upload.mime]}",
        content_type=upload.mime, sha256=sha256_bytes(upload.data), size_bytes=len(upload.data),
        width=upload.width, height=upload.height, pixels=drawing.pixels.tobytes(), client_id=client_id,
    )


def _store_then_commit(row: Drawing, data: bytes, *extra_rows) -> None:
    """Write the object first, then the rows; undo the object if the rows fail.

    So a row never points at a missing image. If the undo fails too, the object is an
    orphan that `flask storage reconcile` removes (it lists objects with no row).
    """
    store = get_store()
    try:
        store.put(row.object_key, data, content_type=row.content_type)
    except StorageError as exc:
        log.warning("object store write failed: %s", exc)
        raise ServiceError(503, "storage_unavailable", "image storage is unavailable; try again shortly") from exc
    try:
        db.session.add(row)
        db.session.add_all(extra_rows)
        db.session.commit()
    except SQLAlchemyError as exc:
        db.session.rollback()
        try:
            store.delete(row.object_key)
        except StorageError:
            log.error("orphan object %s left for the reconciler", row.object_key)
        log.warning("database write failed: %s", exc)
        raise ServiceError(503, "database_unavailable", "the database is unavailable; try again shortly") from exc


def save_drawing(*, drawing: Preprocessed, label: int, client_id: str | None) -> Drawing:
    """Store a labelled contribution."""
    row = _new_drawing(drawing=drawing, source="contribution", label=label, client_id=client_id)
    _store_then_commit(row, drawing.upload.data)
    return row


def predict_drawing(*, drawing: Preprocessed, client_id: str | None) -> tuple[Drawing | None, dict]:
    """Both models' answers for a drawing, stored so that the user can rate them.

    Answering matters more than storing: if storage or the database is down, the answers
    still go out, without an id (so they cannot be rated), and storage is not retried for
    a few seconds so that every prediction does not wait for the same timeout.
    """
    answers = get_registry().snapshot().predictor.predict(drawing.pixels)
    breaker = current_app.extensions.setdefault("inkling.storage_breaker", {"until": 0.0})
    if time.monotonic() < breaker["until"]:
        return None, answers
    row = _new_drawing(drawing=drawing, source="prediction", label=None, client_id=client_id)
    rows = [Prediction(drawing_id=row.id, model_name=name, model_version=answer.model_version,
                       label=answer.label, confidence=answer.confidence,
                       probabilities=answer.probabilities, latency_ms=answer.latency_ms)
            for name, answer in answers.items()]
    try:
        _store_then_commit(row, drawing.upload.data, *rows)
    except ServiceError as exc:
        breaker["until"] = time.monotonic() + STORAGE_RETRY_SECONDS
        log.warning("prediction answered but not stored: %s", exc.message)
        return None, answers
    return row, answers


def record_feedback(*, drawing_id: str, label: int, client_id: str | None) -> tuple[Rating, dict[str, bool]]:
    """The user's true digit for a prediction; the drawing becomes a labelled feedback sample."""
    row = db.session.get(Drawing, drawing_id)
    if row is None or row.source == "contribution":
        raise ServiceError(404, "not_found", "no prediction with that id")
    if row.rating is not None:
        raise ServiceError(409, "already_rated", "this prediction has already been rated")
    rating = Rating(drawing_id=row.id, label=label, client_id=client_id)
    row.label, row.source = label, "feedback"
    try:
        db.session.add(rating)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ServiceError(409, "already_rated", "this prediction has already been rated") from None
    except SQLAlchemyError as exc:
        db.session.rollback()
        raise ServiceError(503, "database_unavailable", "the database is unavailable; try again shortly") from exc
    correct = {p.model_name: p.label == label for p in row.predictions}
    return rating, correct


def contributions_of(client_id: str | None) -> int:
    if not client_id:
        return 0
    return db.session.scalar(select(func.count()).select_from(Drawing).where(
        Drawing.client_id == client_id, Drawing.source == "contribution")) or 0
