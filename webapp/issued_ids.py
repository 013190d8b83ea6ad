"""Prediction ids that say when this deployment issued them, so a rating can wait for a fresh one.

An answered prediction is stored a moment after its answer (write-behind), by the web process
that answered it; its rating may reach another process first. That process waits for the row
only if the id is one of ours from the last RATABLE_AFTER seconds: an id anyone could make
up would let a stranger hold a worker thread for that long with every request.

The id is a UUIDv8 (RFC 9562, a layout of our own): 48 bits of Unix time in milliseconds,
42 random bits, and a 32-bit HMAC of both under the app's SECRET_KEY.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid

from flask import Flask, current_app

# How long after its answer a prediction may still be on its way to the database.
RATABLE_AFTER = 2.0
# Web processes may run on machines whose clocks differ a little.
CLOCK_SKEW = 1.0
_SALT = b"inkling.prediction-id"


def _mac(app: Flask, body: bytes) -> bytes:
    key = hmac.new(app.secret_key.encode() if isinstance(app.secret_key, str) else app.secret_key,
                   _SALT, hashlib.sha256).digest()
    return hmac.new(key, body, hashlib.sha256).digest()[:4]


def issue(app: Flask | None = None, *, now: float | None = None) -> str:
    app = app or current_app
    millis = int((time.time() if now is None else now) * 1000)
    body = bytearray(millis.to_bytes(6, "big") + secrets.token_bytes(6))
    body[6] = (body[6] & 0x0F) | 0x80  # version 8
    body[8] = (body[8] & 0x3F) | 0x80  # the RFC's variant
    return str(uuid.UUID(bytes=bytes(body) + _mac(app, bytes(body))))


def wait_until(drawing_id: str, app: Flask | None = None) -> float | None:
    """The wall-clock time until which ``drawing_id`` may still be on its way; None if not ours or old."""
    try:
        parsed = uuid.UUID(drawing_id)
    except (ValueError, TypeError, AttributeError):
        return None
    raw = parsed.bytes
    if parsed.version != 8 or str(parsed) != drawing_id or not hmac.compare_digest(_mac(app or current_app, raw[:12]),
                                                                                  raw[12:]):
        return None
    issued = int.from_bytes(raw[:6], "big") / 1000
    now = time.time()
    if not issued - CLOCK_SKEW <= now <= issued + RATABLE_AFTER:
        return None
    return issued + RATABLE_AFTER
