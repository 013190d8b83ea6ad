"""Who may do what: signed-in sessions (admin pages) and scoped bearer tokens (the API), by role and scope."""

from __future__ import annotations

import functools
from datetime import timedelta

from flask import abort, current_app, g, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import select

from webapp.accounts import hash_token
from webapp.extensions import csrf, db, login_manager
from webapp.models import ApiToken, User, utcnow
from webapp.errors import ServiceError

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# What a token needs on the public API; any other public endpoint needs "read" to be read
# and "contribute" to be written to.
PUBLIC_SCOPES = {"api.create_prediction": "read"}
# last_used_at is a hint, not a log: one write a minute per token, not one per request.
LAST_USED_EVERY = timedelta(minutes=1)


def init_login(app) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "admin.login"
    login_manager.login_message = None  # the login page says why on its own
    login_manager.session_protection = "strong"

    @login_manager.user_loader
    def load_user(session_id: str) -> User | None:
        """The user a session names, if that session has not been ended since (see User.get_id)."""
        user_id, _, generation = session_id.partition(":")
        if not (user_id.isdigit() and generation.isdigit()):
            return None
        user = db.session.get(User, int(user_id))
        if user is None or not user.is_active or user.get_id() != session_id:
            return None
        return user

    app.before_request(load_api_token)


def _token_from(header: str) -> ApiToken:
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ServiceError(401, "unauthorized", "send a token as 'Authorization: Bearer <token>'")
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_sha256 == hash_token(secret.strip())))
    if row is None:
        raise ServiceError(401, "unauthorized", "that token is not valid")
    now = utcnow()
    if problem := row.problem(now):
        raise ServiceError(401, "unauthorized", problem)
    last = row.last_used_at
    if last is None or (last if last.tzinfo else last.replace(tzinfo=now.tzinfo)) < now - LAST_USED_EVERY:
        row.last_used_at = now
        db.session.commit()
    return row


def load_api_token() -> None:
    """Any API request that names a token is that token's, and is refused if the token is not
    good (a client that counts on its own limits must hear its token has expired)."""
    g.api_token = None
    header = request.headers.get("Authorization", "")
    if not header or not request.path.startswith("/api/"):
        return
    g.api_token = token = _token_from(header)
    g.actor_user = token.user
    if request.blueprint == "api":
        needed = PUBLIC_SCOPES.get(request.endpoint) or ("read" if request.method in ("GET", "HEAD") else "contribute")
        if needed not in token.permissions:
            raise ServiceError(403, "forbidden", f"this token's scopes do not include {needed!r}")


def sent_by_staff() -> bool:
    """Whether a reviewer or admin sends this API request to a visitor's endpoint (rating, flagging).

    A token counts when its scopes include `review` (a bad token was already refused by
    load_api_token); a session counts only with its CSRF token, since the cookie rides along with
    any cross-site request. Without either, the caller is just a visitor.
    """
    token = g.get("api_token")
    if token is not None:
        return "review" in token.permissions
    if not (current_user.is_authenticated and current_user.can("review")):
        return False
    try:
        csrf.protect()
    except CSRFError:
        return False
    g.actor_user = current_user._get_current_object()
    return True


def permission_required(permission: str):
    """For API views: a token whose scopes allow ``permission``, or the session of a user whose
    role does (plus its CSRF token on writes)."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            token = g.get("api_token")
            if token is not None:
                if permission not in token.permissions:
                    raise ServiceError(403, "forbidden", f"this needs a token with the {permission!r} scope")
            elif current_user.is_authenticated:
                if not current_user.can(permission):
                    raise ServiceError(403, "forbidden", f"this needs the {_role_for(permission)} role")
                # A cookie rides along with any cross-site request; the token in a header cannot.
                if request.method in UNSAFE_METHODS:
                    csrf.protect()
                g.actor_user = current_user._get_current_object()
            else:
                raise ServiceError(401, "unauthorized", "sign in, or send 'Authorization: Bearer <token>'")
            return view(*args, **kwargs)

        return wrapper

    return decorator


admin_required = permission_required("admin")
review_required = permission_required("review")


def _role_for(permission: str) -> str:
    return "admin" if permission == "admin" else "reviewer"


def page_requires(permission: str):
    """For admin pages: strangers go to the login page, users whose role lacks it get a 403 page."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if not current_user.can(permission):
                abort(403)
            g.actor_user = current_user._get_current_object()
            return view(*args, **kwargs)

        return wrapper

    return decorator


admin_page = page_requires("admin")
review_page = page_requires("review")


def _token_limit(field: str, token_default: str, visitor_default: str) -> str:
    token = g.get("api_token")
    if token is None:
        return current_app.config[visitor_default]
    return getattr(token, field) or current_app.config[token_default]


def predict_limit() -> str:
    """A token's own prediction limit (its override, else TOKEN_PREDICT_LIMIT); a visitor's per address."""
    return _token_limit("predict_limit", "TOKEN_PREDICT_LIMIT", "RATE_LIMIT_PREDICTIONS")


def contribute_limit() -> str:
    return _token_limit("contribute_limit", "TOKEN_CONTRIBUTE_LIMIT", "RATE_LIMIT_CONTRIBUTIONS")

