"""What the API and pages do, as typed keyword-only functions: save, predict, rate."""

from __future__ import annotations

import hmac
import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from training.preprocess import Preprocessed
from training.versions import sha256_bytes
from webapp import issued_ids
from webapp.extensions import db
from webapp.models import Drawing, Prediction, Rating, new_id
from webapp.registry import ModelsUnavailable, get_registry
from webapp.curation import confirm, confirmation_for, reject
from webapp.runs import maybe_trigger_automatically
from webapp.storage import StorageError, get_store

log = logging.getLogger(__name__)

STORAGE_RETRY_SECONDS = 5.0
RATING_POLL_SECONDS = 0.02
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


class ServiceError(Exception):
    """A failure with an HTTP status and a machine-readable code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class DuplicateId(ServiceError):
    """Another request committed a drawing under the same client-supplied id first."""

    def __init__(self):
        super().__init__(409, "id_taken", "a drawing was already saved under this id")


def _drawing_values(*, drawing: Preprocessed, source: str, label: int | None, client_id: str | None,
                    drawing_id: str | None = None) -> dict:
    """A drawing row's columns, as a dict: the write-behind inserts these without ORM objects."""
    if drawing_id is None:
        # A prediction's id says when it was issued: its rating may arrive before its row (see issued_ids).
        drawing_id = key = issued_ids.issue() if source == "prediction" else new_id()
    else:
        # A client-supplied id may arrive twice at once: each attempt writes its own object,
        # so the request that loses the race never overwrites or deletes the winner's image.
        key = f"{drawing_id}-{secrets.token_hex(4)}"
    upload = drawing.upload
    return dict(
        id=drawing_id, source=source, label=label, status="pending",
        object_key=f"drawings/{drawing_id[:2]}/{key}.{EXTENSIONS[upload.mime]}",
        content_type=upload.mime, sha256=sha256_bytes(upload.data), size_bytes=len(upload.data),
        width=upload.width, height=upload.height, pixels=drawing.pixels.tobytes(), client_id=client_id,
    )


def _new_drawing(**kwargs) -> Drawing:
    return Drawing(**_drawing_values(**kwargs))


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
        stored_key = _stored_key(row.id) if isinstance(exc, IntegrityError) else None
        if stored_key != row.object_key:
            try:
                store.delete(row.object_key)
            except StorageError:
                log.error("orphan object %s left for the reconciler", row.object_key)
        if stored_key is not None:
            raise DuplicateId() from exc
        log.warning("database write failed: %s", exc)
        raise ServiceError(503, "database_unavailable", "the database is unavailable; try again shortly") from exc


def _stored_key(drawing_id: str) -> str | None:
    try:
        return db.session.scalar(select(Drawing.object_key).where(Drawing.id == drawing_id))
    except SQLAlchemyError:
        db.session.rollback()
        return None


def _same_drawing_stored(row: Drawing) -> Drawing | None:
    """The contribution already saved under ``row``'s client-supplied id, if ``row`` is it sent again."""
    stored = db.session.get(Drawing, row.id)
    if stored is None:
        return None
    if (stored.source, stored.sha256, stored.label) != (row.source, row.sha256, row.label):
        raise ServiceError(409, "id_taken", "a different drawing was already saved under this id")
    return stored


def save_drawing(*, drawing: Preprocessed, label: int | None, client_id: str | None,
                 not_digit: bool = False, drawing_id: str | None = None) -> Drawing:
    """Store a labelled contribution, with both models' readings (for review and the policy).

    A contribution flagged ``not_digit`` has no label and is never confirmed: admins see it,
    training never does.
    """
    row = _new_drawing(drawing=drawing, source="contribution", label=None if not_digit else label,
                       client_id=client_id, drawing_id=drawing_id)
    row.not_digit = not_digit
    if drawing_id is not None and (stored := _same_drawing_stored(row)) is not None:
        return stored  # sent again: the first save's answer, nothing written twice
    try:
        answers = get_registry().snapshot().predictor.predict(drawing.pixels)
    except ModelsUnavailable:  # a contribution does not need the models
        answers = {}
    rows = [_prediction_row(row.id, name, answer) for name, answer in answers.items()]
    cnn = answers.get("cnn")
    reason = None if not_digit else confirmation_for(
        row, cnn_label=cnn.label if cnn else None, cnn_confidence=cnn.confidence if cnn else None)
    if reason:
        confirm(row, reason=reason)
    try:
        _store_then_commit(row, drawing.upload.data, *rows)
    except DuplicateId:
        # The same id arrived twice at once, and the other request committed first.
        stored = _same_drawing_stored(row)
        if stored is None:
            raise
        return stored
    if reason:
        maybe_trigger_automatically()
    return row


def _prediction_values(drawing_id: str, name: str, answer) -> dict:
    return dict(drawing_id=drawing_id, model_name=name, model_version=answer.model_version, label=answer.label,
                confidence=answer.confidence, probabilities=answer.probabilities, latency_ms=answer.latency_ms)


def _prediction_row(drawing_id: str, name: str, answer) -> Prediction:
    return Prediction(**_prediction_values(drawing_id, name, answer))


@dataclass(frozen=True)
class AnsweredPrediction:
    """A prediction already answered, waiting to be stored: its rows' columns and the image."""

    app: object
    drawing: dict
    data: bytes
    predictions: list[dict]

    @property
    def id(self) -> str:
        return self.drawing["id"]


def predict_drawing(*, drawing: Preprocessed, client_id: str | None) -> tuple[str | None, dict]:
    """Both models' answers for a drawing, and the id under which it is stored for rating.

    Answering is what the user waits for, so the drawing is stored after the response
    (write-behind, one writer thread per process; the object first, then the rows). If
    storage or the database is down, answers still go out but without an id, and storage
    is not retried for a few seconds so that every prediction does not wait on a timeout.
    """
    answers = get_registry().snapshot().predictor.predict(drawing.pixels)
    app = current_app._get_current_object()
    writer = app.extensions["inkling.writer"]
    if not writer.accepting():
        return None, answers
    values = _drawing_values(drawing=drawing, source="prediction", label=None, client_id=client_id)
    pending = AnsweredPrediction(app, values, drawing.upload.data,
                                 [_prediction_values(values["id"], name, answer) for name, answer in answers.items()])
    if not app.config["PREDICTION_WRITE_BEHIND"]:
        return (pending.id if _store_predictions([pending]) else None), answers
    return (pending.id if writer.submit(pending) else None), answers


def _store_predictions(batch: list[AnsweredPrediction]) -> int:
    """Store a batch of answered predictions: every object, then all their rows in one commit.

    One commit for many drawings is what lets the writer keep up under load (a commit is a
    disk flush), and the rows go in as bulk INSERTs of plain values, without the ORM's
    per-object bookkeeping. The order is the one save uses, so a row never points at a
    missing object. Returns how many were stored.
    """
    app = batch[0].app
    writer = app.extensions["inkling.writer"]
    with app.app_context():
        store = get_store()
        written: list[AnsweredPrediction] = []
        try:
            for item in batch:
                try:
                    store.put(item.drawing["object_key"], item.data, content_type=item.drawing["content_type"])
                except StorageError as exc:
                    writer.trip()
                    log.warning("%d answered predictions not stored: %s", len(batch) - len(written), exc)
                    break
                written.append(item)
            if not written:
                return 0
            try:
                db.session.execute(insert(Drawing), [item.drawing for item in written])
                db.session.execute(insert(Prediction), [row for item in written for row in item.predictions])
                db.session.commit()
            except SQLAlchemyError as exc:
                db.session.rollback()
                writer.trip()
                log.warning("%d answered predictions not stored: %s", len(written), exc)
                for item in written:
                    try:
                        store.delete(item.drawing["object_key"])
                    except StorageError:
                        log.error("orphan object %s left for the reconciler", item.drawing["object_key"])
                return 0
            return len(written)
        finally:
            db.session.remove()


class PredictionWriter:
    """One background thread per process that stores answered predictions, a batch per commit.

    The thread gathers what arrives within ``linger`` seconds into one batch: under load that
    is one commit (and one round of ORM work) for dozens of predictions instead of one each,
    which halved the CPU a stored prediction costs. Bounded: when it falls behind (or storage
    failed a moment ago) new predictions are answered without being stored rather than
    queued without limit. The thread starts with the first prediction, so in the worker
    process, never in a parent that forks.
    """

    def __init__(self, *, max_pending: int = 1024, retry_seconds: float = STORAGE_RETRY_SECONDS,
                 batch_size: int = 64, linger: float = 0.05):
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._batch_size = batch_size
        self._linger = linger
        self._retry_seconds = retry_seconds
        self._closed_until = 0.0
        self._lock = threading.Lock()
        self._stored = threading.Condition(self._lock)
        self._pending: set[str] = set()
        self._thread: threading.Thread | None = None

    def accepting(self) -> bool:
        return time.monotonic() >= self._closed_until

    def trip(self) -> None:
        self._closed_until = time.monotonic() + self._retry_seconds

    def submit(self, item: AnsweredPrediction) -> bool:
        with self._lock:
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                return False
            self._pending.add(item.id)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="prediction-writer", daemon=True)
                self._thread.start()
        return True

    def wait_for(self, drawing_id: str, timeout: float = 5.0) -> bool:
        """Wait while ``drawing_id`` is queued here; False if it was not (or is still) pending."""
        deadline = time.monotonic() + timeout
        with self._stored:
            if drawing_id not in self._pending:
                return False
            while drawing_id in self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._stored.wait(remaining)
        return True

    def _next_batch(self) -> list[AnsweredPrediction]:
        batch = [self._queue.get()]
        deadline = time.monotonic() + self._linger
        while len(batch) < self._batch_size:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            try:
                _store_predictions(batch)
            except Exception:  # the thread must outlive any one batch
                log.exception("storing %d answered predictions failed", len(batch))
            finally:
                with self._stored:
                    self._pending.difference_update(item.id for item in batch)
                    self._stored.notify_all()
                for _ in batch:
                    self._queue.task_done()

    def flush(self, timeout: float = 30) -> None:
        """Wait until everything submitted so far is stored (tests, and shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self._queue.unfinished_tasks} predictions still being stored")
            time.sleep(0.01)


def _answered_prediction(drawing_id: str) -> Drawing | None:
    """The stored drawing of an answered prediction, waiting briefly for one still on its way.

    The answer goes out before the row is stored, and the rating may reach another process
    (or another dyno) than the one whose writer holds it: that one looks in the database until
    the id's RATABLE_AFTER has passed. Ids not recently issued here are not waited for.
    """
    if len(drawing_id) > 36:  # longer than any id we make: not worth a query
        return None
    row = db.session.get(Drawing, drawing_id)
    if row is not None:
        return row
    if current_app.extensions["inkling.writer"].wait_for(drawing_id):
        return db.session.get(Drawing, drawing_id)
    until = issued_ids.wait_until(drawing_id)
    while until is not None and row is None and time.time() < until:
        time.sleep(RATING_POLL_SECONDS)
        db.session.rollback()  # a new transaction, so that it sees rows committed since
        row = db.session.get(Drawing, drawing_id)
    return row


def record_feedback(*, drawing_id: str, label: int, client_id: str | None,
                    as_staff: bool = False) -> tuple[Rating, dict[str, bool]]:
    """The user's true digit for a prediction; the drawing becomes a labelled feedback sample.

    Only the visitor who asked for the prediction (or an admin) may rate it: ids are listed
    publicly, and a stranger's rating would label someone else's drawing and skew the
    accuracy figures. To anyone else the id is as good as unknown.
    """
    row = _answered_prediction(drawing_id)
    if row is None or row.source == "contribution" or not (as_staff or _is_own(row, client_id)):
        raise ServiceError(404, "not_found", "no prediction with that id")
    if row.rating is not None:
        raise ServiceError(409, "already_rated", "this prediction has already been rated")
    rating = Rating(drawing_id=row.id, label=label, client_id=client_id)
    row.label, row.source = label, "feedback"
    cnn = next((p for p in row.predictions if p.model_name == "cnn"), None)
    reason = confirmation_for(row, cnn_label=cnn.label if cnn else None, cnn_confidence=cnn.confidence if cnn else None)
    if reason:
        confirm(row, reason=reason)
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
    if reason:
        maybe_trigger_automatically()
    return rating, correct


def contributions_of(client_id: str | None) -> int:
    if not client_id:
        return 0
    return db.session.scalar(select(func.count()).select_from(Drawing).where(
        Drawing.client_id == client_id, Drawing.source == "contribution")) or 0


def _is_own(row: Drawing, client_id: str | None) -> bool:
    return bool(client_id and row.client_id) and hmac.compare_digest(row.client_id, client_id)


def flag_not_digit(*, drawing_id: str, client_id: str | None, as_staff: bool = False) -> Drawing:
    """The person who drew it (or an admin) says it is not a digit: out of training, into the admins' queue."""
    row = _answered_prediction(drawing_id)
    # Only the drawer's own drawings: anyone else's id is as good as unknown.
    if row is None or not (as_staff or _is_own(row, client_id)):
        raise ServiceError(404, "not_found", "no drawing of yours with that id")
    if not row.not_digit:
        row.not_digit = True
        if row.status == "confirmed":
            reject(row, reason="flagged as not a digit by its author")
        db.session.commit()
    return row
