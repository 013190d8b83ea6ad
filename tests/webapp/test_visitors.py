"""Visitors on SQLite and PostgreSQL: a signed anonymous cookie, predictions only their asker may
rate or flag (and admins), and ratings that may arrive before their prediction is stored."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from tests.webapp.conftest import make_app
from tests.webapp.test_admin import csrf_from, log_in
from webapp import issued_ids
from webapp.extensions import db
from webapp.models import Drawing, Rating
from webapp.visitors import CLIENT_COOKIE, client_id_from_cookie, cookie_for

NOT_FOUND = {"error": "no prediction with that id", "code": "not_found"}


def another_deployment() -> Flask:
    other = Flask("another")
    other.secret_key = "another deployment's key"
    return other


def me(client) -> str:
    return client.get("/api/v1/me").json["client_id"]


def predict(client, drawing) -> str:
    response = client.post("/api/v1/predictions", json={"image": drawing.data_url})
    assert response.status_code == 200 and response.json["id"], response.json
    return response.json["id"]


def stored(app, drawing_id) -> tuple:
    with app.app_context():
        row = db.session.get(Drawing, drawing_id)
        ratings = db.session.scalar(select(func.count()).select_from(Rating).where(Rating.drawing_id == drawing_id))
        return row.source, row.label, row.not_digit, ratings


# ---- the anonymous cookie ---------------------------------------------------------------------

def test_the_client_cookie_is_signed_and_keeps_its_attributes(app, client):
    response = client.get("/")
    header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" not in header
    value = client.get_cookie(CLIENT_COOKIE).value
    client_id = me(client)
    assert value != client_id and value.startswith(client_id + ".")
    assert client_id_from_cookie(value, app) == client_id
    assert "Set-Cookie" not in client.get("/api/v1/me").headers  # a signed cookie is kept
    app.config["SESSION_COOKIE_SECURE"] = True
    assert "Secure" in app.test_client().get("/").headers["Set-Cookie"]


def test_a_forged_or_tampered_client_cookie_is_a_fresh_visitor(app, client, canvas_drawings):
    body = {"image": canvas_drawings[0].data_url, "label": canvas_drawings[0].label}
    contributed = client.post("/api/v1/drawings", json=body).json["id"]
    victim, signed = me(client), client.get_cookie(CLIENT_COOKIE).value
    value, signature = signed.rsplit(".", 1)
    middle = len(signature) // 2
    altered = signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1:]
    forgeries = {
        "the bare id, as the cookie used to be": victim,
        "another id under the victim's signature": ("A" if value[0] != "A" else "B") + signed[1:],
        "the victim's id, the signature altered": f"{value}.{altered}",
        "signed with another key": cookie_for(victim, another_deployment()),
        "far too long": signed + "x" * 500,
    }
    for what, value in forgeries.items():
        attacker = app.test_client()
        attacker.set_cookie(CLIENT_COOKIE, value)
        response = attacker.get("/api/v1/me")
        assert response.json["client_id"] != victim and response.json["contributions"] == 0, what
        assert f"{CLIENT_COOKIE}=" in response.headers.get("Set-Cookie", ""), what  # a fresh identity
        assert attacker.post(f"/api/v1/drawings/{contributed}/not-a-digit").status_code == 404, what
    assert stored(app, contributed)[2] is False
    assert client.get("/api/v1/me").json == {"client_id": victim, "contributions": 1}


# ---- who may rate and flag ---------------------------------------------------------------------

def test_only_the_visitor_who_asked_may_rate_a_prediction(app, client, canvas_drawings):
    drawing = canvas_drawings[0]
    drawing_id = predict(client, drawing)
    strangers = [app.test_client(), app.test_client()]
    strangers[1].set_cookie(CLIENT_COOKIE, me(client))  # the owner's id, unsigned
    for stranger in strangers:
        response = stranger.post(f"/api/v1/predictions/{drawing_id}/feedback", json={"label": 7})
        # Exactly what an unknown id gets, so that a stranger cannot tell the two apart.
        assert response.status_code == 404 and response.json == NOT_FOUND
        assert stranger.post(f"/api/v1/drawings/{drawing_id}/not-a-digit").status_code == 404
    assert client.post(f"/api/v1/predictions/{uuid.uuid4()}/feedback", json={"label": 7}).json == NOT_FOUND
    assert stored(app, drawing_id) == ("prediction", None, False, 0)
    assert all(entry["rated"] == 0 for entry in client.get("/api/v1/stats").json["accuracy"].values())
    rated = client.post(f"/api/v1/predictions/{drawing_id}/feedback", json={"label": drawing.label})
    assert rated.status_code == 201 and stored(app, drawing_id) == ("feedback", drawing.label, False, 1)
    # Once rated, still a 404 to strangers, not the owner's 409.
    assert strangers[0].post(f"/api/v1/predictions/{drawing_id}/feedback", json={"label": 7}).json == NOT_FOUND
    assert client.post(f"/api/v1/predictions/{drawing_id}/feedback", json={"label": 7}).status_code == 409


def test_admins_may_rate_and_flag_any_prediction(app, client, runner, admin_token, canvas_drawings):
    owner = app.test_client()
    by_token, by_session, no_csrf = (predict(owner, drawing) for drawing in canvas_drawings[:3])
    assert client.post(f"/api/v1/predictions/{by_token}/feedback", json={"label": 4},
                       headers=admin_token).status_code == 201
    assert client.post(f"/api/v1/drawings/{by_token}/not-a-digit", headers=admin_token).status_code == 200
    assert stored(app, by_token) == ("feedback", 4, True, 1)
    # A wrong token is refused, not quietly taken for a visitor.
    assert client.post(f"/api/v1/predictions/{by_session}/feedback", json={"label": 4},
                       headers={"Authorization": "Bearer nope"}).status_code == 401

    assert log_in(client, password="long enough").status_code == 302
    token = csrf_from(client.get("/admin/").get_data(as_text=True))
    assert client.post(f"/api/v1/predictions/{by_session}/feedback", json={"label": 5},
                       headers={"X-CSRFToken": token}).status_code == 201
    # Without the page's CSRF token the session is no admin's: it may have come from another site.
    assert client.post(f"/api/v1/predictions/{no_csrf}/feedback", json={"label": 5}).json == NOT_FOUND
    assert stored(app, by_session)[:2] == ("feedback", 5) and stored(app, no_csrf) == ("prediction", None, False, 0)


# ---- a rating that reaches another process than its prediction --------------------------------

@pytest.fixture
def second_process(app, database_url, object_root, tmp_path):
    """Another web process on the same database and store, as a second gunicorn worker is."""
    (tmp_path / "second").mkdir()
    # Workers of one deployment share its secret key (each test app otherwise makes its own).
    other = make_app(database_url, object_root, tmp_path / "second", PREDICTION_WRITE_BEHIND=True,
                     SECRET_KEY=app.config["SECRET_KEY"])
    yield other
    with other.app_context():
        db.session.remove()
        db.engine.dispose()


def test_a_rating_waits_for_a_prediction_another_process_is_still_storing(app, client, second_process,
                                                                          canvas_drawings):
    from webapp.writer import PredictionWriter

    app.config["PREDICTION_WRITE_BEHIND"] = True
    # The answering process stores what it answered only after a while.
    app.extensions["inkling.writer"] = PredictionWriter(linger=0.5)
    drawing_id = predict(client, canvas_drawings[0])
    with app.app_context():
        assert db.session.get(Drawing, drawing_id) is None  # still on its way
    rater = second_process.test_client()
    rater.set_cookie(CLIENT_COOKIE, client.get_cookie(CLIENT_COOKIE).value)
    rated = rater.post(f"/api/v1/predictions/{drawing_id}/feedback", json={"label": 3})
    assert rated.status_code == 201, rated.json
    assert stored(app, drawing_id) == ("feedback", 3, False, 1)


def test_ids_not_issued_here_lately_are_not_waited_for(app, client, monkeypatch):
    from webapp import services

    sleeps, sleep = [], time.sleep
    monkeypatch.setattr(services.time, "sleep", lambda seconds: (sleeps.append(seconds), sleep(seconds)))
    with app.app_context():
        fresh = issued_ids.issue()
        old = issued_ids.issue(now=time.time() - 10)
        other = issued_ids.issue(another_deployment())
        assert issued_ids.wait_until(fresh) is not None
        assert issued_ids.wait_until(fresh.upper()) is None
        assert issued_ids.wait_until(fresh[:-1] + ("0" if fresh[-1] != "0" else "1")) is None
    for drawing_id in (old, other, str(uuid.uuid4()), "0123", "x" * 5000):
        response = client.post(f"/api/v1/predictions/{drawing_id}/feedback", json={"label": 3})
        assert response.status_code == 404 and response.json == NOT_FOUND, drawing_id
    assert sleeps == []
    # A fresh id of ours that never arrives is looked for, a bounded number of times.
    assert client.post(f"/api/v1/predictions/{fresh}/feedback", json={"label": 3}).json == NOT_FOUND
    assert 0 < len(sleeps) <= issued_ids.RATABLE_AFTER / services.RATING_POLL_SECONDS + 1


# ---- through gunicorn, as deployed -------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def _post(port: int, path: str, body: dict, cookie: str = "") -> tuple[int, dict, str]:
    """One request on its own connection, so that either worker may take it (gunicorn.conf.py)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json", **({"Cookie": cookie} if cookie else {})}
    connection.request("POST", path, body=json.dumps(body).encode(), headers=headers)
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    return response.status, answer, (response.getheader("Set-Cookie") or "").split(";")[0]


def _healthz_pid(port: int) -> int | None:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        body = json.loads(response.read())
        connection.close()
        return body["pid"] if response.status == 200 else None
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture
def gunicorn(app, database_url, object_root, tmp_path):
    """This test's database and store behind gunicorn with two workers, both up and serving."""
    from bench.harness import free_port

    port = free_port()
    (tmp_path / "gunicorn").mkdir()
    env = {**os.environ, "DATABASE_URL": database_url, "INKLING_INSTANCE_PATH": str(tmp_path / "gunicorn"),
           "LOCAL_STORAGE_PATH": str(object_root), "SECRET_KEY": "a key for this test only",
           "RATELIMIT_ENABLED": "0", "LOG_LEVEL": "WARNING"}
    server = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "--config", "gunicorn.conf.py",
                               "--bind", f"127.0.0.1:{port}", "--workers", "2", "webapp:create_app()"],
                              cwd=ROOT, env=env)
    try:
        pids, deadline = set(), time.monotonic() + 120
        while len(pids) < 2:  # until both workers answer: one alone would hold every prediction itself
            assert server.poll() is None and time.monotonic() < deadline, "gunicorn did not start two workers"
            if (pid := _healthz_pid(port)) is not None:
                pids.add(pid)
            else:
                time.sleep(0.2)
        yield port
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def test_thirty_predictions_each_rated_at_once_through_two_gunicorn_workers(app, gunicorn, canvas_drawings):
    cookie, statuses = "", []
    for index in range(30):
        drawing = canvas_drawings[index % len(canvas_drawings)]
        status, answer, issued = _post(gunicorn, "/api/v1/predictions", {"image": drawing.data_url}, cookie)
        assert status == 200 and answer["id"], answer
        cookie = cookie or issued
        rated, _, _ = _post(gunicorn, f"/api/v1/predictions/{answer['id']}/feedback", {"label": drawing.label}, cookie)
        statuses.append(rated)
    assert statuses == [201] * 30
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Rating)) == 30
