"""Flask extensions, created unbound here and bound to the app in create_app()."""

from datetime import datetime

from flask_babel import Babel
from flask_bootstrap import Bootstrap5
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import DateTime, MetaData
from sqlalchemy.orm import DeclarativeBase, registry

from webapp.security import rate_limit_key

# Named constraints, so Alembic can alter them on every backend (SQLite included).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    registry = registry(metadata=MetaData(naming_convention=NAMING_CONVENTION),
                        type_annotation_map={datetime: DateTime(timezone=True)})


db = SQLAlchemy(model_class=Base)
# Flask-Migrate is bound in create_app, and only for commands: see register_migrations.
bootstrap = Bootstrap5()
login_manager = LoginManager()
csrf = CSRFProtect()
babel = Babel()
# Keyed on the client's address as ProxyFix leaves it (Heroku's router's view, not a header
# the client wrote), or on the API token a request carries; counts live in Redis when there
# is one, so every worker shares them.
limiter = Limiter(key_func=rate_limit_key, headers_enabled=True, strategy="moving-window")
