"""Strict parsing of what a visitor sends: JSON bodies of bounded depth, integer parameters and path parts."""

from __future__ import annotations

import re

import numpy as np
from flask import Flask, Request, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.routing import IntegerConverter

from webapp.errors import ServiceError

# The deepest body the API takes is {"items": [{...}]}; the margin is for clients' own wrappers.
MAX_JSON_DEPTH = 32
# Longer than any page, label or version needs, and short of int()'s 4,300-digit ValueError.
MAX_INT_DIGITS = 9
LABEL_MESSAGE = "label must be an integer digit from 0 to 9"

_ASCII_INT = re.compile(r"[0-9]{1,%d}" % MAX_INT_DIGITS)
# A JSON string, escapes included; an unterminated one runs to the end, so a failed match is
# never retried from each later quote (which would make the scan quadratic).
_JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\Z)', re.S)
_NOT_BRACKETS = bytes(code for code in range(256) if code not in b"[]{}")


class JSONTooDeep(ValueError):
    """A JSON text nested deeper than MAX_JSON_DEPTH (a ValueError, so Flask treats it as bad JSON)."""

    def __init__(self, limit: int = MAX_JSON_DEPTH):
        super().__init__(f"the JSON body is nested more than {limit} levels deep")


def nested_deeper_than(text: str | bytes, limit: int) -> bool:
    """Whether the arrays and objects of a JSON text nest deeper than ``limit``, without parsing it.

    Linear in the text and without recursion: strings are cut out by one regular expression,
    the brackets left are counted by NumPy. A body with no more brackets than the limit (an
    upload, a rating) needs no scan at all.
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    # UTF-16 and UTF-32 bodies keep their brackets as bytes too; any mismatch is caught below.
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if not brackets:
        return False
    # "[" and "{" have bit 1 set, "]" and "}" do not: +1 for an opener, -1 for a closer.
    steps = (np.frombuffer(brackets, np.uint8) & 2).astype(np.int8) - 1
    return int(np.cumsum(steps, dtype=np.int32).max()) > limit


class DepthLimitedJSONProvider(DefaultJSONProvider):
    """Flask's JSON with a depth limit on reading: the standard decoder recurses once per level
    and a body a few thousand levels deep ends in RecursionError, a 500, on every JSON endpoint
    (Flask-WTF's forms read JSON bodies too)."""

    def loads(self, s: str | bytes, **kwargs):
        if nested_deeper_than(s, MAX_JSON_DEPTH):
            raise JSONTooDeep()
        try:
            return super().loads(s, **kwargs)
        except RecursionError:  # the scan and the decoder disagree only on broken JSON
            raise JSONTooDeep() from None


class StrictRequest(Request):
    def on_json_loading_failed(self, e: ValueError | None):
        if isinstance(e, JSONTooDeep):
            raise BadRequest(str(e)) from e
        return super().on_json_loading_failed(e)


class AsciiIntConverter(IntegerConverter):
    """``<int:...>`` in routes, ASCII digits only: Werkzeug's ``\\d+`` takes "٣" (read as 3) and "²"."""

    regex = r"[0-9]{1,%d}" % MAX_INT_DIGITS


def init_parsing(app: Flask) -> None:
    """Before the blueprints: their routes take the ``int`` converter when they are registered."""
    app.json = DepthLimitedJSONProvider(app)
    app.request_class = StrictRequest
    app.url_map.converters["int"] = AsciiIntConverter


def json_object(*, required: bool = True) -> dict:
    """The request's body, a JSON object, read once; 400 with the reason for anything else.

    ``required=False`` lets an empty body stand for ``{}``.
    """
    if not required and not request.get_data(cache=True):
        return {}
    if not request.is_json:
        raise ServiceError(400, "invalid_json", "the request body must be a JSON object (application/json)")
    try:
        body = request.get_json()
    except BadRequest as exc:
        if isinstance(exc.__cause__, JSONTooDeep):
            raise ServiceError(400, "json_too_deep", str(exc.__cause__)) from None
        body = None
    if request.content_length is None and getattr(request.stream, "is_exhausted", False):
        # Werkzeug stops reading a body sent without Content-Length (chunked) at
        # MAX_CONTENT_LENGTH and returns what it read without complaint: bigger is 413.
        raise RequestEntityTooLarge()
    if not isinstance(body, dict):
        raise ServiceError(400, "invalid_json", "the request body must be a JSON object")
    return body


def parse_int(text: str | None, *, low: int, high: int) -> int | None:
    """``text`` as an integer from ``low`` to ``high``, or None: ASCII digits only, so "²", "１２",
    "٣", "+1", " 1", "-0", "1e3" and 10,000-digit numbers are all refused, not half-read."""
    if text is None or not _ASCII_INT.fullmatch(text):
        return None
    value = int(text)
    return value if low <= value <= high else None


def int_arg(name: str, *, default: int | None, low: int, high: int, message: str | None = None) -> int | None:
    """The query parameter ``name`` as a bounded integer (``default`` when absent or empty); 400 otherwise."""
    text = request.args.get(name, "")
    if text == "":
        return default
    value = parse_int(text, low=low, high=high)
    if value is None:
        raise ServiceError(400, f"invalid_{name}", message or f"{name} must be a whole number from {low} to {high}")
    return value


def parse_label(value, *, required: bool = True) -> int | None:
    """A digit label from a JSON body or a form field: 0-9 as an integer or a one-digit string; 400 otherwise."""
    # Booleans are ints in Python and 3.0 == 3; neither is a digit label.
    if value is None and not required:
        return None
    if isinstance(value, str) and len(value) == 1 and value in "0123456789":
        return int(value)
    if type(value) is not int or not 0 <= value <= 9:
        raise ServiceError(400, "invalid_label", LABEL_MESSAGE)
    return value
