"""Admin authentication for the API: `Authorization: Bearer <token>` from `users issue-token`."""

from __future__ import annotations

import functools

from flask import g, request
from sqlalchemy import select

from webapp.cli import hash_token
from webapp.extensions import db
from webapp.models import ApiToken, utcnow
from webapp.services import ServiceError


def admin_required(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Authorization", "")
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
        g.admin = row.user
        return view(*args, **kwargs)

    return wrapper
