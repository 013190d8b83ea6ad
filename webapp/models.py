"""ORM tables. (The neural networks are in training/; these are rows.)"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, SmallInteger, String, Text, UniqueConstraint, text
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.extensions import db
from webapp.label_set_model import DIGITS, DIGITS_ID, LabelSet, label_set_column  # noqa: F401  (rows of sets)

SOURCES = ("contribution", "prediction", "feedback", "import")
STATUSES = ("pending", "confirmed", "rejected")
VERSION_STATUSES = ("candidate", "active", "retired", "rejected")
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "rejected")
# "none" is an account with no access (what a non-admin was before roles): it cannot sign in.
ROLES = ("none", "reviewer", "admin")
# What each role may do; a token may do what its scopes and its owner's role both allow.
ROLE_PERMISSIONS = {"none": frozenset(), "reviewer": frozenset({"read", "contribute", "review"}),
                    "admin": frozenset({"read", "contribute", "review", "admin"})}
TOKEN_SCOPES = ("read", "contribute", "review", "admin")
# A scope carries the ones below it: a reviewer's token reads, an admin's token does everything.
SCOPE_IMPLIES = {"read": {"read"}, "contribute": {"read", "contribute"}, "review": {"read", "review"},
                 "admin": set(TOKEN_SCOPES)}


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
    prediction that a user rated (feedback, labelled with the true digit), or a dataset file's
    drawing (import, `flask dataset import`).
    """

    __tablename__ = "drawings"
    # Covers the dashboard's counts (a GROUP BY over all drawings) without touching the table.
    __table_args__ = (Index("ix_drawings_counts", "source", "status", "label", "not_digit"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    label_set_id: Mapped[int] = label_set_column()
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
    # Set aside to judge new versions, never trained on: decided once, at the first
    # confirmation (first_confirmed_at), and kept whatever happens to the drawing after.
    holdout: Mapped[bool] = mapped_column(default=False, server_default=text("false"), index=True)
    first_confirmed_at: Mapped[datetime | None]
    # When a training run took it into its batch of new drawings (that run's started_at);
    # None while it waits, e.g. held back by the per-contributor cap.
    batched_at: Mapped[datetime | None] = mapped_column(index=True)
    status_reason: Mapped[str | None] = mapped_column(String(255))
    # Flagged "not a digit" by the person who drew it (or an admin): never trained on, shown
    # to admins in the review queue.
    not_digit: Mapped[bool] = mapped_column(default=False, server_default=text("false"), index=True)
    # The strokes drawn on the canvas, as JSON next to the image (webapp/strokes.py); None for an
    # upload or import that came without them.
    strokes_key: Mapped[str | None] = mapped_column(String(255))

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
    label_set_id: Mapped[int] = label_set_column()
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
        UniqueConstraint("label_set_id", "name", "version"),
        # At most one active version per network and label set, enforced by the database itself.
        Index("uq_model_versions_one_active", "label_set_id", "name", unique=True,
              sqlite_where=text("status = 'active'"), postgresql_where=text("status = 'active'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    label_set_id: Mapped[int] = label_set_column()
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
    label_set_id: Mapped[int] = label_set_column()
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    trigger: Mapped[str] = mapped_column(String(16), default="admin")
    progress: Mapped[dict] = mapped_column(JSON, default=dict)
    result: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    task_id: Mapped[str | None] = mapped_column(String(64))
    # Deliveries of the task: a run that keeps killing its worker must end, not loop.
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    # "training" (digits) or "training:<set id>" while queued or running, NULL after: a unique
    # column, so the database itself allows only one live run per label set.
    lock: Mapped[str | None] = mapped_column(String(16), unique=True)
    # Someone asked for a run while this one was live: one more starts when it ends.
    follow_up: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
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
    role: Mapped[str] = mapped_column(String(16), default="none", server_default=text("'none'"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Part of the id a session holds: raising it (sign-out, a new password, disabling) ends
    # every session of this user, on every worker, at their next request.
    session_generation: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    # A disabled account can neither sign in nor use its API tokens.
    disabled_at: Mapped[datetime | None]

    tokens: Mapped[list["ApiToken"]] = relationship(back_populates="user", cascade="all, delete-orphan")

    @property
    def is_active(self) -> bool:
        return self.disabled_at is None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @is_admin.setter
    def is_admin(self, value: bool) -> None:
        # Kept for scripts written before roles: an admin or an account with no access.
        self.role = "admin" if value else "none"

    @property
    def permissions(self) -> frozenset[str]:
        return ROLE_PERMISSIONS.get(self.role, frozenset()) if self.is_active else frozenset()

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def get_id(self) -> str:
        return f"{self.id}:{self.session_generation}"

    def end_sessions(self) -> None:
        """Make every session signed in as this user invalid (committed by the caller)."""
        # In SQL, so that two sign-outs at once both count.
        self.session_generation = User.session_generation + 1


class ApiToken(db.Model):
    """A named bearer token with scopes and an expiry; only its sha256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # Unique, so the audit log's "token:<name>" names one token.
    name: Mapped[str] = mapped_column(String(64), unique=True, default=lambda: f"token-{uuid.uuid4().hex[:12]}")
    # Space-separated TOKEN_SCOPES.
    scopes: Mapped[str] = mapped_column(String(64), default="read", server_default=text("'read'"))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # Flask-Limiter strings ("600/minute"); None means TOKEN_PREDICT_LIMIT / TOKEN_CONTRIBUTE_LIMIT.
    predict_limit: Mapped[str | None] = mapped_column(String(64))
    contribute_limit: Mapped[str | None] = mapped_column(String(64))

    user: Mapped[User] = relationship(back_populates="tokens")

    @property
    def scope_list(self) -> list[str]:
        return [scope for scope in TOKEN_SCOPES if scope in self.scopes.split()]

    @property
    def permissions(self) -> frozenset[str]:
        granted = set().union(*(SCOPE_IMPLIES[scope] for scope in self.scope_list))
        return frozenset(granted) & self.user.permissions

    def problem(self, now: datetime) -> str | None:
        """Why this token cannot be used now, or None."""
        if self.revoked_at is not None:
            return "that token has been revoked"
        if self.expires_at is not None and _aware(self.expires_at) <= now:
            return "that token has expired"
        if not self.user.is_active:
            return "that token's account is disabled"
        return None


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes for what was stored as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class AuditEvent(db.Model):
    """Who did what to what, and when: reviews, flags, activations, runs, accounts, tokens."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    action: Mapped[str] = mapped_column(String(32), index=True)
    # A username, "token:<name>", "visitor:<client id>" or "cli".
    actor: Mapped[str] = mapped_column(String(96), index=True)
    target: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
