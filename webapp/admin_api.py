"""The staff half of /api/v1: review (reviewers), training runs, activation, rollback and tokens (admins)."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy import select

from webapp import accounts, label_sets
from webapp.audit import record
from webapp.auth import admin_required, review_required
from webapp.drawings import drawing_json, get_or_404
from webapp.extensions import db
from webapp.curation import confirm, reject
from webapp.models import ApiToken, Drawing, ModelVersion, TrainingRun
from webapp.parsing import json_object
from webapp.runs import ArtifactInvalid, QueueUnavailable, activate, maybe_trigger_automatically, request_run, run_json
from webapp.errors import ServiceError

bp = Blueprint("admin_api", __name__, url_prefix="/api/v1")


MAX_REVIEW_BATCH = 500


def _review(row: Drawing, item: dict) -> None:
    """Apply one admin decision: confirm (optionally relabelled), reject, or reject as not a digit."""
    status = item.get("status")
    if status not in ("confirmed", "rejected"):
        raise ServiceError(400, "invalid_status", "status must be 'confirmed' or 'rejected'")
    not_digit = item.get("not_digit", False)
    if not isinstance(not_digit, bool):
        raise ServiceError(400, "invalid_not_digit", "not_digit must be true or false")
    if "label" in item:
        label = label_sets.parse_set_label(label_sets.by_id(row.label_set_id), item["label"])
        if label != row.label:
            record("drawing.relabel", target=row.id, detail={"from": row.label, "to": label})
            row.label = label
    if status == "confirmed":
        if row.label is None:
            raise ServiceError(400, "invalid_label", "an unlabelled drawing needs a label to be confirmed")
        # A reviewer who confirms a digit overrules a "not a digit" flag.
        row.not_digit = False
        confirm(row, reason="confirmed by a reviewer")
        record("drawing.confirm", target=row.id, detail={"label": row.label, "holdout": row.holdout})
    else:
        row.not_digit = row.not_digit or not_digit
        reject(row, reason="not a digit (reviewer)" if not_digit else "rejected by a reviewer")
        record("drawing.reject", target=row.id, detail={"label": row.label, "not_digit": row.not_digit})


@bp.post("/drawings/<drawing_id>/review")
@review_required
def review_drawing(drawing_id: str):
    body = json_object()
    row = get_or_404(Drawing, drawing_id, "drawing")
    _review(row, body)
    db.session.commit()
    if row.status == "confirmed":
        maybe_trigger_automatically(row.label_set_id)
    return jsonify(drawing_json(row) | {"holdout": row.holdout})


@bp.post("/drawings/review")
@review_required
def review_drawings():
    """Many decisions in one transaction (the review queue's bulk actions): all or none."""
    items = json_object().get("items")
    if not isinstance(items, list) or not items or not all(isinstance(item, dict) for item in items):
        raise ServiceError(400, "invalid_items", "items must be a non-empty list of {id, status, label?}")
    if len(items) > MAX_REVIEW_BATCH:
        raise ServiceError(400, "invalid_items", f"at most {MAX_REVIEW_BATCH} drawings at a time")
    ids = [item.get("id") for item in items]
    if not all(isinstance(drawing_id, str) for drawing_id in ids) or len(set(ids)) != len(ids):
        raise ServiceError(400, "invalid_items", "each item needs a distinct drawing id")
    rows = {row.id: row for row in db.session.scalars(select(Drawing).where(Drawing.id.in_(ids)))}
    if missing := [drawing_id for drawing_id in ids if drawing_id not in rows]:
        raise ServiceError(404, "not_found", f"no drawing with id {missing[0]}")
    try:
        for item in items:
            _review(rows[item["id"]], item)
    except ServiceError:
        db.session.rollback()
        raise
    db.session.commit()
    for label_set_id in sorted({row.label_set_id for row in rows.values() if row.status == "confirmed"}):
        maybe_trigger_automatically(label_set_id)
    return jsonify({"items": [drawing_json(rows[drawing_id]) | {"holdout": rows[drawing_id].holdout}
                              for drawing_id in ids]})


@bp.post("/training-runs")
@admin_required
def create_training_run():
    """Start a training run for a label set (``label_set`` in the body, digits by default), or
    return the one running."""
    label_set = label_sets.from_request(json_object(required=False).get("label_set"))
    try:
        run, created = request_run(trigger="admin", label_set_id=label_set.id)
    except QueueUnavailable:
        raise ServiceError(503, "queue_unavailable", "the task queue is unavailable; try again shortly") from None
    if created:
        record("run.start", target=run.id, detail={"trigger": "admin", "label_set": label_set.slug})
        db.session.commit()
    return jsonify(run_json(run) | {"created": created}), 202


@bp.get("/training-runs")
@admin_required
def list_training_runs():
    """Training runs, newest first (``?label_set=`` for one set's)."""
    query = select(TrainingRun)
    if slug := request.args.get("label_set"):
        query = query.where(TrainingRun.label_set_id == label_sets.from_request(slug).id)
    runs = db.session.scalars(query.order_by(TrainingRun.created_at.desc()).limit(100)).all()
    return jsonify({"items": [run_json(run) for run in runs]})


@bp.get("/training-runs/<run_id>")
@admin_required
def get_training_run(run_id: str):
    return jsonify(run_json(get_or_404(TrainingRun, run_id, "training run")))


@bp.post("/models/<name>/versions/<int:version>/activate")
@admin_required
def activate_version(name: str, version: int):
    """Make a model version of a label set (``label_set`` in the body, digits by default) active."""
    body = json_object(required=False)
    reason = body.get("reason") or "activated by an admin"
    label_set = label_sets.from_request(body.get("label_set"))
    previous = db.session.scalar(select(ModelVersion.version).where(ModelVersion.name == name,
                                                                     ModelVersion.label_set_id == label_set.id,
                                                                     ModelVersion.status == "active"))
    try:
        row = activate(name, version, reason=str(reason)[:200], label_set_id=label_set.id)
    except LookupError as exc:
        raise ServiceError(404, "not_found", str(exc)) from None
    except ArtifactInvalid as exc:
        raise ServiceError(409, "artifact_invalid", str(exc)) from None
    if previous != row.version:
        # Back to an older version is a rollback; the log says which, and from what.
        action = "model.rollback" if previous is not None and row.version < previous else "model.activate"
        target = f"{name} v{row.version}" if label_set.is_digits else f"{label_set.slug} {name} v{row.version}"
        record(action, target=target, detail={"from": previous, "reason": str(reason)[:200]})
        db.session.commit()
    return jsonify({"name": row.name, "version": row.version, "status": row.status})


@bp.get("/dataset/export")
@review_required
def export_dataset():
    """One label set's confirmed dataset (?label_set=, digits by default), streamed: ?format=npz
    (MNIST-style arrays) or zip (PNGs by label + manifest)."""
    from flask import Response, stream_with_context

    from webapp.dataset import FORMATS, DatasetExport

    fmt = request.args.get("format", "npz")
    if fmt not in FORMATS:
        raise ServiceError(400, "invalid_format", f"format must be one of: {', '.join(FORMATS)}")
    # Opened here, not in the body, so a database that is down is a 503 rather than a cut stream.
    label_set = label_sets.from_request(request.args.get("label_set"))
    export = DatasetExport(fmt, label_set_id=label_set.id)
    response = Response(stream_with_context(iter(export)), mimetype=export.mimetype)
    # The body may never be iterated (the client hung up first); the snapshot must end anyway.
    response.call_on_close(export.close)
    response.headers["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    response.headers["X-Dataset-Rows"] = str(export.rows)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/dataset/import")
@admin_required
def import_dataset():
    """A dataset file as the request body (?format=npz|zip|quickdraw-ndjson|quickdraw-npy, label_set,
    status, label): imported as `flask dataset import` does; the counts, or a 4xx saying why nothing was."""
    from webapp.importing import import_dataset as run_import, spooled_upload

    args = request.args
    with spooled_upload(request, limit=current_app.config["IMPORT_MAX_BYTES"]) as path:
        result = run_import(path=path, fmt=args.get("format", ""), label_set=args.get("label_set", "digits"),
                            status=args.get("status", "confirmed"), label=args.get("label") or None,
                            name=args.get("name") or f"upload.{args.get('format', '')}")
    return jsonify(result.as_json()), 201


@bp.get("/tokens")
@admin_required
def list_tokens():
    tokens = db.session.scalars(select(ApiToken).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())).all()
    return jsonify({"items": [accounts.token_json(token) for token in tokens]})


@bp.post("/tokens")
@admin_required
def create_token():
    """A new token, for the caller or the named ``user``; its secret is in this answer and nowhere else."""
    body = json_object()
    user = accounts.find_user(body["user"]) if "user" in body else g.actor_user
    token, secret = accounts.issue_token(user=user, name=body.get("name"), scopes=body.get("scopes"),
                                         expires_days=body.get("expires_days"),
                                         predict_limit=body.get("predict_limit"),
                                         contribute_limit=body.get("contribute_limit"))
    response = jsonify(accounts.token_json(token) | {"token": secret})
    response.headers["Cache-Control"] = "no-store"
    return response, 201


@bp.delete("/tokens/<int:token_id>")
@admin_required
def revoke_token(token_id: int):
    token = db.session.get(ApiToken, token_id)
    if token is None:
        raise ServiceError(404, "not_found", f"no token with id {token_id}")
    accounts.revoke_token(token)
    return jsonify(accounts.token_json(token))
