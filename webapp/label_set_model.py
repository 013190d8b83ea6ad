"""The label-set table, and the column by which drawings, predictions, versions and runs belong to a set."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, ForeignKey, String, text
from sqlalchemy.orm import Mapped, mapped_column

from webapp.extensions import db

# The built-in label set (migration 0008 inserts it with this id): the default everywhere.
DIGITS = "digits"
DIGITS_ID = 1


class SetClasses:
    """What a set's ``classes`` (ordered ``{"name", "names"}`` entries) and ``base`` say, for the
    table's rows and for label_sets.SetInfo alike."""

    @property
    def class_names(self) -> list[str]:
        return [entry["name"] for entry in self.classes]

    @property
    def is_digits(self) -> bool:
        return self.base == "mnist"


class LabelSet(SetClasses, db.Model):
    """A drawing task: ordered classes (a drawing's label is an index into them), open or closed.

    ``digits`` (0-9) is built in; others are created by admins and start with no model.
    """

    __tablename__ = "label_sets"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    # [{"name": "cat", "names": {"ja": "ねこ", ...}}, ...]: English name, then translations.
    classes: Mapped[list] = mapped_column(JSON)
    # "mnist" for digits: MNIST replay, the MNIST check and the reference set apply to it alone.
    base: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=lambda: datetime.now(timezone.utc))
    closed_at: Mapped[datetime | None]



def label_set_column() -> Mapped[int]:
    """The label set a row belongs to; rows made before sets existed, and by code that does not
    say, are digits."""
    return mapped_column(ForeignKey("label_sets.id"), index=True, default=DIGITS_ID,
                         server_default=text(str(DIGITS_ID)))
