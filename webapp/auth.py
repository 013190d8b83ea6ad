"""Who is an admin: a signed-in session (the admin pages) or `Authorization: Bearer <token>` (the API)."""

from __future__ import annotations

import functools

from flask import abort, g, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import select

from webapp.cli import hash_token
from webapp.extensions import csrf, db, login_manager
from webapp.models import ApiToken, User, utcnow
from webapp.services import ServiceError

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def init_login(app) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "admin.login"
    login_manager.login_message = None  # the login page says why on its own
    login_manager.session_protection = "strong"

    @login_manager.user_loader
    def load_user(user_id: str) -> User | None:
        return db.session.get(User, int(user_id)) if user_id.isdigit() else None


def _admin_from_token(header: str) -> User:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ServiceError(401, "unauthorized", "send an admin token: 'Authorization: Bearer <token>'")
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_sha256 == hash_token(token.strip())))
    if row is None:
        raise ServiceError(401, "unauthorized", "that token is not valid")
    if not row.user.is_admin:
        raise ServiceError(403, "forbidden", "this needs an admin")
    row.last_used_at = utcnow()
    db.session.commit()
    return row.user


def admin_required(view):
    """For API views: a bearer token, or the session of a signed-in admin plus its CSRF token."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        if header:
            g.admin = _admin_from_token(header)
        elif current_user.is_authenticated:
            if not current_user.is_admin:
                raise ServiceError(403, "forbidden", "this needs an admin")
            # A cookie rides along with any cross-site request; the token in a header cannot.
            if request.method in UNSAFE_METHODS:
                csrf.protect()
            g.admin = current_user
        else:
            raise ServiceError(401, "unauthorized", "sign in as an admin, or send 'Authorization: Bearer <token>'")
        return view(*args, **kwargs)

    return wrapper


def sent_by_admin() -> bool:
    """Whether an admin sends this API request to a visitor's endpoint (rating, flagging).

    A bearer token must be valid (else 401/403, as on the admin API); a session counts only
    with its CSRF token, since the cookie rides along with any cross-site request. Without
    either, the caller is just a visitor.
    """
    header = request.headers.get("Authorization", "")
    if header:
        g.admin = _admin_from_token(header)
        return True
    if not (current_user.is_authenticated and current_user.is_admin):
        return False
    try:
        csrf.protect()
    except CSRFError:
        return False
    return True


def admin_page(view):
    """For admin pages: signed-in admins only; others are sent to the login page."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapper
