"""Inkling's web app: create_app() builds it; nothing happens at import time."""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path

from flask import Flask, g, request

AUTH_ENDPOINTS = frozenset({"admin.login", "admin.logout"})
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def create_app(overrides: dict | None = None) -> Flask:
    from webapp.config import from_environment

    app = Flask(__name__)
    app.config.from_mapping(from_environment())
    app.config.from_mapping(overrides or {})
    app.instance_path = app.config["INSTANCE_PATH"]
    configure_secret_key(app)
    register_parsing(app)
    app.json.sort_keys = False  # keep "fnn" before "cnn", as the UI shows them
    configure_logging(app)
    register_extensions(app)
    register_services(app)
    register_blueprints(app)
    register_security(app)
    register_client_id(app)
    register_error_handlers(app)
    register_commands(app)
    register_celery(app)
    return app


def configure_secret_key(app: Flask) -> None:
    """A key nobody else has: the environment's, else one made once and kept in the instance folder.

    Tests get a fresh random key per app, or pass one in (refused elsewhere when it is public).
    """
    from webapp.config import ConfigError, secret_problem
    from webapp.secret_key import load_or_create

    key = app.config.get("SECRET_KEY")
    if not key:
        app.config["SECRET_KEY"] = secrets.token_urlsafe(48) if app.testing else load_or_create(Path(app.instance_path))
    elif not app.testing and (problem := secret_problem(key)):
        raise ConfigError(problem)


def configure_logging(app: Flask) -> None:
    if app.config["LOG_FORMAT"] == "json":
        from webapp.logs import install_json_logging

        install_json_logging(app.config["LOG_LEVEL"])
        # Celery would otherwise replace the root handlers with its own text format in workers.
        app.config["CELERY"] = {"worker_hijack_root_logger": False, **app.config.get("CELERY", {})}
    elif not logging.getLogger().handlers:
        logging.basicConfig(level=app.config["LOG_LEVEL"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Alembic announces every plugin it loads at INFO.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def register_extensions(app: Flask) -> None:
    from webapp.extensions import bootstrap, csrf, db

    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        Path(app.config["SQLALCHEMY_DATABASE_URI"][len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    db.init_app(app)
    register_migrations(app)
    bootstrap.init_app(app)
    from webapp import models  # noqa: F401  (registers the tables on db.metadata)
    from webapp.auth import init_login
    from webapp.i18n import init_i18n

    init_login(app)
    csrf.init_app(app)
    init_i18n(app)

    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        from sqlalchemy import event

        with app.app_context():
            engine = db.engine

        @event.listens_for(engine, "connect")
        def sqlite_pragmas(connection, _record):
            # WAL lets readers and one writer work at once; foreign keys are off by default.
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=5000")
            # SQLite's advice for long-lived connections: refresh the planner's statistics where
            # tables changed a lot (bounded work), or big joins such as the dashboard's go astray.
            cursor.execute("PRAGMA analysis_limit=400")
            cursor.execute("PRAGMA optimize=0x10002")
            cursor.close()


def register_migrations(app: Flask) -> None:
    """Flask-Migrate's `flask db` commands, when the app is made for a command (or MIGRATIONS is set).

    Flask-Migrate imports Alembic, Mako and Pygments: ~10 MB that a web worker (200 MB in
    all) would carry for nothing; /healthz reads the expected revision without them
    (webapp/schema.py). (Celery's command line is click too, so its workers still load it.)
    """
    import click

    if not (app.config.get("MIGRATIONS") or click.get_current_context(silent=True)):
        return
    from flask_migrate import Migrate

    from webapp.extensions import db

    Migrate(app, db, directory=str(MIGRATIONS), render_as_batch=True)


def register_parsing(app: Flask) -> None:
    from webapp.parsing import init_parsing

    init_parsing(app)


def register_services(app: Flask) -> None:
    from webapp.registry import ModelRegistry
    from webapp.writer import PredictionWriter
    from webapp.storage import create_store

    store = create_store(app.config)
    app.extensions["inkling.store"] = store
    app.extensions["inkling.registry"] = ModelRegistry(store, refresh_seconds=app.config["MODEL_REFRESH_SECONDS"])
    app.extensions["inkling.writer"] = PredictionWriter()


def register_blueprints(app: Flask) -> None:
    from webapp import access, admin, admin_api, api, my_drawings, openapi, pages, sets_admin, strokes
    from webapp.extensions import csrf

    app.register_blueprint(pages.bp)
    app.register_blueprint(my_drawings.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(access.bp)
    app.register_blueprint(sets_admin.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(strokes.bp)
    app.register_blueprint(admin_api.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(api.health)
    # The JSON API carries no session authority (admin calls with a session are checked in
    # auth.admin_required); forms and session-authenticated calls get CSRF.
    csrf.exempt(api.bp)
    csrf.exempt(admin_api.bp)


def register_security(app: Flask) -> None:
    from webapp.security import init_security

    init_security(app)


def register_client_id(app: Flask) -> None:
    """An anonymous, random visitor id in a signed cookie: what makes drawings and ratings one's own.

    A cookie this app did not sign (forged, tampered with, or from before it was signed) is
    replaced by a fresh id: a well-formed value alone would let anyone be anyone.
    """
    from webapp.visitors import CLIENT_COOKIE, client_id_from_cookie, cookie_for, new_client_id

    @app.before_request
    def load_client_id():
        g.started = time.perf_counter()
        client_id = client_id_from_cookie(request.cookies.get(CLIENT_COOKIE, ""))
        g.new_client = client_id is None
        g.client_id = new_client_id() if client_id is None else client_id

    @app.after_request
    def store_client_id(response):
        if getattr(g, "new_client", False) and response.status_code < 500:
            response.set_cookie(CLIENT_COOKIE, cookie_for(g.client_id), max_age=365 * 24 * 3600, httponly=True,
                                samesite="Lax", secure=app.config["SESSION_COOKIE_SECURE"])
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # Server time, as browsers' devtools and bench/serving.py read it; never where it could
        # tell a real admin name or token from a wrong one to the millisecond.
        if "started" in g and request.endpoint not in AUTH_ENDPOINTS and response.status_code not in (401, 403):
            response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - g.started) * 1000:.2f}"
        return response


def register_error_handlers(app: Flask) -> None:
    from webapp.errors import register_error_handlers as register

    register(app)


def register_celery(app: Flask) -> None:
    from webapp.broker import celery_init_app

    celery_init_app(app)


def register_commands(app: Flask) -> None:
    from webapp.cli import dataset_cli, models_cli, storage_cli, tokens_cli, users_cli
    from webapp.importing_cli import import_command
    from webapp.label_sets_cli import label_sets_cli
    from webapp.reference_cli import reference_cli

    dataset_cli.add_command(import_command)

    app.cli.add_command(users_cli)
    app.cli.add_command(tokens_cli)
    app.cli.add_command(models_cli)
    app.cli.add_command(dataset_cli)
    app.cli.add_command(storage_cli)
    app.cli.add_command(reference_cli)
    app.cli.add_command(label_sets_cli)
