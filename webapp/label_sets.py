"""Label sets: finding one by slug, its labels by name or index, its classes in the reader's language, creating and closing."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from webapp.errors import ServiceError
from webapp.extensions import db
from webapp.label_set_model import SetClasses
from webapp.models import DIGITS, DIGITS_ID, LabelSet, utcnow
from webapp.parsing import LABEL_MESSAGE, parse_int

SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,31}\Z")
CLASS_NAME = re.compile(r"[^\x00-\x1f\x7f,]{1,32}\Z")
MIN_CLASSES, MAX_CLASSES = 2, 50
TRANSLATED = ("ja", "ru", "zh")


@dataclass(frozen=True)
class SetInfo(SetClasses):
    """What a request needs of a label set, detached from the session (digits needs no query)."""

    id: int
    slug: str
    name: str
    classes: tuple[dict, ...]
    closed: bool
    base: str | None


    def display_names(self, language: str = "en") -> list[str]:
        """Each class in ``language``, in English where it has no translation."""
        return [entry.get("names", {}).get(language) or entry["name"] for entry in self.classes]

    def class_name(self, label: int | None) -> str | None:
        return None if label is None or not 0 <= label < len(self.classes) else self.classes[label]["name"]


DIGITS_INFO = SetInfo(id=DIGITS_ID, slug=DIGITS, name="Digits", base="mnist", closed=False,
                      classes=tuple({"name": str(digit), "names": {}} for digit in range(10)))


def info(row: LabelSet) -> SetInfo:
    return SetInfo(id=row.id, slug=row.slug, name=row.name, classes=tuple(row.classes),
                   closed=row.closed_at is not None, base=row.base)


def find(slug: str) -> LabelSet | None:
    if not isinstance(slug, str) or not SLUG.match(slug):
        return None
    return db.session.scalar(select(LabelSet).where(LabelSet.slug == slug))


def by_id(label_set_id: int) -> SetInfo:
    if label_set_id == DIGITS_ID:
        return DIGITS_INFO
    return info(db.session.get(LabelSet, label_set_id))


def from_request(value) -> SetInfo:
    """The ``label_set`` a request names (digits when it names none, without a query); 400 if unknown."""
    if value is None or value == DIGITS:
        return DIGITS_INFO
    row = find(value) if isinstance(value, str) else None
    if row is None:
        raise ServiceError(400, "invalid_label_set", "label_set must be the slug of an existing label set "
                                                     "(GET /api/v1/label-sets lists them)")
    return info(row)


def label_message(label_set: SetInfo) -> str:
    if label_set.is_digits:
        return LABEL_MESSAGE
    return (f"label must be one of {', '.join(label_set.class_names)} "
            f"or its index from 0 to {len(label_set.classes) - 1}")


def parse_set_label(label_set: SetInfo, value) -> int:
    """A label for ``label_set``: a class name, or its index as an integer or a string of ASCII digits; 400 otherwise."""
    if isinstance(value, str):
        if value in label_set.class_names:
            return label_set.class_names.index(value)
        index = parse_int(value, low=0, high=len(label_set.classes) - 1)
    else:
        # Booleans are ints in Python and 3.0 == 3; neither is a label.
        index = value if type(value) is int and 0 <= value < len(label_set.classes) else None
    if index is None:
        raise ServiceError(400, "invalid_label", label_message(label_set))
    return index


def refuse_if_closed(label_set: SetInfo) -> None:
    if label_set.closed:
        raise ServiceError(409, "label_set_closed", f"the label set {label_set.slug} is closed to new contributions")


def parse_classes(names: list[str], translations: dict[str, list[str]] | None = None) -> list[dict]:
    """Class entries from English names and, per language, names in the same order; 400 on anything odd."""
    names = [name.strip() for name in names]
    if not MIN_CLASSES <= len(names) <= MAX_CLASSES:
        raise ServiceError(400, "invalid_classes", f"a label set has {MIN_CLASSES} to {MAX_CLASSES} classes")
    if len(set(names)) != len(names) or not all(CLASS_NAME.match(name) for name in names):
        raise ServiceError(400, "invalid_classes", "class names are distinct, 1 to 32 characters, without commas")
    entries = [{"name": name, "names": {}} for name in names]
    for language, translated in (translations or {}).items():
        if language not in TRANSLATED or len(translated) != len(names):
            raise ServiceError(400, "invalid_classes", f"translations are for {', '.join(TRANSLATED)}, "
                                                       f"one name per class, in the same order")
        for entry, text in zip(entries, translated):
            if not CLASS_NAME.match(text.strip()):
                raise ServiceError(400, "invalid_classes", "class names are 1 to 32 characters, without commas")
            entry["names"][language] = text.strip()
    return entries


def create(*, slug: str, classes: list[str], name: str | None = None,
           translations: dict[str, list[str]] | None = None) -> LabelSet:
    """A new, open label set with no model yet; the caller records the audit event."""
    if not isinstance(slug, str) or not SLUG.match(slug):
        raise ServiceError(400, "invalid_slug", "a slug is 1 to 32 lowercase letters, digits or hyphens")
    name = (name or slug.replace("-", " ").capitalize()).strip()
    if not 1 <= len(name) <= 64:
        raise ServiceError(400, "invalid_name", "a label set's name is 1 to 64 characters")
    row = LabelSet(slug=slug, name=name, classes=parse_classes(classes, translations))
    db.session.add(row)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise ServiceError(409, "exists", f"a label set named {slug} already exists") from None
    return row


def close(row: LabelSet) -> None:
    """No more contributions to ``row`` (its models keep answering); the caller commits."""
    if row.id == DIGITS_ID:
        raise ServiceError(409, "builtin_label_set", "digits is built in and stays open")
    if row.closed_at is None:
        row.closed_at = utcnow()


def all_sets() -> list[LabelSet]:
    return list(db.session.scalars(select(LabelSet).order_by(LabelSet.id)))


def listing() -> list[dict]:
    """Every set as GET /api/v1/label-sets shows it: classes, counts, which networks have a model."""
    from sqlalchemy import func

    from training import MODEL_NAMES
    from flask import has_request_context
    from flask_babel import get_locale

    from webapp.models import Drawing, ModelVersion

    language = str(get_locale() or "en") if has_request_context() else "en"
    counts = {(set_id, status): int(count) for set_id, status, count in db.session.execute(
        select(Drawing.label_set_id, Drawing.status, func.count()).where(Drawing.label.is_not(None))
        .group_by(Drawing.label_set_id, Drawing.status)).all()}
    active = set(db.session.execute(select(ModelVersion.label_set_id, ModelVersion.name)
                                    .where(ModelVersion.status == "active")).all())
    result = []
    for row in all_sets():
        entry = info(row)
        result.append({
            "slug": entry.slug, "name": entry.name, "closed": entry.closed, "built_in": entry.is_digits,
            "classes": [{"index": index, "name": name, "display_name": shown} for index, (name, shown)
                        in enumerate(zip(entry.class_names, entry.display_names(language)))],
            "drawings": {status: counts.get((entry.id, status), 0) for status in ("pending", "confirmed", "rejected")},
            "models": {name: (entry.id, name) in active for name in MODEL_NAMES},
        })
    return result
