"""The app as a whole: factory, configuration, migrations, pages, CLI, and architecture guards."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import select

from webapp.config import ConfigError, database_url, from_environment
from webapp.extensions import db
from webapp.models import ApiToken, User


def test_migrations_give_exactly_the_orm_schema(app):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with app.app_context():
        with db.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), db.metadata)
    assert differences == []


def test_schema_head_read_without_alembic_is_alembics(tmp_path):
    from alembic.script import ScriptDirectory

    from webapp import MIGRATIONS
    from webapp.schema import head_revision

    assert head_revision() == ScriptDirectory(str(MIGRATIONS)).get_current_head()
    # A branch (two scripts on one parent) has no single head: refused, not guessed.
    for name, revision, down in (("a", "0001", None), ("b", "0002", "0001"), ("c", "0003", "0001")):
        (tmp_path / f"{name}.py").write_text(f"revision = {revision!r}\ndown_revision = {down!r}\n")
    with pytest.raises(ValueError, match="one head"):
        head_revision(tmp_path)
    (tmp_path / "d.py").write_text("revision: str = '0004'\ndown_revision = ('0002', '0003')\n")  # a merge
    assert head_revision.__wrapped__(tmp_path) == "0004"


def test_flask_db_commands_work_from_the_command_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "INKLING_INSTANCE_PATH": str(tmp_path)}
    flask = [sys.executable, "-m", "flask", "--app", "webapp", "db"]
    upgraded = subprocess.run(flask + ["upgrade"], capture_output=True, text=True, env=env)
    assert upgraded.returncode == 0, upgraded.stderr[-2000:]
    current = subprocess.run(flask + ["current"], capture_output=True, text=True, env=env)
    from webapp.schema import head_revision

    assert current.returncode == 0 and head_revision() in current.stdout, current.stderr[-2000:]


def test_heroku_postgres_urls_are_rewritten(tmp_path):
    assert database_url("postgres://u:p@host:5432/db", tmp_path) == "postgresql+psycopg://u:p@host:5432/db"
    assert database_url("postgresql://h/db", tmp_path) == "postgresql+psycopg://h/db"
    assert database_url(None, tmp_path) == f"sqlite:///{tmp_path / 'inkling.sqlite'}"


def test_production_refuses_the_default_secret():
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        from_environment({"INKLING_ENV": "production"})
    config = from_environment({"INKLING_ENV": "production", "SECRET_KEY": "s" * 40,
                               "ALLOW_SQLITE": "1", "ALLOW_LOCAL_STORAGE": "1"})
    assert config["SESSION_COOKIE_SECURE"] is True


def test_s3_is_chosen_when_a_bucket_is_named(tmp_path):
    from webapp.storage import LocalObjectStore, S3ObjectStore, create_store

    local = from_environment({"INKLING_INSTANCE_PATH": str(tmp_path)})
    assert isinstance(create_store(local), LocalObjectStore)
    s3 = from_environment({"S3_BUCKET": "b", "S3_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x"})
    assert isinstance(create_store(s3), S3ObjectStore)


def test_a_web_process_does_not_import_alembic(tmp_path):
    """Flask-Migrate and Alembic are for commands; web workers answer /healthz without them (~10 MB)."""
    code = ("import sys; from webapp import create_app; app = create_app({'SQLALCHEMY_DATABASE_URI': "
            f"'sqlite:///{tmp_path}/x.sqlite'}}); client = app.test_client(); client.get('/healthz'); "
            "client.get('/'); bad = [m for m in ('alembic', 'flask_migrate', 'mako') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "INKLING_INSTANCE_PATH": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]


def test_creating_the_app_does_not_import_tensorflow(tmp_path):
    code = ("import sys; from webapp import create_app; app = create_app({'SQLALCHEMY_DATABASE_URI': "
            f"'sqlite:///{tmp_path}/x.sqlite'}}); client = app.test_client(); client.get('/'); "
            "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "INKLING_INSTANCE_PATH": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]


@pytest.mark.parametrize("path, needle", [
    ("/", "pad-canvas"), ("/contribute", "label-7"), ("/models", "model-tables"), ("/about", "Inkling"),
])
def test_pages_render_with_local_bootstrap(client, path, needle):
    response = client.get(path)
    assert response.status_code == 200 and needle in response.get_data(as_text=True)
    html = response.get_data(as_text=True)
    assert "/bootstrap/static/" in html and "cdn" not in html.lower()
    assert "<script>" not in html  # no inline scripts: the CSP of issue #7 forbids them


def test_local_bootstrap_assets_are_served(client):
    html = client.get("/").get_data(as_text=True)
    import re

    for asset in re.findall(r'(?:href|src)="(/bootstrap/static/[^"]+)"', html):
        assert client.get(asset).status_code == 200, asset


def test_unknown_page_is_a_readable_html_404(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "not found" in response.get_data(as_text=True).lower()


def test_visitors_get_an_anonymous_client_cookie(client):
    response = client.get("/")
    cookie = response.headers.get("Set-Cookie", "")
    assert "inkling_client=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_create_admin_and_issue_token(app, runner):
    result = runner.invoke(args=["users", "create-admin", "ada", "--password", "correct horse"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["users", "issue-token", "ada"])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert len(token) >= 40
    from webapp.cli import hash_token

    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "ada"))
        assert user.is_admin and user.password_hash != "correct horse"
        stored = db.session.scalar(select(ApiToken).where(ApiToken.user_id == user.id))
        assert stored.token_sha256 == hash_token(token)  # only the hash is kept
    assert runner.invoke(args=["users", "issue-token", "nobody"]).exit_code != 0
    assert runner.invoke(args=["users", "create-admin", "bob", "--password", "short"]).exit_code != 0


def test_import_base_is_idempotent(app, runner, tiny_models):
    result = runner.invoke(args=["models", "import-base", "--path", str(tiny_models[0])])
    assert result.exit_code == 0 and "already has versions" in result.output
    listing = runner.invoke(args=["models", "list"])
    assert "cnn v1  active" in listing.output


def test_import_base_registers_version_one_on_an_empty_registry(app, runner, tiny_models):
    from webapp.models import ModelVersion

    with app.app_context():
        db.session.execute(ModelVersion.__table__.delete())
        db.session.commit()
    result = runner.invoke(args=["models", "import-base", "--path", str(tiny_models[0])])
    assert result.exit_code == 0, result.output
    assert "fnn: registered v1" in result.output and "cnn: registered v1" in result.output
    with app.app_context():
        rows = db.session.scalars(select(ModelVersion)).all()
        assert sorted((r.name, r.version, r.status) for r in rows) == [("cnn", 1, "active"), ("fnn", 1, "active")]
        store = app.extensions["inkling.store"]
        assert all(store.exists(r.onnx_key) for r in rows)
