"""The admins' label-set page: every set with its counts and models, a form to create one, and closing one."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_wtf import FlaskForm

from webapp import label_sets
from webapp.audit import record
from webapp.auth import admin_page
from webapp.errors import ServiceError
from webapp.extensions import db

bp = Blueprint("sets_admin", __name__, url_prefix="/admin")


class ActionForm(FlaskForm):
    """Only the CSRF token: the fields are checked by webapp.label_sets."""


def _checked_form() -> None:
    if not ActionForm().validate_on_submit():
        abort(400, description=_("The form has expired; reload the page and try again."))


@bp.get("/label-sets")
@admin_page
def label_sets_page(status: int = 200):
    return render_template("admin/label_sets.html", active_nav="label_sets", sets=label_sets.listing()), status


@bp.post("/label-sets")
@admin_page
def create_label_set():
    _checked_form()
    classes = [name for name in request.form.get("classes", "").split(",") if name.strip()]
    try:
        row = label_sets.create(slug=request.form.get("slug", "").strip(), classes=classes,
                                name=request.form.get("name", "").strip() or None)
        record("label_set.create", target=row.slug, detail={"classes": row.class_names})
        db.session.commit()
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "danger")
        return label_sets_page(status=exc.status)
    flash(_("Label set %(name)s created: it collects drawings until its first training run.", name=row.slug),
          "success")
    return redirect(url_for("sets_admin.label_sets_page"))


@bp.post("/label-sets/<slug>/close")
@admin_page
def close_label_set(slug: str):
    _checked_form()
    row = label_sets.find(slug) or abort(404)
    try:
        label_sets.close(row)
    except ServiceError as exc:
        flash(exc.message, "danger")
        return label_sets_page(status=exc.status)
    record("label_set.close", target=row.slug)
    db.session.commit()
    flash(_("Label set %(name)s is closed to new drawings.", name=row.slug), "success")
    return redirect(url_for("sets_admin.label_sets_page"))
