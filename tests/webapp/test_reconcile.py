"""`flask storage reconcile` and a database that fails after the object was written, on the local
store and on S3 over HTTP (moto's server)."""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from bench import corpus
from webapp.extensions import db
from webapp.models import Drawing
from webapp.storage import StorageUnavailable, get_store

from .conftest import make_app, serve
from .test_storage import monkeypatch_module, s3_config, s3_endpoint  # noqa: F401  (fixtures)


@pytest.fixture(params=["local", "s3"])
def any_app(request, database_url, tmp_path, tiny_models):
    """The app with its own local store folder, then with its own prefix in an S3 bucket."""
    if request.param == "local":
        app = make_app(database_url, tmp_path / "objects", tmp_path)
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        app = make_app(database_url, tmp_path / "unused", tmp_path,
                       **s3_config(endpoint, S3_PREFIX=f"{request.module.__name__.rsplit('.', 1)[-1]}{time.monotonic_ns()}/"))
    app.store_kind = request.param
    yield from serve(app, tiny_models[0])


def image(size=(100, 100)) -> str:
    return corpus.data_url(corpus.encode(corpus.digit_image(size)))


def keys(app) -> set[str]:
    with app.app_context():
        return {obj.key for obj in get_store().list("drawings/")}


def row_keys(app) -> set[str]:
    with app.app_context():
        return set(db.session.scalars(select(Drawing.object_key)))


def age(app, key: str, seconds: int) -> None:
    """Make an object look ``seconds`` old (S3 cannot backdate, so the local store only)."""
    path = app.extensions["inkling.store"]._path(key)
    then = time.time() - seconds
    os.utime(path, (then, then))


def reconcile(app, *args: str):
    result = app.test_cli_runner().invoke(args=["storage", "reconcile", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


@pytest.mark.orphans
def test_reconcile_removes_old_orphans_and_reports_missing_objects(any_app):
    client = any_app.test_client()
    saved = [client.post("/api/v1/drawings", json={"image": image(), "label": n}).json["id"] for n in (1, 2, 3)]
    with any_app.app_context():
        store = get_store()
        store.put("drawings/aa/orphan-old.png", b"\x89PNG old", content_type="image/png")
        store.put("drawings/bb/orphan-new.png", b"\x89PNG new", content_type="image/png")
        store.put("models/not-a-drawing.bin", b"x", content_type="application/octet-stream")
        lost = db.session.get(Drawing, saved[0])
        store.delete(lost.object_key)
        lost_key = lost.object_key
    if any_app.store_kind == "local":
        age(any_app, "drawings/aa/orphan-old.png", 7200)
        older_than = "3600"
    else:
        older_than = "0"

    dry = reconcile(any_app, "--older-than", older_than, "--dry-run")
    assert dry.exit_code == 0
    assert "would remove drawings/aa/orphan-old.png" in dry.output
    assert f"missing object for drawing {saved[0]}: {lost_key}" in dry.output
    assert "drawings/aa/orphan-old.png" in keys(any_app)  # nothing removed

    done = reconcile(any_app, "--older-than", older_than)
    assert done.exit_code == 0, done.output
    assert "removed drawings/aa/orphan-old.png" in done.output
    remaining = keys(any_app)
    assert "drawings/aa/orphan-old.png" not in remaining
    if any_app.store_kind == "local":  # younger than an hour: a save may be about to commit its row
        assert "drawings/bb/orphan-new.png" in remaining and "kept 1 younger than 3600 s" in done.output
    else:
        assert "drawings/bb/orphan-new.png" not in remaining
    with any_app.app_context():
        assert get_store().exists("models/not-a-drawing.bin")  # only drawings/ is reconciled
        assert db.session.get(Drawing, saved[0]) is not None  # rows are reported, never deleted
    assert "1 rows missing their object" in done.output
    assert row_keys(any_app) - remaining == {lost_key}


@pytest.mark.orphans
def test_the_default_keeps_orphans_younger_than_an_hour(any_app):
    with any_app.app_context():
        get_store().put("drawings/cc/just-written.png", b"\x89PNG", content_type="image/png")
    result = reconcile(any_app)
    assert result.exit_code == 0 and "0 rows missing" in result.output
    assert "drawings/cc/just-written.png" in keys(any_app)


def fail_commits(monkeypatch):
    def failing_commit():
        raise OperationalError("COMMIT", {}, Exception("connection lost"))

    monkeypatch.setattr(db.session, "commit", failing_commit)


def test_a_commit_failing_after_the_object_was_written_is_503_and_removes_the_object(any_app, monkeypatch):
    client = any_app.test_client()
    written = []
    store = any_app.extensions["inkling.store"]
    real_put = store.put

    def recording_put(key, data, **kwargs):
        real_put(key, data, **kwargs)
        written.append(key)

    monkeypatch.setattr(store, "put", recording_put)
    with any_app.app_context():
        fail_commits(monkeypatch)
        response = client.post("/api/v1/drawings", json={"image": image(), "label": 3,
                                                         "id": "0b0e6c2e-6f3a-4c55-9a65-1d2c3b4a5f60"})
    assert response.status_code == 503 and response.json["code"] == "database_unavailable"
    assert len(written) == 1  # the object was written, then removed
    monkeypatch.undo()
    assert keys(any_app) == set() and row_keys(any_app) == set()


def test_when_the_undo_fails_too_the_reconciler_removes_the_orphan(any_app, monkeypatch):
    client = any_app.test_client()
    store = any_app.extensions["inkling.store"]

    def broken_delete(key):
        raise StorageUnavailable("gone for a moment")

    monkeypatch.setattr(store, "delete", broken_delete)
    with any_app.app_context():
        fail_commits(monkeypatch)
        response = client.post("/api/v1/drawings", json={"image": image(), "label": 3})
    assert response.status_code == 503
    monkeypatch.undo()
    orphans = keys(any_app)
    assert len(orphans) == 1 and row_keys(any_app) == set()
    result = reconcile(any_app, "--older-than", "0")
    assert result.exit_code == 0 and f"removed {orphans.pop()}" in result.output
    assert keys(any_app) == set()


def test_a_store_that_cannot_be_listed_is_a_clean_error(any_app, monkeypatch):
    def broken_list(prefix=""):
        raise StorageUnavailable("no route to host")

    monkeypatch.setattr(any_app.extensions["inkling.store"], "list", broken_list)
    result = any_app.test_cli_runner().invoke(args=["storage", "reconcile"])
    assert result.exit_code == 1 and "cannot list the object store" in result.output
