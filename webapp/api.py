"""The JSON API, /api/v1 (the pages use it too), and /healthz."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone

from flask import Blueprint, Response, current_app, g, jsonify, request, url_for
from sqlalchemy import case, func, select, text

from training.preprocess import preprocess
from webapp.auth import contribute_limit, predict_limit, sent_by_staff
from webapp.drawings import column_filters, drawing_json, visible_or_404
from webapp.errors import ServiceError
from webapp.extensions import db, limiter
from webapp.models import Drawing, ModelVersion, Prediction, Rating, iso
from webapp.parsing import LABEL_MESSAGE, int_arg, json_object, parse_label
from webapp.registry import ModelsUnavailable, get_registry
from webapp.services import contributions_of, flag_not_digit, predict_drawing, record_feedback, save_drawing
from webapp.storage import ObjectNotFound, StorageError, get_store
from webapp.strokes import parse_strokes
from webapp.visibility import visible_filter

bp = Blueprint("api", __name__, url_prefix="/api/v1")
health = Blueprint("health", __name__)

MAX_PAGE = 1_000_000
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def _client_drawing_id() -> str | None:
    """A contribution's optional ``id``, a UUID the client made, so that sending it twice saves it once."""
    if request.mimetype == "multipart/form-data":
        value = request.form.get("id")
    else:
        value = json_object().get("id")
    if value is None:
        return None
    if not isinstance(value, str) or not _UUID.match(value.lower()):
        raise ServiceError(400, "invalid_id", "id must be a UUID such as 3f2b1c9e-8d4a-4e6f-9b1a-2c3d4e5f6a7b")
    return value.lower()


def _image_and_label(*, want_label: bool):
    """The uploaded image (JSON ``image`` or multipart file ``image``), its label if wanted, and its strokes if sent."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("image")
        if upload is None:
            raise ServiceError(400, "missing_image", "send the drawing in a file field named 'image'")
        payload = upload.read()
        label, strokes = request.form.get("label"), request.form.get("strokes")
        if want_label and label is None:
            raise ServiceError(400, "invalid_label", LABEL_MESSAGE)
    else:
        body = json_object()
        payload = body.get("image")
        if payload is None:
            raise ServiceError(400, "missing_image", "the body needs an 'image': a data URL or base64 PNG/JPEG/WebP")
        if not isinstance(payload, str):
            raise ServiceError(400, "invalid_image", "'image' must be a string (a data URL or base64)")
        label, strokes = body.get("label"), body.get("strokes")
    drawing = preprocess(payload, max_bytes=current_app.config["MAX_IMAGE_BYTES"])
    strokes = parse_strokes(strokes, width=drawing.upload.width, height=drawing.upload.height)
    return drawing, (parse_label(label) if want_label else None), strokes


@bp.post("/predictions")
@limiter.limit(predict_limit)
def create_prediction():
    drawing, _, strokes = _image_and_label(want_label=False)
    drawing_id, answers = predict_drawing(drawing=drawing, client_id=g.client_id, strokes=strokes)
    return jsonify({
        # None when the drawing cannot be stored: the answers stand, but cannot be rated.
        "id": drawing_id,
        "predictions": {name: {key: value for key, value in answer.as_dict().items() if key != "latency_ms"}
                        for name, answer in answers.items()},
        "preview": drawing.preview_data_url,
    })


@bp.post("/predictions/<drawing_id>/feedback")
@limiter.limit(lambda: current_app.config["RATE_LIMIT_FEEDBACK"])
def create_feedback(drawing_id: str):
    label = parse_label(json_object().get("label"))
    rating, correct = record_feedback(drawing_id=drawing_id, label=label, client_id=g.client_id,
                                      as_staff=sent_by_staff())
    return jsonify({"id": drawing_id, "label": rating.label, "correct": correct}), 201


def _not_digit_flag() -> bool:
    """A contribution's optional ``not_digit``: JSON true/false, or "true"/"false" in a form."""
    if request.mimetype == "multipart/form-data":
        value = {"true": True, "false": False, None: False}.get(request.form.get("not_digit"), None)
    else:
        value = json_object().get("not_digit", False)
    if not isinstance(value, bool):
        raise ServiceError(400, "invalid_not_digit", "not_digit must be true or false")
    return value


@bp.post("/drawings")
@limiter.limit(contribute_limit)
def create_drawing():
    not_digit = _not_digit_flag()
    drawing_id = _client_drawing_id()
    drawing, label, strokes = _image_and_label(want_label=not not_digit)
    row = save_drawing(drawing=drawing, label=label, client_id=g.client_id, not_digit=not_digit, drawing_id=drawing_id,
                       strokes=strokes)
    body = {"id": row.id, "label": row.label, "status": row.status, "not_digit": row.not_digit,
            "client_contributions": contributions_of(g.client_id)}
    response = jsonify(body)
    response.headers["Location"] = url_for("api.get_drawing", drawing_id=row.id)
    return response, 201


@bp.post("/drawings/<drawing_id>/not-a-digit")
@limiter.limit(lambda: current_app.config["RATE_LIMIT_FEEDBACK"])
def flag_drawing(drawing_id: str):
    from webapp.audit import record

    already = db.session.scalar(select(Drawing.not_digit).where(Drawing.id == drawing_id))
    row = flag_not_digit(drawing_id=drawing_id, client_id=g.client_id, as_staff=sent_by_staff())
    if not already:
        record("drawing.flag", target=row.id, detail={"status": row.status})
        db.session.commit()
    return jsonify({"id": row.id, "not_digit": row.not_digit, "status": row.status})


@bp.get("/drawings")
def list_drawings():
    """A page of the drawings this request may see: a visitor's own, or all for a reviewer (see visibility)."""
    query = select(Drawing).order_by(Drawing.created_at.desc(), Drawing.id)
    count = select(func.count()).select_from(Drawing)
    filters, _ = column_filters(label_message=LABEL_MESSAGE,
                                one_of=lambda name, allowed: f"{name} must be one of {', '.join(allowed)}")
    if (visible := visible_filter()) is not None:
        filters.append(visible)
    page = int_arg("page", default=1, low=1, high=MAX_PAGE, message=f"page must be a whole number from 1 to {MAX_PAGE:,}")
    size = current_app.config["PAGE_SIZE"]
    total = db.session.scalar(count.where(*filters)) or 0
    rows = db.session.scalars(query.where(*filters).limit(size).offset((page - 1) * size)).all()
    return jsonify({"items": [drawing_json(row) for row in rows], "page": page, "page_size": size,
                    "pages": max(1, math.ceil(total / size)), "total": total})


@bp.get("/drawings/<drawing_id>")
def get_drawing(drawing_id: str):
    return jsonify(drawing_json(visible_or_404(drawing_id)))


@bp.delete("/drawings/<drawing_id>")
@limiter.limit(lambda: current_app.config["RATE_LIMIT_FEEDBACK"])
def delete_drawing(drawing_id: str):
    """The visitor who drew it deletes it: image, row, readings and rating (webapp/retention.py)."""
    from webapp.retention import delete_own_drawing

    delete_own_drawing(drawing_id=drawing_id, client_id=g.client_id)
    return jsonify({"id": drawing_id, "deleted": True})


@bp.get("/drawings/<drawing_id>/image")
def drawing_image(drawing_id: str):
    row = visible_or_404(drawing_id)
    try:
        data = get_store().get(row.object_key)
    except ObjectNotFound:
        raise ServiceError(404, "image_missing", "the image of this drawing is missing from storage") from None
    response = Response(data, mimetype=row.content_type)
    response.headers["Cache-Control"] = "private, max-age=86400, immutable"
    response.headers["Content-Disposition"] = f'inline; filename="{row.id}.{row.object_key.rsplit(".", 1)[-1]}"'
    return response


@bp.get("/models")
def list_models():
    rows = db.session.scalars(select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version.desc())).all()
    models: dict[str, list] = {}
    for row in rows:
        models.setdefault(row.name, []).append({
            "version": row.version, "status": row.status, "active": row.status == "active",
            "created": iso(row.created_at), "activated": iso(row.activated_at), "parent": row.parent_version,
            "metrics": row.metrics, "samples": row.samples_used, "reason": row.status_reason,
        })
    return jsonify({"models": [{"name": name, "versions": versions} for name, versions in models.items()],
                    "serving": get_registry().status()["loaded"]})


@bp.get("/stats")
def stats():
    def counts(column):
        return {str(key): value for key, value in db.session.execute(
            select(column, func.count()).select_from(Drawing).group_by(column)).all() if key is not None}

    rated = db.session.execute(
        select(Prediction.model_name, func.count(), func.sum((Prediction.label == Rating.label).cast(db.Integer)))
        .join(Rating, Rating.drawing_id == Prediction.drawing_id).group_by(Prediction.model_name)).all()
    accuracy = {name: {"rated": 0, "correct": 0, "accuracy": None} for name in ("fnn", "cnn")}
    for name, total, correct in rated:
        accuracy[name] = {"rated": total, "correct": int(correct or 0),
                          "accuracy": (int(correct or 0) / total) if total else None}
    total = db.session.scalar(select(func.count()).select_from(Drawing)) or 0
    return jsonify({"drawings": {"total": total, "by_label": counts(Drawing.label),
                                 "by_status": counts(Drawing.status), "by_source": counts(Drawing.source)},
                    "accuracy": accuracy})


@bp.get("/dataset/needs")
def dataset_needs():
    """Which digit the dataset needs most, for the contribute page's "draw a 7" prompt.

    Need is (1 + how often users say the networks got that digit wrong) / (usable drawings + 1):
    the rarest digit comes first, and among similar counts the one the networks miss most.
    Usable means labelled, not rejected and not flagged, so the prompt moves on as soon as
    drawings arrive rather than waiting for review.
    """
    usable = dict(db.session.execute(
        select(Drawing.label, func.count()).where(Drawing.label.is_not(None), Drawing.status != "rejected",
                                                  ~Drawing.not_digit).group_by(Drawing.label)).all())
    confirmed = dict(db.session.execute(
        select(Drawing.label, func.count()).where(Drawing.status == "confirmed", ~Drawing.not_digit)
        .group_by(Drawing.label)).all())
    missed = {label: (int(total), int(wrong or 0)) for label, total, wrong in db.session.execute(
        select(Rating.label, func.count(), func.sum(case((Prediction.label != Rating.label, 1), else_=0)))
        .join(Prediction, Prediction.drawing_id == Rating.drawing_id)
        .group_by(Rating.label)).all()}
    digits = []
    for digit in range(10):
        total, wrong = missed.get(digit, (0, 0))
        error_rate = wrong / total if total else 0.0
        digits.append({"digit": digit, "drawings": int(usable.get(digit, 0)), "confirmed": int(confirmed.get(digit, 0)),
                       "error_rate": round(error_rate, 4),
                       "need": (1 + error_rate) / (int(usable.get(digit, 0)) + 1)})
    best = max(digits, key=lambda entry: (entry["need"], -entry["digit"]))
    reason = ("fewest drawings so far" if best["error_rate"] == 0 or
              best["drawings"] == min(entry["drawings"] for entry in digits) else "the networks often misread it")
    since = datetime.now(timezone.utc) - timedelta(days=14)
    day = func.date(Drawing.created_at)
    growth = [{"day": str(when)[:10], "drawings": int(count)} for when, count in db.session.execute(
        select(day, func.count()).where(Drawing.source == "contribution", Drawing.created_at >= since)
        .group_by(day).order_by(day)).all()]
    return jsonify({"digit": best["digit"], "reason": reason,
                    "total": sum(entry["drawings"] for entry in digits),
                    "confirmed": sum(entry["confirmed"] for entry in digits),
                    "digits": [{key: value for key, value in entry.items() if key != "need"} for entry in digits],
                    "growth": growth})


@bp.get("/me")
def me():
    return jsonify({"client_id": g.client_id, "contributions": contributions_of(g.client_id)})


@health.get("/healthz")
def healthz():
    """Readiness of this process: the database answers at the schema this code expects, the
    object store answers, and the active models are loaded here. 503 when one is not."""
    import os

    from webapp.schema import head_revision

    checks, healthy = {}, True
    try:
        # Read directly: alembic's MigrationContext would log two lines on every probe.
        revision = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
        head = head_revision()
        checks["database"] = {"ok": revision == head, "revision": revision}
        if revision != head:  # the release phase (`flask db upgrade`) has not run yet
            checks["database"]["error"] = f"schema at {revision}, this code expects {head}; run `flask db upgrade`"
            healthy = False
    except Exception as exc:
        db.session.rollback()
        checks["database"], healthy = {"ok": False, "error": exc.__class__.__name__}, False
    try:
        get_store().check()
        checks["storage"] = {"ok": True}
    except StorageError as exc:
        checks["storage"], healthy = {"ok": False, "error": str(exc)}, False
    try:
        registry = get_registry()
        checks["models"] = {"ok": True, "versions": registry.snapshot().versions}
        if registry.last_error:  # still serving the previous versions, but say why not the new
            checks["models"]["warning"] = registry.last_error
    except ModelsUnavailable as exc:
        checks["models"], healthy = {"ok": False, "error": str(exc)}, False
    # The pid says which web worker answered: each loads its own models.
    response = jsonify({"status": "ok" if healthy else "unavailable", "pid": os.getpid(), "checks": checks})
    response.headers["Cache-Control"] = "no-store"
    return response, 200 if healthy else 503
