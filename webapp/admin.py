"""The staff pages: sign-in, dashboard (admins), review queue and dataset browser (reviewers too); actions go through /api/v1."""

from __future__ import annotations

import functools
import math
import re
import secrets
from datetime import date, datetime, time, timedelta, timezone

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import case, exists, func, select
from sqlalchemy.orm import selectinload
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from webapp import dashboard, label_sets
from webapp.auth import admin_page, review_page
from webapp.curation import REVIEWABLE
from webapp.drawings import column_filters
from webapp.extensions import db, limiter
from webapp.models import SOURCES, STATUSES, Drawing, Prediction, User
from webapp.parsing import MAX_INT_DIGITS, int_arg
from webapp.redirects import local_path
from webapp.runs import live_run

bp = Blueprint("admin", __name__, url_prefix="/admin")

REVIEW_PAGE_SIZE = 48
DATASET_PAGE_SIZE = 96
MAX_PAGE = 10**MAX_INT_DIGITS - 1  # past the last page is the last page
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


class LogoutForm(FlaskForm):
    pass


@functools.cache
def dummy_password_hash() -> str:
    """A hash made with the same method and cost as real passwords', that no password matches."""
    return generate_password_hash(secrets.token_urlsafe(32))


def _next_page() -> str:
    home = "admin.dashboard" if current_user.can("admin") else "admin.review"
    return local_path(request.args.get("next"), default=url_for(home))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["RATE_LIMIT_LOGIN"], methods=["POST"],
               deduct_when=lambda response: response.status_code == 401)
def login():
    if current_user.is_authenticated and current_user.can("review"):
        return redirect(_next_page())
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        user = db.session.scalar(select(User).where(User.username == form.username.data.strip()))
        # The hash runs whoever asks, or the time taken would tell which names are accounts.
        matches = check_password_hash(user.password_hash if user is not None else dummy_password_hash(),
                                      form.password.data)
        if matches and user.can("review"):
            login_user(user)
            return redirect(_next_page())
        flash(_("Wrong username or password."), "danger")
        status = 401
    elif request.method == "POST":
        status = 400
    return render_template("admin/login.html", form=form), status


@bp.post("/logout")
def logout():
    form = LogoutForm()
    if not form.validate_on_submit():
        abort(400)
    if current_user.is_authenticated:
        # A copy of the cookie (another browser, or one taken from this one) ends here too.
        current_user.end_sessions()
        db.session.commit()
    logout_user()
    flash(_("You are signed out."), "info")
    return redirect(url_for("admin.login"))


@bp.get("/", endpoint="dashboard")
@admin_page
def dashboard_page():
    """One label set's dashboard (``?label_set=``, digits by default), and the sets to switch between."""
    label_set = label_sets.from_request(request.args.get("label_set"))
    set_id, size = label_set.id, len(label_set.classes)
    versions = dashboard.versions(set_id)
    active = {row.name: row.version for row in versions if row.status == "active"}
    rated = dashboard.rated_accuracy(set_id)
    return render_template(
        "admin/dashboard.html", active_nav="dashboard", counts=dashboard.counts(set_id, size), versions=versions,
        active_versions=active, rated_by_version=dashboard.rated_accuracy_by_version(rated),
        rated_chart=dashboard.rated_chart(rated), holdout_chart=dashboard.holdout_chart(versions),
        live=live_run(set_id), runs=dashboard.runs(set_id), confusions=dashboard.confusions(active, set_id, size),
        holdout_confusions=dashboard.holdout_confusions(versions),
        label_set=label_set, label_sets=label_sets.all_sets(), class_names=label_set.class_names)


def date_filters(column, filters: list, chosen: dict) -> None:
    """Add the query string's since/until days (inclusive, UTC) on ``column`` to ``filters``."""
    if since := _date_arg("since"):
        filters.append(column >= datetime.combine(since, time.min, timezone.utc))
        chosen["since"] = since.isoformat()
    if until := _date_arg("until"):
        filters.append(column < datetime.combine(until + timedelta(days=1), time.min, timezone.utc))
        chosen["until"] = until.isoformat()


def _date_arg(name: str) -> date | None:
    value = request.args.get(name, "")
    if not value:
        return None
    # Only the form the date picker sends; date.max has no next day for "until" to stop before.
    if _ISO_DATE.fullmatch(value):
        try:
            day = date.fromisoformat(value)
            if day < date.max:
                return day
        except ValueError:
            pass
    abort(400, description=_("%(name)s must be a date like 2026-11-25", name=name))


def _drawing_filters() -> tuple[list, dict]:
    """The review queue's and dataset browser's filters, from the query string."""
    args = request.args
    filters, chosen = column_filters(
        label_message=_("label must be a digit from 0 to 9"),
        one_of=lambda name, allowed: _("%(name)s must be one of %(allowed)s", name=name, allowed=", ".join(allowed)))
    if chosen.get("status") == "pending":
        filters.append(REVIEWABLE)
    if args.get("not_digit") == "1":
        filters.append(Drawing.not_digit)
        chosen["not_digit"] = "1"
    if args.get("disagree") == "1":
        # Some network read something other than the given label.
        filters.append(exists().where(Prediction.drawing_id == Drawing.id, Prediction.label != Drawing.label))
        chosen["disagree"] = "1"
    date_filters(Drawing.created_at, filters, chosen)
    return filters, chosen


def _page(total: int, size: int) -> tuple[int, int]:
    page = int_arg("page", default=1, low=1, high=MAX_PAGE, message=_("page must be a positive integer"))
    pages = max(1, math.ceil(total / size))
    return min(page, pages), pages


@bp.get("/review")
@review_page
def review():
    filters, chosen = _drawing_filters()
    if "status" not in request.args:
        filters += [Drawing.status == "pending", REVIEWABLE]
        chosen["status"] = "pending"
    elif not request.args["status"]:
        chosen.pop("status", None)
    total = db.session.scalar(select(func.count()).select_from(Drawing).where(*filters)) or 0
    page, pages = _page(total, REVIEW_PAGE_SIZE)
    sets = label_sets.all_sets()
    # What matters most first: drawings a network reads otherwise than labelled, then those the
    # networks are least sure of; arrival order breaks ties.
    disagreement = exists().where(Prediction.drawing_id == Drawing.id, Prediction.label != Drawing.label)
    confidence = (select(func.min(Prediction.confidence)).where(Prediction.drawing_id == Drawing.id)
                  .correlate(Drawing).scalar_subquery())
    rows = db.session.scalars(select(Drawing).where(*filters).options(selectinload(Drawing.predictions))
                              .order_by(case((disagreement, 0), else_=1), func.coalesce(confidence, 0.0),
                                        Drawing.created_at, Drawing.id)
                              .limit(REVIEW_PAGE_SIZE).offset((page - 1) * REVIEW_PAGE_SIZE)).all()
    return render_template("admin/review.html", active_nav="review", rows=rows, total=total, page=page,
                           pages=pages, chosen=chosen, statuses=STATUSES, sources=SOURCES,
                           label_sets=sets, class_names={row.id: row.class_names for row in sets})


@bp.get("/dataset")
@review_page
def dataset():
    filters, chosen = _drawing_filters()
    total = db.session.scalar(select(func.count()).select_from(Drawing).where(*filters)) or 0
    page, pages = _page(total, DATASET_PAGE_SIZE)
    rows = db.session.scalars(select(Drawing).where(*filters).order_by(Drawing.created_at.desc(), Drawing.id)
                              .limit(DATASET_PAGE_SIZE).offset((page - 1) * DATASET_PAGE_SIZE)).all()
    confirmed = db.session.scalar(select(func.count()).select_from(Drawing)
                                  .where(Drawing.status == "confirmed", ~Drawing.not_digit)) or 0
    return render_template("admin/dataset.html", active_nav="dataset", rows=rows, total=total, page=page,
                           pages=pages, chosen=chosen, statuses=STATUSES, sources=SOURCES, confirmed=confirmed,
                           label_sets=label_sets.all_sets())
