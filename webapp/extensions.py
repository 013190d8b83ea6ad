"""Flask extensions, created unbound here and bound to the app in create_app()."""

from datetime import datetime, timezone

from flask_babel import Babel
from flask_bootstrap import Bootstrap5
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import DateTime, MetaData
from sqlalchemy.types import TypeDecorator
from sqlalchemy.orm import DeclarativeBase, registry


# Named constraints, so Alembic can alter them on every backend (SQLite included).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator):
    """A timestamp stored as UTC and read back as an aware UTC datetime, on every backend.

    SQLite has no time zones and hands back naive datetimes; without this, every reader had
    to remember that they were UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:  # naive values in this app are UTC
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    # Every Mapped[datetime] column is a UtcDateTime (timestamptz on PostgreSQL).
    registry = registry(metadata=MetaData(naming_convention=NAMING_CONVENTION),
                        type_annotation_map={datetime: UtcDateTime()})


db = SQLAlchemy(model_class=Base)
# Flask-Migrate is bound in create_app, and only for commands: see register_migrations.
bootstrap = Bootstrap5()
login_manager = LoginManager()
csrf = CSRFProtect()
babel = Babel()


def rate_limit_key() -> str:
    """Token requests count against their token, wherever they come from; others against their address."""
    from flask import g
    from flask_limiter.util import get_remote_address

    token = g.get("api_token")
    return f"token:{token.id}" if token is not None else get_remote_address()


# Keyed on the client's address as ProxyFix leaves it (Heroku's router's view, not a header
# the client wrote), or on the API token a request carries; counts live in Redis when there
# is one, so every worker shares them.
limiter = Limiter(key_func=rate_limit_key, headers_enabled=True, strategy="moving-window")
