"""The admins' access pages: accounts, API tokens and the audit log (forms; the API has the same for tokens)."""

from __future__ import annotations

import math

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from sqlalchemy import func, select

from webapp import accounts
from webapp.admin import MAX_PAGE, date_filters
from webapp.audit import ACTIONS
from webapp.auth import admin_page
from webapp.extensions import db
from webapp.models import TOKEN_SCOPES, ApiToken, AuditEvent, User, utcnow
from webapp.parsing import int_arg
from webapp.errors import ServiceError

bp = Blueprint("access", __name__, url_prefix="/admin")

AUDIT_PAGE_SIZE = 50


class ActionForm(FlaskForm):
    """Only the CSRF token: the fields are checked by the account and token services."""


def _checked_form() -> None:
    if not ActionForm().validate_on_submit():
        abort(400, description=_("The form has expired; reload the page and try again."))


def _user_or_404(user_id: int) -> User:
    return db.session.get(User, user_id) or abort(404)


def _form_user(user_id: int) -> User:
    """The account a checked account form names."""
    _checked_form()
    return _user_or_404(user_id)


def _back_to_accounts(message: str):
    flash(message, "success")
    return redirect(url_for("access.accounts_page"))


@bp.get("/accounts")
@admin_page
def accounts_page(status: int = 200):
    users = db.session.scalars(select(User).order_by(User.username)).all()
    return render_template("admin/accounts.html", active_nav="accounts", users=users,
                           roles=accounts.ASSIGNABLE_ROLES), status


@bp.post("/accounts")
@admin_page
def create_account():
    _checked_form()
    try:
        user = accounts.create_user(username=request.form.get("username", "").strip(),
                                    password=request.form.get("password", ""), role=request.form.get("role"))
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "danger")
        return accounts_page(status=exc.status)
    flash(_("Account %(name)s created.", name=user.username), "success")
    return redirect(url_for("access.accounts_page"))


@bp.post("/accounts/<int:user_id>/disable")
@admin_page
def disable_account(user_id: int):
    user = _form_user(user_id)
    if user.id == g.actor_user.id:
        flash(_("You cannot disable your own account."), "danger")
        return accounts_page(status=400)
    accounts.disable_user(user)
    return _back_to_accounts(_("%(name)s is disabled and signed out everywhere.", name=user.username))


@bp.post("/accounts/<int:user_id>/enable")
@admin_page
def enable_account(user_id: int):
    user = _form_user(user_id)
    accounts.enable_user(user)
    return _back_to_accounts(_("%(name)s is enabled.", name=user.username))


@bp.post("/accounts/<int:user_id>/password")
@admin_page
def reset_password(user_id: int):
    user = _form_user(user_id)
    try:
        accounts.set_password(user, request.form.get("password", ""))
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "danger")
        return accounts_page(status=exc.status)
    if user.id == g.actor_user.id:
        # Their own sessions just ended, this one included.
        return redirect(url_for("admin.login"))
    return _back_to_accounts(_("%(name)s has a new password and is signed out everywhere.", name=user.username))


def _tokens_page(status: int = 200, secret: str | None = None, created: ApiToken | None = None):
    tokens = db.session.scalars(select(ApiToken).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())).all()
    users = db.session.scalars(select(User).where(User.disabled_at.is_(None), User.role != "none")
                               .order_by(User.username)).all()
    response = render_template("admin/tokens.html", active_nav="tokens", tokens=tokens, users=users,
                               scopes=TOKEN_SCOPES, now=utcnow(), secret=secret, created=created)
    # The one page that shows a token's secret must not be kept by the browser or a proxy.
    return response, status, {"Cache-Control": "no-store"}


@bp.get("/tokens")
@admin_page
def tokens_page():
    return _tokens_page()


@bp.post("/tokens")
@admin_page
def create_token():
    _checked_form()
    form = request.form
    days = form.get("expires_days", "").strip()
    try:
        user = db.session.scalar(select(User).where(User.username == form.get("user", "")))
        if user is None:
            raise ServiceError(400, "invalid_user", _("Choose the account the token acts for."))
        if days and not (days.isascii() and days.isdigit() and len(days) <= 5):
            raise ServiceError(400, "invalid_expires_days", _("Days until it expires must be a whole number."))
        token, secret = accounts.issue_token(
            user=user, name=form.get("name", "").strip(), scopes=form.getlist("scopes"),
            expires_days=int(days) if days else None, predict_limit=form.get("predict_limit", "").strip() or None,
            contribute_limit=form.get("contribute_limit", "").strip() or None)
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "danger")
        return _tokens_page(status=exc.status)
    return _tokens_page(status=201, secret=secret, created=token)


@bp.post("/tokens/<int:token_id>/revoke")
@admin_page
def revoke_token(token_id: int):
    _checked_form()
    token = db.session.get(ApiToken, token_id) or abort(404)
    accounts.revoke_token(token)
    flash(_("Token %(name)s is revoked.", name=token.name), "success")
    return redirect(url_for("access.tokens_page"))


@bp.get("/audit")
@admin_page
def audit():
    filters, chosen = [], {}
    if action := request.args.get("action", ""):
        if action not in ACTIONS:
            abort(400, description=_("%(name)s must be one of %(allowed)s", name="action", allowed=", ".join(ACTIONS)))
        filters.append(AuditEvent.action == action)
        chosen["action"] = action
    if actor := request.args.get("actor", "").strip()[:96]:
        filters.append(AuditEvent.actor == actor)
        chosen["actor"] = actor
    date_filters(AuditEvent.created_at, filters, chosen)
    total = db.session.scalar(select(func.count()).select_from(AuditEvent).where(*filters)) or 0
    pages = max(1, math.ceil(total / AUDIT_PAGE_SIZE))
    page = min(pages, int_arg("page", default=1, low=1, high=MAX_PAGE, message=_("page must be a positive integer")))
    events = db.session.scalars(select(AuditEvent).where(*filters)
                                .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
                                .limit(AUDIT_PAGE_SIZE).offset((page - 1) * AUDIT_PAGE_SIZE)).all()
    return render_template("admin/audit.html", active_nav="audit", events=events, total=total, page=page,
                           pages=pages, chosen=chosen, actions=ACTIONS)
