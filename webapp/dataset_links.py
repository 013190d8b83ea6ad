"""Where dataset imports and exports find a label set's classes and a drawing's strokes.

"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from webapp.errors import ServiceError
from webapp.label_sets import DIGITS_INFO, SetInfo, find, info
from webapp.models import DIGITS
from webapp.storage import get_store
from webapp.strokes import strokes_key_for

DEFAULT_LABEL_SET = DIGITS


def resolve_label_set(slug: str) -> SetInfo:
    """Label set ``slug`` (a drawing's label is an index into its ``class_names``); 400 if there is none."""
    if slug == DIGITS:
        return DIGITS_INFO
    row = find(slug)
    if row is None:
        raise ServiceError(400, "unknown_label_set", f"unknown label set {slug[:64]!r}")
    return info(row)


def stored_strokes(strokes_key: str | None) -> list | None:
    """The strokes a drawing row names (the pad's ``{"x", "y", "t"}`` per stroke), or None if it has none."""
    if strokes_key is None:
        return None
    return json.loads(get_store().get(strokes_key))


@dataclass(frozen=True)
class StrokesObject:
    """Strokes to write to the object store with a drawing's image, and the row's columns naming them."""

    key: str
    data: bytes
    columns: dict = field(default_factory=dict)


def strokes_to_keep(drawing_id: str, strokes: list) -> StrokesObject:
    """An imported drawing's strokes as stored beside its image, and the row's column naming them."""
    key = strokes_key_for(f"drawings/{drawing_id[:2]}/{drawing_id}.png")
    return StrokesObject(key=key, data=strokes_json(strokes), columns={"strokes_key": key})


def strokes_json(strokes: list) -> bytes:
    """Quick, Draw! strokes ``[[x...], [y...]]`` as the pad's JSON, one ``{"x", "y", "t"}`` per stroke."""
    return json.dumps([{"x": stroke[0], "y": stroke[1], "t": stroke[2] if len(stroke) > 2 else []}
                       for stroke in strokes], separators=(",", ":")).encode("utf-8")
