"""Accounts and API tokens: create, disable, reset, issue and revoke, each written with its audit event."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from flask import current_app
from limits import parse_many
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from webapp.audit import record
from webapp.extensions import db
from webapp.models import ROLE_PERMISSIONS, SCOPE_IMPLIES, TOKEN_SCOPES, ApiToken, User, iso, utcnow
from webapp.errors import ServiceError

ASSIGNABLE_ROLES = ("reviewer", "admin")
MIN_PASSWORD = 8
MAX_PASSWORD = 256
MAX_TOKEN_DAYS = 3650
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}\Z")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _name(value, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ServiceError(400, f"invalid_{what}", f"{what} must be 1 to 64 letters, digits or . _ @ -")
    return value


def _password(value) -> str:
    if not isinstance(value, str) or not MIN_PASSWORD <= len(value) <= MAX_PASSWORD:
        raise ServiceError(400, "invalid_password", f"the password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return value


def _role(value) -> str:
    if value not in ASSIGNABLE_ROLES:
        raise ServiceError(400, "invalid_role", f"role must be one of: {', '.join(ASSIGNABLE_ROLES)}")
    return value


def find_user(username: str) -> User:
    user = db.session.scalar(select(User).where(User.username == username)) if isinstance(username, str) else None
    if user is None:
        raise ServiceError(404, "not_found", f"no user called {username}")
    return user


def create_user(*, username: str, password: str, role: str) -> User:
    username, password, role = _name(username, "username"), _password(password), _role(role)
    if db.session.scalar(select(User.id).where(User.username == username)) is not None:
        raise ServiceError(409, "exists", f"there is already a user called {username}")
    user = User(username=username, password_hash=generate_password_hash(password), role=role)
    db.session.add(user)
    db.session.flush()
    record("user.create", target=username, detail={"role": role})
    db.session.commit()
    return user


def set_password(user: User, password: str) -> None:
    """A new password ends every session: whoever knew the old one may hold one."""
    user.password_hash = generate_password_hash(_password(password))
    user.end_sessions()
    record("user.reset_password", target=user.username)
    db.session.commit()


def set_role(user: User, role: str) -> None:
    role = _role(role)
    if user.role != role:
        record("user.role", target=user.username, detail={"from": user.role, "to": role})
        user.role = role
        user.end_sessions()
        db.session.commit()


def disable_user(user: User) -> None:
    """Every session ends at its next request; sign-in and the user's tokens are refused."""
    if user.disabled_at is None:
        user.disabled_at = utcnow()
        record("user.disable", target=user.username)
    user.end_sessions()
    db.session.commit()


def enable_user(user: User) -> None:
    if user.disabled_at is not None:
        user.disabled_at = None
        record("user.enable", target=user.username)
        db.session.commit()


def parse_scopes(value) -> list[str]:
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if (not isinstance(value, list) or not value
            or not all(isinstance(scope, str) and scope in TOKEN_SCOPES for scope in value)):
        raise ServiceError(400, "invalid_scopes", f"scopes must be a non-empty list of: {', '.join(TOKEN_SCOPES)}")
    return [scope for scope in TOKEN_SCOPES if scope in value]


def _limit(value, what: str) -> str | None:
    if value in (None, ""):
        return None
    try:
        if not isinstance(value, str) or len(value) > 64 or not parse_many(value):
            raise ValueError
    except ValueError:
        raise ServiceError(400, f"invalid_{what}", f"{what} must be a rate like '600/minute' or '100/minute;5000/day'") from None
    return value


def issue_token(*, user: User, name: str, scopes, expires_days=None, predict_limit=None,
                contribute_limit=None) -> tuple[ApiToken, str]:
    """A new token and its secret, which is shown once and stored only as a hash."""
    name, scopes = _name(name, "name"), parse_scopes(scopes)
    if expires_days is None:
        expires_days = current_app.config["TOKEN_DEFAULT_DAYS"]
    if isinstance(expires_days, bool) or not isinstance(expires_days, int) or not 1 <= expires_days <= MAX_TOKEN_DAYS:
        raise ServiceError(400, "invalid_expires_days", f"expires_days must be a whole number from 1 to {MAX_TOKEN_DAYS}")
    granted = set().union(*(SCOPE_IMPLIES[scope] for scope in scopes))
    if not user.is_active or not granted <= ROLE_PERMISSIONS.get(user.role, frozenset()):
        raise ServiceError(400, "invalid_scopes", f"{user.username}'s role ({user.role}) does not allow these scopes")
    if db.session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise ServiceError(409, "exists", f"there is already a token called {name}")
    secret = secrets.token_urlsafe(32)
    token = ApiToken(user=user, name=name, scopes=" ".join(scopes), token_sha256=hash_token(secret),
                     expires_at=utcnow() + timedelta(days=expires_days),
                     predict_limit=_limit(predict_limit, "predict_limit"),
                     contribute_limit=_limit(contribute_limit, "contribute_limit"))
    db.session.add(token)
    db.session.flush()
    record("token.create", target=f"token:{name}",
           detail={"user": user.username, "scopes": scopes, "expires_days": expires_days})
    db.session.commit()
    return token, secret


def revoke_token(token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        record("token.revoke", target=f"token:{token.name}", detail={"user": token.user.username})
        db.session.commit()


def token_json(token: ApiToken) -> dict:
    return {"id": token.id, "name": token.name, "user": token.user.username, "scopes": token.scope_list,
            "created": iso(token.created_at), "expires": iso(token.expires_at), "revoked": iso(token.revoked_at),
            "last_used": iso(token.last_used_at), "predict_limit": token.predict_limit,
            "contribute_limit": token.contribute_limit, "active": token.problem(utcnow()) is None}
