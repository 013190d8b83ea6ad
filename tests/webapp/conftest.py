"""Web app fixtures: the app on SQLite and on the machine's real PostgreSQL, a local object
store, the tiny trained networks registered as version 1, and clients."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TABLES = ("audit_events", "ratings", "predictions", "drawings", "model_versions", "training_runs", "api_tokens", "users")


def _postgres_url(schema: str) -> str:
    engine = create_engine(PG_URL)
    try:
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and is unreachable at {PG_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}: {exc}")
    finally:
        engine.dispose()
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


def _drop_postgres_schema(schema: str) -> None:
    engine = create_engine(PG_URL)
    try:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request, tmp_path_factory):
    """A migrated, empty database: `flask db upgrade` from nothing, as a deployment does."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'inkling.sqlite'}"
    else:
        # A schema of its own for every instance of this fixture (tests/workers has one too), so
        # runs never see each other's rows (or another project's).
        schema = f"inkling_test_{uuid.uuid4().hex[:8]}"
        url = _postgres_url(schema)
        request.addfinalizer(lambda: _drop_postgres_schema(schema))
    from flask_migrate import upgrade

    from webapp import create_app
    from webapp.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "INSTANCE_PATH": str(tmp_path_factory.mktemp("inst")),
                      "MIGRATIONS": True})
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return url


@pytest.fixture(scope="session")
def object_root(tmp_path_factory):
    return tmp_path_factory.mktemp("objects")


def make_app(database_url, object_root, tmp_path, **overrides):
    from webapp import create_app

    config = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "INSTANCE_PATH": str(tmp_path),
        "LOCAL_STORAGE_PATH": str(object_root),
        "MODEL_REFRESH_SECONDS": 0,
        # Store predictions before answering, so tests can look at the rows straight away;
        # test_write_behind covers the deployed default.
        "PREDICTION_WRITE_BEHIND": False,
        # Tests send hundreds of requests, standing for many people, from one address and one
        # client cookie; test_abuse turns the limits and the flood quarantine back on.
        "RATELIMIT_ENABLED": False,
        "QUARANTINE_MIN_LABELS": 10**9,
        "AUTO_CONFIRM_DAILY_CAP": 10**9,
        # A run judges on MNIST and the holdout unless a test stores a reference set.
        "REFERENCE_BUILD": False,
        **overrides,
    }
    return create_app(config)


def reset_database(app, models_root) -> None:
    """Empty every table, then register the tiny networks as the active version 1."""
    from training.versions import load
    from webapp.cli import import_version
    from webapp.extensions import db

    with app.app_context():
        for table in TABLES:
            db.session.execute(text(f"DELETE FROM {table}"))
        db.session.execute(text("DELETE FROM label_sets WHERE slug != 'digits'"))
        db.session.commit()
        for name in ("fnn", "cnn"):
            import_version(load(models_root, name), activate=True)


def stored_drawing_keys(app) -> tuple[set[str], set[str]]:
    """(object keys the drawing rows point at, images and strokes; drawing keys in the object store)."""
    from sqlalchemy import select

    from webapp.extensions import db
    from webapp.models import Drawing
    from webapp.storage import get_store

    with app.app_context():
        rows = set(db.session.scalars(select(Drawing.object_key)))
        rows |= set(db.session.scalars(select(Drawing.strokes_key).where(Drawing.strokes_key.is_not(None))))
        return rows, {obj.key for obj in get_store().list("drawings/")}


# Whether the running test lets serve() check rows against objects (see the `orphans` marker).
_checking_store = {"on": True}


@pytest.fixture(autouse=True)
def _store_check_for_this_test(request):
    _checking_store["on"] = request.node.get_closest_marker("orphans") is None
    yield
    _checking_store["on"] = True


def serve(app, models_root, *, check_store: bool = True):
    """Yield ``app`` with a fresh database holding the tiny networks; close its connections after.

    Afterwards every drawing row must have its object and every drawing object its row (the
    invariant a failure halfway must not break); tests that make orphans on purpose say so
    with ``@pytest.mark.orphans``.
    """
    from webapp.extensions import db
    from webapp.storage import get_store

    reset_database(app, models_root)
    with app.app_context():
        store = get_store()
        for obj in list(store.list("drawings/")):  # a session-wide store: start this test empty
            store.delete(obj.key)
    yield app
    try:
        if check_store and _checking_store["on"]:
            with app.app_context():
                app.extensions["inkling.writer"].flush()
            rows, objects = stored_drawing_keys(app)
            assert rows == objects, (f"{len(rows - objects)} rows without their object, "
                                     f"{len(objects - rows)} objects without a row")
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(database_url, object_root, tmp_path, tiny_models):
    yield from serve(make_app(database_url, object_root, tmp_path), tiny_models[0])


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def admin_token(app, runner):
    """Headers for the admin API: an admin made with the CLI, and a token issued to it."""
    runner.invoke(args=["users", "create-admin", "root", "--password", "long enough"])
    token = runner.invoke(args=["users", "issue-token", "root"]).output.strip().splitlines()[-1]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def canvas_drawings(mnist):
    """Canvas-like drawings (data URLs) from MNIST test digits, with their labels."""
    from training.devset import generate

    return generate(mnist.x_test, mnist.y_test, per_variant=2, seed=11)
