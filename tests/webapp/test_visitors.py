"""Visitors on SQLite and PostgreSQL: a signed anonymous cookie, and predictions only their asker
may rate or flag (and admins)."""

from __future__ import annotations

import uuid

from flask import Flask
from sqlalchemy import func, select

from tests.webapp.test_admin import csrf_from, log_in
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
