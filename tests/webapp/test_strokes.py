"""Strokes on SQLite and PostgreSQL: checked strictly (bad ones 400, nothing stored), kept next to the image,
read back by whoever may see the drawing, and gone with it."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from bench.strokes import image_of, typical_strokes
from webapp.errors import ServiceError
from webapp.extensions import db
from webapp.models import Drawing
from webapp.storage import StorageUnavailable, get_store
from webapp.strokes import MAX_DURATION_MS, MAX_POINTS, MAX_STROKES, load_strokes

from .test_privacy import reader_token  # noqa: F401  (fixture)
from .test_reconcile import age, reconcile
from .test_retention import backdate, prune

SIZE = 280
STROKES = typical_strokes(1, size=SIZE)
IMAGE = image_of(STROKES, SIZE)


def counts(app) -> tuple[int, int]:
    """(drawing rows, drawing objects in the store)."""
    with app.app_context():
        rows = db.session.scalar(select(func.count()).select_from(Drawing))
        return rows, sum(1 for _ in get_store().list("drawings/"))


def contribute(client, strokes=STROKES, **extra):
    return client.post("/api/v1/drawings", json={"image": IMAGE, "label": 3, "strokes": strokes, **extra})


def stroke(x, y, t):
    return {"x": x, "y": y, "t": t}


def test_strokes_come_back_as_sent_and_are_kept_next_to_the_image(app, client):
    response = contribute(client)
    assert response.status_code == 201, response.json
    drawing_id = response.json["id"]
    meta = client.get(f"/api/v1/drawings/{drawing_id}").json
    assert meta["strokes_url"] == f"/api/v1/drawings/{drawing_id}/strokes"
    answer = client.get(meta["strokes_url"])
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    assert answer.json == {"id": drawing_id, "width": SIZE, "height": SIZE, "strokes": STROKES}
    with app.app_context():
        row = db.session.get(Drawing, drawing_id)
        assert row.strokes_key == row.object_key.removesuffix(".png") + ".strokes.json"
        assert load_strokes(row) == STROKES
        stored = get_store().get(row.strokes_key)
    assert json.loads(stored) == STROKES and b" " not in stored  # compact
    assert counts(app) == (1, 2)


def test_a_multipart_upload_sends_strokes_as_json_text(app, client):
    import base64
    import io

    png = base64.b64decode(IMAGE.split(",", 1)[1])
    response = client.post("/api/v1/drawings", data={"image": (io.BytesIO(png), "d.png"), "label": "4",
                                                     "strokes": json.dumps(STROKES)},
                           content_type="multipart/form-data")
    assert response.status_code == 201, response.json
    assert client.get(f"/api/v1/drawings/{response.json['id']}/strokes").json["strokes"] == STROKES
    refused = client.post("/api/v1/drawings", data={"image": (io.BytesIO(png), "d.png"), "label": "4",
                                                    "strokes": "[{oops"}, content_type="multipart/form-data")
    assert refused.status_code == 400 and refused.json["code"] == "invalid_strokes"
    deep = client.post("/api/v1/drawings", data={"image": (io.BytesIO(png), "d.png"), "label": "4",
                                                 "strokes": "[" * 5000 + "]" * 5000}, content_type="multipart/form-data")
    assert deep.status_code == 400 and deep.json["code"] == "invalid_strokes"
    assert counts(app) == (1, 2)


def test_a_rated_prediction_keeps_its_strokes(app, client):
    answer = client.post("/api/v1/predictions", json={"image": IMAGE, "strokes": STROKES})
    assert answer.status_code == 200 and answer.json["id"]
    assert client.post(f"/api/v1/predictions/{answer.json['id']}/feedback", json={"label": 8}).status_code == 201
    meta = client.get(f"/api/v1/drawings/{answer.json['id']}").json
    assert meta["source"] == "feedback"
    assert client.get(meta["strokes_url"]).json["strokes"] == STROKES


def test_write_behind_stores_strokes_with_the_prediction(app, client):
    app.config["PREDICTION_WRITE_BEHIND"] = True
    answer = client.post("/api/v1/predictions", json={"image": IMAGE, "strokes": STROKES}).json
    app.extensions["inkling.writer"].flush()
    assert client.get(f"/api/v1/drawings/{answer['id']}/strokes").json["strokes"] == STROKES


def test_drawings_without_strokes_stay_valid(app, client):
    for body in ({"image": IMAGE, "label": 3}, {"image": IMAGE, "label": 3, "strokes": None}):
        response = client.post("/api/v1/drawings", json=body)
        assert response.status_code == 201
        assert client.get(f"/api/v1/drawings/{response.json['id']}").json["strokes_url"] is None
        missing = client.get(f"/api/v1/drawings/{response.json['id']}/strokes")
        assert missing.status_code == 404 and missing.json["code"] == "no_strokes"
        with app.app_context():
            assert load_strokes(db.session.get(Drawing, response.json["id"])) is None
    assert counts(app) == (2, 2)


def _bad_strokes() -> list[tuple[str, object, str]]:
    """(case, strokes, words the error must contain), each on a 280 x 280 image."""
    one = stroke([10, 20], [10, 20], [0, 10])
    return [
        ("an object", one, "non-empty list"),
        ("a string", json.dumps([one]), "non-empty list"),
        ("empty", [], "non-empty list"),
        ("too many strokes", [stroke([1], [1], [i]) for i in range(MAX_STROKES + 1)], f"at most {MAX_STROKES}"),
        ("too many points", [stroke([1] * 900, [1] * 900, [0] * 900)] * 5, f"at most {MAX_POINTS:,} points"),
        ("a list stroke", [[[1], [1], [0]]], "strokes[0] must be an object"),
        ("t missing", [{"x": [1], "y": [1]}], "exactly the keys"),
        ("an extra key", [{**one, "p": [0.5, 0.5]}], "exactly the keys"),
        ("x not a list", [stroke("12", [1, 2], [0, 1])], "each be a list"),
        ("unequal lengths", [stroke([1, 2, 3], [1, 2], [0, 1])], "same length"),
        ("no points", [stroke([], [], [])], "same length, at least 1"),
        ("a bool", [stroke([True, 2], [1, 2], [0, 1])], "strokes[0].x[0]"),
        ("a string number", [one, stroke([1, "2"], [1, 2], [20, 30])], "strokes[1].x[1]"),
        ("a null", [stroke([1, 2], [1, None], [0, 1])], "strokes[0].y[1]"),
        ("a list number", [stroke([1, 2], [1, 2], [0, [1]])], "strokes[0].t[1]"),
        ("x past the right edge", [stroke([1, SIZE + 10], [1, 2], [0, 1])], "from -2 to 282"),
        ("x left of the canvas", [stroke([-5], [1], [0])], "strokes[0].x[0]"),
        ("y below the canvas", [stroke([1], [SIZE + 3], [0])], "strokes[0].y[0]"),
        ("t going back", [stroke([1, 2, 3], [1, 2, 3], [0, 20, 10])], "strokes[0].t[2] is before the point before it"),
        ("t going back across strokes", [one, stroke([1], [1], [5])], "strokes[1].t[0] is before"),
        ("t negative", [stroke([1], [1], [-1])], "from 0 to"),
        ("t too long", [stroke([1], [1], [MAX_DURATION_MS + 1])], "from 0 to"),
    ]


@pytest.mark.parametrize("case, strokes, words", _bad_strokes(), ids=[case[0] for case in _bad_strokes()])
def test_bad_strokes_are_400_json_naming_the_fault_and_store_nothing(app, client, case, strokes, words):
    for path, body in (("/api/v1/drawings", {"label": 3}), ("/api/v1/predictions", {})):
        response = client.post(path, json={"image": IMAGE, "strokes": strokes, **body})
        assert response.status_code == 400, (path, response.json)
        assert response.json["code"] == "invalid_strokes" and words in response.json["error"], response.json
    assert counts(app) == (0, 0)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999", "1" + "0" * 400])
def test_numbers_json_should_not_hold_are_refused(app, client, number):
    """Python's JSON reader takes NaN and Infinity, and 1e999 becomes infinity: none is a position."""
    body = '{"image": %s, "label": 3, "strokes": [{"x": [1, %s], "y": [1, 2], "t": [0, 1]}]}' % (
        json.dumps(IMAGE), number)
    response = client.post("/api/v1/drawings", data=body, content_type="application/json")
    assert response.status_code == 400 and response.json["code"] == "invalid_strokes", response.json
    assert "strokes[0].x[1]" in response.json["error"]
    assert counts(app) == (0, 0)


def test_the_tolerance_at_the_edges(app, client):
    edges = [stroke([0, SIZE, -2, SIZE + 2], [SIZE, 0, SIZE + 2, -2], [0, 0, 0, MAX_DURATION_MS])]
    response = contribute(client, edges)
    assert response.status_code == 201, response.json
    assert client.get(f"/api/v1/drawings/{response.json['id']}/strokes").json["strokes"] == edges


def test_strokes_are_read_by_whoever_may_see_the_image(app, client, reader_token):  # noqa: F811
    drawing_id = contribute(client).json["id"]
    path = f"/api/v1/drawings/{drawing_id}/strokes"
    stranger = app.test_client()
    for who, headers, status in ((client, {}, 200), (stranger, {}, 404), (stranger, reader_token, 200)):
        assert who.get(path, headers=headers).status_code == status
        assert who.get(f"/api/v1/drawings/{drawing_id}/image", headers=headers).status_code == status
    # As for an id nobody has: an id cannot be confirmed to exist.
    assert stranger.get(path).json == {"error": "no drawing with that id", "code": "not_found"}
    assert client.get("/api/v1/drawings/00000000-0000-4000-8000-000000000000/strokes").status_code == 404
    app.config["PUBLIC_DATASET"] = True
    assert stranger.get(path).status_code == 200


def test_deleting_a_drawing_deletes_its_strokes(app, client):
    drawing_id = contribute(client).json["id"]
    assert counts(app) == (1, 2)
    assert app.test_client().delete(f"/api/v1/drawings/{drawing_id}").status_code == 404  # not theirs
    assert client.delete(f"/api/v1/drawings/{drawing_id}").status_code == 200
    assert counts(app) == (0, 0)


def test_the_retention_prune_deletes_strokes_too(app, client):
    expired = client.post("/api/v1/predictions", json={"image": IMAGE, "strokes": STROKES}).json["id"]
    kept = contribute(client).json["id"]
    backdate(app, [expired, kept], days=30)
    result = prune(app)
    assert result.exit_code == 0, result.output
    assert "deleted 1 expired predictions and 2 objects" in result.output
    with app.app_context():
        row = db.session.get(Drawing, kept)
        assert {obj.key for obj in get_store().list("drawings/")} == {row.object_key, row.strokes_key}


def test_reconcile_removes_orphan_strokes_and_keeps_a_rows(app, client):
    drawing_id = contribute(client).json["id"]
    orphan = "drawings/ab/abandoned.strokes.json"
    with app.app_context():
        get_store().put(orphan, b"[]", content_type="application/json")
        row = db.session.get(Drawing, drawing_id)
        kept = {row.object_key, row.strokes_key}
    for key in (orphan, *kept):
        age(app, key, 7200)
    output = reconcile(app).output
    assert f"removed {orphan}" in output and "0 rows missing their object" in output
    with app.app_context():
        assert {obj.key for obj in get_store().list("drawings/")} == kept
        get_store().delete(row.strokes_key)
    assert f"missing object for drawing {drawing_id}: {row.strokes_key}" in reconcile(app).output
    with app.app_context():  # put back, for the fixture's own check of rows against objects
        get_store().put(row.strokes_key, b"[]", content_type="application/json")


@pytest.mark.parametrize("path, body", [("/api/v1/drawings", {"label": 3}), ("/api/v1/predictions", {})])
def test_a_store_failing_halfway_leaves_nothing(app, client, monkeypatch, path, body):
    """The image is written, its strokes are not: the image goes too, and no row is written."""
    store = app.extensions["inkling.store"]
    real_put = store.put
    written = []

    def put(key, data, *, content_type):
        if key.endswith(".strokes.json"):
            raise StorageUnavailable("disk full")
        real_put(key, data, content_type=content_type)
        written.append(key)

    monkeypatch.setattr(store, "put", put)
    response = client.post(path, json={"image": IMAGE, "strokes": STROKES, **body})
    if path == "/api/v1/drawings":
        assert response.status_code == 503 and response.json["code"] == "storage_unavailable"
    else:  # answered, but not stored: nothing to rate
        assert response.status_code == 200 and response.json["id"] is None
    assert len(written) == 1
    assert counts(app) == (0, 0)


def test_a_database_failure_after_both_objects_removes_both(app, client, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def failing_commit():
        raise OperationalError("COMMIT", {}, Exception("connection lost"))

    with app.app_context():
        monkeypatch.setattr(db.session, "commit", failing_commit)
        response = contribute(client)
    assert response.status_code == 503 and response.json["code"] == "database_unavailable"
    monkeypatch.undo()
    assert counts(app) == (0, 0)


def test_the_image_failing_removes_the_strokes_already_written(app, client, monkeypatch):
    """The strokes are written while the networks read the drawing: if the image's write then fails,
    they go too."""
    store = app.extensions["inkling.store"]
    real_put = store.put

    def put(key, data, *, content_type):
        if not key.endswith(".strokes.json"):
            raise StorageUnavailable("disk full")
        real_put(key, data, content_type=content_type)

    monkeypatch.setattr(store, "put", put)
    response = contribute(client)
    assert response.status_code == 503 and response.json["code"] == "storage_unavailable"
    assert counts(app) == (0, 0)


def test_a_failure_before_the_image_is_written_removes_the_strokes(app, client, monkeypatch):
    """Whatever stops a contribution after its strokes went ahead (here the confirmation policy
    breaking), no object is left behind."""
    import webapp.services

    def broken_policy(row, cnn):
        raise ServiceError(503, "database_unavailable", "the database is unavailable; try again shortly")

    monkeypatch.setattr(webapp.services, "_policy_confirmation", broken_policy)
    response = contribute(client)
    assert response.status_code == 503
    assert counts(app) == (0, 0)
