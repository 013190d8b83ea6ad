"""Where dataset imports and exports find a label set's classes and a drawing's strokes.

Today there is one label set (``digits``) and no stored strokes; label sets and strokes each
change only these functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from webapp.errors import ServiceError

DEFAULT_LABEL_SET = "digits"
DIGITS = tuple(str(digit) for digit in range(10))


def label_set_classes(slug: str) -> tuple[str, ...]:
    """The ordered class names of label set ``slug`` (a drawing's label is an index into them)."""
    if slug == DEFAULT_LABEL_SET:
        return DIGITS
    raise ServiceError(400, "unknown_label_set", f"unknown label set {slug[:64]!r}")


def stored_strokes(drawing_id: str) -> list | None:
    """The strokes stored with drawing ``drawing_id`` (the pad's ``{"x", "y", "t"}`` per stroke), or None."""
    return None


@dataclass(frozen=True)
class StrokesObject:
    """Strokes to write to the object store with a drawing's image, and the row's columns naming them."""

    key: str
    data: bytes
    columns: dict = field(default_factory=dict)


def strokes_to_keep(drawing_id: str, strokes: list) -> StrokesObject | None:
    """What to store of an imported drawing's strokes; None while drawing rows cannot point at strokes
    (an object no row names would outlive its drawing's deletion)."""
    return None


def strokes_json(strokes: list) -> bytes:
    """Quick, Draw! strokes ``[[x...], [y...]]`` as the pad's JSON, one ``{"x", "y", "t"}`` per stroke."""
    return json.dumps([{"x": stroke[0], "y": stroke[1], "t": stroke[2] if len(stroke) > 2 else []}
                       for stroke in strokes], separators=(",", ":")).encode("utf-8")
