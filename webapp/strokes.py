"""A drawing's strokes: checked strictly on the way in, kept as compact JSON next to the image, served by id.

The shape is Quick, Draw!'s raw one: a list of strokes, each ``{"x": [...], "y": [...], "t": [...]}``, x and
y in pixels of the submitted image, t in milliseconds since the first point of the drawing.
"""

from __future__ import annotations

import json
import math
import operator
from itertools import chain, islice

import orjson
from flask import Blueprint, current_app, jsonify, request

from webapp.drawings import visible_or_404
from webapp.errors import ServiceError
from webapp.models import Drawing
from webapp.storage import ObjectNotFound, get_store

# Far more than any digit or doodle needs (a typical one has a few hundred points), and few
# enough that checking them stays well under a millisecond.
MAX_POINTS = 4000
MAX_STROKES = 250
MAX_DURATION_MS = 15 * 60 * 1000
# Pointer positions are clamped to the canvas, but a client rounding to whole pixels may land just outside.
MARGIN_PX = 2
CONTENT_TYPE = "application/json"
SUFFIX = ".strokes.json"
AXES = ("x", "y", "t")
NUMBER_TYPES = frozenset({int, float})

bp = Blueprint("strokes", __name__, url_prefix="/api/v1")


def _invalid(message: str) -> ServiceError:
    return ServiceError(400, "invalid_strokes", message)


def _decoded(value):
    """A multipart form's ``strokes`` field, JSON text, decoded; a JSON body's ``strokes`` is decoded already
    (and a string there is refused as one)."""
    if request.mimetype != "multipart/form-data":
        return value
    try:
        # The app's decoder, with its depth limit.
        return current_app.json.loads(value)
    except ValueError:
        raise _invalid("strokes must be JSON: a list of {\"x\": [...], \"y\": [...], \"t\": [...]}") from None


def _checked_shape(strokes) -> None:
    """A list of a bounded number of strokes, each three arrays of one length, a bounded number of points in all."""
    if not isinstance(strokes, list) or not strokes:
        raise _invalid("strokes must be a non-empty list of {\"x\": [...], \"y\": [...], \"t\": [...]} "
                       "(leave it out when there are none)")
    if len(strokes) > MAX_STROKES:
        raise _invalid(f"at most {MAX_STROKES} strokes, not {len(strokes)}")
    points = 0
    for index, stroke in enumerate(strokes):
        if not isinstance(stroke, dict) or set(stroke) != set(AXES):
            raise _invalid(f"strokes[{index}] must be an object with exactly the keys x, y and t")
        arrays = [stroke[axis] for axis in AXES]
        if not all(isinstance(array, list) for array in arrays):
            raise _invalid(f"strokes[{index}]: x, y and t must each be a list of numbers")
        length = len(arrays[0])
        if not length or any(len(array) != length for array in arrays):
            raise _invalid(f"strokes[{index}]: x, y and t must have the same length, at least 1 "
                           f"(they have {', '.join(str(len(array)) for array in arrays)})")
        points += length
        if points > MAX_POINTS:
            raise _invalid(f"at most {MAX_POINTS:,} points in all strokes together")


def _number(value, low: float, high: float) -> bool:
    """Whether ``value`` is a JSON number (not a bool, not NaN or infinite) from ``low`` to ``high``."""
    kind = type(value)
    # Comparing first keeps a 400-digit integer from reaching float() and overflowing.
    return (kind is int or (kind is float and math.isfinite(value))) and low <= value <= high


def _numbers(values: list, low: float, high: float) -> bool:
    """Whether every value is a finite int or float from ``low`` to ``high``: C loops over the whole list
    (map, sum, min, max) instead of a Python step per number, which is most of what checking costs."""
    kinds = set(map(type, values))
    if not kinds <= NUMBER_TYPES:
        return False
    if float in kinds:
        try:
            # A NaN or an infinity makes the sum NaN or infinite (so may a sum too big for a float:
            # then the careful check decides). Integers are finite, and min and max bound them.
            if not math.isfinite(sum(values)):
                return False
        except OverflowError:  # an integer too long for a float
            return False
    return low <= min(values) and max(values) <= high


def _all_valid(strokes: list, width: int, height: int) -> bool:
    """The quick check of what _checked_values checks; it says only whether, not where."""
    xs, ys, ts = (list(chain.from_iterable(map(operator.itemgetter(axis), strokes))) for axis in AXES)
    # One time line across all strokes: never backwards, within a stroke or from one to the next.
    return (_numbers(xs, -MARGIN_PX, width + MARGIN_PX) and _numbers(ys, -MARGIN_PX, height + MARGIN_PX)
            and _numbers(ts, 0, MAX_DURATION_MS) and all(map(operator.le, ts, islice(ts, 1, None))))


def _checked_values(strokes: list, width: int, height: int) -> None:
    """Every x and y on the canvas, every t from 0 to MAX_DURATION_MS and never before the point before it."""
    if _all_valid(strokes, width, height):
        return
    # Something is wrong: find the first fault, point by point, to name it.
    limits = {"x": (-MARGIN_PX, width + MARGIN_PX), "y": (-MARGIN_PX, height + MARGIN_PX)}
    previous = 0
    for index, stroke in enumerate(strokes):
        for axis, (low, high) in limits.items():
            for position, value in enumerate(stroke[axis]):
                if not _number(value, low, high):
                    raise _invalid(f"strokes[{index}].{axis}[{position}] must be a number from {low} to {high} "
                                   f"(the image is {width}x{height} px), not {json.dumps(value)[:40]}")
        for position, value in enumerate(stroke["t"]):
            if not _number(value, previous, MAX_DURATION_MS):
                reason = (f"is before the point before it ({previous} ms)" if _number(value, 0, MAX_DURATION_MS)
                          else f"must be a number of ms from 0 to {MAX_DURATION_MS:,}")
                raise _invalid(f"strokes[{index}].t[{position}] {reason}, not {json.dumps(value)[:40]}")
            previous = value


def parse_strokes(value, *, width: int, height: int) -> list[dict] | None:
    """The strokes a visitor sent with an image of ``width`` x ``height`` px, or None without any; 400 if invalid."""
    if value is None:
        return None
    strokes = _decoded(value)
    _checked_shape(strokes)
    _checked_values(strokes, width, height)
    return strokes


def encode_strokes(strokes: list[dict]) -> bytes:
    """The stored form: compact JSON, numbers as sent (a 300-point drawing is ~4 KB). Strokes checked by
    parse_strokes have only small integers and finite floats, all of which orjson writes."""
    return orjson.dumps(strokes)


def strokes_key_for(object_key: str) -> str:
    """The strokes' key next to the image's: ``drawings/ab/<key>.png`` -> ``drawings/ab/<key>.strokes.json``."""
    return object_key.rsplit(".", 1)[0] + SUFFIX


def load_strokes(drawing: Drawing) -> list[dict] | None:
    """A stored drawing's strokes, or None when it has none. Raises ObjectNotFound (a StorageError) if the
    object is missing, StorageError if the store fails."""
    if drawing.strokes_key is None:
        return None
    return json.loads(get_store().get(drawing.strokes_key))


@bp.get("/drawings/<drawing_id>/strokes")
def drawing_strokes(drawing_id: str):
    """One drawing's strokes as drawn on the canvas: x, y in pixels of its image, t in ms since its first point.

    Seen by whoever may see its image; 404 for a drawing without strokes (an upload, an import).
    """
    row = visible_or_404(drawing_id)
    if row.strokes_key is None:
        raise ServiceError(404, "no_strokes", "this drawing was sent without strokes")
    try:
        strokes = load_strokes(row)
    except ObjectNotFound:
        raise ServiceError(404, "strokes_missing", "the strokes of this drawing are missing from storage") from None
    response = jsonify({"id": row.id, "width": row.width, "height": row.height, "strokes": strokes})
    response.headers["Cache-Control"] = "private, max-age=86400, immutable"
    return response
