"""Production settings: refusals, JSON logs with request ids, readiness, and the Heroku files."""

from __future__ import annotations

import io
import json
import logging
import re
import runpy
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from webapp.config import ConfigError, from_environment
from webapp.extensions import db
from webapp.logs import JsonFormatter, install_json_logging

from .conftest import make_app, serve

ROOT = Path(__file__).resolve().parents[2]
# What a Heroku app with its add-ons and the S3 variables has.
HEROKU = {"INKLING_ENV": "production", "SECRET_KEY": "k" * 48, "DATABASE_URL": "postgres://u:p@db.example:5432/d",
          "REDIS_URL": "rediss://:p@kv.example:6380", "S3_BUCKET": "inkling-prod"}


def without(*names: str, **extra) -> dict:
    return {**{key: value for key, value in HEROKU.items() if key not in names}, **extra}


# ---- refusals ------------------------------------------------------------------------------

def test_a_complete_heroku_environment_is_accepted():
    config = from_environment(HEROKU)
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@db.example:5432/d"
    assert config["LOG_FORMAT"] == "json" and config["SESSION_COOKIE_SECURE"] is True


@pytest.mark.parametrize("missing, named", [
    (("SECRET_KEY",), "SECRET_KEY"),
    (("DATABASE_URL",), "DATABASE_URL"),
    (("REDIS_URL",), "REDIS_URL"),
    (("S3_BUCKET",), "S3_BUCKET"),
])
def test_production_refuses_what_only_works_on_one_machine(missing, named):
    with pytest.raises(ConfigError, match=named) as refused:
        from_environment(without(*missing))
    assert "production" in str(refused.value)
    for other in {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "S3_BUCKET"} - {named}:
        assert other not in str(refused.value)


def test_an_explicit_sqlite_url_and_the_default_secret_are_refused_too():
    with pytest.raises(ConfigError, match="not SQLite"):
        from_environment({**HEROKU, "DATABASE_URL": "sqlite:////tmp/inkling.sqlite"})
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        from_environment({**HEROKU, "SECRET_KEY": "dev-only-inkling-secret"})


def test_every_problem_is_named_at_once():
    with pytest.raises(ConfigError) as refused:
        from_environment({"INKLING_ENV": "production"})
    message = str(refused.value)
    assert [name for name in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "S3_BUCKET") if name in message] == [
        "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "S3_BUCKET"]
    assert "ALLOW_SQLITE=1" in message and "ALLOW_LOCAL_STORAGE=1" in message


def test_single_machine_installs_opt_in_explicitly(tmp_path):
    config = from_environment({"INKLING_ENV": "production", "SECRET_KEY": "k" * 48, "ALLOW_SQLITE": "1",
                               "ALLOW_LOCAL_STORAGE": "1", "INKLING_INSTANCE_PATH": str(tmp_path)})
    assert config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///") and config["S3_BUCKET"] is None
    with pytest.raises(ConfigError, match="S3_BUCKET"):  # one allowance does not grant the other
        from_environment(without("S3_BUCKET", "DATABASE_URL", ALLOW_SQLITE="1"))
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        from_environment(without("S3_BUCKET", "DATABASE_URL", ALLOW_LOCAL_STORAGE="1"))


def test_development_needs_none_of_it(tmp_path):
    config = from_environment({"INKLING_INSTANCE_PATH": str(tmp_path)})
    assert config["INKLING_ENV"] == "development" and config["LOG_FORMAT"] == "text"


def test_a_misspelt_environment_is_refused_rather_than_taken_for_development():
    with pytest.raises(ConfigError, match="INKLING_ENV"):
        from_environment({**HEROKU, "INKLING_ENV": "prod"})


def test_create_app_refuses_to_start(monkeypatch):
    from webapp import create_app

    for name in ("DATABASE_URL", "REDIS_URL", "S3_BUCKET", "SECRET_KEY", "ALLOW_SQLITE", "ALLOW_LOCAL_STORAGE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INKLING_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "k" * 48)
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        create_app()


# ---- structured logs -----------------------------------------------------------------------

@pytest.fixture
def json_log():
    """The root logger's JSON handler, writing into a buffer; removed afterwards."""
    buffer = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = install_json_logging("INFO", stream=buffer)
    handler.setStream(buffer)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(level)


def test_json_lines_carry_heroku_s_request_id(database_url, object_root, tmp_path, tiny_models, json_log):
    app = make_app(database_url, object_root, tmp_path, LOG_FORMAT="json")

    @app.get("/_log")
    def log_something():
        logging.getLogger("inkling.test").warning("stored %d drawings", 3, extra={"drawings": 3})
        try:
            raise ValueError("broken")
        except ValueError:
            logging.getLogger("inkling.test").exception("it failed")
        return ""

    for _ in serve(app, tiny_models[0]):
        client = app.test_client()
        client.get("/_log", headers={"X-Request-ID": "f6b5c2d1-0c1e-4d8a-9b0e-5a1f2f0e9c3d"})
        client.get("/_log")
    lines = [line for line in json_log() if line["logger"] == "inkling.test"]
    assert len(lines) == 4
    first, failed, untagged = lines[0], lines[1], lines[2]
    assert first["message"] == "stored 3 drawings" and first["level"] == "WARNING" and first["drawings"] == 3
    assert first["request_id"] == "f6b5c2d1-0c1e-4d8a-9b0e-5a1f2f0e9c3d" and isinstance(first["pid"], int)
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00\Z", first["time"])
    assert failed["level"] == "ERROR" and "ValueError: broken" in failed["exception"]
    assert "request_id" not in untagged


def test_json_logging_is_installed_once_and_tells_celery_to_keep_it(database_url, object_root, tmp_path, json_log):
    first = make_app(database_url, object_root, tmp_path, LOG_FORMAT="json")
    make_app(database_url, object_root, tmp_path, LOG_FORMAT="json")
    ours = [h for h in logging.getLogger().handlers if getattr(h, "inkling_json", False)]
    assert len(ours) == 1
    assert first.extensions["celery"].conf.worker_hijack_root_logger is False


def test_a_line_logged_inside_a_celery_task_names_the_task(json_log):
    from celery import Celery

    celery = Celery("logs-test", set_as_current=False)

    @celery.task(name="inkling.test_logging")
    def noisy():
        logging.getLogger("inkling.test").info("inside")

    noisy.apply(task_id="run-123")
    line = next(line for line in json_log() if line["message"] == "inside")
    assert line["task_id"] == "run-123" and line["task"] == "inkling.test_logging"


def test_log_values_that_are_not_json_are_written_as_text():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "path %s", (Path("/tmp"),), None)
    record.where = Path("/srv")
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "path /tmp" and line["where"] == "/srv"


# ---- readiness -----------------------------------------------------------------------------

@pytest.fixture
def fresh_app(database_url, object_root, tmp_path, tiny_models):
    yield from serve(make_app(database_url, object_root, tmp_path), tiny_models[0])


def test_healthz_is_ready_with_the_schema_the_models_and_the_store(fresh_app):
    response = fresh_app.test_client().get("/healthz")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    body = response.json
    assert body["status"] == "ok" and isinstance(body["pid"], int)
    assert body["checks"]["database"] == {"ok": True, "revision": body["checks"]["database"]["revision"]}
    assert body["checks"]["database"]["revision"] is not None
    assert body["checks"]["models"]["versions"] == {"fnn": 1, "cnn": 1}


def test_healthz_is_503_before_the_release_phase_migrated(fresh_app):
    with fresh_app.app_context():
        current = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        db.session.execute(text("UPDATE alembic_version SET version_num = '0001'"))
        db.session.commit()
    try:
        response = fresh_app.test_client().get("/healthz")
        assert response.status_code == 503 and response.json["status"] == "unavailable"
        assert "flask db upgrade" in response.json["checks"]["database"]["error"]
    finally:
        with fresh_app.app_context():
            db.session.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": current})
            db.session.commit()


def test_healthz_is_503_when_the_database_is_down(fresh_app, monkeypatch):
    from sqlalchemy.exc import OperationalError

    client = fresh_app.test_client()
    assert client.get("/healthz").status_code == 200  # models loaded while it was up

    def down(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    with fresh_app.app_context():
        monkeypatch.setattr(db.session, "execute", down)
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json["checks"]["database"] == {"ok": False, "error": "OperationalError"}
    assert response.json["checks"]["models"]["ok"] is True  # still serving what it loaded


# ---- the Heroku files ----------------------------------------------------------------------

def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line and not line.startswith("#"):
            name, command = line.split(":", 1)
            entries[name] = command.strip()
    return entries


def test_procfile_runs_web_worker_and_release():
    entries = procfile()
    assert set(entries) == {"web", "worker", "release"}
    assert re.match(r"(MALLOC_\w+=\d+ )*gunicorn --config gunicorn.conf.py ", entries["web"]) and "webapp:create_app()" in entries["web"]
    assert entries["worker"].startswith("REMAP_SIGTERM=SIGQUIT celery -A workers.celery_app worker")
    # One training run at a time: webapp/broker.py sets it, and the Procfile must not override it.
    assert "--concurrency" not in entries["worker"]
    assert entries["release"] == "flask --app webapp db upgrade"


def test_the_worker_runs_one_task_at_a_time(app):
    assert app.extensions["celery"].conf.worker_concurrency == 1


def test_gunicorn_config_binds_port_and_creates_the_app_after_the_fork(monkeypatch):
    monkeypatch.setenv("PORT", "31337")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert settings["bind"] == "0.0.0.0:31337" and settings["workers"] == 3
    assert settings["preload_app"] is False and settings["timeout"] <= 30 and settings["graceful_timeout"] < 30
    assert callable(settings["post_worker_init"]) and callable(settings["worker_exit"])


def test_python_version_files_agree_with_each_other_and_this_interpreter():
    runtime = (ROOT / "runtime.txt").read_text().strip()
    version = (ROOT / ".python-version").read_text().strip()
    assert runtime == f"python-{version}"
    assert version == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_requirements_are_pinned():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][A-Za-z0-9.]*", line), line


def test_app_json_describes_a_heroku_button_deployment():
    app = json.loads((ROOT / "app.json").read_text())
    plans = [addon["plan"] if isinstance(addon, dict) else addon for addon in app["addons"]]
    # Heroku Scheduler runs the hourly prune of expired predictions (the worker runs no beat there).
    assert sorted(plan.split(":")[0] for plan in plans) == ["heroku-postgresql", "heroku-redis", "scheduler"]
    env = app["env"]
    assert env["SECRET_KEY"]["generator"] == "secret" and env["INKLING_ENV"]["value"] == "production"
    for name in ("S3_BUCKET", "S3_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name]["description"] and env[name]["required"] is True
    assert set(app["formation"]) == {"web", "worker"}
    postdeploy = app["scripts"]["postdeploy"]["command"]
    # Import when the registry is empty and trained files exist; otherwise train, then import.
    assert re.fullmatch(r"flask --app webapp models import-base --path (\S+) \|\| "
                        r"\(python -m training\.train --out \1 && flask --app webapp models import-base --path \1\)",
                        postdeploy), postdeploy
