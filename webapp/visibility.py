"""Who may see which drawing: its owner, reviewers and admins; everyone only for a public dataset."""

from __future__ import annotations

import hmac

from flask import current_app, g
from flask_login import current_user
from sqlalchemy import false

from webapp.models import Drawing

# What PUBLIC_DATASET=1 shows to anyone: drawings people chose to give (contributed or rated).
# A prediction nobody rated was drawn to be read, not published; it stays its owner's.
PUBLIC_SOURCES = ("contribution", "feedback")


def reads_everything() -> bool:
    """A reviewer or admin: a token whose scopes (and owner's role) allow `read`, or such a session.

    A session needs no CSRF token here: these are reads, and a SameSite=Lax cookie does not
    ride along with another site's image or fetch requests.
    """
    token = g.get("api_token")
    if token is not None:
        return "read" in token.permissions
    return bool(current_user.is_authenticated and current_user.can("read"))


def _owns(row: Drawing) -> bool:
    client_id = g.get("client_id")
    return bool(client_id and row.client_id) and hmac.compare_digest(row.client_id, client_id)


def may_see(row: Drawing) -> bool:
    if reads_everything() or _owns(row):
        return True
    return current_app.config["PUBLIC_DATASET"] and row.source in PUBLIC_SOURCES


def visible_filter():
    """The SQL condition for the drawings this request may list (None: all of them)."""
    if reads_everything():
        return None
    client_id = g.get("client_id")
    own = Drawing.client_id == client_id if client_id else false()
    if current_app.config["PUBLIC_DATASET"]:
        return own | Drawing.source.in_(PUBLIC_SOURCES)
    return own
