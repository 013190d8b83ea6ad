"""The JSON API, /api/v1 (the pages use it too), and /healthz."""

from __future__ import annotations

import math
import re

from flask import Blueprint, Response, current_app, g, jsonify, request, url_for
from sqlalchemy import func, select, text

from training.preprocess import preprocess
from webapp.auth import contribute_limit, predict_limit, sent_by_staff
from webapp.drawings import column_filters, drawing_json, visible_or_404
from webapp.errors import ServiceError
from webapp.extensions import db, limiter
from webapp.models import Drawing, ModelVersion, Prediction, Rating, iso
from webapp import label_sets
from webapp.label_sets import SetInfo
from webapp.parsing import LABEL_MESSAGE, int_arg, json_object
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


def _label_set() -> SetInfo:
    """The request's ``label_set`` (a JSON field or a form field), digits when it names none."""
    if request.mimetype == "multipart/form-data":
        return label_sets.from_request(request.form.get("label_set"))
    return label_sets.from_request(json_object().get("label_set"))


def _image_and_label(*, want_label: bool, label_set: SetInfo = label_sets.DIGITS_INFO):
    """The uploaded image (JSON ``image`` or multipart file ``image``), its label in ``label_set`` if wanted,
    and its strokes if sent."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("image")
        if upload is None:
            raise ServiceError(400, "missing_image", "send the drawing in a file field named 'image'")
        payload = upload.read()
        label, strokes = request.form.get("label"), request.form.get("strokes")
        if want_label and label is None:
            raise ServiceError(400, "invalid_label", label_sets.label_message(label_set))
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
    return drawing, (label_sets.parse_set_label(label_set, label) if want_label else None), strokes


@bp.post("/predictions")
@limiter.limit(predict_limit)
def create_prediction():
    label_set = _label_set()
    drawing, _, strokes = _image_and_label(want_label=False)
    drawing_id, answers = predict_drawing(drawing=drawing, client_id=g.client_id, label_set=label_set,
                                          strokes=strokes)
    names = label_set.class_names
    return jsonify({
        # None when the drawing cannot be stored: the answers stand, but cannot be rated.
        "id": drawing_id,
        "label_set": label_set.slug,
        "predictions": {name: {**{key: value for key, value in answer.as_dict().items() if key != "latency_ms"},
                               "class_name": names[answer.label] if answer.label < len(names) else None}
                        for name, answer in answers.items()},
        "preview": drawing.preview_data_url,
    })


@bp.post("/predictions/<drawing_id>/feedback")
@limiter.limit(lambda: current_app.config["RATE_LIMIT_FEEDBACK"])
def create_feedback(drawing_id: str):
    rating, correct = record_feedback(drawing_id=drawing_id, label=json_object().get("label"), client_id=g.client_id,
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
    label_set = _label_set()
    label_sets.refuse_if_closed(label_set)
    not_digit = _not_digit_flag()
    drawing_id = _client_drawing_id()
    drawing, label, strokes = _image_and_label(want_label=not not_digit, label_set=label_set)
    row = save_drawing(drawing=drawing, label=label, client_id=g.client_id, not_digit=not_digit, drawing_id=drawing_id,
                       label_set=label_set, strokes=strokes)
    body = {"id": row.id, "label": row.label, "status": row.status, "not_digit": row.not_digit,
            "label_set": label_set.slug, "class_name": label_set.class_name(row.label),
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
    """Every version of each network of a label set (``?label_set=``, digits by default), its status and metrics."""
    label_set = label_sets.from_request(request.args.get("label_set"))
    rows = db.session.scalars(select(ModelVersion).where(ModelVersion.label_set_id == label_set.id)
                              .order_by(ModelVersion.name, ModelVersion.version.desc())).all()
    models: dict[str, list] = {}
    for row in rows:
        models.setdefault(row.name, []).append({
            "version": row.version, "status": row.status, "active": row.status == "active",
            "created": iso(row.created_at), "activated": iso(row.activated_at), "parent": row.parent_version,
            "metrics": row.metrics, "samples": row.samples_used, "reason": row.status_reason,
        })
    return jsonify({"label_set": label_set.slug,
                    "models": [{"name": name, "versions": versions} for name, versions in models.items()],
                    "serving": get_registry().status(label_set.id)["loaded"]})


@bp.get("/stats")
def stats():
    """Counts by label, status and source, and each network's accuracy from ratings, in one label set
    (``?label_set=``, digits by default)."""
    label_set = label_sets.from_request(request.args.get("label_set"))
    in_set = Drawing.label_set_id == label_set.id

    def counts(column):
        return {str(key): value for key, value in db.session.execute(
            select(column, func.count()).select_from(Drawing).where(in_set).group_by(column)).all()
            if key is not None}

    rated = db.session.execute(
        select(Prediction.model_name, func.count(), func.sum((Prediction.label == Rating.label).cast(db.Integer)))
        .join(Rating, Rating.drawing_id == Prediction.drawing_id).where(Prediction.label_set_id == label_set.id)
        .group_by(Prediction.model_name)).all()
    accuracy = {name: {"rated": 0, "correct": 0, "accuracy": None} for name in ("fnn", "cnn")}
    for name, total, correct in rated:
        accuracy[name] = {"rated": total, "correct": int(correct or 0),
                          "accuracy": (int(correct or 0) / total) if total else None}
    total = db.session.scalar(select(func.count()).select_from(Drawing).where(in_set)) or 0
    return jsonify({"label_set": label_set.slug, "drawings": {"total": total, "by_label": counts(Drawing.label),
                                 "by_status": counts(Drawing.status), "by_source": counts(Drawing.source)},
                    "accuracy": accuracy})


@bp.get("/dataset/needs")
def dataset_needs():
    """Which class of a label set (``?label_set=``, digits by default) the dataset needs most: the
    contribute page's "draw a 7" prompt (webapp/needs.py)."""
    from webapp.needs import needs

    return jsonify(needs(label_sets.from_request(request.args.get("label_set"))))


@bp.get("/label-sets")
def list_label_sets():
    """Every label set: slug, name, classes, drawing counts, whether each network has a model, closed."""
    return jsonify({"label_sets": label_sets.listing()})


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
