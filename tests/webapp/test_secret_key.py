"""The signing key: never a public one, made once per instance folder and shared by every process."""

from __future__ import annotations

import multiprocessing
import stat

import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from webapp.config import ConfigError, from_environment
from webapp.secret_key import SECRET_FILE, load_or_create

from .conftest import make_app, serve

OLD_DEFAULT = "dev-only-inkling-secret"
PASSWORD = "long enough"


def test_an_unset_key_is_made_once_private_and_reused(tmp_path):
    from webapp import create_app

    first = create_app({"INSTANCE_PATH": str(tmp_path), "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/x.sqlite"})
    path = tmp_path / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = first.config["SECRET_KEY"]
    assert len(key) >= 48 and key == path.read_text().strip() and key != OLD_DEFAULT
    again = create_app({"INSTANCE_PATH": str(tmp_path), "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/x.sqlite"})
    assert again.config["SECRET_KEY"] == key
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{SECRET_FILE}")] == []


def test_another_instance_folder_gets_another_key(tmp_path):
    assert load_or_create(tmp_path / "a") != load_or_create(tmp_path / "b")


def test_processes_starting_together_all_get_the_same_key(tmp_path):
    # What gunicorn's workers and the Celery worker do on a first `make run`.
    with multiprocessing.get_context("fork").Pool(8) as pool:
        keys = pool.map(load_or_create, [tmp_path] * 32)
    assert len(set(keys)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [SECRET_FILE]


def test_a_key_file_others_can_read_or_an_empty_one_is_refused(tmp_path):
    path = tmp_path / SECRET_FILE
    load_or_create(tmp_path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_or_create(tmp_path)
    path.write_text("")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="delete it"):
        load_or_create(tmp_path)


@pytest.mark.parametrize("key", [OLD_DEFAULT, "dev", "secret", "changeme", "CHANGEME", "your-secret-key",
                                 "192b9bdd22ab9ed4d12e236c78afcb9a393ec15f71bbf5dc987d54727823bcbf",
                                 "short-but-random-x"])
@pytest.mark.parametrize("env", ["development", "production"])
def test_public_or_short_keys_are_refused_in_every_environment(key, env):
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        from_environment({"INKLING_ENV": env, "SECRET_KEY": key, "ALLOW_SQLITE": "1", "ALLOW_LOCAL_STORAGE": "1"})


def test_create_app_refuses_a_public_key_except_in_the_test_suite(tmp_path):
    from webapp import create_app

    config = {"INSTANCE_PATH": str(tmp_path), "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/x.sqlite",
              "SECRET_KEY": OLD_DEFAULT}
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app(config)
    assert create_app({**config, "TESTING": True}).config["SECRET_KEY"] == OLD_DEFAULT
    # A test app with no key gets a random one of its own, not a shared public one.
    testing = {**config, "TESTING": True, "SECRET_KEY": None}
    assert create_app(testing).config["SECRET_KEY"] != create_app(testing).config["SECRET_KEY"]


@pytest.fixture
def default_app(database_url, object_root, tmp_path, tiny_models):
    """The app as `make run` starts it: no SECRET_KEY anywhere, not in testing mode."""
    yield from serve(make_app(database_url, object_root, tmp_path, TESTING=False, SECRET_KEY=None), tiny_models[0])


def test_a_session_forged_with_the_old_default_key_opens_nothing(default_app):
    from flask_login.utils import _create_identifier

    from webapp.extensions import db
    from webapp.models import User

    runner = default_app.test_cli_runner()
    assert runner.invoke(args=["users", "create-admin", "root", "--password", PASSWORD]).exit_code == 0
    with default_app.app_context():
        session_id = db.session.scalars(db.select(User)).one().get_id()
    client = default_app.test_client()
    # What "strong" session protection expects from this client's address and User-Agent.
    with default_app.test_request_context("/admin/", environ_base=client.environ_base):
        identifier = _create_identifier()
    forger = Flask("forger")
    forger.secret_key = OLD_DEFAULT
    cookie = SecureCookieSessionInterface().get_signing_serializer(forger).dumps(
        {"_user_id": session_id, "_fresh": True, "_id": identifier})
    client.set_cookie("session", cookie)
    response = client.get("/admin/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/admin/login")
    assert client.get("/api/v1/training-runs").status_code == 401
