"""What the API and pages do, as typed keyword-only functions: save, predict, rate."""

from __future__ import annotations

import hmac
import logging
import secrets
import time

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from training.preprocess import Preprocessed
from training.versions import sha256_bytes
from webapp import issued_ids
from webapp.curation import confirm, confirmation_for, reject
from webapp.errors import DuplicateId, ServiceError
from webapp.extensions import db
from webapp.label_sets import DIGITS_INFO, SetInfo, by_id, parse_set_label, refuse_if_closed
from webapp.models import DIGITS_ID, Drawing, Prediction, Rating, new_id
from webapp.registry import ModelsUnavailable, NoModel, get_registry
from webapp.runs import maybe_trigger_automatically
from webapp.storage import StorageError, get_store
from webapp.store_writes import PutAhead, put_together
from webapp.strokes import CONTENT_TYPE as STROKES_CONTENT_TYPE, encode_strokes, strokes_key_for
from webapp.writer import AnsweredPrediction, store_predictions

log = logging.getLogger(__name__)

RATING_POLL_SECONDS = 0.02
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


def _drawing_values(*, drawing: Preprocessed, source: str, label: int | None, client_id: str | None,
                    drawing_id: str | None = None, strokes: bool = False, label_set_id: int = DIGITS_ID) -> dict:
    """A drawing row's columns, as a dict: the write-behind inserts these without ORM objects."""
    if drawing_id is None:
        # A prediction's id says when it was issued: its rating may arrive before its row (see issued_ids).
        drawing_id = key = issued_ids.issue() if source == "prediction" else new_id()
    else:
        # A client-supplied id may arrive twice at once: each attempt writes its own object,
        # so the request that loses the race never overwrites or deletes the winner's image.
        key = f"{drawing_id}-{secrets.token_hex(4)}"
    upload = drawing.upload
    object_key = f"drawings/{drawing_id[:2]}/{key}.{EXTENSIONS[upload.mime]}"
    return dict(
        id=drawing_id, label_set_id=label_set_id, source=source, label=label, status="pending",
        object_key=object_key, strokes_key=strokes_key_for(object_key) if strokes else None,
        content_type=upload.mime, sha256=sha256_bytes(upload.data), size_bytes=len(upload.data),
        width=upload.width, height=upload.height, pixels=drawing.pixels.tobytes(), client_id=client_id,
    )


def _new_drawing(**kwargs) -> Drawing:
    return Drawing(**_drawing_values(**kwargs))


def _store_then_commit(row: Drawing, data: bytes, *extra_rows, strokes: PutAhead | None = None) -> None:
    """Write the objects first (image, and strokes already on their way), then the rows; undo the
    objects if the rows fail.

    So a row never points at a missing object. If the undo fails too, the objects are
    orphans that `flask storage reconcile` removes (it lists objects with no row).
    """
    store = get_store()
    ahead = [strokes] if strokes is not None else []
    keys = [row.object_key] + [put.key for put in ahead]
    try:
        put_together(store, [(row.object_key, data, row.content_type)], ahead)
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
            for key in keys:
                try:
                    store.delete(key)
                except StorageError:
                    log.error("orphan object %s left for the reconciler", key)
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
    if (stored.source, stored.sha256, stored.label, stored.label_set_id) != (row.source, row.sha256, row.label,
                                                                              row.label_set_id):
        raise ServiceError(409, "id_taken", "a different drawing was already saved under this id")
    return stored


def _policy_confirmation(row: Drawing, cnn) -> str | None:
    """Why the confirmation policy confirms ``row`` at once given the CNN's reading (an answer or a
    stored prediction, or None without one), or None when it waits for review."""
    return confirmation_for(row, cnn_label=cnn.label if cnn else None, cnn_confidence=cnn.confidence if cnn else None)


def save_drawing(*, drawing: Preprocessed, label: int | None, client_id: str | None,
                 not_digit: bool = False, drawing_id: str | None = None, label_set: SetInfo = DIGITS_INFO,
                 strokes: list[dict] | None = None) -> Drawing:
    """Store a labelled contribution to ``label_set``, with both models' readings (for review and the
    policy), and its strokes when it has them (checked by strokes.parse_strokes).

    A contribution flagged ``not_digit`` has no label and is never confirmed: admins see it,
    training never does. A closed set takes none (409).
    """
    refuse_if_closed(label_set)
    row = _new_drawing(drawing=drawing, source="contribution", label=None if not_digit else label,
                       client_id=client_id, drawing_id=drawing_id, strokes=strokes is not None,
                       label_set_id=label_set.id)
    row.not_digit = not_digit
    if drawing_id is not None and (stored := _same_drawing_stored(row)) is not None:
        return stored  # sent again: the first save's answer, nothing written twice
    # The strokes go to the store now, while the networks read the drawing and its image is written.
    strokes_put = (None if strokes is None
                   else PutAhead(get_store(), row.strokes_key, encode_strokes(strokes), STROKES_CONTENT_TYPE))
    try:
        stored, reason = _read_and_store(row, drawing, label_set, strokes_put)
    except BaseException:
        if strokes_put is not None:
            strokes_put.discard()
        raise
    if reason and stored is row:
        maybe_trigger_automatically(label_set.id)
    return stored


def _read_and_store(row: Drawing, drawing: Preprocessed, label_set: SetInfo,
                    strokes_put: PutAhead | None) -> tuple[Drawing, str | None]:
    """Both networks' readings of a new contribution, the policy's confirmation, then its objects and rows:
    the row stored (another request's, if it committed the same id first) and why it was confirmed."""
    try:
        answers = get_registry().snapshot(label_set.id).predictor.predict(drawing.pixels)
    except ModelsUnavailable:  # a contribution does not need the models
        answers = {}
    rows = [_prediction_row(row.id, name, answer, label_set.id) for name, answer in answers.items()]
    reason = None if row.not_digit else _policy_confirmation(row, answers.get("cnn"))
    if reason:
        confirm(row, reason=reason)
    try:
        _store_then_commit(row, drawing.upload.data, *rows, strokes=strokes_put)
    except DuplicateId:
        # The same id arrived twice at once, and the other request committed first (this one's
        # objects are gone already).
        stored = _same_drawing_stored(row)
        if stored is None:
            raise
        return stored, None
    return row, reason


def _prediction_values(drawing_id: str, name: str, answer, label_set_id: int = DIGITS_ID) -> dict:
    return dict(drawing_id=drawing_id, label_set_id=label_set_id, model_name=name,
                model_version=answer.model_version, label=answer.label, confidence=answer.confidence,
                probabilities=answer.probabilities, latency_ms=answer.latency_ms)


def _prediction_row(drawing_id: str, name: str, answer, label_set_id: int = DIGITS_ID) -> Prediction:
    return Prediction(**_prediction_values(drawing_id, name, answer, label_set_id))


def _answers(pixels, label_set: SetInfo) -> dict:
    """Both networks' answers in ``label_set``; 409 for a set still collecting its first drawings."""
    try:
        return get_registry().snapshot(label_set.id).predictor.predict(pixels)
    except NoModel:
        raise ServiceError(409, "no_model", f"the label set {label_set.slug} has no trained model yet: "
                                            "contribute drawings, and its first training run makes one") from None


def predict_drawing(*, drawing: Preprocessed, client_id: str | None, label_set: SetInfo = DIGITS_INFO,
                    strokes: list[dict] | None = None) -> tuple[str | None, dict]:
    """Both models' answers for a drawing, and the id under which it is stored for rating.

    Answering is what the user waits for, so the drawing is stored after the response
    (write-behind, one writer thread per process; the object first, then the rows). If
    storage or the database is down, answers still go out but without an id, and storage
    is not retried for a few seconds so that every prediction does not wait on a timeout.
    """
    answers = _answers(drawing.pixels, label_set)
    app = current_app._get_current_object()
    writer = app.extensions["inkling.writer"]
    if not writer.accepting():
        return None, answers
    values = _drawing_values(drawing=drawing, source="prediction", label=None, client_id=client_id,
                             strokes=strokes is not None, label_set_id=label_set.id)
    pending = AnsweredPrediction(app, values, drawing.upload.data,
                                 [_prediction_values(values["id"], name, answer, label_set.id)
                                  for name, answer in answers.items()],
                                 strokes=None if strokes is None else encode_strokes(strokes))
    if not app.config["PREDICTION_WRITE_BEHIND"]:
        return (pending.id if store_predictions([pending]) else None), answers
    return (pending.id if writer.submit(pending) else None), answers


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


def record_feedback(*, drawing_id: str, label, client_id: str | None,
                    as_staff: bool = False) -> tuple[Rating, dict[str, bool]]:
    """The user's true class for a prediction (a name or an index in the drawing's label set);
    the drawing becomes a labelled feedback sample.

    Only the visitor who asked for the prediction (or an admin) may rate it: ids are listed
    publicly, and a stranger's rating would label someone else's drawing and skew the
    accuracy figures. To anyone else the id is as good as unknown.
    """
    row = _answered_prediction(drawing_id)
    if row is None or row.source == "contribution" or not (as_staff or _is_own(row, client_id)):
        raise ServiceError(404, "not_found", "no prediction with that id")
    label = parse_set_label(by_id(row.label_set_id), label)
    if row.rating is not None:
        raise ServiceError(409, "already_rated", "this prediction has already been rated")
    rating = Rating(drawing_id=row.id, label=label, client_id=client_id)
    row.label, row.source = label, "feedback"
    reason = _policy_confirmation(row, next((p for p in row.predictions if p.model_name == "cnn"), None))
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
        maybe_trigger_automatically(row.label_set_id)
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
