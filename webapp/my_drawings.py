"""My drawings: what was kept of this visitor's drawings (by their signed anonymous id), and deleting them."""

from __future__ import annotations

import math

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    url_for,
)
from flask_babel import get_locale, gettext as _
from flask_wtf import FlaskForm
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.label_sets import by_id
from webapp.models import Drawing
from webapp.parsing import int_arg
from webapp.retention import delete_own_drawing
from webapp.errors import ServiceError

bp = Blueprint("mine", __name__)

PAGE_SIZE = 48
MAX_PAGE = 100_000


class DeleteForm(FlaskForm):
    """Only the CSRF token: the drawing is in the URL and must be the visitor's own."""


@bp.get("/my-drawings")
def my_drawings():
    client_id = g.client_id
    mine = Drawing.client_id == client_id
    total = 0 if g.new_client else db.session.scalar(select(func.count()).select_from(Drawing).where(mine)) or 0
    pages = max(1, math.ceil(total / PAGE_SIZE))
    page = min(pages, int_arg("page", default=1, low=1, high=MAX_PAGE, message=_("page must be a positive integer")))
    rows = [] if not total else db.session.scalars(
        select(Drawing).where(mine).order_by(Drawing.created_at.desc(), Drawing.id)
        .limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
    response = render_template("my_drawings.html", active="mine", rows=rows, total=total, page=page, pages=pages,
                               form=DeleteForm(), retention=current_app.config["PREDICTION_RETENTION"],
                               class_names=_class_names(rows))
    # A page of one person's drawings is theirs alone: no shared cache may keep it.
    return response, 200, {"Cache-Control": "private, no-store"}


def _class_names(rows: list[Drawing]) -> dict[int, list[str]]:
    """Each shown label set's classes in the reader's language: a cat is shown as "cat", not as its index."""
    language = str(get_locale() or "en")
    return {set_id: by_id(set_id).display_names(language) for set_id in {row.label_set_id for row in rows}}


@bp.post("/my-drawings/<drawing_id>/delete")
def delete(drawing_id: str):
    if not DeleteForm().validate_on_submit():
        abort(400, description=_("The form has expired; reload the page and try again."))
    try:
        delete_own_drawing(drawing_id=drawing_id, client_id=g.client_id)
    except ServiceError as exc:
        if exc.status != 404:
            raise
        flash(_("That drawing is not one of yours, or it was already deleted."), "warning")
    else:
        flash(_("The drawing was deleted."), "success")
    return redirect(url_for("mine.my_drawings"))
