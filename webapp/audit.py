"""The audit log: who confirmed, rejected, relabelled, flagged, activated, rolled back, started or created what."""

from __future__ import annotations

import hashlib

from flask import g, has_request_context

from webapp.extensions import db
from webapp.models import AuditEvent, iso

# Every action the log knows, in the order the admin page's filter lists them.
ACTIONS = ("drawing.confirm", "drawing.reject", "drawing.relabel", "drawing.flag", "drawing.delete",
           "dataset.import",
           "model.activate", "model.rollback", "run.start", "label_set.create", "label_set.close",
           "user.create", "user.disable", "user.enable", "user.reset_password", "user.role",
           "token.create", "token.revoke")


def current_actor() -> str:
    """Who this request acts as: a token, a signed-in user, else the visitor's anonymous id."""
    if not has_request_context():
        return "cli"
    token = g.get("api_token")
    if token is not None:
        return f"token:{token.name}"
    user = g.get("actor_user")
    if user is not None:
        return user.username
    # The client id is the visitor's cookie, as good as a password to their drawings: the log
    # keeps a digest that tells one visitor's actions apart without handing the cookie to anyone.
    client_id = g.get("client_id")
    return f"visitor:{hashlib.sha256(client_id.encode()).hexdigest()[:16]}" if client_id else "visitor:-"


def record(action: str, *, actor: str | None = None, target: str | None = None, detail: dict | None = None) -> AuditEvent:
    """Add one event to the session: the caller's commit writes it with the change it records,
    so a change is never logged without happening, nor happens without being logged."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    event = AuditEvent(action=action, actor=(actor or current_actor())[:96],
                       target=None if target is None else str(target)[:128], detail=detail or {})
    db.session.add(event)
    return event


def event_json(event: AuditEvent) -> dict:
    return {"id": event.id, "at": iso(event.created_at), "action": event.action, "actor": event.actor,
            "target": event.target, "detail": event.detail or {}}
