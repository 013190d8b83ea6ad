"""Drawings as the API and the staff pages show and find them: their JSON, a row by id, query-string filters."""

from __future__ import annotations

from collections.abc import Callable

from flask import request, url_for

from webapp import label_sets
from webapp.errors import ServiceError
from webapp.extensions import db
from webapp.models import SOURCES, STATUSES, Drawing, iso
from webapp.parsing import int_arg
from webapp.visibility import may_see


def drawing_json(row: Drawing) -> dict:
    label_set = label_sets.by_id(row.label_set_id)
    return {
        "id": row.id, "label_set": label_set.slug, "label": row.label, "class_name": label_set.class_name(row.label),
        "status": row.status, "source": row.source, "not_digit": row.not_digit,
        "created": iso(row.created_at), "content_type": row.content_type, "size_bytes": row.size_bytes,
        "width": row.width, "height": row.height, "sha256": row.sha256,
        "image_url": url_for("api.drawing_image", drawing_id=row.id),
        "strokes_url": url_for("strokes.drawing_strokes", drawing_id=row.id) if row.strokes_key else None,
        "predictions": {p.model_name: {"label": p.label, "confidence": p.confidence,
                                       "model_version": p.model_version} for p in row.predictions},
    }


def get_or_404(model, row_id: str, what: str):
    """The row with this uuid from a URL; an id longer than any uuid is not even looked up."""
    row = db.session.get(model, row_id) if len(row_id) <= 36 else None
    if row is None:
        raise ServiceError(404, "not_found", f"no {what} with that id")
    return row


def visible_or_404(drawing_id: str) -> Drawing:
    """The drawing, if this request may see it; anyone else's is as good as unknown (a 404, not a
    403, so that an id cannot be confirmed to exist)."""
    row = get_or_404(Drawing, drawing_id, "drawing")
    if not may_see(row):
        raise ServiceError(404, "not_found", "no drawing with that id")
    return row


def column_filters(*, label_message: str, one_of: Callable[[str, tuple[str, ...]], str]) -> tuple[list, dict]:
    """Filters on label set, label, status and source from the query string, and the values chosen.

    Without ``label_set`` every set's drawings are found (and a label is a digit's). The messages
    are the caller's: the API answers in English, the staff pages in the reader's language.
    """
    filters, chosen = [], {}
    high = 9
    if slug := request.args.get("label_set", ""):
        label_set = label_sets.from_request(slug)
        filters.append(Drawing.label_set_id == label_set.id)
        chosen["label_set"] = slug
        high = len(label_set.classes) - 1
    label = int_arg("label", default=None, low=0, high=high, message=label_message)
    if label is not None:
        filters.append(Drawing.label == label)
        chosen["label"] = str(label)
    for name, allowed in (("status", STATUSES), ("source", SOURCES)):
        if value := request.args.get(name, ""):
            if value not in allowed:
                raise ServiceError(400, f"invalid_{name}", one_of(name, allowed))
            filters.append(getattr(Drawing, name) == value)
            chosen[name] = value
    return filters, chosen
