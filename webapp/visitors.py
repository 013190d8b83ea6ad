"""The anonymous visitor's id, in a cookie signed with the app's SECRET_KEY so that nobody can claim another's."""

from __future__ import annotations

import hashlib
import secrets

from flask import Flask, current_app
from itsdangerous import BadSignature, Signer

CLIENT_COOKIE = "inkling_client"
# Its own salt, so that no other signed value of this app (the session) is ever a valid visitor.
COOKIE_SALT = "inkling.client-cookie"
MAX_COOKIE_CHARS = 200


def _signer(app: Flask) -> Signer:
    # Newest key last: it signs, and every key verifies (Flask's SECRET_KEY_FALLBACKS, for rotation).
    keys = [*(app.config.get("SECRET_KEY_FALLBACKS") or []), app.secret_key]
    return Signer(keys, salt=COOKIE_SALT, key_derivation="hmac", digest_method=hashlib.sha256)


def _well_formed(client_id: str) -> bool:
    return 16 <= len(client_id) <= 64 and client_id.replace("-", "").replace("_", "").isalnum()


def client_id_from_cookie(value: str, app: Flask | None = None) -> str | None:
    """The visitor id this app signed into ``value``; None if it is unsigned, tampered or malformed."""
    if not value or len(value) > MAX_COOKIE_CHARS:
        return None
    try:
        client_id = _signer(app or current_app).unsign(value).decode("ascii")
    except (BadSignature, UnicodeDecodeError):
        return None
    return client_id if _well_formed(client_id) else None


def cookie_for(client_id: str, app: Flask | None = None) -> str:
    return _signer(app or current_app).sign(client_id).decode("ascii")


def new_client_id() -> str:
    return secrets.token_urlsafe(18)

