"""ORM tables. (The neural networks are in training/; these are rows.)"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, SmallInteger, String, Text, UniqueConstraint, text
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.extensions import db

SOURCES = ("contribution", "prediction", "feedback")
STATUSES = ("pending", "confirmed", "rejected")
VERSION_STATUSES = ("candidate", "active", "retired", "rejected")
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "rejected")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime | None) -> str | None:
    """A column's timestamp as the API shows it (columns are aware UTC: see extensions.UtcDateTime)."""
    return None if moment is None else moment.isoformat(timespec="seconds")


def new_id() -> str:
    return str(uuid.uuid4())


class Drawing(db.Model):
    """One uploaded drawing: the original image is in the object store under ``object_key``.

    ``source`` is how it arrived: a labelled contribution, an unrated prediction request, or a
    prediction that a user rated (feedback, labelled with the true digit).
    """

    __tablename__ = "drawings"
    # Covers the dashboard's counts (a GROUP BY over all drawings) without touching the table.
    __table_args__ = (Index("ix_drawings_counts", "source", "status", "label", "not_digit"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    source: Mapped[str] = mapped_column(String(16), index=True)
    label: Mapped[int | None] = mapped_column(SmallInteger, index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    object_key: Mapped[str] = mapped_column(String(255), unique=True)
    content_type: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int]
    width: Mapped[int]
    height: Mapped[int]
    # The preprocessed 28x28 uint8 digit, so training never re-reads and re-decodes images.
    pixels: Mapped[bytes] = mapped_column(LargeBinary(784))
    client_id: Mapped[str | None] = mapped_column(String(64), index=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(index=True)
    # Confirmed drawings set aside, per label, to judge new versions; never trained on.
    holdout: Mapped[bool] = mapped_column(default=False, server_default=text("false"), index=True)
    status_reason: Mapped[str | None] = mapped_column(String(255))
    # Flagged "not a digit" by the person who drew it (or an admin): never trained on, shown
    # to admins in the review queue.
    not_digit: Mapped[bool] = mapped_column(default=False, server_default=text("false"), index=True)

    predictions: Mapped[list["Prediction"]] = relationship(back_populates="drawing", cascade="all, delete-orphan",
                                                           order_by="Prediction.model_name")
    rating: Mapped["Rating | None"] = relationship(back_populates="drawing", cascade="all, delete-orphan")


class Prediction(db.Model):
    """One model's answer for one drawing."""

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("drawing_id", "model_name"),
        # One version's answers (the dashboard's confusion matrices) without a scan of them all.
        Index("ix_predictions_version", "model_name", "model_version", "drawing_id", "label"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    drawing_id: Mapped[str] = mapped_column(ForeignKey("drawings.id", ondelete="CASCADE"), index=True)
    model_name: Mapped[str] = mapped_column(String(16))
    model_version: Mapped[int]
    label: Mapped[int] = mapped_column(SmallInteger)
    confidence: Mapped[float]
    probabilities: Mapped[list] = mapped_column(JSON)
    latency_ms: Mapped[float]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    drawing: Mapped[Drawing] = relationship(back_populates="predictions")


class Rating(db.Model):
    """A user's verdict on a prediction request: the digit they actually drew."""

    __tablename__ = "ratings"

    id: Mapped[int] = mapped_column(primary_key=True)
    drawing_id: Mapped[str] = mapped_column(ForeignKey("drawings.id", ondelete="CASCADE"), unique=True)
    label: Mapped[int] = mapped_column(SmallInteger)
    client_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    drawing: Mapped[Drawing] = relationship(back_populates="rating")


class ModelVersion(db.Model):
    """A published version of a network; its files live in the object store under ``object_prefix``."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        # At most one active version per network, enforced by the database itself.
        Index("uq_model_versions_one_active", "name", unique=True,
              sqlite_where=text("status = 'active'"), postgresql_where=text("status = 'active'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(16))
    version: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="candidate")
    parent_version: Mapped[int | None]
    object_prefix: Mapped[str] = mapped_column(String(255))
    onnx_sha256: Mapped[str] = mapped_column(String(64))
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    manifest: Mapped[dict] = mapped_column(JSON, default=dict)
    samples_used: Mapped[int] = mapped_column(default=0)
    training_run_id: Mapped[str | None] = mapped_column(ForeignKey("training_runs.id"))
    status_reason: Mapped[str | None] = mapped_column(Text)
    # The newest confirmation this version has trained on: later ones are "new" to it.
    data_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None]

    @property
    def onnx_key(self) -> str:
        return f"{self.object_prefix}model.onnx"


class TrainingRun(db.Model):
    """One fine-tuning job (issue #4): its status, progress and results."""

    __tablename__ = "training_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    trigger: Mapped[str] = mapped_column(String(16), default="admin")
    progress: Mapped[dict] = mapped_column(JSON, default=dict)
    result: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    task_id: Mapped[str | None] = mapped_column(String(64))
    # Deliveries of the task: a run that keeps killing its worker must end, not loop.
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    # "training" while queued or running, NULL after: a unique column, so the database itself
    # allows only one live run per deployment.
    lock: Mapped[str | None] = mapped_column(String(16), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class User(UserMixin, db.Model):
    """An account that can sign in to the admin pages (and hold API tokens)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    tokens: Mapped[list["ApiToken"]] = relationship(back_populates="user", cascade="all, delete-orphan")


class ApiToken(db.Model):
    """A bearer token for the admin API; only its sha256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(back_populates="tokens")
